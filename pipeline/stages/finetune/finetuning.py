"""The finetune stage's work: TensorFlow/Keras, through the train stage's loop."""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from pipeline.stages import StageContext
from pipeline.stages.finetune import FinetuneConfig
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
    teacher, taught = None, []
    if cfg.distill is not None:
        sources = [ctx.earlier[cfg.distill.teacher], *teachers]
        for i, source in enumerate(sources):
            seed = source.meta["seed"] if i else ctx.recipe.seed
            taught.append({"stage": cfg.distill.teacher, "seed": seed, "accuracy": source.meta["metrics"]["accuracy"]})
            ctx.log(f"distilling from the '{cfg.distill.teacher}' model at seed {seed} (T={cfg.distill.temperature}, "
                    f"alpha={cfg.distill.alpha}): test accuracy {taught[-1]['accuracy']:.4f}")  # fmt: skip
        models = [tf.keras.models.load_model(source.file(MODEL)) for source in sources]
        teacher = Teacher(models, cfg.distill.temperature, cfg.distill.alpha, cfg.distill.consistent)
    metrics = train_and_save(model, cfg, ctx, callbacks, teacher)
    return metrics | ({"teachers": taught} if len(taught) > 1 else {})


class KeepZeros(tf.keras.callbacks.Callback):
    """Re-zero the weights unstructured pruning removed after every step, as TF-MOT's pruning wrapper does:
    otherwise fine-tuning would grow them back and undo the sparsity."""

    def __init__(self, model: Any):
        super().__init__()
        self.masks = [(w, tf.cast(w != 0, w.dtype)) for w in model.trainable_weights if "kernel" in w.name]

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        for weight, mask in self.masks:
            weight.assign(weight * mask)
