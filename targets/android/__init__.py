"""Android (TFLite / LiteRT): the .tflite variants a phone app can ship, measured with LiteRT, and on a phone.

Variants come from the chain's float Keras model: `fp32`, `fp16` (float16 weights, float compute), `dynamic_int8`
(int8 weights, activations quantized on the fly) and `int8` (the exported full-integer model, int8 in and out).
Each gets a sidecar JSON with labels, input shape/dtype/quantization and the feature settings an app needs.

On the host every variant runs on the standalone LiteRT interpreter (`ai-edge-litert`): accuracy on the test
split, then warm-up and timed `invoke()`s per thread count with XNNPACK as the recipe says. With an adb serial
the same variants and thread counts run through TFLite's `benchmark_model` on the phone (`targets.android.adb`); with no
phone attached the report says so and carries no phone numbers.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from pipeline.analysis.evaluation import summarize
from pipeline.analysis.markdown import pct, size_text, table
from pipeline.budgets import BudgetsConfig
from pipeline.c_output import captured_c_output
from pipeline.engine.store import PREDICTIONS, write_json
from pipeline.measurement import Measurement, figures, latency_summary
from pipeline.plugins import TargetContext
from pipeline.runtimes import ModelRef, top1
from pipeline.runtimes.litert import io_details, litert_feed, litert_interpreter, litert_predictor
from pipeline.schema import MAX_THREADS, Strict, unique_items
from pipeline.tflite_model import live_tensor_lower_bound, read_model
from targets.android.adb import Adb, AdbError, BenchmarkParseError, benchmark_on_phone


class Config(Strict):
    """LiteRT variants, measured on the host with ai-edge-litert and, when a phone is named, on the phone with
    TFLite's official `benchmark_model` over adb."""

    variants: list[Literal["fp32", "fp16", "dynamic_int8", "int8"]] = Field(
        default_factory=lambda: ["fp32", "fp16", "dynamic_int8", "int8"],
        min_length=1,
        description="the .tflite variants built and measured; int8 is the exported model",
    )
    threads: list[int] = Field(
        default_factory=lambda: [1, 4], min_length=1, description="thread counts each variant is timed with"
    )
    xnnpack: bool = Field(True, description="run with LiteRT's XNNPACK delegate (false: the builtin kernels)")
    latency_runs: int = Field(100, ge=10, le=100_000, description="timed invokes per variant and thread count")
    warmup_runs: int = Field(10, ge=0, le=100_000, description="untimed invokes before the timed ones")
    adb_serial: str | None = Field(None, description="a phone's adb serial: also measure there")
    benchmark_model: Path | None = Field(
        None, description="TFLite's benchmark_model binary for the phone's ABI, relative to the recipe's folder"
    )
    budgets: BudgetsConfig = Field(
        BudgetsConfig(), description="this target's budgets; each key set here overrides the recipe's top-level one"
    )

    _unique_variants = field_validator("variants", "threads")(unique_items)

    @field_validator("threads")
    @classmethod
    def _positive(cls, value: list[int]) -> list[int]:
        if any(t < 1 for t in value):
            raise ValueError("thread counts must be at least 1")
        if any(t > MAX_THREADS for t in value):
            raise ValueError(f"thread counts must be at most {MAX_THREADS}")
        return value

    @model_validator(mode="after")
    def _phone(self) -> Config:
        if self.adb_serial and self.benchmark_model is None:
            raise ValueError("adb_serial needs benchmark_model: the path of TFLite's benchmark_model for the phone")
        return self


DESCRIPTIONS = {
    "fp32": "float32 weights and compute",
    "fp16": "float16 weights, float32 compute",
    "dynamic_int8": "int8 weights, activations quantized at run time, float in/out",
    "int8": "full integer (weights and activations), int8 in/out: the exported model",
}


FRONT_END = "melspectrogram.tflite"  # speech_mel features: what computes the models' input on the phone


def variant_path(out: Path, variant: str) -> Path:
    return out / f"model_{variant}.tflite"


def convert_variant(keras_model: Any, variant: str) -> bytes:
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(keras_model)
    if variant == "fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif variant == "dynamic_int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif variant != "fp32":
        raise ValueError(f"no converter recipe for variant {variant}")
    with captured_c_output():  # the converter's MLIR chatter
        return converter.convert()


