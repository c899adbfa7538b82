"""The train stage's work (and the training loop finetune and prune share): TensorFlow/Keras."""

from __future__ import annotations

import hashlib
import math
import time
from typing import Any

import numpy as np
import tensorflow as tf

from pipeline.analysis.evaluation import keras_predict, summarize
from pipeline.engine.fingerprint import fingerprint
from pipeline.engine.store import PREDICTIONS
from pipeline.models import build_model, model_cost
from pipeline.models.speech_embedding import split_frozen
from pipeline.stages import StageContext
from pipeline.stages.train import MODEL, AugmentConfig, TrainConfig


def train(cfg: TrainConfig, ctx: StageContext) -> dict[str, Any]:
    seed_everything(ctx.recipe.seed)
    data = ctx.data
    model = build_model(data.input_shape, len(data.labels), ctx.recipe.model)
    return train_and_save(model, cfg, ctx)


def seed_everything(seed: int) -> None:
    tf.keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def train_and_save(
    model: Any, cfg: TrainConfig, ctx: StageContext, callbacks: list[Any] = (), teacher: Teacher | None = None
) -> dict[str, Any]:
    """Fit with early stopping, save, evaluate: shared by `train` and `finetune`."""
    _, trained, inputs = trainable_part(model, ctx, cfg.augment)
    lr = cfg.lr
    if cfg.lr_schedule == "cosine":  # over every step: a frozen embedding's augmented copies make an epoch longer
        examples = len(inputs[0]) if inputs else len(ctx.data.train)
        lr = tf.keras.optimizers.schedules.CosineDecay(cfg.lr, cfg.epochs * math.ceil(examples / cfg.batch_size))
    loss, targets = hard_label_loss(cfg.label_smoothing), None
    if teacher is not None:
        loss, targets = teacher.loss(cfg.label_smoothing), teacher.targets(ctx.data)
    averaging = {"use_ema": True, "ema_momentum": cfg.weight_average} if cfg.weight_average else {}
    trained.compile(optimizer=tf.keras.optimizers.Adam(lr, **averaging), loss=loss, metrics=[HardLabelAccuracy()])
    callbacks = list(callbacks)
    if cfg.patience:
        callbacks.append(
            tf.keras.callbacks.EarlyStopping(monitor="val_accuracy", patience=cfg.patience, restore_best_weights=True)
        )
    relabel = teacher.relabel if teacher is not None and teacher.consistent else None
    hist = fit(trained, ctx, cfg.epochs, cfg.batch_size, callbacks, targets, cfg.augment, relabel, inputs)
    data = ctx.data
    best = int(np.argmax(hist["val_accuracy"]))
    ended = {"best_epoch": best + 1, "val_accuracy": hist["val_accuracy"][best]}
    if cfg.weight_average:  # fit ended on the averaged weights; BatchNorm still holds the raw weights' statistics
        recompute_batchnorm(trained, inputs[0] if inputs else data.train.x[..., None], cfg.batch_size)
        val = keras_predict(model, data.val.x) == data.val.y  # no epoch's weights: the average's own accuracy
        ended = {"ended_on": f"weight average {cfg.weight_average}", "val_accuracy": round(float(val.mean()), 5)}
    # Saved compiled with stock loss and metric: later stages load it without this module's custom objects.
    model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.save(ctx.out / MODEL)
    pred = keras_predict(model, data.test.x)
    np.save(ctx.out / PREDICTIONS, pred)
    return {
        **summarize(pred, data.test.y, data.test.groups, data.labels),
        **model_cost(model),
        "runtime": f"Keras (TensorFlow {tf.__version__}), float32",
        "epochs_run": len(hist["loss"]),
        **ended,
        "history": hist,
    }


