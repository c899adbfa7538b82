"""The TFLM interpreter in a child process.

A too-small arena makes `Interpreter.from_bytes` raise, but a failed allocation has also been seen to take the
whole process down, so every call into TFLM that might fail runs here, never in the pipeline's own process.
Only numpy, tflite_micro and two small project modules (`targets`, `pipeline.c_output`, which import nothing
heavy) are imported: a probe starts in ~0.2 s. TFLM prints its own errors on stderr; the parent
(`pipeline.runtimes.tflm.allocates`) reads them to tell "arena too small" from every other failure.

    python -m pipeline.runtimes.tflm_child probe   MODEL ARENA INPUT.npy          exit 0 if it allocates and invokes
    python -m pipeline.runtimes.tflm_child measure MODEL ARENA INPUTS.npy OUT.json --warmup W --runs R
    python -m pipeline.runtimes.tflm_child outputs MODEL ARENA INPUTS.npy OUT.npy     raw output tensor of every input
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time

import numpy as np

from pipeline.c_output import captured_c_output


def _interpreter(model_path: str, arena: int):
    from tflite_micro.python.tflite_micro import runtime

    with open(model_path, "rb") as f:
        return runtime.Interpreter.from_bytes(f.read(), arena_size=arena)


def parse_allocations(text: str) -> dict:
    """Totals and per-kind records from RecordingMicroAllocator's report."""
    out: dict = {"records": {}}
    for kind in ("total", "head", "tail"):
        m = re.search(rf"Arena allocation {kind} (\d+) bytes", text)
        if m:
            out[kind] = int(m.group(1))
    for m in re.finditer(r"'([^']+)' used (\d+) bytes with alignment overhead \(requested (\d+) bytes for (\d+)", text):
        out["records"][m.group(1)] = {"used": int(m.group(2)), "requested": int(m.group(3)), "count": int(m.group(4))}
    return out


def probe(model_path: str, arena: int, input_path: str) -> int:
    try:
        interp = _interpreter(model_path, arena)
        interp.set_input(np.load(input_path), 0)
        interp.invoke()
    except (RuntimeError, ValueError) as exc:  # TFLM printed why on stderr; the parent reads it
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


def measure(model_path: str, arena: int, inputs_path: str, out_path: str, warmup: int, runs: int) -> None:
    inputs = np.load(inputs_path)
    interp = _interpreter(model_path, arena)
    interp.set_input(inputs[:1], 0)
    interp.invoke()
    with captured_c_output() as printed:
        interp.print_allocations()
    allocations = parse_allocations(printed[0])
    for i in range(warmup):
        interp.set_input(inputs[i % len(inputs)][None], 0)
        interp.invoke()
    latency_ns = []
    for i in range(runs):
        interp.set_input(inputs[i % len(inputs)][None], 0)
        start = time.perf_counter_ns()
        interp.invoke()
        latency_ns.append(time.perf_counter_ns() - start)
    predictions = []
    for x in inputs:
        interp.set_input(x[None], 0)
        interp.invoke()
        predictions.append(int(np.argmax(interp.get_output(0)[0])))
    from importlib.metadata import version

    result = {
        "allocations": allocations,
        "latency_ns": latency_ns,
        "predictions": predictions,
        "runtime_version": version("tflite-micro"),
    }
    with open(out_path, "w") as f:
        json.dump(result, f)


def outputs(model_path: str, arena: int, inputs_path: str, out_path: str) -> None:
    inputs = np.load(inputs_path)
    interp = _interpreter(model_path, arena)
    results = []
    for x in inputs:
        interp.set_input(x[None], 0)  # before every invoke: the planner may reuse the input's bytes
        interp.invoke()
        results.append(interp.get_output(0).reshape(-1).copy())
    np.save(out_path, np.array(results))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.runtimes.tflm_child")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("probe")
    p.add_argument("model")
    p.add_argument("arena", type=int)
    p.add_argument("input")
    m = sub.add_parser("measure")
    m.add_argument("model")
    m.add_argument("arena", type=int)
    m.add_argument("inputs")
    m.add_argument("out")
    m.add_argument("--warmup", type=int, default=10)
    m.add_argument("--runs", type=int, default=100)
    o = sub.add_parser("outputs")
    for name in ("model", "arena", "inputs", "out"):
        o.add_argument(name, type=int if name == "arena" else str)
    args = parser.parse_args(argv)
    if args.cmd == "probe":
        return probe(args.model, args.arena, args.input)
    if args.cmd == "outputs":
        outputs(args.model, args.arena, args.inputs, args.out)
        return 0
    measure(args.model, args.arena, args.inputs, args.out, args.warmup, args.runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
