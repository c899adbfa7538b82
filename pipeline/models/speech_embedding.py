"""`speech_embedding`: a small head trained on a frozen speech embedding learnt from people.

The embedding is openWakeWord's `embedding_model` (a derivation of Google's speech embedding, Lin et al. 2020,
Apache-2.0; see `speech_embedding_assets`). It is rebuilt here as Keras layers from the pinned `.tflite` file, op by
op with its own weights, so the whole model (embedding and head) is one graph every stage and runtime handles: the
TFLite converter, NNCF, OpenVINO. Its convolutions are valid in time with a time stride of 8 frames, so run over a
padded clip's `76 + 8 (w - 1)` mel frames it computes exactly the `w` sliding windows openWakeWord computes one by
one. The rebuilt layers are frozen (`trainable=False`): only the head learns, and training computes the embedding
once per clip instead of once per step (`split_frozen`).
"""

from __future__ import annotations

from functools import cache
from typing import Any, Literal

import numpy as np
from pydantic import Field

from pipeline.schema import Strict

FROZEN_PREFIX = "embedding_"  # every layer of the pretrained embedding is named so
BOUNDARY = "embedding_out"  # the embedding's last layer: [windows, 1, 96]
MEL_SCALE, MEL_OFFSET = 0.1, 2.0  # openWakeWord feeds the embedding melspectrogram / 10 + 2


class HeadConfig(Strict):
    """The trained part. `layers` convolutions over the embedding's time steps (`kernel` steps each; the default
    spans them all, i.e. a dense layer on the whole clip's embedding), each BatchNorm + ReLU + dropout, then the
    classifier. Written as convolutions so NNCF's filter pruning can narrow them."""

    units: int = Field(128, ge=8, le=4096, description="filters of each head conv (its width)")
    layers: int = Field(1, ge=1, le=4, description="head convs before the classifier")
    kernel: int | None = Field(None, ge=1, le=64, description="time steps each conv spans (default: all of them)")
    dropout: float = Field(0.3, ge=0, lt=1, description="dropout after each head conv, 0-1")
    pooling: Literal["flatten", "average"] = Field(
        "flatten", description="what reaches the classifier: flatten (every time step) or average (their mean)"
    )


@cache
def _pretrained_ops() -> tuple[tuple[str, dict[str, Any]], ...]:
    """The pinned embedding's ops in order with what a Keras layer needs (kind, options, weights)."""
    from tensorflow.lite.python import schema_py_generated as schema

    from pipeline.models.speech_embedding_assets import model_path

    buf = model_path("embedding_model.tflite").read_bytes()
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(buf, 0))
    graph, builtin = model.subgraphs[0], schema.BuiltinOperator

    def const(index: int) -> np.ndarray:
        tensor = graph.tensors[index]
        dtype = {schema.TensorType.FLOAT32: np.float32, schema.TensorType.INT32: np.int32}[tensor.type]
        return np.frombuffer(bytes(model.buffers[tensor.buffer].data), dtype).reshape(tensor.shape)

    def padding(code: int) -> str:
        return "same" if code == schema.Padding.SAME else "valid"

    ops = []
    for op in graph.operators:
        code = model.operatorCodes[op.opcodeIndex]
        kind, opt = max(code.builtinCode, code.deprecatedBuiltinCode), op.builtinOptions
        if kind == builtin.PAD:
            pads = const(op.inputs[1]).tolist()
            ops.append(("pad", {"padding": (tuple(pads[1]), tuple(pads[2]))}))
        elif kind == builtin.CONV_2D:
            kernel, bias = const(op.inputs[1]), const(op.inputs[2])
            ops.append(("conv", {"filters": kernel.shape[0], "kernel_size": kernel.shape[1:3],
                                 "strides": (opt.strideH, opt.strideW), "padding": padding(opt.padding),
                                 "weights": [kernel.transpose(1, 2, 3, 0), bias]}))  # fmt: skip
        elif kind == builtin.LEAKY_RELU:
            ops.append(("leaky_relu", {"alpha": float(opt.alpha)}))
        elif kind == builtin.MAXIMUM:
            ops.append(("floor", {"value": float(const(op.inputs[1]))}))
        elif kind == builtin.MAX_POOL_2D:
            ops.append(("max_pool", {"pool_size": (opt.filterHeight, opt.filterWidth),
                                     "strides": (opt.strideH, opt.strideW), "padding": padding(opt.padding)}))  # fmt: skip
        else:
            raise RuntimeError(f"embedding_model.tflite: op {kind} has no Keras counterpart here")
    return tuple(ops)


