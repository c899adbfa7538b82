"""quantize: full-integer int8 with a representative data set from the training split (int8 in and out).
The work is in `quantization.py`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field

from pipeline.schema import StageConfig

if TYPE_CHECKING:
    from pipeline.stages import StageContext

MODEL = "model.tflite"


class QuantizeConfig(StageConfig):
    consumes: ClassVar[str | None] = "keras"
    produces: ClassVar[str] = "tflite"
    mode: Literal["int8"] = Field("int8", description="only int8: full integer, int8 input and output")
    calibration_samples: int = Field(
        500, ge=1, le=100_000, description="training clips the activation ranges are calibrated on"
    )


Config = QuantizeConfig


def run(cfg: QuantizeConfig, ctx: StageContext) -> dict[str, Any]:
    from pipeline.stages.quantize.quantization import quantize

    return quantize(cfg, ctx)
