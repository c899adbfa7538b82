"""`predictor(ref)`: any model of a run on its own runtime (explain and field tests use every runtime)."""

from __future__ import annotations

from pipeline.runtimes import ModelRef, Predictor


def predictor(ref: ModelRef) -> Predictor:
    if ref.kind == "keras":
        from pipeline.runtimes.keras import keras_predictor

        return keras_predictor(ref.path)
    if ref.kind == "tflite":
        from pipeline.runtimes.litert import litert_predictor

        return litert_predictor(ref.path.read_bytes())
    if ref.kind == "tflm":
        from pipeline.runtimes.tflm import tflm_predictor

        if ref.arena is None:
            raise ValueError(f"{ref.name}: a TFLM model needs its arena size")
        return tflm_predictor(ref.path, ref.arena)
    if ref.kind == "openvino":
        from pipeline.runtimes.openvino import openvino_predictor

        return openvino_predictor(ref.path)
    raise ValueError(f"no runtime for model kind {ref.kind}")
