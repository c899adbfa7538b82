"""Offline memory plans: an arena layout computed here and written into the model, which TFLM then follows.

TFLM's `GreedyMemoryPlanner` places tensors one by one, largest first, and is not optimal on every graph (on a
MobileNet-style model its head is 1.33x the live-tensor lower bound). TFLM honours a plan stored in the model's
metadata under "OfflineMemoryAllocation": int32 [version 0, subgraph 0, n, offset of tensor 0, ..., tensor n-1],
-1 for tensors it should handle itself (constants, variables). Scratch buffers kernels request at run time are
still planned by TFLM, around the fixed offsets.

The planner works on the tensors' lifetimes as TFLM computes them (a tensor lives from the op that writes it to the
last op that reads it; graph inputs from the first op, outputs to the last), sizes rounded up to TFLM's 16-byte
alignment. Two tensors whose lifetimes overlap must not overlap in memory. The best of several greedy orders is
taken; when it is above the lower bound, a branch-and-bound search over placement orders improves it, proving the
optimum when it finishes within its node budget. A plan is only ever shipped after the real TFLM interpreter ran
it with bit-identical outputs (`targets.tflm.measure_with_plan`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.runtimes.tflm import ALIGN, align
from pipeline.tflite_model import Graph, get_metadata, set_metadata

METADATA_NAME = "OfflineMemoryAllocation"


@dataclass(frozen=True)
class Buffer:
    tensor: int
    size: int  # bytes, rounded up to ALIGN
    first: int  # op index that creates it
    last: int  # last op index that reads it

    def overlaps(self, other: Buffer) -> bool:
        return self.first <= other.last and other.first <= self.last


def buffers(graph: Graph) -> list[Buffer]:
    """Every tensor TFLM plans in the head (not constants, not variables) with its TFLM lifetime."""
    n = len(graph.operators)
    first: dict[int, int] = {t: 0 for t in graph.inputs}
    last: dict[int, int] = {t: n - 1 for t in graph.outputs}
    for step, op in enumerate(graph.operators):
        for t in op.outputs:
            first.setdefault(t, step)
            last.setdefault(t, step)
        for t in op.inputs:
            first.setdefault(t, 0)  # read before anything wrote it: alive from the start
            last[t] = max(last.get(t, step), step)
    return [
        Buffer(t, align(graph.tensors[t].nbytes), first[t], last[t])
        for t in sorted(first)
        if not graph.tensors[t].constant and not graph.tensors[t].variable and graph.tensors[t].nbytes > 0
    ]


def lower_bound(bufs: list[Buffer]) -> int:
    """The largest total size alive at one step: no placement can use less."""
    steps = {b.first for b in bufs}
    return max((sum(b.size for b in bufs if b.first <= s <= b.last) for s in steps), default=0)


def _place(order: list[Buffer], conflicts: dict[int, list[Buffer]]) -> dict[int, int]:
    """Each buffer at the lowest offset where it fits between the already placed buffers it overlaps in time."""
    offsets: dict[int, int] = {}
    for b in order:
        taken = sorted(
            (offsets[o.tensor], offsets[o.tensor] + o.size) for o in conflicts[b.tensor] if o.tensor in offsets
        )
        offset = 0
        for lo, hi in taken:
            if offset + b.size <= lo:
                break
            offset = max(offset, hi)
        offsets[b.tensor] = offset
    return offsets


def _head(bufs: list[Buffer], offsets: dict[int, int]) -> int:
    return max((offsets[b.tensor] + b.size for b in bufs), default=0)


def plan(bufs: list[Buffer], node_budget: int = 200_000) -> dict[str, Any]:
    """Offsets for every buffer: the best greedy order, then branch and bound (exact when it finishes)."""
    started = time.perf_counter()
    conflicts = {b.tensor: [o for o in bufs if o.tensor != b.tensor and b.overlaps(o)] for b in bufs}
    bound = lower_bound(bufs)
    orders = {
        "size": sorted(bufs, key=lambda b: (-b.size, b.first)),
        "size x lifetime": sorted(bufs, key=lambda b: (-b.size * (b.last - b.first + 1), -b.size)),
        "lifetime": sorted(bufs, key=lambda b: (-(b.last - b.first), -b.size)),
        "first use": sorted(bufs, key=lambda b: (b.first, -b.size)),
        "conflicts": sorted(bufs, key=lambda b: (-sum(o.size for o in conflicts[b.tensor]) - b.size, -b.size)),
    }
    best_name, best = min(((name, _place(order, conflicts)) for name, order in orders.items()),
                          key=lambda item: _head(bufs, item[1]))  # fmt: skip
    best_head, method, exact = _head(bufs, best), f"greedy ({best_name} order)", False
    if best_head > bound:
        found, nodes, finished = _branch_and_bound(orders["size"], conflicts, best_head, bound, node_budget)
        if found is not None and _head(bufs, found) < best_head:
            best, best_head, method = found, _head(bufs, found), "branch and bound"
        exact = finished
    else:
        exact = True  # at the lower bound: nothing can do better
    return {
        "offsets": best,
        "head": best_head,
        "lower_bound": bound,
        "method": method,
        "optimal": exact or best_head == bound,
        "seconds": time.perf_counter() - started,
    }


def _lowest_fit(b: Buffer, offsets: dict[int, int], conflicts: dict[int, list[Buffer]]) -> int:
    taken = sorted((offsets[o.tensor], offsets[o.tensor] + o.size) for o in conflicts[b.tensor] if o.tensor in offsets)
    offset = 0
    for lo, hi in taken:
        if offset + b.size <= lo:
            break
        offset = max(offset, hi)
    return offset


def _branch_and_bound(order: list[Buffer], conflicts: dict[int, list[Buffer]], incumbent: int, bound: int,
                      node_budget: int) -> tuple[dict[int, int] | None, int, bool]:  # fmt: skip
    """Depth-first over the order in which buffers are placed, each at its lowest fitting offset. Some order
    yields an optimal layout (place an optimal layout's buffers by increasing offset: none lands higher), so a
    finished search is exact. A branch is cut once its head reaches the best found. Returns (a layout better than
    `incumbent` or None, nodes visited, whether the search finished)."""
    best: dict[int, int] | None = None
    offsets: dict[int, int] = {}
    nodes = 0
    exhausted = False

    def search(remaining: list[Buffer], head: int) -> None:
        nonlocal best, incumbent, nodes, exhausted
        if not remaining:
            best, incumbent = dict(offsets), head
            return
        for k, b in enumerate(remaining):
            if exhausted or incumbent <= max(head, bound):
                return
            nodes += 1
            if nodes > node_budget:
                exhausted = True
                return
            offset = _lowest_fit(b, offsets, conflicts)
            if max(head, offset + b.size) >= incumbent:
                continue
            offsets[b.tensor] = offset
            search(remaining[:k] + remaining[k + 1 :], max(head, offset + b.size))
            del offsets[b.tensor]

    search(list(order), 0)
    return best, nodes, not exhausted


def check_plan(bufs: list[Buffer], offsets: dict[int, int]) -> list[str]:
    """Every pair of buffers alive at once must be disjoint in memory, and every offset aligned: the reasons a
    plan is wrong (empty when it is sound). Checked before writing, independently of how the plan was made."""
    problems = []
    for b in bufs:
        if b.tensor not in offsets:
            problems.append(f"tensor {b.tensor} has no offset")
        elif offsets[b.tensor] % ALIGN:
            problems.append(f"tensor {b.tensor} at {offsets[b.tensor]} is not {ALIGN}-byte aligned")
    for i, a in enumerate(bufs):
        for b in bufs[i + 1 :]:
            if a.tensor in offsets and b.tensor in offsets and a.overlaps(b):
                lo_a, lo_b = offsets[a.tensor], offsets[b.tensor]
                if lo_a < lo_b + b.size and lo_b < lo_a + a.size:
                    problems.append(f"tensors {a.tensor} and {b.tensor} are alive together and overlap in memory")
    return problems


def with_plan(model: bytes, graph: Graph, offsets: dict[int, int]) -> bytes:
    """The model with its "OfflineMemoryAllocation" metadata set to `offsets` (-1 for tensors not in it)."""
    values = [0, 0, len(graph.tensors)] + [offsets.get(t, -1) for t in range(len(graph.tensors))]
    return set_metadata(model, METADATA_NAME, np.array(values, dtype="<i4").tobytes())


def read_plan(model: bytes) -> list[int] | None:
    """The offsets stored in a model's "OfflineMemoryAllocation" metadata, or None."""
    data = get_metadata(model, METADATA_NAME)
    if data is None:
        return None
    values = np.frombuffer(data, dtype="<i4")
    return [int(v) for v in values[3 : 3 + int(values[2])]]
