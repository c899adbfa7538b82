"""finetune: train the previous stage's model again (after pruning: the physically narrower one), optionally
distilling from an earlier stage's model. The work is in `finetuning.py`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field

from pipeline.schema import Strict
from pipeline.stages.train import TrainConfig

if TYPE_CHECKING:
    from pipeline.stages import StageContext


class DistillConfig(Strict):
    """Knowledge distillation (Hinton et al. 2015): the student also matches a teacher's softened outputs."""

    teacher: str = Field(description="an earlier stage whose Keras model teaches, e.g. train (before pruning)")
    temperature: float = Field(4.0, gt=0, le=100)
    alpha: float = Field(0.5, ge=0, le=1, description="weight of the hard-label loss; 1 - alpha goes to the teacher")


class FinetuneConfig(TrainConfig):
    """Training again, on the (physically pruned) model the previous stage produced."""

    consumes: ClassVar[str | None] = "keras"
    epochs: int = Field(10, ge=1, le=10_000)
    lr: float = Field(5e-4, gt=0, le=10)
    distill: DistillConfig | None = None


Config = FinetuneConfig


def run(cfg: FinetuneConfig, ctx: StageContext) -> dict[str, Any]:
    from pipeline.stages.finetune.finetuning import finetune

    return finetune(cfg, ctx)
