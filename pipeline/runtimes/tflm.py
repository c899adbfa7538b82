"""TFLite Micro as a runtime: the real interpreter (PyPI `tflite-micro`), always in a child process.

A TFLM failure can be a segfault, and the interpreter keeps global state; each probe, measurement or batch of
outputs therefore runs in a fresh `python -m pipeline.runtimes.tflm_child`. "Arena too small" is told apart from
every other failure by TFLM's own messages, so an operator TFLM lacks or a hybrid model is reported as what it is.
"""

from __future__ import annotations

import functools
import json
import re
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from pipeline.analysis.evaluation import quantize_input
from pipeline.engine.child import describe_exit, run_module
from pipeline.runtimes import Predictor
from pipeline.tflite_model import random_inputs, read_model

ALIGN = 16  # TFLM aligns arena buffers to 16 bytes; arenas are searched and shipped in these steps
MAX_ARENA = 64 << 20


class UnsupportedOpError(ValueError):
    """The model has an operator TFLM (or its op resolver) cannot run."""


class TflmError(RuntimeError):
    pass


class ModelNotSupportedError(TflmError):
    """The model itself cannot run on TFLM (a hybrid model): the input is at fault, not the tool."""


def _child(*args: str | Path | int, timeout: float = 600) -> subprocess.CompletedProcess:
    return run_module("pipeline.runtimes.tflm_child", *args, timeout=timeout)


# What TFLM prints when the arena is too small (sometimes just before it segfaults).
ARENA_TOO_SMALL = re.compile(r"Failed to allocate|Failed to resize buffer|missing: \d+|temp buffers must be freed")
HYBRID_FIX = (
    "TFLite Micro runs fully integer models only: convert with full-integer quantization and a representative "
    "data set (converter.optimizations = [tf.lite.Optimize.DEFAULT]; converter.representative_dataset = ...; "
    "converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]; int8 input and output types)"
)


def explain_failure(stderr: str, returncode: int, what: str) -> Exception:
    """The error for a TFLM child that failed for a reason other than arena size: TFLM's own words, named."""
    missing = re.search(r"Didn't find op for builtin opcode '(\w+)'", stderr)
    if missing:
        return UnsupportedOpError(f"TFLite Micro has no kernel for operator {missing.group(1)}")
    if "Hybrid models are not supported" in stderr or re.search(r"Input type: FLOAT32 with filter type: INT8", stderr):
        return ModelNotSupportedError(f"a hybrid model (float activations, int8 weights): {HYBRID_FIX}")
    tail = "\n".join(stderr.strip().splitlines()[-15:]) or "(it printed nothing)"
    return TflmError(f"TFLM {what} failed ({describe_exit(returncode)}); TFLM said:\n{tail}")


def allocates(model_path: Path, arena: int, input_path: Path) -> bool:
    """Whether TFLM allocates and invokes with `arena` bytes.

    "No" needs evidence that size is the reason: TFLM's own allocation-failure message (it may crash right after
    printing it), or, for any other failure, the same model running with the largest arena we search. Anything
    else (a missing file, an operator TFLM lacks, a hybrid model, an import error) raises with the child's own
    message instead of passing for a small arena."""
    done = _child("probe", Path(model_path), arena, Path(input_path), timeout=120)
    if done.returncode == 0:
        return True
    if ARENA_TOO_SMALL.search(done.stderr):
        return False
    if arena < MAX_ARENA and _runs_at_all(Path(model_path).resolve(), Path(input_path).resolve()):
        return False
    raise explain_failure(done.stderr, done.returncode, f"probe of {Path(model_path).name} with a {arena}-byte arena")


@functools.lru_cache(maxsize=64)
def _runs_at_all(model_path: Path, input_path: Path) -> bool:
    """Whether the model allocates and invokes with the largest arena searched (then a failure below is size)."""
    done = _child("probe", model_path, MAX_ARENA, input_path, timeout=120)
    if done.returncode == 0:
        return True
    raise explain_failure(done.stderr, done.returncode, f"probe of {model_path.name} with a {MAX_ARENA}-byte arena")


def align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def find_min_arena(model_path: Path, input_path: Path, log=lambda msg: None) -> tuple[int, int]:
    """Smallest 16-byte multiple that allocates and invokes; returns (bytes, probes used)."""
    lo, hi, probes = 0, max(ALIGN, align(model_path.stat().st_size)), 0  # an empty arena never allocates
    while True:
        probes += 1
        if allocates(model_path, hi, input_path):
            break
        lo, hi = hi, hi * 2
        if hi > MAX_ARENA:
            raise TflmError(f"TFLM could not allocate {model_path.name} even with {lo} bytes of arena")
    while hi - lo > ALIGN:  # both are multiples of ALIGN, so lo < mid < hi
        mid = align((lo + hi) // 2)
        probes += 1
        if allocates(model_path, mid, input_path):
            hi = mid
        else:
            lo = mid
    log(f"arena: {hi} bytes after {probes} probes")
    return hi, probes


def time_invokes(model_path: Path, arena: int, runs: int, warmup: int = 10, seed: int = 0) -> list[float]:
    """`runs` timed invokes (ms) on random inputs of the model's shape: for side-by-side comparisons only
    (reference kernels take the same path whatever the values)."""
    graph = read_model(Path(model_path).read_bytes())
    inputs = random_inputs(graph.tensors[graph.inputs[0]], 8, seed)
    with tempfile.TemporaryDirectory() as tmp:
        batch, result_path = Path(tmp) / "inputs.npy", Path(tmp) / "result.json"
        np.save(batch, inputs)
        result = measure_child(Path(model_path), arena, batch, result_path, warmup, runs)
        return [ns / 1e6 for ns in result["latency_ns"]]


def measure_child(model_path: Path, arena: int, inputs: Path, result: Path, warmup: int, runs: int) -> dict:
    done = _child("measure", Path(model_path), arena, inputs, result, "--warmup", warmup, "--runs", runs)
    if done.returncode != 0:
        raise explain_failure(done.stderr, done.returncode, f"measurement with a {arena}-byte arena")
    return json.loads(result.read_text())


def tflm_outputs(model_path: Path, arena: int, inputs: np.ndarray) -> np.ndarray:
    """Raw output tensors of TFLM for a batch of (already quantized) inputs, one invoke each, in a child."""
    with tempfile.TemporaryDirectory() as tmp:
        batch, result = Path(tmp) / "inputs.npy", Path(tmp) / "outputs.npy"
        np.save(batch, inputs)
        done = _child("outputs", Path(model_path), arena, batch, result)
        if done.returncode != 0:
            raise explain_failure(done.stderr, done.returncode, f"run of {len(inputs)} inputs")
        return np.load(result)


def tflm_predictor(path: Path, arena: int) -> Predictor:
    graph = read_model(path.read_bytes())
    tin, tout = graph.tensors[graph.inputs[0]], graph.tensors[graph.outputs[0]]

    def run(x: np.ndarray) -> np.ndarray:
        if tin.dtype == "FLOAT32":
            feed = x[..., None].astype(np.float32)
        else:
            feed = quantize_input(x[..., None], tin.scale, tin.zero_point, np.dtype(tin.dtype.lower()))
        y = tflm_outputs(path, arena, feed)
        return (
            y.astype(np.float32) if tout.dtype == "FLOAT32" else (y.astype(np.float32) - tout.zero_point) * tout.scale
        )

    return run