def compile(cfg: Config, ctx: TargetContext) -> None:  # noqa: A001 - the interface's verb
    needs_float = [v for v in cfg.variants if v != "int8"]
    keras_model = None
    if needs_float:
        if ctx.float_model is None:
            raise RuntimeError(f"variants {needs_float} need a float Keras model in the chain (train/finetune)")
        import tensorflow as tf

        keras_model = tf.keras.models.load_model(ctx.float_model)
    for variant in cfg.variants:
        ctx.log(f"variant {variant}: {DESCRIPTIONS[variant]}")
        if variant == "int8":
            model = ctx.export.file("model.tflite").read_bytes()
        else:
            model = convert_variant(keras_model, variant)
        path = variant_path(ctx.out, variant)
        path.write_bytes(model)
        write_json(path.with_suffix(".json"), sidecar(model, variant, ctx))
    if ctx.recipe.data.features.kind == "speech_mel":  # the app's front end: the pinned model the input comes from
        from pipeline.models.speech_embedding_assets import model_path

        shutil.copyfile(model_path(FRONT_END), ctx.out / FRONT_END)
        ctx.log(f"front end: {FRONT_END} beside the variants (float32 PCM values in, the models' input out)")


def sidecar(model: bytes, variant: str, ctx: TargetContext) -> dict[str, Any]:
    """What an app needs to feed the model and read it: TFLite metadata's content, as plain JSON."""
    features = ctx.recipe.data.features
    what = "MFCC features as computed by the pipeline"
    if features.kind == "speech_mel":
        what = ("log-mel frames as melspectrogram.tflite computes them (the clip centred in silence, 16-bit PCM "
                "values as float32)")  # fmt: skip
    io = io_details(model)
    quantized = io["input"]["dtype"] != "float32"
    return {
        "model": variant_path(Path("."), variant).name,
        "variant": variant,
        "description": DESCRIPTIONS[variant],
        "labels": ctx.data.labels,
        **io,
        "input_normalisation": (
            f"{what}, then q = round(x / {io['input']['scale']:.8g}) + {io['input']['zero_point']}, clipped to int8"
            if quantized
            else f"{what}, float32, no scaling"
        ),
        "features": features.model_dump(mode="json") | {"frames": features.frames},
        **(
            {
                "front_end": {
                    "model": FRONT_END,
                    "input_samples": features.padded_samples,
                    "clip_offset_samples": (features.padded_samples - features.clip_samples) // 2,
                }
            }
            if features.kind == "speech_mel"
            else {}
        ),  # fmt: skip
    }


def time_invokes(model: bytes, x: np.ndarray, threads: int, xnnpack: bool, warmup: int, runs: int) -> np.ndarray:
    """Milliseconds per `invoke()` (set_tensor excluded), cycling through real test inputs."""
    interp = litert_interpreter(model, threads, xnnpack)
    inp = interp.get_input_details()[0]["index"]
    feed = litert_feed(interp, x)
    for i in range(warmup):
        interp.set_tensor(inp, feed[i % len(feed)][None])
        interp.invoke()
    times = np.empty(runs)
    for i in range(runs):
        interp.set_tensor(inp, feed[i % len(feed)][None])
        start = time.perf_counter_ns()
        interp.invoke()
        times[i] = (time.perf_counter_ns() - start) / 1e6
    return times


def tensor_memory(model: bytes) -> dict[str, int]:
    """Bytes of the model's non-constant tensors: their plain sum (an upper bound for LiteRT's arena, which
    shares memory between tensors whose lifetimes do not overlap) and the largest set alive at once (a lower
    bound). Constant tensors (weights) are counted apart."""
    graph = read_model(model)
    activations = sum(t.nbytes for t in graph.tensors if not t.constant)
    weights = sum(t.nbytes for t in graph.tensors if t.constant)
    return {"activations_sum": activations, "live_lower_bound": live_tensor_lower_bound(graph)["bytes"],
            "weights": weights}  # fmt: skip


