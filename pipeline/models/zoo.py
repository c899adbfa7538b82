"""Keyword-spotting architectures (Keras 2 functional models).

`speech_embedding` is a small head on a frozen embedding learnt from people (`speech_embedding.py`).

`ds_cnn` follows ARM's "Hello Edge" DS-CNN as used by MLPerf Tiny KWS: a strided 10x4 conv, then blocks of
depthwise 3x3 + pointwise 1x1 convs, each followed by BatchNorm and ReLU, average pooling and a dense classifier.
Convs carry no bias (BatchNorm follows); the TFLite converter folds BatchNorm into them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from pipeline.models import speech_embedding
from pipeline.models.speech_embedding import HeadConfig
from pipeline.schema import Strict, changed

DS_CNN_KEYS = {"filters", "blocks", "first_kernel", "first_stride", "dropout", "normalize"}


class ModelConfig(Strict):
    arch: Literal["ds_cnn", "speech_embedding"] = Field(
        "ds_cnn",
        description="ds_cnn (a DS-CNN for microcontrollers) or speech_embedding (a head on a frozen embedding)",
    )
    filters: int = Field(64, ge=1, le=1024, description="ds_cnn: width of the first conv and of every pointwise conv")
    blocks: int = Field(4, ge=0, le=16, description="ds_cnn: depthwise-separable blocks after the first conv")
    first_kernel: tuple[int, int] = Field((10, 4), description="ds_cnn: the first conv's kernel, frames x coefficients")
    first_stride: tuple[int, int] = Field((2, 2), description="ds_cnn: the first conv's stride, frames x coefficients")
    dropout: float = Field(
        0.2,
        ge=0,
        lt=1,
        description="ds_cnn: dropout after the first conv, 0-1; before the classifier min(0.4, 2x this)",
    )
    # "cepstral_mean": subtract each clip's mean over time from every feature coefficient first (CMN), so a
    # microphone's or a room's fixed colouring, which adds a constant to each cepstral coefficient, is gone before
    # the first conv. Part of the graph (average pool + broadcast subtract), so the firmware front end is unchanged.
    # "cepstral_mean_variance": also divide by each coefficient's standard deviation over time (CMVN), so how far
    # a voice's cepstrum swings, not only where it sits, is the same in every clip (TFLite AVERAGE_POOL_2D, SUB,
    # MUL, ADD, RSQRT: int8 builtins too, every one on the Ethos-U NPU).
    normalize: Literal["none", "cepstral_mean", "cepstral_mean_variance"] = Field(
        "none", description="ds_cnn: per-clip normalisation inside the graph: none, cepstral_mean (CMN) or CMVN"
    )
    head: HeadConfig = Field(default_factory=HeadConfig, description="speech_embedding: the trained layers")

    @model_validator(mode="after")
    def _keys_of_the_arch(self) -> ModelConfig:
        if self.arch == "speech_embedding" and DS_CNN_KEYS & changed(self):
            raise ValueError(f"{', '.join(sorted(DS_CNN_KEYS & changed(self)))}: ds_cnn settings; "
                             "speech_embedding takes `head: {units, layers, kernel, dropout, pooling}`")  # fmt: skip
        if self.arch != "speech_embedding" and "head" in changed(self):
            raise ValueError("head: only for arch 'speech_embedding'")
        return self


def ds_cnn(input_shape: tuple[int, ...], classes: int, cfg: ModelConfig, filters: list[int] | None = None) -> Any:
    """`filters` gives each conv's width (first conv, then each pointwise); pruning rebuilds with it."""
    import tensorflow as tf

    layers = tf.keras.layers
    widths = filters or [cfg.filters] * (cfg.blocks + 1)
    if len(widths) != cfg.blocks + 1:
        raise ValueError(f"ds_cnn with {cfg.blocks} blocks needs {cfg.blocks + 1} widths, got {len(widths)}")
    inputs = tf.keras.Input(shape=input_shape, name="features")
    x = inputs
    if cfg.normalize != "none":
        mean = layers.AveragePooling2D(pool_size=(input_shape[0], 1), name="time_mean")(x)
        x = layers.Subtract(name="cepstral_mean_norm")([x, mean])
    if cfg.normalize == "cepstral_mean_variance":
        var = layers.AveragePooling2D(pool_size=(input_shape[0], 1), name="time_var")(
            layers.Multiply(name="squared")([x, x])
        )
        x = layers.Multiply(name="cepstral_mvn")([x, tf.math.rsqrt(var + 1e-2)])
    x = layers.Conv2D(
        widths[0], cfg.first_kernel, strides=cfg.first_stride, padding="same", use_bias=False, name="conv0"
    )(x)
    x = layers.BatchNormalization(name="conv0_bn")(x)
    x = layers.ReLU(name="conv0_relu")(x)
    x = layers.Dropout(cfg.dropout, name="conv0_dropout")(x)
    for i in range(1, cfg.blocks + 1):
        x = layers.DepthwiseConv2D(3, padding="same", use_bias=False, name=f"dw{i}")(x)
        x = layers.BatchNormalization(name=f"dw{i}_bn")(x)
        x = layers.ReLU(name=f"dw{i}_relu")(x)
        x = layers.Conv2D(widths[i], 1, use_bias=False, name=f"pw{i}")(x)
        x = layers.BatchNormalization(name=f"pw{i}_bn")(x)
        x = layers.ReLU(name=f"pw{i}_relu")(x)
    x = layers.Dropout(min(0.4, 2 * cfg.dropout), name="head_dropout")(x)
    x = layers.AveragePooling2D(pool_size=tuple(x.shape[1:3]), name="pool")(x)
    x = layers.Flatten(name="flatten")(x)
    outputs = layers.Dense(classes, activation="softmax", name="logits")(x)
    return tf.keras.Model(inputs, outputs, name="ds_cnn")


def ds_cnn_layers(cfg: ModelConfig) -> list[str]:
    """Names of the layers with weights, in order: what a recipe may refer to without building the model."""
    blocks = [name for i in range(1, cfg.blocks + 1) for name in (f"dw{i}", f"pw{i}")]
    return ["conv0", *blocks, "logits"]


ARCHITECTURES = {"ds_cnn": ds_cnn, "speech_embedding": speech_embedding.speech_embedding}
LAYER_NAMES = {"ds_cnn": ds_cnn_layers, "speech_embedding": speech_embedding.layer_names}


def layer_names(cfg: ModelConfig) -> list[str]:
    return LAYER_NAMES[cfg.arch](cfg)


def build_model(input_shape: tuple[int, ...], classes: int, cfg: ModelConfig, **kwargs: Any) -> Any:
    return ARCHITECTURES[cfg.arch](input_shape, classes, cfg, **kwargs)


def model_cost(model: Any) -> dict[str, int]:
    """Parameters and MACs of one inference (convs, depthwise convs and dense layers; the rest is negligible)."""
    import tensorflow as tf

    layers = tf.keras.layers
    macs = 0
    for layer in model.layers:
        if isinstance(layer, layers.DepthwiseConv2D):
            _, h, w, c = layer.output_shape
            kh, kw = layer.kernel_size
            macs += h * w * c * kh * kw
        elif isinstance(layer, layers.Conv2D):
            _, h, w, c_out = layer.output_shape
            kh, kw = layer.kernel_size
            macs += h * w * c_out * kh * kw * layer.input_shape[-1]
        elif isinstance(layer, layers.Dense):
            macs += layer.input_shape[-1] * layer.units
    return {"params": int(model.count_params()), "macs": int(macs)}
