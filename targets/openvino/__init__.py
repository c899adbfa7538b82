"""OpenVINO CPU: IR of the float model (FP32, FP16 weights), NNCF post-training INT8, measured on OpenVINO.

`compile` converts the chain's last float Keras model with `openvino.convert_model`, saves IR per precision
(`save_model(..., compress_to_fp16=...)`) and quantizes INT8 with `nncf.quantize` on calibration clips from the
training split. `measure` compiles each IR for the device with the LATENCY hint and the recipe's streams and
threads, times synchronous single-sample inference, runs the THROUGHPUT hint with an async queue, runs the test
split, and measures peak resident memory in a fresh process (`targets.openvino.child`), since a process that
has imported TensorFlow says nothing about what a deployment of OpenVINO alone needs.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator

from pipeline.analysis.evaluation import summarize
from pipeline.analysis.markdown import mb, pct, size_text, table
from pipeline.budgets import BudgetsConfig
from pipeline.engine.child import describe_exit, run_module
from pipeline.engine.store import PREDICTIONS, write_json
from pipeline.measurement import Measurement, figures, latency_summary
from pipeline.plugins import TargetContext
from pipeline.runtimes import ModelRef, top1
from pipeline.runtimes.openvino import openvino_predictor
from pipeline.schema import MAX_THREADS, Strict, suggest, unique_items

OPENVINO_DEVICES = ("CPU", "GPU", "NPU", "AUTO")


class OpenvinoInt8Config(Strict):
    """NNCF post-training quantization of the OpenVINO model (`nncf.quantize`)."""

    preset: Literal["performance", "mixed"] = Field(
        "performance", description="NNCF preset: performance (symmetric activations) or mixed (asymmetric activations)"
    )
    subset_size: int = Field(300, ge=1, le=100_000, description="calibration clips from the training split")
    fast_bias_correction: bool = Field(True, description="NNCF's fast bias correction (false: the slower full one)")
    # Per-tensor activation ranges. NNCF's own default, `mean_minmax`, averages each calibration clip's extremes, so
    # inputs beyond the average clip saturate: on real speech the flagship lost 5–10 points with it against the
    # float IR. `minmax` spans every calibration clip, as TFLite's converter does, and loses under 1.
    activation_ranges: Literal["minmax", "mean_minmax"] = Field(
        "minmax", description="minmax: ranges span every calibration clip; mean_minmax: average of each clip's extremes"
    )


class Config(Strict):
    """The `openvino` target's recipe entry."""

    device: str = Field("CPU", description="OpenVINO device measured on: CPU, GPU, NPU or AUTO")
    precisions: list[Literal["fp32", "fp16", "int8"]] = Field(
        default_factory=lambda: ["fp32", "int8"],
        min_length=1,
        description="IR variants built and measured: fp32, fp16 (FP16 weights), int8 (NNCF post-training)",
    )
    int8: OpenvinoInt8Config = Field(OpenvinoInt8Config(), description="the int8 variant's NNCF quantization")
    threads: int = Field(1, ge=1, le=MAX_THREADS, description="INFERENCE_NUM_THREADS for the latency measurement")
    streams: int = Field(1, ge=1, le=MAX_THREADS, description="NUM_STREAMS for the latency measurement")
    latency_runs: int = Field(200, ge=10, le=100_000, description="timed synchronous inferences per precision")
    warmup_runs: int = Field(20, ge=0, le=100_000, description="untimed inferences before the timed ones")
    throughput_seconds: float = Field(2.0, gt=0, le=3600, description="how long the THROUGHPUT-hint run lasts")
    budgets: BudgetsConfig = Field(
        BudgetsConfig(), description="this target's budgets; each key set here overrides the recipe's top-level one"
    )

    _unique_precisions = field_validator("precisions")(unique_items)

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        if value not in OPENVINO_DEVICES:
            raise ValueError(f"unknown OpenVINO device '{value}'{suggest(value, OPENVINO_DEVICES)}")
        return value


