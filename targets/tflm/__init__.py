"""TFLite Micro: the firmware bundle, measured as firmware on the board's core and on the real TFLM interpreter.

`compile` writes what follows from the flatbuffer alone (model, C array, op resolver); `measure` finds the arena,
times `invoke()`, runs the test split, and completes the bundle with the measured arena (`model_config.h`,
`README.md`, `manifest.json`). Then, for a board with an emulator (`boards.py`), the bundle is built as Cortex-M
firmware with TFLM and CMSIS-NN and run on QEMU (`on_board.py`): its linked flash, its RAM on the 32-bit target
and its instructions per invoke become the target's figures, and its outputs must equal the interpreter's. The
host interpreter stays for accuracy on the whole test split and as the cross-check. `profile` does the same for
any `.tflite` no recipe made.

RAM is the smallest tensor arena with which the interpreter allocates *and* invokes, found by binary search over
16-byte steps, each probe in a child process (see `pipeline.runtimes.tflm_child`), and cross-checked with the
RecordingMicroAllocator's own report. The wheel is a 64-bit host build: its activation plan (head) is what a
Cortex-M needs, its persistent structures (tail) are larger than on a 32-bit MCU; the MCU figure is derived and
labelled as such. Latency is host `invoke()` time of TFLM's reference kernels, not the board's.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import Field, field_validator

from pipeline.analysis.evaluation import quantize_input, summarize
from pipeline.analysis.markdown import pct
from pipeline.budgets import BudgetsConfig
from pipeline.engine.store import PREDICTIONS, write_atomic, write_json
from pipeline.measurement import Measurement, figures, latency_summary
from pipeline.plugins import TargetContext
from pipeline.runtimes import ModelRef
from pipeline.runtimes.tflm import (
    ALIGN,
    HYBRID_FIX,
    ModelNotSupportedError,
    TflmError,
    UnsupportedOpError,  # noqa: F401 - part of this target's errors (`pipeline profile`)
    align,
    find_min_arena,
    measure_child,
    tflm_outputs,
    tflm_predictor,
)
from pipeline.schema import Strict, suggest
from pipeline.tflite_model import Graph, hybrid_ops, live_tensor_lower_bound, macs, random_inputs, read_model
from targets.tflm import layouts, memory_plan
from targets.tflm import metadata as identity_metadata
from targets.tflm.boards import BOARDS, Board
from targets.tflm.bundle import (
    MODEL_SOURCE,
    c_identifier,
    write_c_array,
    write_manifest,
    write_model_config,
    write_op_resolver,
    write_readme,
)
from targets.tflm.frontend import to_pcm16, write_frontend
from targets.tflm.layouts import SRC

if TYPE_CHECKING:  # the recipe imports this target, and the streaming code imports the recipe's data
    from pipeline.detection import Detector


class Config(Strict):
    """The `tflm` target's recipe entry."""

    board: str | None = Field(None, description="a board from targets/tflm/boards.py; RAM/flash are shown as its share")
    latency_runs: int = Field(100, ge=50, le=100_000, description="timed invokes on the host TFLM interpreter")
    warmup_runs: int = Field(10, ge=0, le=100_000, description="untimed invokes before the timed ones")
    arena_headroom: float = Field(0.0, ge=0, le=4, description="extra share added to the measured arena in the bundle")
    memory_plan: bool = Field(
        True, description="plan the arena offline and ship the planned model when TFLM then needs less (verified)"
    )
    frontend: Literal["float", "fixed"] = Field(
        "float", description="the bundle's audio front end arithmetic by default (fixed: no FPU needed)"
    )
    emulate: bool = Field(
        True, description="build the bundle as firmware for the board's core and measure it on QEMU's model of it"
    )
    kernels: Literal["cmsis_nn", "reference"] = Field("cmsis_nn", description="the firmware's TFLM kernels")
    compare_reference: bool = Field(
        False, description="also build the firmware with TFLM's reference kernels and report the instruction ratio"
    )
    board_runs: int = Field(5, ge=1, le=1000, description="timed invokes of the first test vector on the board")
    board_stream_s: float = Field(
        20.0,
        ge=0,
        le=600,
        description="seconds of the bundle's stream the firmware's detector listens to on the "
        "emulated board (with `streaming:`; 0: none). Audio reaches it over the serial line at ~2x real time",
    )
    sources: str | None = Field(
        None,
        description="folder of the pinned TFLM / CMSIS-NN archives (default: $EDGE_PIPELINE_TFLM_SOURCES, then setup's cache)",
    )
    budgets: BudgetsConfig = Field(
        BudgetsConfig(), description="this target's budgets; each key set here overrides the recipe's top-level one"
    )

    @field_validator("board")
    @classmethod
    def _known_board(cls, value: str | None) -> str | None:
        if value is not None and value not in BOARDS:
            raise ValueError(f"unknown board '{value}'{suggest(value, BOARDS)}")
        return value


