"""The bundle as firmware on the board's core: built (`firmware`), run on the emulated board (`qemu`) and measured
through the serial protocol a real board speaks (`targets.serial_dut`).

What the board gives, each figure from the firmware itself: the outputs for every test vector (compared bit for
bit with the host TFLM interpreter's), instructions per invoke (QEMU's icount), `arena_used_bytes()` and the
stack's high-water mark on the 32-bit target, flash and RAM of the linked ELF by component (its map file), and
the front end's instructions per clip. Latency in milliseconds is instructions x the board's stated CPI / clock:
an estimate, and it says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from pipeline.measurement import Measurement
from targets.tflm.boards import Board
from targets.tflm.firmware import Firmware, FirmwareUnavailable, build_firmware, toolchain
from targets.tflm.qemu import QemuBoard, QemuUnavailable, qemu_version

HARNESS_PART = "harness"
FIRMWARE_DIR = "firmware"  # inside the bundle: <board>-<kernels>/firmware.elf, .map, sizes.json
STREAM_CHUNK = 8000  # samples sent per `listen` (0.5 s at 16 kHz), as an audio driver's buffer would deliver them


def unavailable_reason(board: Board) -> str | None:
    """Why this machine cannot build and emulate `board`'s firmware, or None when it can."""
    if not board.buildable or board.qemu_machine is None:
        return f"board {board.name} ({board.core}) has no firmware build or emulator here"
    try:
        toolchain()
        qemu_version()
    except (FirmwareUnavailable, QemuUnavailable) as exc:
        return str(exc)
    return None


@dataclass
class BoardRun:
    outputs: np.ndarray  # raw output tensor per input
    counts: list[float]  # instructions per invoke, per input (the first input's median over its timed runs)
    repeat_counts: list[float]  # the first input's timed runs: equal when the count is deterministic
    profile: dict[str, str]
    frontend_features: np.ndarray | None = None
    frontend_count: float | None = None
    listen_counts: np.ndarray | None = None  # per model run on the stream: new frames + invoke + decision
    detections: np.ndarray | None = None  # [n, 2] (run, class) by the firmware's own detector


def run_firmware(
    firmware: Firmware, board: Board, inputs: np.ndarray, runs: int = 5, pcm: np.ndarray | None = None,
    timeout: float = 30.0, stream: np.ndarray | None = None,
) -> BoardRun:  # fmt: skip
    """Every input once (the first `runs` times, after one warm-up) on the emulated board; then the front end on
    `pcm` and the streaming detector on `stream` (16-bit PCM) when given; the profile last, so its stack
    high-water mark covers everything that ran."""
    from targets.serial_dut import SerialDut

    outputs, counts = [], []
    repeat: list[float] = []
    features = frontend_count = None
    with QemuBoard(board, firmware.elf) as port, SerialDut(port, timeout=timeout, infer_timeout=2.0) as dut:
        for i, x in enumerate(inputs):
            dut.load(np.ascontiguousarray(x).tobytes())
            result = dut.infer(runs, 1) if i == 0 else dut.infer(1, 0)
            if result.counts is None:
                raise RuntimeError("the firmware reported no instruction counts")
            if i == 0:
                repeat = [float(c) for c in result.counts]
            counts.append(float(np.median(result.counts)))
            outputs.append(result.outputs)
        if pcm is not None:
            features, frontend_count = dut.frontend(np.asarray(pcm, "<i2").tobytes())
        listened = dut.listen(stream, STREAM_CHUNK) if stream is not None else (None, None)
        profile = dut.profile()
    return BoardRun(np.array(outputs), counts, repeat, profile, features, frontend_count, *listened)


def board_figures(board: Board, firmware: Firmware, run: BoardRun) -> dict[str, Measurement]:
    """flash, RAM and latency of the model on the board, from the linked ELF and what the firmware reported."""
    parts = firmware.sizes["by_component"]
    app = {k: v for k, v in parts.items() if k != HARNESS_PART}
    flash = sum(v["flash"] for v in app.values())
    statics = sum(v["ram"] for v in app.values())
    arena = int(run.profile["arena-used"])
    stack = int(run.profile["stack-used"])
    instructions = float(np.median(run.counts))
    ms = board.latency_ms(instructions)
    split = ", ".join(f"{k} {v['flash']:,}" for k, v in sorted(app.items(), key=lambda kv: -kv[1]["flash"]))
    harness = parts.get(HARNESS_PART, {"flash": 0})["flash"]
    return {
        "flash": Measurement(
            flash, "B",
            f"linked Cortex-M firmware for {board.name} ({firmware.library.kernels} kernels, --gc-sections), from its "
            f"map file: {split} B; the benchmark harness ({harness:,} B) excluded",
            True,
        ),
        "ram": Measurement(
            arena + statics + stack, "B",
            f"on the emulated {board.core}: arena_used_bytes() {arena:,} B + static RAM of TFLM, front end and C "
            f"runtime {statics:,} B + stack high-water mark {stack:,} B",
            True,
        ),
        "latency": Measurement(
            ms, "ms",
            f"{instructions:,.0f} instructions per invoke counted on QEMU {board.qemu_machine} (icount) x "
            f"{board.cpi} cycles per instruction (assumed) / {board.clock_mhz} MHz",
            False,
        ),
    }  # fmt: skip