def trainable_part(
    model: Any, ctx: StageContext, augment: AugmentConfig | None = None
) -> tuple[Any, Any, tuple[np.ndarray, np.ndarray] | None]:
    """(frozen front, the part of `model` that learns, its (train, val) inputs) when a frozen pretrained embedding
    feeds the rest: the embedding then runs once per clip here instead of once per clip in every epoch. With
    `augment`, the training inputs are the clean clips' embeddings followed by those of `augment.copies` augmented
    copies of them (`fit` repeats the targets to match). Without an embedding: (None, model, None)."""
    parts = split_frozen(model)
    if parts is None:
        return None, model, None
    front, rest = parts
    data = ctx.data

    def embed(x: np.ndarray) -> np.ndarray:
        return front.predict(x[..., None], batch_size=256, verbose=0)

    # The outputs are kept in the run's cache, so fine-tuning (whose copies are train's) and reruns load them.
    weights = hashlib.sha256(b"".join(w.tobytes() for w in front.get_weights())).hexdigest()
    code = fingerprint("pipeline.models.speech_embedding", "pipeline.stages.train.augment")

    def cached(kind: str, depends: dict[str, Any], compute: Any) -> dict[str, np.ndarray]:
        return ctx.cached(kind, {"weights": weights, "code": code, **depends}, compute) if ctx.cached else compute()

    copies = augment.copies if augment is not None else 0
    ctx.log(
        f"frozen embedding: its outputs for {len(data.train) + len(data.val)} training and validation clips"
        + (f" and {copies} augmented copies of the training clips" if copies else "")
        + (", computed once per data set (cached)" if ctx.cached else "")
    )
    clean = cached("embedding", {}, lambda: {"train": embed(data.train.x), "val": embed(data.val.x)})
    train = [clean["train"]]
    if augment is not None:
        from pipeline.stages.train.augment import augmented_copy

        seed, features = ctx.recipe.seed, ctx.recipe.data.features
        how = {"augment": augment.model_dump(mode="json", exclude={"copies"}), "seed": seed}
        for k in range(copies):
            copy = cached(
                "embedding-copy",
                {**how, "copy": k},
                lambda k=k: {"train": embed(augmented_copy(data.train.x, augment, seed, k, features))},
            )
            train.append(copy["train"])
    return front, rest, (np.concatenate(train), clean["val"])


def recompute_batchnorm(model: Any, x: np.ndarray, batch_size: int) -> None:
    """Every BatchNorm's moving mean and variance become the plain average over one pass of `x` (as SWA does):
    statistics gathered while the weights moved describe none of the weights averaged from them."""
    norms = [layer for layer in model.layers if isinstance(layer, tf.keras.layers.BatchNormalization)]
    kept = [layer.momentum for layer in norms]
    for layer in norms:
        layer.moving_mean.assign(tf.zeros_like(layer.moving_mean))
        layer.moving_variance.assign(tf.ones_like(layer.moving_variance))
    for k, start in enumerate(range(0, len(x), batch_size)):
        for layer in norms:
            layer.momentum = k / (k + 1)  # the k-th batch weighs 1/(k+1): a running plain mean
        model(x[start : start + batch_size], training=True)
    for layer, momentum in zip(norms, kept, strict=True):
        layer.momentum = momentum


