"""Stages: one module each, all with the same small interface.

A stage module defines ``run(config, ctx) -> metrics``: it reads ``ctx.input`` (the previous stage's artifact; ``ctx.earlier`` has the
ones before, e.g. a distillation teacher), writes its files into
``ctx.out`` and returns JSON-able metrics (accuracy, params, macs, ...). The runner handles caching and
atomicity (the cache key covers the module's import closure and runtime versions), so a stage only computes.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

from pipeline.data import FeatureSet
from pipeline.recipe import Recipe
from pipeline.store import Artifact

STAGES = {
    "train": "pipeline.stages.train",
    "prune": "pipeline.stages.prune",
    "finetune": "pipeline.stages.finetune",
    "quantize": "pipeline.stages.quantize",
    "export": "pipeline.stages.export",
}


@dataclass
class StageContext:
    recipe: Recipe
    data: FeatureSet
    input: Artifact | None
    out: Path
    log: Callable[[str], None]
    progress: Callable[[str, int, int], None]
    earlier: dict[str, Artifact] = field(default_factory=dict)  # every earlier stage's output, by stage name


def load_stage(name: str) -> ModuleType:
    """Import lazily: `pipeline validate` must not pay for TensorFlow."""
    return importlib.import_module(STAGES[name])
