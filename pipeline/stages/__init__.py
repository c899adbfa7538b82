"""Stages: one folder each, found by `pipeline.plugins` like targets.

A stage package's `__init__` is light (its recipe schema, a `StageConfig` with `consumes`/`produces`, and `run`);
the work sits in a module beside it that `run` imports, so validating a recipe does not import TensorFlow.
``run(config, ctx) -> metrics`` reads ``ctx.input`` (the previous stage's artifact; ``ctx.earlier`` has the ones
before, e.g. a distillation teacher; ``ctx.retrain(k)`` trains the first stage again at another seed), writes its
files into ``ctx.out`` and returns JSON-able metrics (accuracy, params, macs, ...). The runner handles caching and
atomicity (the cache key covers the stage's import closure and runtime versions), so a stage only computes. Another
package adds a stage with an `edge_pipeline.stages` entry point.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

    from pipeline.data import FeatureSet
    from pipeline.engine.store import Artifact
    from pipeline.recipe import FeaturesConfig, Recipe


@dataclass
class StageContext:
    recipe: Recipe
    data: FeatureSet
    input: Artifact | None
    out: Path
    log: Callable[[str], None]
    progress: Callable[[str, int, int], None]
    earlier: dict[str, Artifact] = field(default_factory=dict)  # every earlier stage's output, by stage name
    # The chain's first stage trained again at its k-th other seed (cached; k = 1 is the explain control twin).
    retrain: Callable[[int], Artifact] | None = None
    # The same data set's features under other settings (same clips, same order), e.g. for another run's teacher.
    features_as: Callable[[FeaturesConfig], FeatureSet] | None = None
    # Arrays computed from this data set, kept in the runner's cache: (kind, what else they depend on, how to compute
    # them) -> the arrays, computed once for every stage and rerun that asks (e.g. a frozen embedding's outputs).
    # The key is the data set's and `depends`, nothing more: name the computing code's fingerprint there too.
    cached: Callable[[str, dict, Callable[[], dict[str, np.ndarray]]], dict[str, np.ndarray]] | None = None
