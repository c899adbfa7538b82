"""The one module that talks to a phone: adb, and TFLite's official `benchmark_model` run on the phone.

A nightly job on a machine with a phone attached goes through exactly this code: push the binary and the model
to `/data/local/tmp`, run `benchmark_model` with flags matching the host measurement, parse what it prints.
`parse_benchmark_output` reads the formats the tool has printed across TFLite releases (with or without the
`INFO:` / logcat prefixes; memory as "Peak memory footprint", "Memory footprint delta" or "Overall peak memory
footprint ... via periodic monitoring"; percentiles only in newer builds).
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REMOTE_DIR = "/data/local/tmp/edge-pipeline"
_NUMBER = r"([-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)"


class AdbError(RuntimeError):
    pass


class BenchmarkParseError(ValueError):
    pass


@dataclass
class Adb:
    serial: str
    executable: str = "adb"
    timeout: float = 300.0

    def run(self, *args: str, timeout: float | None = None) -> str:
        command = [self.executable, "-s", self.serial, *args]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout or self.timeout)
        except FileNotFoundError:
            raise AdbError(f"'{self.executable}' not found: install Android platform-tools") from None
        except subprocess.TimeoutExpired:
            raise AdbError(
                f"adb did not answer within {timeout or self.timeout:.0f} s: {shlex.join(command)}"
            ) from None
        if done.returncode != 0:
            raise AdbError(f"{shlex.join(command)} failed ({done.returncode}): {(done.stderr or done.stdout)[-1000:]}")
        return done.stdout

    def attached(self) -> bool:
        """True when the phone answers as a ready device; a missing adb or phone is simply False."""
        if shutil.which(self.executable) is None:
            return False
        try:
            return self.run("get-state", timeout=15).strip() == "device"
        except AdbError:
            return False

    def shell(self, command: str, timeout: float | None = None) -> str:
        return self.run("shell", command, timeout=timeout)

    def push(self, local: Path, remote: str) -> None:
        self.run("push", str(local), remote)

    def model_name(self) -> str:
        return self.shell("getprop ro.product.model", timeout=15).strip() or self.serial


def benchmark_on_phone(
    adb: Adb, binary: Path, model: Path, threads: int, runs: int, warmup: int, xnnpack: bool
) -> dict[str, Any]:
    """Push and run benchmark_model for one model and thread count; the parsed figures."""
    remote_binary, remote_model = f"{REMOTE_DIR}/benchmark_model", f"{REMOTE_DIR}/{model.name}"
    adb.shell(f"mkdir -p {REMOTE_DIR}")
    adb.push(binary, remote_binary)
    adb.shell(f"chmod 755 {remote_binary}")
    adb.push(model, remote_model)
    flags = benchmark_flags(remote_model, threads, runs, warmup, xnnpack)
    output = adb.shell(shlex.join([remote_binary, *flags]), timeout=600)
    return parse_benchmark_output(output)


def benchmark_flags(graph: str, threads: int, runs: int, warmup: int, xnnpack: bool) -> list[str]:
    """Flags matching the host measurement: fixed run counts (no time-based minimum), same threads/delegate."""
    return [
        f"--graph={graph}",
        f"--num_threads={threads}",
        f"--num_runs={runs}",
        "--min_secs=0",
        f"--warmup_runs={warmup}",
        "--warmup_min_secs=0",
        f"--use_xnnpack={'true' if xnnpack else 'false'}",
        "--report_peak_memory_footprint=true",
    ]


def parse_benchmark_output(text: str) -> dict[str, Any]:
    """benchmark_model's stdout (or logcat) -> init/first/warm-up/inference times in µs, percentiles, memory MB."""
    summary = re.search(
        rf"Inference timings in us: Init: {_NUMBER}, First inference: {_NUMBER}, "
        rf"Warmup \(avg\): {_NUMBER}, Inference \(avg\): {_NUMBER}",
        text,
    )
    if summary is None:
        tail = "\n".join(text.strip().splitlines()[-8:])
        raise BenchmarkParseError(f"no 'Inference timings in us' line: did benchmark_model fail?\n{tail}")
    init, first, warmup_avg, inference_avg = (float(g) for g in summary.groups())
    result: dict[str, Any] = {
        "init_us": init,
        "first_inference_us": first,
        "warmup_avg_us": warmup_avg,
        "inference_avg_us": inference_avg,
    }
    counts = [_fields(m.group(0)) for m in re.finditer(r"count=\d+ first=.*", text)]
    if counts:  # the first is the warm-up phase, the last the measured one
        measured = counts[-1]
        result["runs"] = int(measured["count"])
        for key in ("min", "max", "std", "p5", "median", "p95"):
            if key in measured:
                result[f"{key}_us"] = measured[key]
    size = re.search(rf"The input model file size \(MB\): {_NUMBER}", text)
    if size:
        result["model_size_mb"] = float(size.group(1))
    memory = re.search(rf"(Peak memory footprint|Memory footprint delta from the start of the tool) \(MB\): "
                       rf"init={_NUMBER} overall={_NUMBER}", text)  # fmt: skip
    if memory:
        result["memory_init_mb"], result["memory_overall_mb"] = float(memory.group(2)), float(memory.group(3))
        result["memory_kind"] = "peak" if memory.group(1).startswith("Peak") else "delta from tool start"
    peak = re.search(rf"Overall peak memory footprint \(MB\) via periodic monitoring: {_NUMBER}", text)
    if peak:
        result["memory_peak_mb"] = float(peak.group(1))
    return result


def _fields(line: str) -> dict[str, float]:
    return {k: float(v) for k, v in re.findall(rf"(\w+)={_NUMBER}", line)}