def fit(
    model: Any,
    ctx: StageContext,
    epochs: int,
    batch_size: int,
    callbacks: list[Any],
    targets: tuple[np.ndarray, np.ndarray] | None = None,
    augment: AugmentConfig | None = None,
    relabel: Any = None,
    inputs: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict[str, list[float]]:
    """model.fit on the recipe's splits with a line per epoch; returns the rounded history.

    `targets` replaces the (train, val) labels, e.g. with the label and a teacher's outputs side by side;
    `relabel(x, y)` gives each augmented training batch's targets from its inputs (consistent teaching);
    `inputs` replaces the (train, val) features, e.g. with a frozen embedding's outputs (`trainable_part`; already
    augmented there, so `augment` then changes nothing per batch)."""
    data = ctx.data
    train_y, val_y = targets or (data.train.y, data.val.y)
    train_x, val_x = inputs or (data.train.x[..., None], data.val.x[..., None])
    if len(train_x) > len(data.train):  # the clean clips' inputs, then their augmented copies' (`trainable_part`)
        passes = len(train_x) // len(data.train)
        train_y = tuple(np.concatenate([y] * passes) for y in train_y) if isinstance(train_y, tuple) else (
            np.concatenate([train_y] * passes))  # fmt: skip
    if augment is not None and inputs is None:
        from pipeline.stages.train.augment import training_dataset

        features = ctx.recipe.data.features
        train = {"x": training_dataset(data.train.x, train_y, batch_size, augment, ctx.recipe.seed, relabel, features)}
    else:
        train = {"x": train_x, "y": train_y, "batch_size": batch_size}
    history = model.fit(
        **train,
        epochs=epochs,
        validation_data=(val_x, val_y),
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


class HardLabelAccuracy(tf.keras.metrics.Mean):
    """Top-1 accuracy against the label in column 0 of y_true (1-D labels work too): with distillation the
    teacher's probabilities ride along in the other columns. Named `accuracy` so logs and callbacks stay put."""

    def __init__(self, name: str = "accuracy", **kwargs: Any):
        super().__init__(name=name, **kwargs)

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        label = tf.cast(tf.reshape(y_true, [tf.shape(y_true)[0], -1])[:, 0], tf.int64)
        hit = tf.cast(tf.equal(label, tf.argmax(y_pred, axis=-1)), tf.float32)
        super().update_state(hit, sample_weight)


def hard_label_loss(smoothing: float) -> Any:
    """Cross-entropy against integer labels, `smoothing` of each label's weight spread over every class."""

    def crossentropy(y_true: Any, y_pred: Any) -> Any:
        label = tf.cast(tf.reshape(y_true, [-1]), tf.int32)
        if not smoothing:
            return tf.keras.losses.sparse_categorical_crossentropy(label, y_pred)
        onehot = tf.one_hot(label, tf.shape(y_pred)[-1])
        return tf.keras.losses.categorical_crossentropy(onehot, y_pred, label_smoothing=smoothing)

    return crossentropy


class Teacher:
    """Knowledge distillation. By default the teacher's outputs are computed once, on the clean clips: with
    `augment`, the student learns to give the teacher's answer for the clean clip from an augmented one. With
    `consistent`, the teachers score each augmented batch the student sees instead (function matching): the target
    then fits the input, however masked. Several models teach through their averaged probabilities: an ensemble,
    steadier than any one training of it."""

    def __init__(
        self,
        models: list[Any],
        temperature: float,
        alpha: float,
        consistent: bool = False,
        inputs: list[np.ndarray] | None = None,
    ):
        """`inputs`: each model's own features of the training clips, when they are not the student's."""
        self.models, self.temperature, self.alpha, self.consistent = models, temperature, alpha, consistent
        self.inputs = inputs

    def targets(self, data: Any) -> tuple[np.ndarray, np.ndarray]:
        """(label, teacher probabilities) per training clip (`consistent`: the label alone, `relabel` adds the
        probabilities per batch); validation keeps the hard label only (one-hot), so `val_accuracy` means what it
        always does."""
        classes = self.models[0].output_shape[-1]
        train = data.train.y[:, None].astype(np.float32)
        if not self.consistent:
            inputs = self.inputs or [data.train.x] * len(self.models)
            probs = np.mean([m.predict(x[..., None], batch_size=256, verbose=0) for m, x in
                             zip(self.models, inputs, strict=True)], 0)  # fmt: skip
            train = np.concatenate([train, probs], axis=1)
        val = np.concatenate([data.val.y[:, None].astype(np.float32), np.eye(classes, dtype=np.float32)[data.val.y]], 1)
        return train, val

    def relabel(self, x: tf.Tensor, label: tf.Tensor) -> tf.Tensor:
        """(label, the teachers' averaged probabilities for this very batch `x`), for `consistent` teaching."""
        probs = tf.add_n([m(x, training=False) for m in self.models]) / len(self.models)
        return tf.concat([label, probs], axis=1)

    def loss(self, label_smoothing: float = 0.0) -> Any:
        t, alpha, hard_loss = self.temperature, self.alpha, hard_label_loss(label_smoothing)

        def distillation(y_true: Any, y_pred: Any) -> Any:
            # Both models end in softmax: log-probabilities are logits up to a constant, which softmax ignores.
            hard = hard_loss(y_true[:, 0], y_pred)
            student = tf.nn.log_softmax(tf.math.log(y_pred + 1e-8) / t)
            teacher = tf.nn.log_softmax(tf.math.log(y_true[:, 1:] + 1e-8) / t)
            soft = tf.reduce_sum(tf.exp(teacher) * (teacher - student), axis=-1)  # KL(teacher || student)
            return alpha * hard + (1 - alpha) * t * t * soft  # t² keeps the soft gradients' scale (Hinton et al.)

        return distillation