MODEL = "model.tflite"
RECIPE_SECTIONS = ("streaming",)  # besides its config: the bundle's detector follows `streaming`
TFLM_PREDICTIONS = "tflm_test_predictions.npy"
VECTORS = "test_vectors.npz"  # a few int8 test inputs per class: for firmware tests and hardware-in-the-loop
VECTORS_PER_CLASS = 2
# The bundle's ctest: C features vs training's, absolute, on MFCCs that span about -60..20 (float: summation order;
# fixed: Q30 tables, a block-floating-point FFT's round-off in weak bands, a table log2). Worst seen on 1,668 real
# clips (scripts/bench_frontend.py): 3.3e-4 float, 1.75e-3 fixed; either bound is ~1-2 % of an int8 input step.
FRONTEND_TOLERANCES = (1e-3, 5e-3)
# Allocator records whose structs hold pointers or size_t: 8 bytes on the host, 4 on a 32-bit MCU.
POINTER_RECORDS = (
    "TfLiteEvalTensor data", "Persistent TfLiteTensor data", "Persistent TfLiteTensor quantization data",
    "NodeAndRegistration struct",
)  # fmt: skip


def mcu_arena_estimate(head: int, tail: int, records: dict[str, dict[str, int]]) -> dict[str, Any]:
    """The arena on a 32-bit MCU, derived from the host's: pointer-bearing structures halve, the rest stays."""
    pointer = sum(records[k]["used"] for k in POINTER_RECORDS if k in records)
    buffers = records.get("Persistent buffer data", {}).get("used", 0)
    bookkeeping = max(tail - pointer - buffers, 0)
    estimate = align(head + buffers + (pointer + bookkeeping) // 2)
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
        bundle_arena = align(int(arena * (1 + headroom)))
        log(f"running {len(inputs)} inputs and {runs} timed invokes on TFLM")
        result = measure_child(model_path, bundle_arena, batch, result_path, warmup, runs)
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


def board_view(
    board_name: str, arena: dict[str, Any], flash_bytes: int, model_macs: int, on_board: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The board's share of RAM and flash and a latency: from the firmware on the emulated board when it ran,
    else from the host's arena, the model's bytes and an assumed cycles-per-MAC."""
    board = BOARDS[board_name]
    view = {"name": board.name, "core": board.core, "clock_mhz": board.clock_mhz}
    if on_board:
        fig = on_board["figures"]
        return view | {
            "basis": "the linked firmware and its RAM on the emulated board",
            "ram_share": fig["ram"]["value"] / (board.ram_kb * 1024),
            "flash_share": fig["flash"]["value"] / (board.flash_kb * 1024),
            "latency_estimate_ms": fig["latency"]["value"],
            "latency_method": fig["latency"]["method"],
        }
    return view | {
        "basis": "the MCU arena estimate and the model alone",
        "ram_share": arena["mcu_estimate"]["bytes"] / (board.ram_kb * 1024),
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
    (out / SRC).mkdir(parents=True, exist_ok=True)
    ops = write_op_resolver(graph, out / SRC, name)
    (out / MODEL).write_bytes(model)
    write_c_array(model, out / SRC, name)
    return graph, ops


def _embed_identity(out: Path, name: str, info: dict[str, Any], arena: int, check_inputs: np.ndarray) -> None:
    """Write `info` into the bundle's model, after TFLM showed it computes bit for bit as before at `arena`."""
    path = out / MODEL
    before = path.read_bytes()
    with tempfile.TemporaryDirectory() as tmp:
        tagged = Path(tmp) / MODEL
        tagged.write_bytes(identity_metadata.embed(before, info))
        same = np.array_equal(tflm_outputs(path, arena, check_inputs), tflm_outputs(tagged, arena, check_inputs))
        if not same:
            raise TflmError("the model computed differently once its metadata was written; the bundle was not made")
        write_atomic(path, tagged.read_bytes())
    write_c_array(path.read_bytes(), out / SRC, name)


@dataclass
class StreamCheck:
    """The bundle's streaming detector and the recorded stream its ctest replays: PCM, the TFLM interpreter's
    (dequantized) outputs per run, and the Python detector's detections [n, 2] (run, class)."""

    detector: Detector
    pcm: np.ndarray
    scores: np.ndarray
    detections: np.ndarray
    calibration: dict[str, Any] | None = None  # what choosing the thresholds gave on the validation stream


def complete_bundle(
    out: Path,
    name: str,
    measured: dict[str, Any],
    labels: list[str] | None,
    features: dict[str, Any] | None,
    provenance: dict[str, Any],
    frontend_vectors: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    check_inputs: np.ndarray | None = None,
    fixed_point: bool = False,
    stream: StreamCheck | None = None,
) -> dict[str, Any]:
    """Everything that needs the measured arena: the model's identity metadata (with features), model_config.h,
    the front end and its test, the streaming detector and its test (`stream`), the CMake / Zephyr / Arduino
    files, README.md; the manifest comes last."""
    arena = measured["arena"]
    graph = read_model((out / MODEL).read_bytes())
    inp, outp = graph.tensors[graph.inputs[0]], graph.tensors[graph.outputs[0]]
    src = out / SRC
    frontend = fingerprint = None
    sources = [MODEL_SOURCE]
    if features is not None and inp.scale is not None and inp.zero_point is not None:
        info = identity_metadata.identity(
            (out / MODEL).read_bytes(), recipe=name, recipe_fingerprint=provenance.get("recipe_fingerprint", ""),
            labels=labels or [], features=features, input_tensor=inp, arena_bytes=arena["bundle"],
            producer=f"edge-pipeline {provenance.get('versions', {}).get('edge-pipeline', '')}".strip(),
        )  # fmt: skip
        if check_inputs is None:
            raise ValueError("writing a model's identity needs inputs to check that it computes as before")
        _embed_identity(out, name, info, arena["bundle"], check_inputs)
        fingerprint = info["frontend_fingerprint"]
        frontend = write_frontend(src, name, features, inp.scale, inp.zero_point, fingerprint, fixed_point)
        identity_metadata.write_metadata_c(src, name, fingerprint)
        sources += ["frontend.c", "model_metadata.c"]
    model_sha256 = hashlib.sha256((out / MODEL).read_bytes()).hexdigest()
    bundle = f"{name}-{model_sha256[:8]}"  # the version changes exactly when the model does
    comment = [
        f"// Smallest arena that allocated and invoked on the TFLM interpreter: {arena['measured']} bytes,",
        f"// plus {arena['headroom']:.0%} headroom, rounded up to {ALIGN} bytes. Measured on a 64-bit host build, whose",
        "// persistent structures are larger than on a 32-bit MCU: this is an upper bound there.",
    ]
    write_model_config(src, name, arena["bundle"], inp, outp, labels, features, comment, fingerprint)
    with_test = frontend_vectors is not None and frontend is not None
    if with_test:
        audio, feats, quantized = frontend_vectors
        layouts.write_frontend_vectors(out, audio, feats, quantized, FRONTEND_TOLERANCES)
        layouts.write_frontend_test(out, name, f"g_{c_identifier(name)}_model_data")
    detector = None
    if stream is not None and frontend is not None and outp.scale is not None and outp.zero_point is not None:
        from targets.tflm import detector as stream_detector

        detector = stream_detector.write_detector(src, name, stream.detector, len(labels or []), outp.scale,
                                                  outp.zero_point, features)  # fmt: skip
        q = np.round(stream.scores / outp.scale) + outp.zero_point
        stream_detector.write_stream_vectors(out, stream.pcm, q.clip(-128, 127), stream.detections)
        stream_detector.write_detector_test(out, name)
        sources.append("detector.c")
    arithmetic = fixed_point if frontend is not None else None  # None: no front end to choose an arithmetic for
    layouts.write_cmake(out, name, bundle, sources, with_test, arithmetic, detector is not None)
    zephyr_option = layouts.write_zephyr(out, name, bundle, sources, arithmetic)
    layouts.write_arduino(out, name, bundle, model_sha256[:8], sources)
    write_readme(out, name, bundle, measured["ops"], arena["bundle"], labels, features is not None, zephyr_option)
    return write_manifest(
        out,
        {
            "bundle": bundle,
            "frontend": frontend,
            "model_sha256": model_sha256,
            "arena_bytes": arena["bundle"],
            "arena_measured_bytes": arena["measured"],
            "detector": detector,
            "ops": measured["ops"],
            **provenance,
            "runtime": f"tflite-micro {measured['runtime_version']}",
        },
    )


def measure_with_plan(
    model_path: Path, graph: Graph, inputs: np.ndarray, warmup: int, runs: int, headroom: float, plan_memory: bool,
    name: str, log=lambda msg: None,
) -> tuple[dict[str, Any], dict[str, Any] | None]:  # fmt: skip
    """`measure_on_tflm`, then our offline memory plan: when its head is below TFLM's, the planned model is run on
    TFLM with the same inputs, and it replaces the model (and its C array) only if TFLM allocated less with it and
    every output is bit-identical. Returns the measurements of what is shipped, and what the plan did and why."""
    measured = measure_on_tflm(model_path, graph, inputs, warmup, runs, headroom, log)
    if not plan_memory:
        return measured, None
    bufs = memory_plan.buffers(graph)
    planned = memory_plan.plan(bufs)
    tflm_head = measured["arena"]["head"]
    report: dict[str, Any] = {
        "tflm_head": tflm_head, "planned_head": planned["head"], "lower_bound": planned["lower_bound"],
        "method": planned["method"], "optimal": planned["optimal"], "seconds": round(planned["seconds"], 3),
        "shipped": False,
    }  # fmt: skip
    log(f"memory plan: TFLM's head {tflm_head:,} B, ours {planned['head']:,} B ({planned['method']}), "
        f"lower bound {planned['lower_bound']:,} B")  # fmt: skip
    problems = memory_plan.check_plan(bufs, planned["offsets"])
    if problems:
        report["reason"] = f"the plan failed its own check ({problems[0]}); shipped TFLM's"
    elif planned["head"] >= tflm_head:
        report["reason"] = "TFLM's own plan is as small; nothing to gain"
    if "reason" in report:
        return measured, report
    planned_model = memory_plan.with_plan(model_path.read_bytes(), graph, planned["offsets"])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / model_path.name
        path.write_bytes(planned_model)
        with_plan = measure_on_tflm(path, read_model(planned_model), inputs, warmup, runs, headroom, log)
        before = tflm_outputs(model_path, measured["arena"]["bundle"], inputs)
        after = tflm_outputs(path, with_plan["arena"]["bundle"], inputs)
    report["verified_head"] = with_plan["arena"]["head"]
    report["arena_saved"] = measured["arena"]["measured"] - with_plan["arena"]["measured"]
    differing = int(np.sum(np.any((before != after).reshape(len(inputs), -1), axis=1)))
    informative = len({row.tobytes() for row in before.reshape(len(inputs), -1)}) > 1
    if not informative:
        report["reason"] = (
            "the model gives every input the same output, so no comparison can verify the plan; shipped TFLM's"
        )
    elif differing:
        report["reason"] = f"outputs differ on {differing} of {len(inputs)} inputs with the plan; shipped TFLM's"
    elif report["arena_saved"] <= 0:
        report["reason"] = "TFLM did not allocate less with the plan; shipped TFLM's"
    else:
        report |= {"shipped": True, "inputs_compared": len(inputs)}
        write_atomic(model_path, planned_model)
        write_c_array(planned_model, model_path.parent / SRC, name)
        return with_plan, report
    return measured, report


# --- the target interface ---------------------------------------------------------------------------------


def compile(cfg: Config, ctx: TargetContext) -> None:  # noqa: A001 - the interface's verb
    write_firmware_files(ctx.export.file(MODEL).read_bytes(), ctx.out, ctx.recipe.name)


def measure(cfg: Config, ctx: TargetContext) -> dict[str, Any]:
    from pipeline.engine.versions import versions

    info = json.loads(ctx.export.file("model_info.json").read_text())
    inp = info["input"]
    if inp["dtype"] != "int8":
        raise TflmError(f"the TFLM target expects an int8 model, the export has {inp['dtype']} input")
    test = ctx.data.test
    x = quantize_input(test.x[..., None], inp["scale"], inp["zero_point"], np.int8)
    ctx.log(f"measuring on TFLM: arena search, {cfg.latency_runs} timed invokes, {len(x)} test clips")
    graph = read_model((ctx.out / MODEL).read_bytes())
    measured, plan = measure_with_plan(
        ctx.out / MODEL, graph, x, cfg.warmup_runs, cfg.latency_runs, cfg.arena_headroom, cfg.memory_plan,
        ctx.recipe.name, ctx.log,
    )  # fmt: skip
    pred = measured["predictions"]
    np.save(ctx.out / TFLM_PREDICTIONS, pred)
    picks = np.concatenate([np.flatnonzero(test.y == c)[:VECTORS_PER_CLASS] for c in range(len(ctx.data.labels))])
    np.savez(ctx.out / VECTORS, x=x[picks], y=test.y[picks], tflm_pred=pred[picks])

    feats = ctx.recipe.data.features
    features = None  # no C front end computes speech_mel frames: the bundle then has none
    if feats.kind == "mfcc":
        features = feats.model_dump(mode="json") | {
            "clip_samples": feats.clip_samples, "window_samples": feats.window_samples,
            "stride_samples": feats.stride_samples, "frames": feats.frames,
        }  # fmt: skip
    vectors = None
    if ctx.features is not None:  # the bundle's front-end test: signals, and the features training computes
        audio = layouts.frontend_signals(feats.sample_rate, feats.clip_samples, feats.upper_hz, ctx.recipe.seed)
        expected = ctx.features(audio)
        vectors = (audio, expected, quantize_input(expected, inp["scale"], inp["zero_point"], np.int8))
    stream = None
    if ctx.stream is not None and features is not None:
        stream = stream_check(ctx, measured["arena"]["bundle"])
    manifest = complete_bundle(
        ctx.out, ctx.recipe.name, measured, ctx.data.labels, features,
        {"recipe": ctx.recipe.name, "recipe_fingerprint": ctx.recipe.fingerprint(), "versions": versions()},
        frontend_vectors=vectors, check_inputs=x[:64], fixed_point=cfg.frontend == "fixed", stream=stream,
    )  # fmt: skip
    model_bytes = (ctx.out / MODEL).stat().st_size
    host = host_figures(model_bytes, measured)
    on_board = None
    if cfg.board and cfg.emulate:
        pcm = expected_features = None
        if vectors is not None:  # the front end's ctest signals: the voiced buzz is the most speech-like
            pcm, expected_features = to_pcm16(vectors[0][3]), vectors[2][3]
        on_board = run_on_board(
            ctx.out, ctx.recipe.name, BOARDS[cfg.board], cfg, x[picks], pcm, expected_features, ctx.log,
            ctx.recipe.resolve_path(cfg.sources) if cfg.sources else None, ctx.unavailable,
            board_segment(stream, feats.clip_samples, cfg.board_stream_s) if stream and cfg.board_stream_s else None,
        )  # fmt: skip
        if on_board is not None:
            add_firmware_to_manifest(ctx.out, manifest, on_board)
    shown = {k: Measurement.from_dict(v) for k, v in on_board["figures"].items()} if on_board else host
    out: dict[str, Any] = {
        "bundle": manifest["bundle"],
        **figures(**shown),
        "host_figures": {k: m.as_dict() for k, m in host.items()},
        "arena": measured["arena"],
        "memory_plan": plan,
        "frontend": manifest.get("frontend"),
        "detector": manifest.get("detector") and manifest["detector"] | {"calibration": stream.calibration},
        "latency_ms": board_latency(on_board) if on_board else measured["latency_ms"],
        "host_latency_ms": measured["latency_ms"],
        "ops": measured["ops"],
        **summarize(pred, test.y, test.groups, ctx.data.labels),
        "agreement_with_export": float(np.mean(pred == np.load(ctx.export.file(PREDICTIONS)))),
    }
    if cfg.board:
        out["board"] = board_view(cfg.board, measured["arena"], model_bytes, measured["macs"], on_board)
        board = BOARDS[cfg.board]
        out["capacity"] = {"name": board.name, "flash_kb": board.flash_kb, "ram_kb": board.ram_kb}
    if on_board:
        out["on_board"] = on_board
    return out


def stream_check(ctx: TargetContext, arena: int) -> StreamCheck:
    """The detector the bundle ships: thresholds chosen on the synthetic validation stream with this TFLM model's
    own outputs, and a short test stream (a dozen keywords) recorded for its ctest."""
    from pipeline import detection

    cfg, feats, labels = ctx.recipe.streaming, ctx.recipe.data.features, ctx.data.labels
    predict = tflm_predictor(ctx.out / MODEL, arena)
    base = detection.Detector.from_config(cfg, feats, labels)
    val, val_x = ctx.stream("val", cfg)
    ctx.log(f"detector: choosing thresholds on {val.hours * 60:.1f} min of validation stream ({len(val.events)} "
            f"keywords) with TFLM's outputs")  # fmt: skip
    progress = lambda done, total: ctx.progress("detector thresholds", done, total)  # noqa: E731
    scores = detection.predict_chunks(predict, val_x, progress)
    chosen, calibration = detection.choose_thresholds([scores], [val], base, feats.clip_samples,
                                                      cfg.target_fa_per_hour)  # fmt: skip
    test, test_x = ctx.stream("test", cfg.model_copy(update={"keywords": 12, "negative_minutes": 0.25}))
    test_scores = detection.predict_chunks(predict, test_x)
    check = StreamCheck(chosen, to_pcm16(test.audio), test_scores, detection.detect(test_scores, chosen))
    check.calibration = calibration | {"thresholds": dict(zip(labels[2:], chosen.thresholds, strict=True))}
    return check


def board_segment(stream: StreamCheck, clip_samples: int, seconds: float) -> tuple[np.ndarray, np.ndarray]:
    """The `seconds` of the recorded stream the firmware listens to (starting on a run, where the pipeline's
    detector fires most), and the detections the pipeline's detector makes on that stretch alone."""
    from pipeline.detection import detect

    hop = stream.detector.hop
    runs = max(1, 1 + (int(seconds * 16000) - clip_samples) // hop)
    total = len(stream.scores)
    if total <= runs:
        return stream.pcm, stream.detections
    fired = np.bincount(stream.detections[:, 0], minlength=total) if len(stream.detections) else np.zeros(total)
    window = np.convolve(fired, np.ones(runs), "valid")  # detections in the runs starting at each run
    first = int(np.argmax(window))
    pcm = stream.pcm[first * hop : first * hop + clip_samples + (runs - 1) * hop]
    return pcm, detect(stream.scores[first : first + runs], stream.detector)


def host_figures(model_bytes: int, measured: dict[str, Any]) -> dict[str, Measurement]:
    """The interpreter's figures on this host: the model alone, the 64-bit arena, host invoke time."""
    return {
        "flash": Measurement(
            model_bytes, "B", "size of the model array (the .tflite flatbuffer); interpreter code not included", True
        ),
        "ram": Measurement(
            measured["arena"]["measured"],
            "B",
            "smallest 16-byte-multiple arena that allocates and invokes on the TFLM interpreter (a 64-bit host "
            "build: its persistent part is larger than a 32-bit MCU's, so this bounds the board's from above)",
            True,
        ),
        "latency": Measurement(
            measured["latency_ms"]["median"],
            "ms",
            "median invoke() of TFLM's reference kernels on the x86-64 host, standing in for the board's",
            False,
        ),
    }


def board_latency(on_board: dict[str, Any]) -> dict[str, Any]:
    """The board's latency in the report's latency fields: instructions are exact, so every run is the median."""
    ms = on_board["figures"]["latency"]["value"]
    by_vector = BOARDS[on_board["board"]].latency_ms(np.array(on_board["instructions_by_vector"]))
    return {"median": ms, "p90": float(np.percentile(by_vector, 90)), "runs": len(by_vector),
            "runtime": f"{on_board['core']} on QEMU {on_board['machine']} (instructions x CPI {on_board['cpi']} / "
                       f"{on_board['clock_mhz']} MHz: an estimate)"}  # fmt: skip


def run_on_board(
    bundle: Path, name: str, board: Board, cfg: Config, inputs: np.ndarray, pcm: np.ndarray | None,
    expected_features: np.ndarray | None, log, sources: Path | None, unavailable,
    stream: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict[str, Any] | None:  # fmt: skip
    """The bundle as firmware on the emulated board (`on_board.measure_board`), its outputs checked against the
    host interpreter's; None, with the reason given to `unavailable`, when this machine cannot build or emulate it."""
    from targets.tflm import on_board
    from targets.tflm.firmware import FirmwareUnavailable

    reason = on_board.unavailable_reason(board)
    if reason is None:
        try:
            expected = tflm_outputs(bundle / MODEL, read_manifest_arena(bundle), inputs)
            return on_board.measure_board(
                bundle, name, board, inputs, expected, cfg.board_runs, pcm, expected_features, cfg.kernels,
                cfg.compare_reference, sources, log, stream,
            )  # fmt: skip
        except FirmwareUnavailable as exc:
            reason = str(exc)
    unavailable(f"firmware for {board.name} not measured: {reason}")
    return None


def add_firmware_to_manifest(bundle: Path, manifest: dict[str, Any], on_board: dict[str, Any]) -> None:
    """The manifest again, now checksumming the firmware folder too and naming what built it."""
    firmware = {k: on_board[k] for k in ("board", "firmware", "compiler", "kernels")}
    write_manifest(bundle, {k: v for k, v in manifest.items() if k != "files"} | {"firmware": firmware})


def read_manifest_arena(bundle: Path) -> int:
    return int(json.loads((bundle / "manifest.json").read_text())["arena_bytes"])


# --- profiling a model no recipe made ---------------------------------------------------------------------


def profile(
    model_path: Path, out: Path, board: str | None = None, runs: int = 100, warmup: int = 10, headroom: float = 0.0,
    log=lambda msg: None, plan_memory: bool = True, emulate: bool = True,
) -> dict[str, Any]:  # fmt: skip
    """Bundle and TFLM measurements for any .tflite; inputs are seeded random values (no data set, no accuracy).
    With an emulated `board`, the bundle also runs as firmware on it (`run_on_board`) on the same inputs."""
    from pipeline.engine.versions import versions

    model = Path(model_path).read_bytes()
    out.mkdir(parents=True, exist_ok=True)
    name = Path(model_path).stem
    graph, _ = write_firmware_files(model, out, name)
    inp = graph.tensors[graph.inputs[0]]
    try:
        inputs = random_inputs(inp, 16, seed=0)
    except ValueError as exc:
        raise TflmError(str(exc)) from None
    measured, plan = measure_with_plan(out / MODEL, graph, inputs, warmup, runs, headroom, plan_memory, name, log)
    manifest = complete_bundle(out, name, measured, None, None, {"source": str(model_path), "versions": versions()})
    report = {
        "model": str(model_path),
        "bundle": manifest["bundle"],
        "flash_bytes": (out / MODEL).stat().st_size,
        "ram_bytes": measured["arena"]["measured"],
        "arena": measured["arena"],
        "memory_plan": plan,
        "latency_ms": measured["latency_ms"],
        "latency_inputs": "16 seeded random inputs (no data set was given; a memory plan is checked on them too)",
        "ops": measured["ops"],
        "macs": measured["macs"],
        "input": {"shape": list(inp.shape), "dtype": inp.dtype, "scale": inp.scale, "zero_point": inp.zero_point},
        "identity": identity_metadata.read_identity(model),  # what a model this pipeline made says about itself
    }
    if board:
        report["board"] = board_view(board, measured["arena"], len(model), measured["macs"])
        if emulate:
            reasons: list[str] = []
            on_board = run_on_board(
                out, name, BOARDS[board], Config(board=board), inputs, None, None, log, None, reasons.append
            )
            if on_board is not None:
                report["on_board"] = on_board
                report["board"] = board_view(board, measured["arena"], len(model), measured["macs"], on_board)
                add_firmware_to_manifest(out, manifest, on_board)
            else:
                report["on_board_unavailable"] = reasons[0]
    write_json(out / "profile.json", report)
    return report


# --- the report section and the models explain reaches ----------------------------------------------------


def report(t: dict[str, Any]) -> list[str]:
    """The firmware on the emulated board; arena search, allocation report and lower bound; the offline memory
    plan; the board view."""
    lines = board_lines(t.get("on_board"), t.get("host_figures"))
    frontend = t.get("frontend")
    if frontend:
        lines.append(
            f"- Audio front end in the bundle (`src/frontend.c`, C99, no heap, {'fixed' if frontend['arithmetic'] == 'fixed' else 'floating'} point): "
            f"{frontend['static_ram_bytes']:,} B static RAM, {frontend['table_bytes']:,} B of tables in flash, "
            f"~{frontend['ops_per_clip'] / 1e6:.2f} M arithmetic operations per clip (estimate); it computes the MFCC "
            "the model was trained on and quantizes it."
        )
    plan = t.get("memory_plan")
    if plan:
        verdict = (
            f"shipped: the bundle's model carries the plan, TFLM allocated {plan['arena_saved']:,} B less with it "
            f"and its outputs were bit-identical on all {plan['inputs_compared']:,} inputs"
            if plan["shipped"]
            else f"not shipped: {plan['reason']}"
        )
        lines.append(
            f"- Memory plan: TFLM's planner {plan['tflm_head']:,} B head, ours {plan['planned_head']:,} B "
            f"({plan['method']}{', optimal' if plan['optimal'] else ''}, {plan['seconds']:.2f} s), lower bound "
            f"{plan['lower_bound']:,} B; {verdict}."
        )
    arena = t.get("arena")
    if arena:
        lines.append(
            f"- Arena: **{arena['measured']:,} B**, the smallest that allocated and invoked ({arena['probes']} probes); "
            f"TFLM's allocation report: {arena['reported_total']:,} B = {arena['head']:,} B head (activation plan) + "
            f"{arena['tail']:,} B tail (persistent), {'agreeing' if arena['agrees_with_report'] else 'DISAGREEING'} "
            f"with the probes."
        )
        if arena.get("lower_bound"):
            at = arena["lower_bound_at"]
            lines.append(
                f"- Live-tensor lower bound: {arena['lower_bound']:,} B (at op {at['step']}, {at['op']}); the head is "
                f"{arena['head_over_lower_bound']:.2f}× it, the whole arena {arena['arena_over_lower_bound']:.2f}× "
                f"(the rest is TFLM's persistent structures)."
            )
        mcu = arena.get("mcu_estimate")
        if mcu:
            lines.append(f"- On a 32-bit MCU: ~{mcu['bytes']:,} B ({mcu['method']}).")
        lines.append(f"- Bundle arena (`kTensorArenaSize`): {arena['bundle']:,} B (headroom {arena['headroom']:.0%}).")
    board = t.get("board")
    if board:
        lines.append(
            f"- Board {board['name']} ({board['core']} @ {board['clock_mhz']} MHz), from "
            f"{board.get('basis', 'the MCU arena estimate and the model alone')}: {pct(board['ram_share'])} of its "
            f"RAM, {pct(board['flash_share'])} of its flash; latency ~{board['latency_estimate_ms']:.1f} ms "
            f"({board['latency_method']})."
        )
    return lines


def board_lines(run: dict[str, Any] | None, host: dict[str, Any] | None) -> list[str]:
    if not run:
        return []
    sizes = run["sizes"]["by_component"]
    rows = sorted(sizes.items(), key=lambda kv: -kv[1]["flash"])
    lines = [
        f"- **Firmware on the emulated {run['core']}** (`{run['firmware']}/firmware.elf`: TFLM + {run['kernels']} "
        f"kernels, {run['compiler']}, run on {run['emulator'].split(' (')[0]} `-M {run['machine']}`): "
        f"**{run['instructions_per_invoke']:,.0f} instructions per invoke** "
        f"({'identical on every timed run' if run['deterministic'] else 'NOT identical across runs'}; counter: "
        f"{run['counter']}); outputs equal the host interpreter's on **{run['outputs_match']} of {run['vectors']}** "
        f"test vectors; `arena_used_bytes()` {run['arena_used_bytes']:,} B on the 32-bit target "
        f"(kTensorArenaSize {run['arena_bytes']:,} B), stack high-water mark {run['stack_used_bytes']:,} B.",
        f"- Latency {run['figures']['latency']['value']:.2f} ms is an estimate: {run['figures']['latency']['method']}; "
        f"at one cycle per instruction it cannot be under "
        f"{run['instructions_per_invoke'] / (run['clock_mhz'] * 1e3):.2f} ms.",
    ]
    if not run.get("arena_fits_bundle", True):
        lines.append(
            f"- **The bundle's kTensorArenaSize ({run['arena_bytes']:,} B) is too small for this core's kernels**: "
            f"TFLM used {run['arena_used_bytes']:,} B on the {run['core']} (its optimized kernels ask for more "
            "scratch than the host's). Raise `arena_headroom` until it fits."
        )
    ref = run.get("reference_kernels")
    if ref:
        lines.append(
            f"- TFLM's reference kernels on the same core: {ref['instructions_per_invoke']:,.0f} instructions "
            f"(CMSIS-NN is **{ref['speedup']:.2f}×** faster), flash {ref['flash_bytes']:,} B; outputs "
            f"{'identical' if ref['outputs_match'] else 'DIFFERENT'}."
        )
    frontend = run.get("frontend")
    if frontend:
        agree = (
            f", its int8 features equal Python's on {pct(frontend['inputs_equal'])}"
            if "inputs_equal" in frontend
            else ""
        )
        lines.append(f"- The bundle's front end on the board: {frontend['instructions_per_clip']:,.0f} instructions "
                     f"per clip{agree}.")  # fmt: skip
    lines += ["", "| linked firmware | flash | RAM |", "|---|---|---|"]
    lines += [f"| {name} | {v['flash']:,} B | {v['ram']:,} B |" for name, v in rows]
    lines.append(f"| **total ELF** | **{run['sizes']['flash_bytes']:,} B** | **{run['sizes']['ram_bytes']:,} B** |")
    if host:
        lines += ["", "The host interpreter's figures, kept as the cross-check: "
                  + "; ".join(f"{k} {v['value']:,.4g} {v['unit']} ({v['method']})" for k, v in host.items()) + ".", ""]  # fmt: skip
    return lines


def explain_models(folder: Path) -> list[ModelRef]:
    manifest = json.loads((folder / "manifest.json").read_text())
    return [ModelRef("tflm", "tflm", folder / MODEL, "TFLite Micro", manifest["arena_bytes"], "target")]
