"""train: fit the recipe's architecture on the training split, early-stopping on validation accuracy.

This package's `__init__` is the stage's plugin face (its schema and entry point) and imports nothing heavy:
validating a recipe must not pay for TensorFlow. The work is in `training.py`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from pipeline.schema import Range, StageConfig, Strict, ordered

if TYPE_CHECKING:
    from pipeline.stages import StageContext

MODEL = "model.keras"


class AugmentConfig(Strict):
    """Time shift and SpecAugment on the training batches' features (never on val/test). A model on a frozen
    embedding (`speech_embedding`) embeds `copies` augmented copies of every training clip once, before training,
    instead of drawing new ones every epoch: the embedding is what costs, and it never learns."""

    time_shift_frames: int = Field(0, ge=0, le=100, description="shift each clip by up to this many frames")
    time_masks: int = Field(0, ge=0, le=10, description="SpecAugment: bands of frames masked per clip")
    time_mask_frames: int = Field(5, ge=0, le=100, description="... each up to this wide")
    coefficient_masks: int = Field(0, ge=0, le=10, description="bands of feature coefficients masked per clip")
    coefficient_mask_width: int = Field(2, ge=0, le=40, description="... each up to this wide")
    mel_masks: int = Field(
        0, ge=0, le=10, description="SpecAugment's frequency masks: bands of mel channels flattened per clip"
    )
    mel_mask_bins: int = Field(8, ge=0, le=128, description="... each up to this many mel channels wide")
    mel_warp: Range = Field(
        (1.0, 1.0),
        description="vocal tract length perturbation: each clip's spectrum stretched along frequency by a factor "
        "drawn from this range (f -> factor * f), e.g. [0.9, 1.1]",
    )

    copies: int = Field(
        3,
        ge=1,
        le=32,
        description="models on a frozen embedding: augmented copies of each training clip, each embedded once (an "
        "epoch then passes over the clean clips and every copy); other models draw anew every epoch and ignore it",
    )

    _warp_range = field_validator("mel_warp")(ordered)

    @field_validator("mel_warp")
    @classmethod
    def _plausible_warp(cls, value: Range) -> Range:
        if not (0.5 <= value[0] and value[1] <= 2.0):
            raise ValueError(f"mel_warp must lie within [0.5, 2.0], got {list(value)}")
        return value

    @property
    def warps(self) -> bool:
        return self.mel_warp != (1.0, 1.0)

    @property
    def changes_clips(self) -> bool:
        masks = (self.time_masks and self.time_mask_frames, self.coefficient_masks and self.coefficient_mask_width)
        return bool(self.time_shift_frames or any(masks) or (self.mel_masks and self.mel_mask_bins) or self.warps)


class TrainConfig(StageConfig):
    consumes: ClassVar[str | None] = None
    produces: ClassVar[str] = "keras"
    epochs: int = Field(20, ge=1, le=10_000, description="passes over the training split (at most, with patience)")
    batch_size: int = Field(100, ge=1, le=100_000, description="clips per training step")
    lr: float = Field(1e-3, gt=0, le=10, description="Adam learning rate (the starting rate with lr_schedule cosine)")
    patience: int = Field(4, ge=0, le=10_000, description="early-stopping patience on validation accuracy; 0 disables")
    lr_schedule: Literal["constant", "cosine"] = Field(
        "constant", description="cosine: lr decays to 0 over `epochs` (set the epochs you mean to spend)"
    )
    augment: AugmentConfig | None = Field(None, description="time shift and SpecAugment on training batches")
    label_smoothing: float = Field(
        0.0, ge=0, lt=1, description="move this much of each hard label's weight evenly onto all classes"
    )
    weight_average: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="end on an exponential moving average of the weights, this decay per step (0.999: about the "
        "last 1,000 steps), BatchNorm statistics recomputed for it; needs patience 0",
    )

    @model_validator(mode="after")
    def _one_ending(self) -> TrainConfig:
        if self.weight_average is not None and self.patience:
            raise ValueError(
                "weight_average and patience both choose the weights training ends on (the average, or the best "
                "epoch's); set patience: 0 to use weight_average"
            )
        return self


Config = TrainConfig


def run(cfg: TrainConfig, ctx: StageContext) -> dict[str, Any]:
    from pipeline.stages.train.training import train

    return train(cfg, ctx)