def measure_board(
    bundle: Path, name: str, board: Board, inputs: np.ndarray, expected: np.ndarray, runs: int = 5,
    pcm: np.ndarray | None = None, expected_features: np.ndarray | None = None,
    kernels: Literal["cmsis_nn", "reference"] = "cmsis_nn", compare_reference: bool = False,
    sources: str | Path | None = None, log=lambda msg: None, stream: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Build the bundle's firmware, run it on the emulated board, and return its figures and checks. `stream`:
    16-bit PCM and the detections [n, 2] the pipeline's detector made on it (with the host interpreter's
    outputs), for the firmware's own detector to listen to."""
    out = bundle / FIRMWARE_DIR / f"{board.name}-{kernels}"
    firmware = build_firmware(bundle, name, board, kernels, out, sources, log)
    log(f"running the firmware on QEMU {board.qemu_machine}: {len(inputs)} test vectors, {runs} timed invokes")
    listen = None
    if stream is not None:
        listen = np.asarray(stream[0], "<i2")
        log(f"the firmware's detector listens to {len(listen) / 16000:.0f} s of the bundle's stream")
    run = run_firmware(firmware, board, inputs, runs, pcm, stream=listen)
    match = np.all(run.outputs.reshape(len(inputs), -1) == expected.reshape(len(inputs), -1), axis=1)
    figures = board_figures(board, firmware, run)
    result: dict[str, Any] = {
        "board": board.name,
        "core": board.core,
        "machine": board.qemu_machine,
        "emulator": qemu_version(),
        "compiler": firmware.library.compiler,
        "kernels": kernels,
        "firmware": str(out.relative_to(bundle)),
        "library": {
            "files": firmware.library.files,
            "minimal_kernels": firmware.library.minimal,
            "cached": firmware.library.cached,
            "build_seconds": firmware.library.seconds,
        },  # fmt: skip
        "instructions_per_invoke": float(np.median(run.counts)),
        "instructions_by_vector": run.counts,
        "instructions_repeat": run.repeat_counts,
        "deterministic": len(set(run.repeat_counts)) == 1,
        "counter": run.profile.get("counter"),
        "arena_used_bytes": int(run.profile["arena-used"]),
        "arena_bytes": int(run.profile["arena"]),
        "arena_fits_bundle": int(run.profile["arena-used"]) <= int(run.profile["arena"]),
        "stack_used_bytes": int(run.profile["stack-used"]),
        "sizes": firmware.sizes,
        "vectors": len(match),
        "outputs_match": int(match.sum()),
        "figures": {k: m.as_dict() for k, m in figures.items()},
        "cpi": board.cpi,
        "clock_mhz": board.clock_mhz,
    }
    if run.frontend_count is not None:
        frontend: dict[str, Any] = {"instructions_per_clip": run.frontend_count}
        if expected_features is not None:
            frontend["inputs_equal"] = float(np.mean(run.frontend_features == expected_features.reshape(-1)))
        result["frontend"] = frontend
    if run.listen_counts is not None and stream is not None:
        expected_detections = np.asarray(stream[1]).reshape(-1, 2)
        per_run = float(np.median(run.listen_counts))
        result["streaming"] = {
            "seconds": len(listen) / 16000, "runs": len(run.listen_counts),
            "instructions_per_run": per_run, "latency_ms_per_run": board.latency_ms(per_run),
            "detections": run.detections.tolist(), "expected_detections": expected_detections.tolist(),
            "same_detections": bool(np.array_equal(run.detections, expected_detections)),
        }  # fmt: skip
    if compare_reference and kernels == "cmsis_nn":
        reference = build_firmware(bundle, name, board, "reference", bundle / FIRMWARE_DIR / f"{board.name}-reference",
                                   sources, log)  # fmt: skip
        log("running the reference-kernel firmware for comparison")
        ref = run_firmware(reference, board, inputs[:1], 1)
        result["reference_kernels"] = {
            "instructions_per_invoke": ref.counts[0],
            "speedup": ref.counts[0] / run.counts[0],
            "outputs_match": bool(np.array_equal(ref.outputs[0], run.outputs[0])),
            "flash_bytes": sum(v["flash"] for k, v in reference.sizes["by_component"].items() if k != HARNESS_PART),
        }
    return result
