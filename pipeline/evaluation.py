"""Accuracy summaries and predictions on the runtimes models are deployed with."""

from __future__ import annotations

from typing import Any

import numpy as np

from pipeline.c_output import captured_c_output


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


def litert_interpreter(model: bytes, threads: int = 1) -> Any:
    """The standalone LiteRT interpreter (tflite_runtime's successor), falling back to tflite_runtime."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # pragma: no cover - only where the older package is what is installed
        from tflite_runtime.interpreter import Interpreter
    with captured_c_output():  # "INFO: Created TensorFlow Lite XNNPACK delegate" on the C stdout
        interp = Interpreter(model_content=model, num_threads=threads)
        interp.allocate_tensors()
    return interp


def quantize_input(x: np.ndarray, scale: float, zero_point: int, dtype: Any) -> np.ndarray:
    """Float features to the integer input a device would feed, exactly as firmware rounds them."""
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale + zero_point), info.min, info.max).astype(dtype)


def tflite_predict(model: bytes, x: np.ndarray) -> np.ndarray:
    """Top-1 of a .tflite model over features [n, frames, coefficients], one sample per invoke."""
    interp = litert_interpreter(model)
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    x = x[..., None].astype(np.float32)
    if inp["dtype"] != np.float32:
        scale, zero = inp["quantization"]
        x = quantize_input(x, scale, zero, inp["dtype"])
    pred = np.zeros(len(x), np.int64)
    for i in range(len(x)):
        interp.set_tensor(inp["index"], x[i : i + 1])
        interp.invoke()
        pred[i] = int(np.argmax(interp.get_tensor(out["index"])[0]))
    return pred


def io_details(model: bytes) -> dict[str, Any]:
    """Input/output shape, dtype and quantization of a .tflite model: what firmware needs to feed and read it."""
    interp = litert_interpreter(model)

    def describe(d: dict) -> dict:
        scale, zero = d["quantization"]
        return {
            "name": d["name"],
            "shape": [int(s) for s in d["shape"]],
            "dtype": np.dtype(d["dtype"]).name,
            "scale": float(scale),
            "zero_point": int(zero),
        }

    return {"input": describe(interp.get_input_details()[0]), "output": describe(interp.get_output_details()[0])}
