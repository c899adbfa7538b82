"""finetune: train the previous stage's model again (after pruning: the physically narrower one), optionally
distilling from an earlier stage's model. The work is in `finetuning.py`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field

from pipeline.markdown import pct
from pipeline.schema import Strict
from pipeline.stages.train import TrainConfig

if TYPE_CHECKING:
    from pipeline.recipe import Recipe
    from pipeline.stages import StageContext


class DistillConfig(Strict):
    """Knowledge distillation (Hinton et al. 2015): the student also matches a teacher's softened outputs."""

    teacher: str = Field(description="an earlier stage whose Keras model teaches, e.g. train (before pruning)")
    temperature: float = Field(4.0, gt=0, le=100)
    alpha: float = Field(0.5, ge=0, le=1, description="weight of the hard-label loss; 1 - alpha goes to the teacher")
    teachers: int = Field(
        1, ge=1, le=8,
        description="models whose averaged outputs teach: the teacher stage's and the first stage retrained at "
        "teachers - 1 other seeds (the first of them is the explain control twin, trained once for both)",
    )  # fmt: skip
    consistent: bool = Field(
        False,
        description="the teachers score every augmented batch the student sees (function matching, Beyer et al. "
        "2022) instead of the clean clips once; needs `augment`",
    )


class FinetuneConfig(TrainConfig):
    """Training again, on the (physically pruned) model the previous stage produced."""

    consumes: ClassVar[str | None] = "keras"
    epochs: int = Field(10, ge=1, le=10_000)
    lr: float = Field(5e-4, gt=0, le=10)
    distill: DistillConfig | None = None

    def check_recipe(self, recipe: Recipe) -> tuple[tuple[str | int, ...], str] | None:
        if self.distill is not None and self.distill.consistent and self.augment is None:
            return ("distill", "consistent"), "consistent teaching scores the augmented batches: set `augment` too"
        first = recipe.stages[0].name
        if self.distill is not None and self.distill.teachers > 1 and self.distill.teacher != first:
            return ("distill", "teachers"), (
                f"{self.distill.teachers} teachers retrain the chain's first stage ('{first}') at other seeds, "
                f"so the teacher must be '{first}', not '{self.distill.teacher}'"
            )
        return None


Config = FinetuneConfig


def run(cfg: FinetuneConfig, ctx: StageContext) -> dict[str, Any]:
    from pipeline.stages.finetune.finetuning import finetune

    return finetune(cfg, ctx)


def report(report: dict[str, Any]) -> list[str]:
    """Who taught the fine-tuned model, when several trainings did (`distill.teachers`)."""
    entry = next((s for s in report["stages"] if s["name"] == "finetune"), None)
    if entry is None or not entry.get("teachers"):
        return []
    teachers = entry["teachers"]
    each = ", ".join(f"seed {t['seed']} ({pct(t['accuracy'])})" for t in teachers)
    return [
        "## Distillation",
        "",
        f"`finetune` learnt from the averaged outputs of {len(teachers)} trainings of `{teachers[0]['stage']}` on the "
        f"same data, at {each} on the synthetic test; it scores {pct(entry.get('accuracy'))}. The second is the "
        "explain control's twin when the control is on: drift beyond retrain noise then includes the fine-tuned "
        "model's pull toward the twin, so it tends to read more drift, not less.",
        "",
    ]
