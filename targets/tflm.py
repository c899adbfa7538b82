"""TFLite Micro: the firmware bundle, measured on the real TFLM interpreter (PyPI `tflite-micro`).

`compile` writes what follows from the flatbuffer alone (model, C array, op resolver); `measure` finds the arena,
times `invoke()`, runs the test split, and completes the bundle with the measured arena (`model_config.h`,
`README.md`, `manifest.json`). `profile` does the same for any `.tflite` no recipe made.

RAM is the smallest tensor arena with which the interpreter allocates *and* invokes, found by binary search over
16-byte steps, each probe in a child process (see `targets.tflm_child`), and cross-checked with the
RecordingMicroAllocator's own report. The wheel is a 64-bit host build: its activation plan (head) is what a
Cortex-M needs, its persistent structures (tail) are larger than on a 32-bit MCU; the MCU figure is derived and
labelled as such. Latency is host `invoke()` time of TFLM's reference kernels, not the board's.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.child import describe_exit, run_module
from pipeline.evaluation import quantize_input, summarize
from pipeline.recipe import TflmConfig
from pipeline.store import write_json
from targets import TargetContext, latency_summary
from targets.boards import BOARDS
from targets.tflite_model import Graph, hybrid_ops, live_tensor_lower_bound, macs, read_model
from targets.tflm_bundle import (
    ALIGN,
    UnsupportedOpError,
    write_c_array,
    write_manifest,
    write_model_config,
    write_op_resolver,
    write_readme,
)

MAX_ARENA = 64 << 20
MODEL = "model.tflite"
PREDICTIONS = "tflm_test_predictions.npy"
VECTORS = "test_vectors.npz"  # a few int8 test inputs per class: for firmware tests and hardware-in-the-loop
VECTORS_PER_CLASS = 2
# Allocator records whose structs hold pointers or size_t: 8 bytes on the host, 4 on a 32-bit MCU.
POINTER_RECORDS = (
    "TfLiteEvalTensor data", "Persistent TfLiteTensor data", "Persistent TfLiteTensor quantization data",
    "NodeAndRegistration struct",
)  # fmt: skip


class TflmError(RuntimeError):
    pass


class ModelNotSupportedError(TflmError):
    """The model itself cannot run on TFLM (a hybrid model): the input is at fault, not the tool."""


def _child(*args: str | Path | int, timeout: float = 600) -> subprocess.CompletedProcess:
    return run_module("targets.tflm_child", *args, timeout=timeout)


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


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def find_min_arena(model_path: Path, input_path: Path, log=lambda msg: None) -> tuple[int, int]:
    """Smallest 16-byte multiple that allocates and invokes; returns (bytes, probes used)."""
    lo, hi, probes = 0, max(ALIGN, _align(model_path.stat().st_size)), 0  # an empty arena never allocates
    while True:
        probes += 1
        if allocates(model_path, hi, input_path):
            break
        lo, hi = hi, hi * 2
        if hi > MAX_ARENA:
            raise TflmError(f"TFLM could not allocate {model_path.name} even with {lo} bytes of arena")
    while hi - lo > ALIGN:  # both are multiples of ALIGN, so lo < mid < hi
        mid = _align((lo + hi) // 2)
        probes += 1
        if allocates(model_path, mid, input_path):
            hi = mid
        else:
            lo = mid
    log(f"arena: {hi} bytes after {probes} probes")
    return hi, probes


def mcu_arena_estimate(head: int, tail: int, records: dict[str, dict[str, int]]) -> dict[str, Any]:
    """The arena on a 32-bit MCU, derived from the host's: pointer-bearing structures halve, the rest stays."""
    pointer = sum(records[k]["used"] for k in POINTER_RECORDS if k in records)
    buffers = records.get("Persistent buffer data", {}).get("used", 0)
    bookkeeping = max(tail - pointer - buffers, 0)
    estimate = _align(head + buffers + (pointer + bookkeeping) // 2)
    return {
        "bytes": estimate,
        "method": (
            "estimate: host head (activation plan, identical on any build) + persistent buffers (kernel data, "
            "same size) + half of the pointer-bearing structures (tensors, quantization params, node/registration "
            "structs, allocator bookkeeping), since pointers and size_t are 8 bytes on x86-64 and 4 on Cortex-M"
        ),
    }


def measure_on_tflm(
    model_path: Path, graph: Graph, inputs: np.ndarray, warmup: int, runs: int, headroom: float, log=lambda msg: None
) -> dict[str, Any]:
    """Arena search, allocation report, timed invokes and top-1 of every input, all on the TFLM interpreter."""
    hybrid = hybrid_ops(graph)
    if hybrid:
        raise ModelNotSupportedError(
            f"a hybrid model ({', '.join(hybrid)} with float activations and int8 weights): {HYBRID_FIX}"
        )
    with tempfile.TemporaryDirectory() as tmp:
        sample, batch, result_path = Path(tmp) / "sample.npy", Path(tmp) / "inputs.npy", Path(tmp) / "result.json"
        np.save(sample, inputs[:1])
        np.save(batch, inputs)
        arena, probes = find_min_arena(model_path, sample, log)
        bundle_arena = _align(int(arena * (1 + headroom)))
        log(f"running {len(inputs)} inputs and {runs} timed invokes on TFLM")
        result = _measure_child(model_path, bundle_arena, batch, result_path, warmup, runs)
    alloc = result["allocations"]
    if "total" not in alloc:
        raise TflmError("TFLM printed no allocation report; cannot cross-check the arena")
    bound = live_tensor_lower_bound(graph)
    latency = np.array(result["latency_ns"]) / 1e6
    runtime = f"tflite-micro {result['runtime_version']} (host x86-64, reference kernels)"
    return {
        "arena": {
            "measured": arena,
            "probes": probes,
            "reported_total": alloc["total"],
            "head": alloc["head"],
            "tail": alloc["tail"],
            "agrees_with_report": abs(arena - alloc["total"]) <= ALIGN,
            "records": alloc["records"],
            "bundle": bundle_arena,
            "headroom": headroom,
            "lower_bound": bound["bytes"],
            "lower_bound_at": {"step": bound["step"], "op": bound["op"], "tensors": bound["tensors"]},
            "head_over_lower_bound": alloc["head"] / bound["bytes"] if bound["bytes"] else None,
            "arena_over_lower_bound": arena / bound["bytes"] if bound["bytes"] else None,
            "mcu_estimate": mcu_arena_estimate(alloc["head"], alloc["tail"], alloc["records"]),
        },
        "latency_ms": latency_summary(latency, runtime),
        "predictions": np.array(result["predictions"]),
        "runtime_version": result["runtime_version"],
        "ops": graph.op_names,
        "macs": macs(graph),
    }


def time_invokes(model_path: Path, arena: int, runs: int, warmup: int = 10, seed: int = 0) -> list[float]:
    """`runs` timed invokes (ms) on random inputs of the model's shape: for side-by-side comparisons only
    (reference kernels take the same path whatever the values)."""
    graph = read_model(Path(model_path).read_bytes())
    tensor = graph.tensors[graph.inputs[0]]
    dtype = np.dtype(tensor.dtype.lower())
    rng = np.random.default_rng(seed)
    shape = (8, *tensor.shape[1:])
    if np.issubdtype(dtype, np.integer):
        inputs = rng.integers(np.iinfo(dtype).min, np.iinfo(dtype).max + 1, size=shape).astype(dtype)
    else:
        inputs = rng.normal(size=shape).astype(dtype)
    with tempfile.TemporaryDirectory() as tmp:
        batch, result_path = Path(tmp) / "inputs.npy", Path(tmp) / "result.json"
        np.save(batch, inputs)
        result = _measure_child(Path(model_path), arena, batch, result_path, warmup, runs)
        return [ns / 1e6 for ns in result["latency_ns"]]


def _measure_child(model_path: Path, arena: int, inputs: Path, result: Path, warmup: int, runs: int) -> dict:
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


def board_view(board_name: str, arena: dict[str, Any], flash_bytes: int, model_macs: int) -> dict[str, Any]:
    board = BOARDS[board_name]
    mcu_arena = arena["mcu_estimate"]["bytes"]
    return {
        "name": board.name,
        "core": board.core,
        "clock_mhz": board.clock_mhz,
        "ram_share": mcu_arena / (board.ram_kb * 1024),
        "flash_share": flash_bytes / (board.flash_kb * 1024),
        "latency_estimate_ms": model_macs * board.cycles_per_mac / (board.clock_mhz * 1e3),
        "latency_method": (
            f"estimate, not measured: {model_macs:,} MACs x {board.cycles_per_mac} cycles/MAC (assumed int8 "
            f"kernel throughput on {board.core}) at {board.clock_mhz} MHz"
        ),
    }


def write_firmware_files(model: bytes, out: Path, name: str) -> tuple[Graph, list[str]]:
    """The bundle files that follow from the flatbuffer alone."""
    graph = read_model(model)
    ops = write_op_resolver(graph, out, name)
    (out / MODEL).write_bytes(model)
    write_c_array(model, out, name)
    return graph, ops


def complete_bundle(
    out: Path,
    name: str,
    graph: Graph,
    measured: dict[str, Any],
    labels: list[str] | None,
    features: dict[str, Any] | None,
    provenance: dict[str, Any],
) -> dict[str, Any]:
    """model_config.h and README.md need the measured arena; the manifest comes last and checksums all."""
    arena = measured["arena"]
    model_sha256 = hashlib.sha256((out / MODEL).read_bytes()).hexdigest()
    bundle = f"{name}-{model_sha256[:8]}"  # the version changes exactly when the model does
    inp, outp = graph.tensors[graph.inputs[0]], graph.tensors[graph.outputs[0]]
    write_model_config(out, name, arena["bundle"], arena["measured"], arena["headroom"], inp, outp, labels, features)
    write_readme(out, name, bundle, measured["ops"], arena["bundle"], labels, features is not None)
    return write_manifest(
        out,
        {
            "bundle": bundle,
            "model_sha256": model_sha256,
            "arena_bytes": arena["bundle"],
            "arena_measured_bytes": arena["measured"],
            "ops": measured["ops"],
            **provenance,
            "runtime": f"tflite-micro {measured['runtime_version']}",
        },
    )


# --- the target interface ---------------------------------------------------------------------------------


def compile(cfg: TflmConfig, ctx: TargetContext) -> None:  # noqa: A001 - the interface's verb
    write_firmware_files(ctx.export.file(MODEL).read_bytes(), ctx.out, ctx.recipe.name)


def measure(cfg: TflmConfig, ctx: TargetContext) -> dict[str, Any]:
    from pipeline.versions import versions

    info = json.loads(ctx.export.file("model_info.json").read_text())
    inp = info["input"]
    if inp["dtype"] != "int8":
        raise TflmError(f"the TFLM target expects an int8 model, the export has {inp['dtype']} input")
    test = ctx.data.test
    x = quantize_input(test.x[..., None], inp["scale"], inp["zero_point"], np.int8)
    ctx.log(f"measuring on TFLM: arena search, {cfg.latency_runs} timed invokes, {len(x)} test clips")
    graph = read_model((ctx.out / MODEL).read_bytes())
    measured = measure_on_tflm(
        ctx.out / MODEL, graph, x, cfg.warmup_runs, cfg.latency_runs, cfg.arena_headroom, ctx.log
    )
    pred = measured["predictions"]
    np.save(ctx.out / PREDICTIONS, pred)
    picks = np.concatenate([np.flatnonzero(test.y == c)[:VECTORS_PER_CLASS] for c in range(len(ctx.data.labels))])
    np.savez(ctx.out / VECTORS, x=x[picks], y=test.y[picks], tflm_pred=pred[picks])

    feats = ctx.recipe.data.features
    features = feats.model_dump(mode="json") | {
        "clip_samples": feats.clip_samples, "window_samples": feats.window_samples,
        "stride_samples": feats.stride_samples, "frames": feats.frames,
    }  # fmt: skip
    manifest = complete_bundle(
        ctx.out, ctx.recipe.name, graph, measured, ctx.data.labels, features,
        {"recipe": ctx.recipe.name, "recipe_fingerprint": ctx.recipe.fingerprint(), "versions": versions()},
    )  # fmt: skip
    model_bytes = (ctx.out / MODEL).stat().st_size
    out: dict[str, Any] = {
        "bundle": manifest["bundle"],
        "flash_bytes": model_bytes,
        "flash_method": "size of the model array (the .tflite flatbuffer); interpreter code not included",
        "ram_bytes": measured["arena"]["measured"],
        "ram_method": "smallest 16-byte-multiple arena that allocates and invokes on the TFLM host interpreter",
        "arena": measured["arena"],
        "latency_ms": measured["latency_ms"],
        "ops": measured["ops"],
        **summarize(pred, test.y, test.groups, ctx.data.labels),
        "agreement_with_export": float(np.mean(pred == np.load(ctx.export.file("test_predictions.npy")))),
    }
    if cfg.board:
        out["board"] = board_view(cfg.board, measured["arena"], model_bytes, measured["macs"])
    return out


# --- profiling a model no recipe made ---------------------------------------------------------------------


def profile(
    model_path: Path, out: Path, board: str | None = None, runs: int = 100, warmup: int = 10, headroom: float = 0.0,
    log=lambda msg: None,
) -> dict[str, Any]:  # fmt: skip
    """Bundle and TFLM measurements for any .tflite; inputs are seeded random values (no data set, no accuracy)."""
    from pipeline.versions import versions

    model = Path(model_path).read_bytes()
    out.mkdir(parents=True, exist_ok=True)
    name = Path(model_path).stem
    graph, _ = write_firmware_files(model, out, name)
    inp = graph.tensors[graph.inputs[0]]
    rng = np.random.default_rng(0)
    if inp.dtype in ("INT8", "UINT8", "INT16"):
        info = np.iinfo(inp.dtype.lower())
        inputs = rng.integers(info.min, info.max, size=(16, *inp.shape[1:]), endpoint=True).astype(inp.dtype.lower())
    elif inp.dtype == "FLOAT32":
        inputs = rng.standard_normal(size=(16, *inp.shape[1:])).astype(np.float32)
    else:
        raise TflmError(f"cannot make inputs for a {inp.dtype} input tensor")
    measured = measure_on_tflm(out / MODEL, graph, inputs, warmup, runs, headroom, log)
    manifest = complete_bundle(
        out, name, graph, measured, None, None, {"source": str(model_path), "versions": versions()}
    )
    report = {
        "model": str(model_path),
        "bundle": manifest["bundle"],
        "flash_bytes": len(model),
        "ram_bytes": measured["arena"]["measured"],
        "arena": measured["arena"],
        "latency_ms": measured["latency_ms"],
        "latency_inputs": "16 seeded random inputs (no data set was given)",
        "ops": measured["ops"],
        "macs": measured["macs"],
        "input": {"shape": list(inp.shape), "dtype": inp.dtype, "scale": inp.scale, "zero_point": inp.zero_point},
    }
    if board:
        report["board"] = board_view(board, measured["arena"], len(model), measured["macs"])
    write_json(out / "profile.json", report)
    return report