def embedding(x: Any) -> Any:
    """The pretrained embedding's layers applied to `x` [frames, 32, 1] (mel / 10 + 2): [windows, 1, 96], frozen."""
    import tensorflow as tf

    layers = tf.keras.layers
    ops = _pretrained_ops()
    for i, (kind, opt) in enumerate(ops):
        name = BOUNDARY if i == len(ops) - 1 else f"{FROZEN_PREFIX}{i}_{kind}"
        if kind == "pad":
            x = layers.ZeroPadding2D(opt["padding"], name=name)(x)
        elif kind == "conv":
            conv = layers.Conv2D(opt["filters"], opt["kernel_size"], strides=opt["strides"], padding=opt["padding"],
                                 name=name, trainable=False)  # fmt: skip
            x = conv(x)
            conv.set_weights(opt["weights"])
        elif kind == "leaky_relu":
            x = layers.LeakyReLU(opt["alpha"], name=name)(x)
        elif kind == "floor":
            x = tf.math.maximum(x, opt["value"], name=name)
        else:
            x = layers.MaxPool2D(opt["pool_size"], opt["strides"], padding=opt["padding"], name=name)(x)
    return x


def head(x: Any, classes: int, cfg: HeadConfig, filters: list[int] | None = None) -> Any:
    """The trained layers on the embedding [windows, 1, 96]; `filters` gives each conv's width (pruning rebuilds)."""
    import tensorflow as tf

    layers = tf.keras.layers
    widths = filters or [cfg.units] * cfg.layers
    if len(widths) != cfg.layers:
        raise ValueError(f"a head of {cfg.layers} conv layers needs {cfg.layers} widths, got {len(widths)}")
    for i, width in enumerate(widths):
        kernel = min(cfg.kernel or x.shape[1], x.shape[1])
        x = layers.Conv2D(width, (kernel, 1), use_bias=False, name=f"head{i}")(x)
        x = layers.BatchNormalization(name=f"head{i}_bn")(x)
        x = layers.ReLU(name=f"head{i}_relu")(x)
        x = layers.Dropout(cfg.dropout, name=f"head{i}_dropout")(x)
    x = layers.Flatten(name="flatten")(x) if cfg.pooling == "flatten" else layers.GlobalAveragePooling2D(name="pool")(x)
    return layers.Dense(classes, activation="softmax", name="logits")(x)


def speech_embedding(input_shape: tuple[int, ...], classes: int, cfg: Any, filters: list[int] | None = None) -> Any:
    """Mel frames [frames, 32, 1] as the pinned melspectrogram model computes them -> class probabilities."""
    import tensorflow as tf

    inputs = tf.keras.Input(shape=input_shape, name="features")
    x = tf.keras.layers.Rescaling(MEL_SCALE, MEL_OFFSET, name=f"{FROZEN_PREFIX}input_scale")(inputs)
    outputs = head(embedding(x), classes, cfg.head, filters)
    return tf.keras.Model(inputs, outputs, name="speech_embedding")


def layer_names(cfg: Any) -> list[str]:
    """The layers a recipe may name (the head's; the embedding is frozen and never pruned)."""
    return [*(f"head{i}" for i in range(cfg.head.layers)), "logits"]


def split_frozen(model: Any) -> tuple[Any, Any] | None:
    """(the frozen embedding as a model, the trained rest as a model on its output) sharing `model`'s layers, so
    fitting the rest fits `model`; None when `model` has no frozen embedding."""
    import tensorflow as tf

    names = [layer.name for layer in model.layers]
    if BOUNDARY not in names:
        return None
    boundary = model.get_layer(BOUNDARY)
    front = tf.keras.Model(model.input, boundary.output, name="embedding")
    inputs = tf.keras.Input(shape=boundary.output_shape[1:], name="embedding")
    x = inputs
    for layer in model.layers[names.index(BOUNDARY) + 1 :]:
        x = layer(x)
    return front, tf.keras.Model(inputs, x, name="head")


def join(front: Any, trained: Any) -> Any:
    """One plain functional model again: the embedding's layers, then the trained part's (e.g. a rebuilt head)."""
    import tensorflow as tf

    x = front.output
    for layer in trained.layers[1:]:
        x = layer(x)
    return tf.keras.Model(front.input, x, name="speech_embedding")
