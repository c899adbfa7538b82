"""LiteRT (`ai-edge-litert`, the standalone TFLite runtime) in process: the Android target's host runtime."""

from __future__ import annotations

from typing import Any

import numpy as np

from pipeline.analysis.evaluation import quantize_input
from pipeline.c_output import captured_c_output
from pipeline.runtimes import Predictor


def litert_interpreter(model: bytes, threads: int = 1, xnnpack: bool = True) -> Any:
    """The standalone LiteRT interpreter (tflite_runtime's successor), tensors allocated; `xnnpack=False` runs
    the builtin kernels without default delegates."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    resolver = OpResolverType.AUTO if xnnpack else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    with captured_c_output():  # "INFO: Created TensorFlow Lite XNNPACK delegate" on the C stdout
        interp = Interpreter(model_content=model, num_threads=threads, experimental_op_resolver_type=resolver)
        interp.allocate_tensors()
    return interp


def litert_feed(interp: Any, x: np.ndarray) -> np.ndarray:
    """Float features as the interpreter's input tensor takes them (quantized when the input is integer)."""
    detail = interp.get_input_details()[0]
    x = x[..., None].astype(np.float32)
    if detail["dtype"] != np.float32:
        scale, zero = detail["quantization"]
        x = quantize_input(x, scale, zero, detail["dtype"])
    return x


def litert_predictor(model: bytes, threads: int = 1, xnnpack: bool = True) -> Predictor:
    """One sample per invoke, as a device runs it."""
    interp = litert_interpreter(model, threads, xnnpack)
    inp, out = interp.get_input_details()[0]["index"], interp.get_output_details()[0]
    scale, zero = out["quantization"]

    def run(x: np.ndarray) -> np.ndarray:
        feed, scores = litert_feed(interp, x), []
        for i in range(len(feed)):
            interp.set_tensor(inp, feed[i : i + 1])
            interp.invoke()
            scores.append(interp.get_tensor(out["index"])[0].copy())
        y = np.array(scores)
        return y.astype(np.float32) if out["dtype"] == np.float32 else (y.astype(np.float32) - zero) * scale

    return run


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