def recommend(variants: list[dict[str, Any]], budgets: dict[str, float]) -> tuple[str, str]:
    """The fastest variant (1-thread median) that meets every budget; else the most accurate, saying why."""

    def meets(v: dict[str, Any]) -> bool:
        lat = v["host"][0]["latency_ms"]["median"]
        return all(
            (
                budgets.get("min_accuracy") is None or v["accuracy"] >= budgets["min_accuracy"],
                budgets.get("flash_kb") is None or v["bytes"] / 1024 <= budgets["flash_kb"],
                budgets.get("ram_kb") is None or v["tensor_memory"]["activations_sum"] / 1024 <= budgets["ram_kb"],
                budgets.get("latency_ms") is None or lat <= budgets["latency_ms"],
            )
        )

    fitting = [v for v in variants if meets(v)]
    if fitting:
        best = min(fitting, key=lambda v: (v["host"][0]["latency_ms"]["median"], v["bytes"]))
        return best["variant"], "fastest on the host (1 thread) of those meeting the recipe's budgets"
    best = max(variants, key=lambda v: v["accuracy"])
    return best["variant"], "no variant meets every budget: the most accurate one"


def measure(cfg: Config, ctx: TargetContext) -> dict[str, Any]:
    from importlib.metadata import version

    data = ctx.data
    runtime = f"LiteRT {version('ai-edge-litert')} (host x86-64, {'XNNPACK' if cfg.xnnpack else 'builtin kernels'})"
    float_pred = np.load(ctx.float_model.parent / PREDICTIONS) if ctx.float_model else None
    variants = []
    for variant in cfg.variants:
        model = variant_path(ctx.out, variant).read_bytes()
        ctx.log(
            f"{variant}: {len(data.test)} test clips, then {cfg.latency_runs} timed invokes × threads {cfg.threads}"
        )
        pred = top1(litert_predictor(model, xnnpack=cfg.xnnpack), data.test.x)
        host = []
        for threads in cfg.threads:
            lat = time_invokes(model, data.test.x, threads, cfg.xnnpack, cfg.warmup_runs, cfg.latency_runs)
            host.append({"threads": threads, "latency_ms": latency_summary(lat, f"{runtime}, {threads} thread(s)")})
        variants.append(
            {
                "variant": variant,
                "file": variant_path(Path("."), variant).name,
                "bytes": len(model),
                "tensor_memory": tensor_memory(model),
                "host": host,
                "agreement_with_float": float(np.mean(pred == float_pred)) if float_pred is not None else None,
                **summarize(pred, data.test.y, data.test.groups, data.labels),
            }
        )
    if cfg.benchmark_model is not None:  # relative to the recipe's folder, like every path in a recipe
        cfg = cfg.model_copy(update={"benchmark_model": ctx.recipe.resolve_path(cfg.benchmark_model)})
    phone = measure_on_phone(cfg, ctx)
    for v in variants:
        v["phone"] = phone.get("variants", {}).get(v["variant"], [])
    budgets = ctx.recipe.budgets.model_dump() | {k: v for k, v in cfg.budgets.model_dump().items() if v is not None}
    chosen, why = recommend(variants, budgets)
    best = next(v for v in variants if v["variant"] == chosen)
    return {
        **figures(
            flash=Measurement(best["bytes"], "B", "size of the recommended variant's .tflite file", True),
            ram=Measurement(
                best["tensor_memory"]["activations_sum"],
                "B",
                "sum of the recommended variant's non-constant tensor sizes (activations and I/O), an upper bound of "
                "LiteRT's arena, computed from the flatbuffer",
                False,
            ),
            latency=Measurement(
                best["host"][0]["latency_ms"]["median"],
                "ms",
                "median invoke() on host LiteRT (x86-64, 1 thread), standing in for the phone's; phone numbers, when "
                "measured, are in the variants table",
                False,
            ),
        ),  # fmt: skip
        "latency_ms": best["host"][0]["latency_ms"],
        "accuracy": best["accuracy"],
        "per_class": best["per_class"],
        "per_voice": best["per_voice"],
        "recommended": chosen,
        "recommended_because": why,
        "xnnpack": cfg.xnnpack,
        "variants": [{k: v for k, v in var.items() if k not in ("per_class", "per_voice")} for var in variants],
        "phone": {k: v for k, v in phone.items() if k != "variants"},
    }


