"""finetune: train the previous stage's model again (after pruning: the physically narrower one), optionally
distilling from an earlier stage's model. The work is in `finetuning.py`."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field, model_validator

from pipeline.analysis.markdown import pct
from pipeline.schema import Strict
from pipeline.stages.train import TrainConfig

if TYPE_CHECKING:
    from pipeline.recipe import Recipe
    from pipeline.stages import StageContext


class DistillConfig(Strict):
    """Knowledge distillation (Hinton et al. 2015): the student also matches a teacher's softened outputs."""

    teacher: str | None = Field(
        None, description="an earlier stage whose Keras model teaches, e.g. train (before pruning)"
    )
    teacher_run: Path | None = Field(
        None,
        description="or a finished run's folder (e.g. runs/kws_phone/latest, relative to the recipe): its last Keras "
        "model teaches, fed its own features of the very same clips (another architecture, other features)",
    )
    temperature: float = Field(4.0, gt=0, le=100, description="softens teacher and student outputs; higher is softer")
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

    @model_validator(mode="after")
    def _one_teacher(self) -> DistillConfig:
        if (self.teacher is None) == (self.teacher_run is None):
            raise ValueError("name one teacher: `teacher: <earlier stage>` or `teacher_run: <run folder>`")
        if self.teacher_run is not None and (self.teachers > 1 or self.consistent):
            raise ValueError("teacher_run teaches alone and on clean clips: no `teachers` or `consistent`")
        return self


def teacher_from_run(run: Path) -> tuple[Path, dict[str, Any]]:
    """(the run's last Keras model, its report) for `distill.teacher_run`; a clear error for anything else."""
    report_file = run / "report.json"
    if not report_file.is_file():
        raise FileNotFoundError(
            f"{run} is not a finished run's folder (no report.json): run the teacher's recipe first"
        )
    report = json.loads(report_file.read_text())
    keras = [run / "stages" / f"{i}-{s['name']}" / "model.keras" for i, s in enumerate(report["stages"], 1)]
    keras = [path for path in keras if path.is_file()]
    if not keras:
        raise FileNotFoundError(f"{run} holds no Keras model under stages/")
    return keras[-1], report


class FinetuneConfig(TrainConfig):
    """Training again, on the (physically pruned) model the previous stage produced."""

    consumes: ClassVar[str | None] = "keras"
    epochs: int = Field(10, ge=1, le=10_000, description="passes over the training split (at most, with patience)")
    lr: float = Field(5e-4, gt=0, le=10, description="Adam learning rate (the starting rate with lr_schedule cosine)")
    distill: DistillConfig | None = Field(
        None, description="also learn from a teacher's softened outputs (null: from the labels only)"
    )

    def outside_inputs(self, recipe: Recipe) -> dict[str, Any] | None:
        """A `teacher_run`'s model bytes: another run of the teacher's recipe retrains this stage."""
        if self.distill is None or self.distill.teacher_run is None:
            return None
        model, report = teacher_from_run(recipe.resolve_path(self.distill.teacher_run))
        return {"teacher_sha256": hashlib.sha256(model.read_bytes()).hexdigest(), "recipe": report["recipe"]}

    def check_recipe(self, recipe: Recipe) -> tuple[tuple[str | int, ...], str] | None:
        if self.distill is not None and self.distill.consistent and self.augment is None:
            return ("distill", "consistent"), "consistent teaching scores the augmented batches: set `augment` too"
        if self.distill is not None and self.distill.teacher_run is not None:
            try:
                teacher_from_run(recipe.resolve_path(self.distill.teacher_run))
            except FileNotFoundError as exc:
                return ("distill", "teacher_run"), str(exc)
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
    if entry is not None and entry.get("teacher_run"):
        t = entry["teacher_run"]
        return [
            "## Distillation",
            "",
            f"`finetune` learnt from another run's model: `{t['recipe']}` ({t['arch']} on {t['features']} features; "
            f"{pct(t['accuracy'])} on its own synthetic test), run `{t['run']}`, model SHA-256 {t['model_sha256'][:12]}… "
            f"It scored this recipe's training clips through its own features; the student scores "
            f"{pct(entry.get('accuracy'))}.",
            "",
        ]
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
