"""export: the deployable model with what is needed to feed it and read it (labels, quantization, features)."""

from __future__ import annotations

import shutil
import zlib
from typing import TYPE_CHECKING, Any, ClassVar

from pipeline.engine.store import PREDICTIONS, sha256_file, write_json
from pipeline.runtimes.litert import io_details
from pipeline.schema import StageConfig

if TYPE_CHECKING:
    from pipeline.stages import StageContext

MODEL = "model.tflite"
INFO = "model_info.json"
LABELS = "labels.txt"


class ExportConfig(StageConfig):
    consumes: ClassVar[str | None] = "tflite"
    produces: ClassVar[str] = "export"


Config = ExportConfig


def run(cfg: ExportConfig, ctx: StageContext) -> dict[str, Any]:
    from pipeline.stages.quantize import MODEL as QUANTIZED

    shutil.copyfile(ctx.input.file(QUANTIZED), ctx.out / MODEL)
    shutil.copyfile(ctx.input.file(PREDICTIONS), ctx.out / PREDICTIONS)
    (ctx.out / LABELS).write_text("".join(f"{label}\n" for label in ctx.data.labels))
    model = (ctx.out / MODEL).read_bytes()
    recipe = ctx.recipe
    info = {
        "recipe": recipe.name,
        "recipe_fingerprint": recipe.fingerprint(),
        "labels": ctx.data.labels,
        "features": recipe.data.features.model_dump(mode="json") | {"frames": recipe.data.features.frames},
        **io_details(model),
        "bytes": len(model),
        "sha256": sha256_file(ctx.out / MODEL),
    }
    write_json(ctx.out / INFO, info)
    upstream = ctx.input.meta.get("metrics", {})
    # The exported bytes are the quantized model's bytes: its measured accuracy carries over unchanged.
    keep = ("accuracy", "per_class", "per_voice", "params", "macs", "runtime")
    # Deflated size: what storage that compresses (OTA images, APK assets) pays; zeros from sparsity show here.
    return {k: upstream[k] for k in keep if k in upstream} | {
        "bytes": len(model),
        "deflated_bytes": len(zlib.compress(model, 9)),
    }
