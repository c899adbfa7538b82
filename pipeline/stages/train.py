"""train: fit the recipe's architecture on the training split, early-stopping on validation accuracy."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import tensorflow as tf

from pipeline.evaluation import keras_predict, summarize
from pipeline.models import build_model, model_cost
from pipeline.recipe import TrainConfig
from pipeline.stages import PREDICTIONS, StageContext

CODE = ("pipeline.stages.train", "pipeline.models.zoo", "pipeline.evaluation")
MODEL = "model.keras"


def run(cfg: TrainConfig, ctx: StageContext) -> dict[str, Any]:
    seed_everything(ctx.recipe.seed)
    data = ctx.data
    model = build_model(data.input_shape, len(data.labels), ctx.recipe.model)
    return train_and_save(model, cfg, ctx)


def seed_everything(seed: int) -> None:
    tf.keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def train_and_save(model: Any, cfg: TrainConfig, ctx: StageContext, callbacks: list[Any] = ()) -> dict[str, Any]:
    """Fit with early stopping, save, evaluate: shared by `train` and `finetune`."""
    model.compile(
        optimizer=tf.keras.optimizers.Adam(cfg.lr),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    callbacks = list(callbacks)
    if cfg.patience:
        callbacks.append(
            tf.keras.callbacks.EarlyStopping(monitor="val_accuracy", patience=cfg.patience, restore_best_weights=True)
        )
    hist = fit(model, ctx, cfg.epochs, cfg.batch_size, callbacks)
    model.save(ctx.out / MODEL)
    data = ctx.data
    pred = keras_predict(model, data.test.x)
    np.save(ctx.out / PREDICTIONS, pred)
    best = int(np.argmax(hist["val_accuracy"]))
    return {
        **summarize(pred, data.test.y, data.test.groups, data.labels),
        **model_cost(model),
        "runtime": f"Keras (TensorFlow {tf.__version__}), float32",
        "epochs_run": len(hist["loss"]),
        "best_epoch": best + 1,
        "val_accuracy": hist["val_accuracy"][best],
        "history": hist,
    }


def fit(model: Any, ctx: StageContext, epochs: int, batch_size: int, callbacks: list[Any]) -> dict[str, list[float]]:
    """model.fit on the recipe's splits with a line per epoch; returns the rounded history."""
    data = ctx.data
    history = model.fit(
        data.train.x[..., None],
        data.train.y,
        batch_size=batch_size,
        epochs=epochs,
        validation_data=(data.val.x[..., None], data.val.y),
        callbacks=[_EpochLog(ctx, epochs), *callbacks],
        verbose=0,
    )
    return {k: [round(float(v), 5) for v in vals] for k, vals in history.history.items()}


class _EpochLog(tf.keras.callbacks.Callback):
    """One line per epoch: progress that reads the same in a terminal and in a CI log."""

    def __init__(self, ctx: StageContext, epochs: int):
        super().__init__()
        self.ctx, self.epochs = ctx, epochs

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        self.started = time.time()

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        logs = logs or {}
        self.ctx.log(
            f"epoch {epoch + 1}/{self.epochs}: loss {logs.get('loss', float('nan')):.4f} "
            f"acc {logs.get('accuracy', float('nan')):.4f} val_acc {logs.get('val_accuracy', float('nan')):.4f} "
            f"({time.time() - self.started:.1f} s)"
        )