def measure_on_phone(cfg: Config, ctx: TargetContext) -> dict[str, Any]:
    """benchmark_model on the named phone for every variant × threads; a plain status when there is none."""
    if not cfg.adb_serial:
        return {"status": "not requested", "message": "no adb serial given: no phone measurement"}
    adb = Adb(cfg.adb_serial)
    if not adb.attached():
        ctx.unavailable(f"phone {cfg.adb_serial} is not attached: no on-device numbers")
        return {"status": "not attached", "serial": cfg.adb_serial,
                "message": f"phone {cfg.adb_serial} not attached (adb get-state): nothing measured on it"}  # fmt: skip
    device = adb.model_name()
    runtime = f"benchmark_model on {device} ({cfg.adb_serial})"
    out: dict[str, list[dict[str, Any]]] = {}
    try:
        for variant in cfg.variants:
            for threads in cfg.threads:
                ctx.log(f"phone {device}: {variant}, {threads} thread(s)")
                figures = benchmark_on_phone(
                    adb, cfg.benchmark_model, variant_path(ctx.out, variant), threads, cfg.latency_runs,
                    cfg.warmup_runs, cfg.xnnpack,
                )  # fmt: skip
                median = figures.get("median_us")
                out.setdefault(variant, []).append(
                    {
                        "threads": threads,
                        "latency_ms": {
                            "median": (median if median is not None else figures["inference_avg_us"]) / 1000,
                            "statistic": "median" if median is not None else "mean (no percentiles printed)",
                            "p95": figures["p95_us"] / 1000 if "p95_us" in figures else None,
                            "runs": figures.get("runs", cfg.latency_runs),
                            "runtime": runtime,
                        },
                        "benchmark_model": figures,
                    }
                )
    except (AdbError, BenchmarkParseError) as exc:
        raise RuntimeError(f"measuring on phone {cfg.adb_serial} failed: {exc}") from exc
    return {"status": "measured", "serial": cfg.adb_serial, "device": device, "runtime": runtime, "variants": out}


# --- the report section and the models explain reaches ----------------------------------------------------


def report(t: dict[str, Any]) -> list[str]:
    """Every variant and thread count, host and phone."""
    rows = []
    for v in t["variants"]:
        mem = v["tensor_memory"]
        for i, host in enumerate(v["host"]):
            lat = host["latency_ms"]
            first = i == 0
            name = v["variant"] + (" ★" if v["variant"] == t["recommended"] else "")
            rows.append(
                [
                    name if first else "",
                    host["threads"],
                    size_text(v["bytes"]) if first else "",
                    f"{size_text(mem['live_lower_bound'])} – {size_text(mem['activations_sum'])}" if first else "",
                    f"{lat['median']:.3f} / {lat['p90']:.3f} ms",
                    pct(v["accuracy"]) if first else "",
                    pct(v["agreement_with_float"]) if first else "",
                    "host LiteRT",
                ]
            )
            for phone in v.get("phone", []):
                if phone["threads"] == host["threads"]:
                    pl = phone["latency_ms"]
                    rows.append(["", phone["threads"], "", "", f"{pl['median']:.3f} ms ({pl['statistic']})", "", "",
                                 pl["runtime"]])  # fmt: skip
    header = ["variant", "threads", "bytes", "tensor memory", "latency median / p90", "accuracy",
              "agrees with float", "measured by"]  # fmt: skip
    phone = t["phone"]
    return [
        f"- Recommended: **{t['recommended']}** ★ ({t['recommended_because']}).",
        f"- Host: {t['latency_ms']['runtime'].rsplit(',', 1)[0]}; accuracy on the test split with 1 thread. Tensor "
        "memory: the largest set of tensors alive at once – the sum of all non-constant tensors (LiteRT's arena "
        "lies between).",
        f"- Phone: {phone.get('message') or phone.get('runtime')}.",
        "",
        table(header, rows),
    ]


VARIANT_ORDER = {"fp32": 0, "fp16": 1, "dynamic_int8": 2, "int8": 3}


def explain_models(folder: Path) -> list[ModelRef]:
    paths = sorted(folder.glob("model_*.tflite"), key=lambda p: VARIANT_ORDER.get(p.stem.removeprefix("model_"), 9))
    return [ModelRef(f"android.{p.stem.removeprefix('model_')}", "tflite", p, "LiteRT", role="target") for p in paths]
