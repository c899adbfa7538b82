"""The finetune stage's work: TensorFlow/Keras, through the train stage's loop."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import tensorflow as tf

from pipeline.stages import StageContext
from pipeline.stages.finetune import FinetuneConfig, teacher_from_run
from pipeline.stages.train import MODEL
from pipeline.stages.train.training import Teacher, seed_everything, train_and_save


def finetune(cfg: FinetuneConfig, ctx: StageContext) -> dict[str, Any]:
    # Retrained teachers first: training one reseeds TensorFlow, and this stage must not depend on the cache.
    teachers = [ctx.retrain(k) for k in range(1, cfg.distill.teachers)] if cfg.distill is not None else []
    seed_everything(ctx.recipe.seed)
    model = tf.keras.models.load_model(ctx.input.file(MODEL))
    callbacks = []
    if ctx.input.meta.get("metrics", {}).get("method") == "magnitude":
        callbacks.append(KeepZeros(model))
        ctx.log("keeping the sparsity pattern: pruned weights stay zero while fine-tuning")
    teacher, taught, extra = None, [], {}
    if cfg.distill is not None and cfg.distill.teacher_run is not None:
        teacher, extra = teacher_from_another_run(cfg, ctx)
    elif cfg.distill is not None:
        sources = [ctx.earlier[cfg.distill.teacher], *teachers]
        for i, source in enumerate(sources):
            seed = source.meta["seed"] if i else ctx.recipe.seed
            taught.append({"stage": cfg.distill.teacher, "seed": seed, "accuracy": source.meta["metrics"]["accuracy"]})
            ctx.log(f"distilling from the '{cfg.distill.teacher}' model at seed {seed} (T={cfg.distill.temperature}, "
                    f"alpha={cfg.distill.alpha}): test accuracy {taught[-1]['accuracy']:.4f}")  # fmt: skip
        models = [tf.keras.models.load_model(source.file(MODEL)) for source in sources]
        teacher = Teacher(models, cfg.distill.temperature, cfg.distill.alpha, cfg.distill.consistent)
    metrics = train_and_save(model, cfg, ctx, callbacks, teacher)
    return metrics | ({"teachers": taught} if len(taught) > 1 else {}) | extra


def teacher_from_another_run(cfg: FinetuneConfig, ctx: StageContext) -> tuple[Teacher, dict[str, Any]]:
    """Another run's model as the teacher: it scores this recipe's training clips through its own features."""
    from pipeline.recipe import load_recipe

    run = ctx.recipe.resolve_path(cfg.distill.teacher_run)
    path, report = teacher_from_run(run)
    if report["data"]["labels"] != ctx.data.labels:
        raise ValueError(f"distill.teacher_run: {run} classifies {report['data']['labels']}, this recipe "
                         f"{ctx.data.labels}: a teacher must answer in the same classes, in the same order")  # fmt: skip
    theirs = load_recipe(run / "recipe.yaml")
    features = ctx.features_as(theirs.data.features)
    if not (np.array_equal(features.train.y, ctx.data.train.y)
            and np.array_equal(features.train.speakers, ctx.data.train.speakers)):  # fmt: skip
        raise RuntimeError("the teacher's features are not of the same training clips")
    model = tf.keras.models.load_model(path)
    accuracy = next(s["accuracy"] for s in reversed(report["stages"]) if s.get("accuracy") is not None)
    ctx.log(f"distilling from {run} ({theirs.model.arch} on {theirs.data.features.kind}; test accuracy "
            f"{accuracy:.4f}), T={cfg.distill.temperature}, alpha={cfg.distill.alpha}")  # fmt: skip
    teacher = Teacher([model], cfg.distill.temperature, cfg.distill.alpha, inputs=[features.train.x])
    return teacher, {"teacher_run": {
        "run": str(run), "recipe": report["recipe"], "arch": theirs.model.arch, "features": theirs.data.features.kind,
        "accuracy": accuracy, "model_sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
    }}  # fmt: skip


class KeepZeros(tf.keras.callbacks.Callback):
    """Re-zero the weights unstructured pruning removed after every step, as TF-MOT's pruning wrapper does:
    otherwise fine-tuning would grow them back and undo the sparsity."""

    def __init__(self, model: Any):
        super().__init__()
        self.masks = [(w, tf.cast(w != 0, w.dtype)) for w in model.trainable_weights if "kernel" in w.name]

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        for weight, mask in self.masks:
            weight.assign(weight * mask)
