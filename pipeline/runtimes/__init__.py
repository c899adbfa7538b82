"""The runtime layer: every way this tool runs a model, behind one callable.

A `Predictor` maps float features [n, frames, coefficients] to float class scores [n, classes], with the int8
quantization and dequantization inside, done as the deployment does it. Evaluation, targets, explain, field tests
and hardware-in-the-loop all reach models through these, so "accuracy on TFLM" means the same computation wherever
it is reported. One module per runtime, so a step's cache key covers only the runtimes it uses:

- `pipeline.runtimes.keras`: TensorFlow, in process;
- `pipeline.runtimes.litert`: `ai-edge-litert` (the standalone TFLite runtime), in process;
- `pipeline.runtimes.tflm`: the real TFLite Micro interpreter, in a child process;
- `pipeline.runtimes.openvino`: OpenVINO, in process (conversion and memory measurements run in children, see
  `targets.openvino`);
- `pipeline.runtimes.any`: `predictor(ref)` for any `ModelRef`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

Predictor = Callable[[np.ndarray], np.ndarray]


@dataclass
class ModelRef:
    """A model of a run and the runtime that runs it."""

    name: str  # "train", "prune", "tflm", "android.fp16", "openvino.int8", ...
    kind: str  # keras | tflite | tflm | openvino
    path: Path
    runtime: str  # what the report calls the runtime: "TFLite Micro", "LiteRT", ...
    arena: int | None = None  # TFLM only
    role: str = "stage"  # stage | target: explain budgets gate what is deployed


def top1(predict: Predictor, x: np.ndarray) -> np.ndarray:
    return np.argmax(predict(x), axis=-1).astype(np.int64)
