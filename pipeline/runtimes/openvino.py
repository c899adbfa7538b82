"""OpenVINO in process, for predictions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from pipeline.runtimes import Predictor


def openvino_compiled(xml: Path, device: str = "CPU", config: dict[str, Any] | None = None) -> Any:
    """An IR compiled for `device`; f32 inference precision unless the config says otherwise, so an FP32 IR is not
    silently run in bf16 on CPUs that have it."""
    import openvino as ov

    return ov.Core().compile_model(xml, device, {"INFERENCE_PRECISION_HINT": "f32"} | (config or {}))


def openvino_predictor(xml: Path, device: str = "CPU", compiled: Any = None) -> Predictor:
    compiled = compiled if compiled is not None else openvino_compiled(xml, device)
    request = compiled.create_infer_request()

    def run(x: np.ndarray) -> np.ndarray:
        feed = x[..., None].astype(np.float32)
        return np.array([request.infer({0: feed[i : i + 1]})[0][0].copy() for i in range(len(feed))])

    return run
