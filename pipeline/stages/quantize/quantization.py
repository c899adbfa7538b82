"""The quantize stage's work: full-integer int8 with a representative data set from the training split (int8 in and out)."""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from pipeline.analysis.evaluation import summarize
from pipeline.c_output import captured_c_output
from pipeline.engine.store import PREDICTIONS
from pipeline.models import model_cost
from pipeline.runtimes import top1
from pipeline.runtimes.litert import litert_predictor
from pipeline.stages import StageContext
from pipeline.stages.quantize import MODEL, QuantizeConfig


def quantize(cfg: QuantizeConfig, ctx: StageContext) -> dict[str, Any]:
    from pipeline.stages.train import MODEL as KERAS_MODEL

    model = tf.keras.models.load_model(ctx.input.file(KERAS_MODEL))
    train = ctx.data.train
    rng = np.random.default_rng([ctx.recipe.seed, 21])
    picks = rng.choice(len(train), size=min(cfg.calibration_samples, len(train)), replace=False)

    def representative():
        for i in picks:
            yield [train.x[i : i + 1, ..., None].astype(np.float32)]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    ctx.log(f"converting to int8 with {len(picks)} calibration clips")
    converter_log: list[str] = []
    try:
        with captured_c_output() as converter_log:  # the converter prints an MLIR dump: shown only on failure
            flatbuffer = converter.convert()
    except Exception as exc:
        raise RuntimeError(f"TFLite int8 conversion failed: {exc}\n{''.join(converter_log)[-3000:]}") from exc
    (ctx.out / MODEL).write_bytes(flatbuffer)

    test = ctx.data.test
    pred = top1(litert_predictor(flatbuffer), test.x)
    np.save(ctx.out / PREDICTIONS, pred)
    return {
        **summarize(pred, test.y, test.groups, ctx.data.labels),
        **model_cost(model),
        "runtime": "LiteRT interpreter (int8)",
        "bytes": len(flatbuffer),
        "calibration_samples": len(picks),
    }
