"""The prune stage's work: NNCF compression trained under its scheduler, then made physical.

NNCF's TensorFlow filter pruning only *masks* filters: a masked filter still costs flash, RAM and time on
TFLite Micro and LiteRT. So after the scheduled training the kept filters are read from NNCF's masks and the
model is rebuilt narrower, with the kept weights copied across (conv kernels, BatchNorm parameters and
statistics, the depthwise channels that follow and the next layer's input channels). The rebuilt model must
compute what the masked one computed; the largest output difference on the test split is measured and
reported, and a difference above `TOLERANCE` fails the stage.

`magnitude` sparsity zeroes single weights instead; the shapes stay, the zeros are written into the weights.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
import tensorflow as tf

from pipeline.analysis.evaluation import keras_predict, summarize
from pipeline.c_output import captured_c_output
from pipeline.engine.store import PREDICTIONS, write_json
from pipeline.models import build_model, model_cost
from pipeline.models.speech_embedding import head, join
from pipeline.models.zoo import ModelConfig
from pipeline.stages import StageContext
from pipeline.stages.prune import FILTERS, PruneConfig
from pipeline.stages.train import MODEL
from pipeline.stages.train.training import fit, seed_everything, trainable_part

TOLERANCE = 1e-4
FROZEN_NOTE = (
    "NNCF pruned the trained head only. The pretrained embedding is frozen: its convolutions are prunable by NNCF's "
    "rules, but pruning them needs retraining on the speech it was learnt from (not shipped), and retraining it on "
    "synthetic voices would unlearn the people it knows"
)

_NNCF_IMPORTANCE = {"L1": "L1", "L2": "L2", "geometric_median": "geometric_median"}


def nncf_config(cfg: PruneConfig, input_shape: tuple[int, ...], batch_size: int) -> dict[str, Any]:
    """The recipe's prune section in NNCF's own config language (see NNCF's config schema)."""
    if cfg.method == "filter":
        compression: dict[str, Any] = {
            "algorithm": "filter_pruning",
            "pruning_init": cfg.init,
            "params": {
                "schedule": cfg.scheduler,
                "pruning_target": cfg.target,
                "pruning_steps": cfg.steps,
                "num_init_steps": cfg.warmup_epochs,
                "filter_importance": _NNCF_IMPORTANCE[cfg.importance],
                "prune_first_conv": cfg.prune_first_conv,
                "prune_downsample_convs": cfg.prune_downsample_convs,
            },
        }
    else:
        compression = {
            "algorithm": "magnitude_sparsity",
            "sparsity_init": cfg.init,
            "params": {
                "schedule": cfg.scheduler,
                "sparsity_target": cfg.target,
                "sparsity_target_epoch": cfg.warmup_epochs + cfg.steps,
                "sparsity_freeze_epoch": cfg.epochs,
                **({"multistep_steps": list(range(1, cfg.steps + 1))} if cfg.scheduler == "multistep" else {}),
            },
        }
    if cfg.ignore:
        compression["ignored_scopes"] = list(cfg.ignore)
    compression["initializer"] = {"batchnorm_adaptation": {"num_bn_adaptation_samples": 10 * batch_size}}
    return {"input_info": {"sample_size": [1, *input_shape]}, "compression": compression}


def prune(cfg: PruneConfig, ctx: StageContext) -> dict[str, Any]:
    from nncf import NNCFConfig
    from nncf.tensorflow import create_compressed_model, create_compression_callbacks, register_default_init_args

    seed_everything(ctx.recipe.seed)
    data = ctx.data
    whole = tf.keras.models.load_model(ctx.input.file(MODEL))
    before = model_cost(whole)
    # With a frozen pretrained embedding NNCF sees only the trained head, fed the embedding's outputs.
    front, original, inputs = trainable_part(whole, ctx)
    test_x = front.predict(data.test.x[..., None], batch_size=256, verbose=0) if front else data.test.x[..., None]
    input_shape = tuple(original.input_shape[1:])

    train_x = inputs[0] if inputs else data.train.x[..., None]
    train = tf.data.Dataset.from_tensor_slices((train_x, data.train.y)).batch(cfg.batch_size)
    config = nncf_config(cfg, input_shape, cfg.batch_size)
    nncf_cfg = register_default_init_args(NNCFConfig.from_dict(config), train, batch_size=cfg.batch_size)
    ctx.log(
        f"NNCF {config['compression']['algorithm']}: target {cfg.target:.0%}, {cfg.scheduler} over {cfg.steps} epochs"
    )
    with captured_c_output(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # NNCF deprecates its TF backend; see DEVELOPERS.md
        ctrl, compressed = create_compressed_model(original, nncf_cfg)
    compressed.add_loss(ctrl.loss)
    compressed.compile(
        optimizer=tf.keras.optimizers.Adam(cfg.lr), loss="sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    callbacks = [*create_compression_callbacks(ctrl, log_tensorboard=False, log_text=False), _LevelLog(ctx, ctrl)]
    started = time.time()
    hist = fit(compressed, ctx, cfg.epochs, cfg.batch_size, callbacks, inputs=inputs)
    train_seconds = time.time() - started

    masked_pred_proba = compressed.predict(test_x, batch_size=512, verbose=0)
    weights = Weights(compressed)
    if cfg.method == "filter":
        build = partial(build_head if front else build_model, input_shape)
        model = rebuild_narrow(original, weights, len(data.labels), ctx.recipe.model, build)
    else:
        model = rebuild_same(original, weights)
    rebuilt_proba = model.predict(test_x, batch_size=512, verbose=0)
    max_diff = float(np.max(np.abs(rebuilt_proba - masked_pred_proba)))
    ctx.log(f"rebuilt model vs NNCF's masked model: max |Δ output| = {max_diff:.2e} on {len(data.test)} test clips")
    if not max_diff <= TOLERANCE:
        raise RuntimeError(f"the rebuilt model does not compute what the masked model computes: max |Δ| {max_diff:.3g}")

    pruned = join(front, model) if front else model
    pruned.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    pruned.save(ctx.out / MODEL)
    pred = keras_predict(pruned, data.test.x)
    np.save(ctx.out / PREDICTIONS, pred)
    after = model_cost(pruned)
    layers = _layer_table(original, model, weights, cfg)
    removed = 1 - sum(r["filters_after"] for r in layers) / sum(r["filters_before"] for r in layers)
    if cfg.method == "filter" and removed < cfg.target - 0.05:
        ctx.log(
            f"warning: only {removed:.0%} of the filters were removed (target {cfg.target:.0%}); NNCF keeps a "
            "multiple of 8 filters in each layer, so layers of 8 or fewer filters are never pruned"
        )
    write_json(ctx.out / FILTERS, {"importance": cfg.importance if cfg.method == "filter" else None, "layers": layers})
    masked_acc = float(np.mean(np.argmax(masked_pred_proba, axis=-1) == data.test.y))
    return {
        **summarize(pred, data.test.y, data.test.groups, data.labels),
        **after,
        "runtime": f"Keras (TensorFlow {tf.__version__}), float32, rebuilt from NNCF masks",
        "method": cfg.method,
        "nncf_config": config,
        "level": removed if cfg.method == "filter" else _nncf_level(ctrl, cfg),
        "nncf_level": _nncf_level(ctrl, cfg),
        "masked_accuracy": masked_acc,
        "rebuilt_max_abs_diff": max_diff,
        "before": before,
        "layers": [{k: v for k, v in layer.items() if k != "importance"} for layer in layers],
        "zero_weights": _zero_share(model),
        **({"frozen": FROZEN_NOTE} if front else {}),
        "train_seconds": round(train_seconds, 1),
        "epochs_run": len(hist["loss"]),
        "history": hist,
    }


class Weights:
    """The compressed model's weights by Keras name (`conv0/kernel:0`): raw, NNCF's masks, and masked."""

    def __init__(self, compressed: Any):
        values = {w.name: w.numpy() for w in compressed.weights}
        self.masks = {k[: -len("_mask:0")] + ":0": v for k, v in values.items() if k.endswith("_mask:0")}
        self.raw = {k: v for k, v in values.items() if not k.endswith("_mask:0")}
        self.masked = {k: v * self.masks[k] if k in self.masks else v for k, v in self.raw.items()}

    def kept_filters(self, layer: str) -> np.ndarray:
        """Output channels a conv keeps by its NNCF mask; all of them when NNCF did not prune it."""
        kernel = self.raw[f"{layer}/kernel:0"]
        mask = self.masks.get(f"{layer}/kernel:0")
        if mask is None:
            return np.arange(kernel.shape[-1])
        alive = np.broadcast_to(mask, kernel.shape).reshape(-1, kernel.shape[-1]).any(axis=0)
        return np.flatnonzero(alive)


def build_head(input_shape: tuple[int, ...], classes: int, cfg: ModelConfig, filters: list[int]) -> Any:
    """The speech_embedding head alone, on the embedding's output, `filters` wide: what a pruned head rebuilds."""
    inputs = tf.keras.Input(shape=input_shape, name="embedding")
    return tf.keras.Model(inputs, head(inputs, classes, cfg.head, filters), name="head")


def rebuild_narrow(
    original: Any, weights: Weights, classes: int, model_cfg: ModelConfig, build: Callable[..., Any]
) -> Any:
    """Rebuild with the kept filter counts and copy the kept weights, following channels layer by layer.

    Works on chain models (each layer feeds the next), which is what the zoo builds: a conv picks its kept
    filters; depthwise convs, BatchNorm and the dense head select the channels their input kept. `build(classes,
    model_cfg, filters=...)` makes the narrower model.
    """
    layers = tf.keras.layers
    kept: dict[str, np.ndarray] = {}
    channels: np.ndarray | None = None  # kept channels of the tensor flowing into the current layer
    new_weights: dict[str, list[np.ndarray]] = {}
    for layer in original.layers:
        name = layer.name
        w = [weights.masked[v.name] for v in layer.weights]
        if isinstance(layer, layers.DepthwiseConv2D):
            new_weights[name] = [w[0][:, :, channels, :], *[b[channels] for b in w[1:]]]
        elif isinstance(layer, layers.Conv2D):
            out = weights.kept_filters(name)
            if len(out) == 0:
                raise RuntimeError(f"NNCF pruned every filter of {name}")
            kept[name] = out
            kernel = w[0] if channels is None else w[0][:, :, channels, :]
            new_weights[name] = [kernel[..., out], *[b[out] for b in w[1:]]]
            channels = out
        elif isinstance(layer, layers.BatchNormalization):
            new_weights[name] = [v[channels] for v in w]
        elif isinstance(layer, layers.Flatten) and channels is not None:  # each position's kept channels
            width, positions = layer.input_shape[-1], int(np.prod(layer.input_shape[1:-1]))
            channels = (np.arange(positions)[:, None] * width + channels[None, :]).reshape(-1)
        elif isinstance(layer, layers.Dense):
            new_weights[name] = [w[0][channels, :], *w[1:]]
            channels = None
        elif w:
            raise RuntimeError(f"cannot carry weights of {type(layer).__name__} '{name}' through a rebuild")
    widths = [len(v) for v in kept.values()]
    model = build(classes, model_cfg, filters=widths)
    for layer in model.layers:
        if layer.name in new_weights:
            layer.set_weights(new_weights[layer.name])
    return model


def rebuild_same(original: Any, weights: Weights) -> Any:
    """A plain Keras copy of the model with the masked (zeroed) weights written in."""
    model = tf.keras.models.clone_model(original)
    for layer, source in zip(model.layers, original.layers, strict=True):
        if source.weights:
            layer.set_weights([weights.masked[v.name] for v in source.weights])
    return model


def filter_importance(kernel: np.ndarray, criterion: str) -> np.ndarray:
    """Per-filter score by NNCF's criterion, on the layer's own kernel (NNCF then ranks within its groups)."""
    flat = kernel.reshape(-1, kernel.shape[-1]).T
    if criterion == "L1":
        return np.abs(flat).sum(axis=1)
    if criterion == "L2":
        return np.sqrt((flat**2).sum(axis=1))
    distances = np.linalg.norm(flat[:, None, :] - flat[None, :, :], axis=-1)
    return distances.sum(axis=1)


def _layer_table(original: Any, model: Any, weights: Weights, cfg: PruneConfig) -> list[dict]:
    rows = []
    new_layers = {layer.name: layer for layer in model.layers}
    for layer in original.layers:
        if not isinstance(layer, tf.keras.layers.Conv2D) or isinstance(layer, tf.keras.layers.DepthwiseConv2D):
            continue
        kernel = weights.raw[layer.weights[0].name]
        row: dict[str, Any] = {
            "layer": layer.name,
            "filters_before": int(kernel.shape[-1]),
            "filters_after": int(new_layers[layer.name].get_weights()[0].shape[-1]),
            "ignored": layer.name in cfg.ignore,
        }
        if cfg.method == "filter":
            scores = filter_importance(kernel, cfg.importance)
            alive = set(weights.kept_filters(layer.name).tolist())
            row["importance"] = [{"filter": i, "score": float(s), "kept": i in alive} for i, s in enumerate(scores)]
        else:
            masked = weights.masked[layer.weights[0].name]
            row["zero_weights"] = float(np.mean(masked == 0))
        rows.append(row)
    return rows


def _zero_share(model: Any) -> float:
    kernels = [w.numpy() for w in model.weights if w.name.endswith(("kernel:0", "depthwise_kernel:0"))]
    total = sum(k.size for k in kernels)
    return float(sum(int(np.sum(k == 0)) for k in kernels) / total) if total else 0.0


def _nncf_level(ctrl: Any, cfg: PruneConfig) -> float:
    if cfg.method == "filter":
        return float(ctrl.pruning_level)
    return float(ctrl.scheduler.current_sparsity_level)


class _LevelLog(tf.keras.callbacks.Callback):
    def __init__(self, ctx: StageContext, ctrl: Any):
        super().__init__()
        self.ctx, self.ctrl = ctx, ctrl

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        level = getattr(self.ctrl, "pruning_level", None)
        if level is None:
            level = self.ctrl.scheduler.current_sparsity_level
        self.ctx.log(f"epoch {epoch + 1}: compression level {float(level):.1%}")
