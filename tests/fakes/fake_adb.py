"""A software phone behind adb's command line, for tests of the phone code path (`targets.android.adb`).

It answers the adb calls the pipeline makes (`-s SERIAL get-state|push|shell`), keeps pushed files under
$FAKE_ADB_ROOT, and runs `benchmark_model` by executing the pushed model on LiteRT on this host, printing
the tool's own output format. Only $FAKE_ADB_SERIAL is attached; other serials get adb's "not found" error.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(os.environ["FAKE_ADB_ROOT"])
ATTACHED = os.environ.get("FAKE_ADB_SERIAL", "")


def local(remote: str) -> Path:
    return ROOT / remote.lstrip("/")


def benchmark_model(args: list[str]) -> int:
    from ai_edge_litert.interpreter import Interpreter

    flags = dict(a[2:].split("=", 1) for a in args if a.startswith("--"))
    graph = local(flags["graph"])
    print("INFO: STARTING!")
    print(f"INFO: Num threads: [{flags.get('num_threads', 1)}]")
    print(f"INFO: Graph: [{flags['graph']}]")
    if not graph.exists():
        print(f"ERROR: Could not open '{flags['graph']}'.\nBenchmarking failed.")
        return 1
    start = time.perf_counter_ns()
    interp = Interpreter(model_path=str(graph), num_threads=int(flags.get("num_threads", 1)))
    interp.allocate_tensors()
    init_us = (time.perf_counter_ns() - start) / 1e3
    detail = interp.get_input_details()[0]
    x = np.zeros(detail["shape"], detail["dtype"])
    print(f"INFO: The input model file size (MB): {graph.stat().st_size / 1e6:g}")
    print(f"INFO: Initialized session in {init_us / 1e3:.3f}ms.")
    phases = []
    for count in (int(flags.get("warmup_runs", 1)), int(flags.get("num_runs", 50))):
        times = []
        for _ in range(max(count, 1)):
            t0 = time.perf_counter_ns()
            interp.set_tensor(detail["index"], x)
            interp.invoke()
            times.append((time.perf_counter_ns() - t0) / 1e3)
        t = np.array(times)
        print(f"INFO: Running benchmark for at least {count} iterations and at least 0 seconds")
        print(
            f"INFO: count={len(t)} first={t[0]:.0f} curr={t[-1]:.0f} min={t.min():.0f} max={t.max():.0f} "
            f"avg={t.mean():g} std={t.std():.0f} p5={np.percentile(t, 5):.0f} median={np.median(t):.0f} "
            f"p95={np.percentile(t, 95):.0f}\n"
        )
        phases.append(t)
    print(
        f"INFO: Inference timings in us: Init: {init_us:.0f}, First inference: {phases[0][0]:.0f}, "
        f"Warmup (avg): {phases[0].mean():g}, Inference (avg): {phases[1].mean():g}"
    )
    print("INFO: Memory footprint delta from the start of the tool (MB): init=1.5 overall=1.75")
    print("INFO: Overall peak memory footprint (MB) via periodic monitoring: 8.25")
    return 0


def shell(command: str) -> int:
    argv = shlex.split(command)
    if argv[:2] == ["mkdir", "-p"]:
        local(argv[2]).mkdir(parents=True, exist_ok=True)
        return 0
    if argv[0] == "chmod":
        return 0 if local(argv[2]).exists() else 1
    if argv == ["getprop", "ro.product.model"]:
        print("Software Phone")
        return 0
    if argv[0].endswith("/benchmark_model") and local(argv[0]).exists():
        return benchmark_model(argv[1:])
    print(f"/system/bin/sh: {argv[0]}: not found", file=sys.stderr)
    return 127


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[0] != "-s":
        print("adb: usage: adb -s SERIAL COMMAND", file=sys.stderr)
        return 1
    serial, command, rest = argv[1], argv[2], argv[3:]
    if serial != ATTACHED:
        print(f"adb: device '{serial}' not found", file=sys.stderr)
        return 1
    if command == "get-state":
        print("device")
        return 0
    if command == "push":
        target = local(rest[1])
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(rest[0], target)
        print(f"{rest[0]}: 1 file pushed.")
        return 0
    if command == "shell":
        return shell(" ".join(rest))
    print(f"adb: unknown command {command}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
