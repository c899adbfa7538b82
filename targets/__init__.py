"""Deployment targets: one module each, behind one small interface.

A target module defines ``compile(config, ctx)`` which writes the
target's artifacts into ``ctx.out``, and ``measure(config, ctx) -> dict`` which measures them on the target's
own runtime. ``measure`` returns at least::

    {"flash_bytes", "ram_bytes", "latency_ms": {"median", "p90", "runs", "runtime"}, "accuracy"}

Every number comes from a runtime that ran; anything estimated says so in its own field with its method.

`compile`'s output is cached like any step's; `measure` is re-run whenever the user asks for fresh numbers
(`pipeline run --remeasure`, nightly), and always after it could not reach a device it was asked to use
(`ctx.unavailable(...)`): a phone plugged in since must be measured, not remembered as absent.

This package imports nothing heavy itself: child processes (`python -m targets.openvino_child`) import it first.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipeline.data import FeatureSet
    from pipeline.recipe import Recipe
    from pipeline.store import Artifact

TARGETS = {"tflm": "targets.tflm", "android": "targets.android", "openvino": "targets.openvino"}


@dataclass
class TargetContext:
    recipe: Recipe
    data: FeatureSet
    export: Artifact  # the export stage's artifact: model.tflite, model_info.json, labels.txt
    out: Path
    log: Callable[[str], None]
    progress: Callable[[str, int, int], None]
    float_model: Path | None = None  # the float Keras model the int8 export was made from (for float runtimes)
    unreachable: list[str] = field(default_factory=list)

    def unavailable(self, reason: str) -> None:
        """A device the recipe names could not be reached: say so, and do not reuse this measurement next run."""
        self.unreachable.append(reason)
        self.log(reason)


def latency_summary(times_ms: Any, runtime: str) -> dict[str, Any]:
    """The report's latency fields from raw per-run times; `runtime` says what measured them and how."""
    import numpy as np

    times = np.asarray(times_ms, dtype=float)
    return {"median": float(np.median(times)), "p90": float(np.percentile(times, 90)), "runs": int(len(times)),
            "runtime": runtime}  # fmt: skip


def load_target(name: str) -> ModuleType:
    return importlib.import_module(TARGETS[name])
