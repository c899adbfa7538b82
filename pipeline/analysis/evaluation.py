"""Accuracy summaries, and the int8 rounding every runtime and the firmware share (predictions: `pipeline.runtimes`)."""

from __future__ import annotations

from typing import Any

import numpy as np


def summarize(pred: np.ndarray, y: np.ndarray, groups: np.ndarray, labels: list[str]) -> dict[str, Any]:
    """Top-1 accuracy overall, per class and per voice group (the unit the synthetic test split holds out)."""
    correct = pred == y
    per_class = {labels[c]: float(correct[y == c].mean()) for c in range(len(labels)) if np.any(y == c)}
    per_voice = {
        str(g): {"n": int(np.sum(groups == g)), "accuracy": float(correct[groups == g].mean())}
        for g in sorted(set(groups.tolist()))
    }
    return {"accuracy": float(correct.mean()), "per_class": per_class, "per_voice": per_voice}


def keras_predict(model: Any, x: np.ndarray, batch_size: int = 512) -> np.ndarray:
    return np.argmax(model.predict(x[..., None], batch_size=batch_size, verbose=0), axis=-1)


def quantize_input(x: np.ndarray, scale: float, zero_point: int, dtype: Any) -> np.ndarray:
    """Float features to the integer input a device would feed, exactly as firmware rounds them."""
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale + zero_point), info.min, info.max).astype(dtype)