PRIMARY_ORDER = ("int8", "fp16", "fp32")  # the variant the standard report fields describe


def ir_path(out: Path, precision: str) -> Path:
    return out / precision / "model.xml"


def ir_bytes(xml: Path) -> int:
    return xml.stat().st_size + xml.with_suffix(".bin").stat().st_size


def convert(keras_model_path: Path, input_shape: tuple[int, ...]) -> Any:
    """Keras model -> openvino.Model with a static [1, *input_shape] input, as firmware-like callers feed it."""
    import openvino as ov
    import tensorflow as tf

    keras_model = tf.keras.models.load_model(keras_model_path)
    return ov.convert_model(keras_model, input=[1, *input_shape])


def quantize_int8(
    model: Any,
    calibration: np.ndarray,
    preset: str,
    subset_size: int,
    fast_bias_correction: bool,
    activation_ranges: str,
) -> Any:
    """NNCF post-training INT8 of an openvino.Model, calibrated on [n, *input_shape] float clips."""
    import nncf
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    dataset = nncf.Dataset(list(calibration), lambda x: x[None].astype(np.float32))
    ranges = getattr(RangeEstimatorParametersSet, activation_ranges.upper())
    return nncf.quantize(
        model,
        dataset,
        preset=nncf.QuantizationPreset(preset),
        subset_size=min(subset_size, len(calibration)),
        fast_bias_correction=fast_bias_correction,
        advanced_parameters=AdvancedQuantizationParameters(activations_range_estimator_params=ranges),
    )


def canonical_names(model: Any) -> Any:
    """Rename OpenVINO's auto-named nodes (`Constant_26817`: a counter of every node the process ever made) by
    their position in the graph, so the saved IR is the same bytes however the process got there (a run resumed
    after a crash and an uninterrupted one used to differ only in these names)."""
    renamed: dict[str, str] = {}
    ops = model.get_ordered_ops()
    for index, op in enumerate(ops):
        kind, name = op.get_type_name(), op.get_friendly_name()
        if re.fullmatch(rf"{re.escape(kind)}_\d+", name):
            renamed[name] = f"{kind}_{index}"
            op.set_friendly_name(renamed[name])
    for op in ops:  # tensors named after an auto-named node (a Result's output) follow it
        for output in op.outputs():
            names = output.get_names()
            if names & renamed.keys():
                output.set_names({renamed.get(n, n) for n in names})
    return model


def quantize_node_count(model: Any) -> int:
    return sum(op.get_type_name() in ("FakeQuantize", "FakeConvert") for op in model.get_ops())


def compile(cfg: Config, ctx: TargetContext) -> None:  # noqa: A001 - the interface's verb
    """IR per precision, converted and quantized in a fresh process (see `targets.openvino.child`)."""
    if ctx.float_model is None:
        raise RuntimeError("the OpenVINO target needs a float Keras model in the chain (train/finetune)")
    data = ctx.data
    rng = np.random.default_rng([ctx.recipe.seed, 31])
    picks = rng.choice(len(data.train), size=min(cfg.int8.subset_size, len(data.train)), replace=False)
    calibration = ctx.out / "calibration.npy"
    np.save(calibration, data.train.x[picks][..., None].astype(np.float32))
    ctx.log(
        f"converting {ctx.float_model.parent.name}/{ctx.float_model.name} to OpenVINO IR {cfg.precisions}"
        + (
            f"; NNCF INT8 ({cfg.int8.preset} preset, {len(picks)} calibration clips)"
            if "int8" in cfg.precisions
            else ""
        )
    )
    settings = {"input_shape": list(data.input_shape), "precisions": cfg.precisions, "int8": cfg.int8.model_dump()}
    _run_child("convert", ctx.float_model, ctx.out, calibration, json.dumps(settings), timeout=900)
    calibration.unlink()


def _compiled(core: Any, xml: Path, device: str, config: dict[str, Any]) -> Any:
    return core.compile_model(core.read_model(xml), device, config)


def latency_config(cfg: Config) -> dict[str, Any]:
    return {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": str(cfg.streams), "INFERENCE_NUM_THREADS": cfg.threads}


def time_sync(compiled: Any, inputs: np.ndarray, warmup: int, runs: int) -> np.ndarray:
    """Milliseconds of synchronous single-sample inference (one infer request, reused)."""
    request = compiled.create_infer_request()
    for i in range(warmup):
        request.infer({0: inputs[i % len(inputs)][None]})
    times = np.empty(runs)
    for i in range(runs):
        x = inputs[i % len(inputs)][None]
        start = time.perf_counter_ns()
        request.infer({0: x})
        times[i] = (time.perf_counter_ns() - start) / 1e6
    return times


def throughput(core: Any, xml: Path, device: str, inputs: np.ndarray, seconds: float) -> dict[str, Any]:
    """Inferences per second with the THROUGHPUT hint: as many async requests as the device asks for."""
    import openvino as ov

    compiled = _compiled(core, xml, device, {"PERFORMANCE_HINT": "THROUGHPUT"})
    requests = compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")
    queue = ov.AsyncInferQueue(compiled, requests)
    done = 0

    def count(request: Any, userdata: Any) -> None:
        nonlocal done
        done += 1

    queue.set_callback(count)
    start = time.perf_counter()
    i = 0
    while time.perf_counter() - start < seconds:
        queue.start_async({0: inputs[i % len(inputs)][None]})
        i += 1
    queue.wait_all()
    elapsed = time.perf_counter() - start
    return {"fps": done / elapsed, "requests": int(requests), "streams": int(compiled.get_property("NUM_STREAMS"))}


def peak_memory(xml: Path, device: str, config: dict[str, Any], runs: int = 50) -> dict[str, Any]:
    """Peak RSS of a fresh process that imports OpenVINO, loads and compiles the IR and runs it."""
    done = _run_child("memory", xml, device, json.dumps(config), str(runs), timeout=300)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _run_child(*args: str | Path, timeout: float) -> subprocess.CompletedProcess:
    done = run_module("targets.openvino.child", *args, timeout=timeout, env={"TF_CPP_MIN_LOG_LEVEL": "3"})
    if done.returncode != 0:
        raise RuntimeError(
            f"OpenVINO child '{args[0]}' failed ({describe_exit(done.returncode)}):\n{done.stderr[-3000:]}"
        )
    return done


def measure(cfg: Config, ctx: TargetContext) -> dict[str, Any]:
    import openvino as ov

    core = ov.Core()
    if cfg.device not in core.available_devices and cfg.device != "AUTO":
        raise RuntimeError(f"OpenVINO device {cfg.device} is not available here (available: {core.available_devices})")
    data = ctx.data
    test_x = data.test.x[..., None].astype(np.float32)
    float_pred = np.load(ctx.float_model.parent / PREDICTIONS)
    variants = []
    for precision in cfg.precisions:
        xml = ir_path(ctx.out, precision)
        ctx.log(f"{precision}: latency ({cfg.latency_runs} runs), throughput, memory, {len(test_x)} test clips")
        compiled = _compiled(core, xml, cfg.device, latency_config(cfg))
        lat = time_sync(compiled, test_x, cfg.warmup_runs, cfg.latency_runs)
        pred = top1(openvino_predictor(xml, compiled=compiled), data.test.x)
        memory = peak_memory(xml, cfg.device, latency_config(cfg))
        variants.append(
            {
                "precision": precision,
                "ir": f"{precision}/model.xml",
                "bytes": ir_bytes(xml),
                "quantize_nodes": quantize_node_count(core.read_model(xml)),
                "latency_ms": latency_summary(
                    lat,
                    f"OpenVINO {ov.get_version().split('-')[0]} {cfg.device}, LATENCY hint, "
                    f"{cfg.streams} stream(s), {cfg.threads} thread(s), sync single sample",
                ),
                "throughput": throughput(core, xml, cfg.device, test_x, cfg.throughput_seconds),
                "memory": memory,
                "agreement_with_float": float(np.mean(pred == float_pred)),
                **summarize(pred, data.test.y, data.test.groups, data.labels),
            }
        )
        np.save(ctx.out / precision / PREDICTIONS, pred)
    primary = next(v for p in PRIMARY_ORDER for v in variants if v["precision"] == p)
    result = {
        **figures(
            flash=Measurement(primary["bytes"], "B", f"size of the {primary['precision']} IR (.xml + .bin)", True),
            ram=Measurement(
                primary["memory"]["peak_rss_bytes"],
                "B",
                "peak resident memory (VmHWM) of a fresh process that loads, compiles and runs the IR",
                True,
            ),
            latency=Measurement(
                primary["latency_ms"]["median"], "ms", f"median synchronous inference on OpenVINO {cfg.device}", True
            ),
        ),  # fmt: skip
        "latency_ms": primary["latency_ms"],
        "accuracy": primary["accuracy"],
        "per_class": primary["per_class"],
        "per_voice": primary["per_voice"],
        "primary": primary["precision"],
        "device": cfg.device,
        "device_name": core.get_property(cfg.device, "FULL_DEVICE_NAME") if cfg.device != "AUTO" else "AUTO",
        "variants": [{k: v for k, v in var.items() if k not in ("per_class", "per_voice")} for var in variants],
        "versions": {"openvino": ov.get_version(), "nncf": _nncf_version()},
    }
    write_json(ctx.out / "openvino.json", result)
    return result


def _nncf_version() -> str:
    from importlib.metadata import version

    return version("nncf")


# --- the report section and the models explain reaches ----------------------------------------------------


def report(t: dict[str, Any]) -> list[str]:
    """Every precision side by side."""
    rows = [
        [
            v["precision"].upper() + (" ★" if v["precision"] == t["primary"] else ""),
            size_text(v["bytes"]),
            f"{mb(v['memory']['peak_rss_bytes'])} ({mb(v['memory']['runtime_rss_bytes'])} runtime + "
            f"{mb(v['memory']['model_bytes'])})",
            f"{v['latency_ms']['median']:.3f} / {v['latency_ms']['p90']:.3f} ms",
            f"{v['throughput']['fps']:,.0f}/s ({v['throughput']['streams']} streams)",
            pct(v["accuracy"]),
            pct(v["agreement_with_float"]),
            v["quantize_nodes"],
        ]
        for v in t["variants"]
    ]
    header = ["precision", "IR bytes", "peak RSS", "latency median / p90", "throughput", "accuracy",
              "agrees with float", "FakeQuantize nodes"]  # fmt: skip
    return [
        f"- Device: {t['device']} ({t['device_name']}); OpenVINO {t['versions']['openvino']}, "
        f"NNCF {t['versions']['nncf']}. ★ = the precision in the targets table.",
        f"- Latency: {t['latency_ms']['runtime']}. Throughput: THROUGHPUT hint, async requests. Peak RSS: a fresh "
        "process importing only OpenVINO loads, compiles and runs the IR (VmHWM); in brackets the RSS after "
        "`import openvino` and what loading the model added.",
        "",
        table(header, rows),
    ]


PRECISION_ORDER = {"fp32": 0, "fp16": 1, "int8": 2}


def explain_models(folder: Path) -> list[ModelRef]:
    return [
        ModelRef(f"openvino.{xml.parent.name}", "openvino", xml, "OpenVINO CPU", role="target")
        for xml in sorted(folder.glob("*/model.xml"), key=lambda p: PRECISION_ORDER.get(p.parent.name, 9))
    ]
