"""The plugin registry: stages and deployment targets, found by folder or by entry point.

Stages are the folders of `pipeline/stages/` (see that package for their interface) plus the `edge_pipeline.stages`
entry points; a stage may add its own report section with ``report(run_report) -> list[str]`` (the whole run's
report, since a stage's section compares it with the others). Targets are described below.

A target is one package under `targets/` (the built-ins: `targets/tflm/`, `targets/android/`, ...), or any module
another installed package names in the `edge_pipeline.targets` entry-point group:

    [project.entry-points."edge_pipeline.targets"]
    my_npu = "my_package.my_npu"

The recipe key is the folder's (or entry point's) name. A target module defines:

- ``Config``: its recipe schema, a `pipeline.schema.Strict` model with a ``budgets: BudgetsConfig`` field;
- ``compile(config, ctx)``: writes what it deploys into ``ctx.out`` (cached like a stage);
- ``measure(config, ctx) -> dict``: measures it on its own runtime (re-run by ``--remeasure`` and nightly), with
  ``figures`` typed by `pipeline.measurement.figures`;

and optionally:

- ``report(row) -> list[str]``: its own Markdown section in the report;
- ``explain_models(folder) -> list[ModelRef]``: the models it deploys, for the explain section and field tests.

Plugins sit below the recipe, the runner and the report, and import none of them.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from pipeline.runtimes import ModelRef

if TYPE_CHECKING:
    import numpy as np

    from pipeline.data import FeatureSet
    from pipeline.engine.store import Artifact
    from pipeline.recipe import Recipe


@dataclass
class TargetContext:
    """What a target's `compile` and `measure` get besides their config."""

    recipe: Recipe
    data: FeatureSet
    export: Artifact  # the export stage's artifact: model.tflite, model_info.json, labels.txt
    out: Path
    log: Callable[[str], None]
    progress: Callable[[str, int, int], None]
    float_model: Path | None = None  # the float Keras model the int8 export was made from (for float runtimes)
    unreachable: list[str] = field(default_factory=list)
    # float32 audio [n, samples] in [-1, 1) -> the model's features, computed exactly as training computed them
    features: Callable[[np.ndarray], np.ndarray] | None = None
    # (split, streaming settings) -> the recipe's synthetic stream of that split (`pipeline.streams`) and the model's
    # input for every window at the recipe's stride; None without a `streaming:` section
    stream: Callable[[str, Any], tuple[Any, np.ndarray]] | None = None

    def unavailable(self, reason: str) -> None:
        """A device the recipe names could not be reached: say so, and do not reuse this measurement next run."""
        self.unreachable.append(reason)
        self.log(reason)


class PluginError(RuntimeError):
    """A plugin that cannot be used, named with what is wrong."""


STAGE_GROUP = "edge_pipeline.stages"
TARGET_GROUP = "edge_pipeline.targets"
REQUIRED = {"stage": ("Config", "run"), "target": ("Config", "compile", "measure")}


def _discover(kind: str, package: str, group: str) -> dict[str, ModuleType]:
    """The folders of `package` (sorted), then the modules other distributions name in entry-point `group`."""
    builtin = importlib.import_module(package)  # at run time: no plugin's code is part of the recipe's cache key
    found: dict[str, ModuleType] = {}
    for info in sorted(pkgutil.iter_modules(builtin.__path__), key=lambda i: i.name):
        if info.ispkg and not info.name.startswith("_"):
            found[info.name] = _checked(kind, info.name, importlib.import_module(f"{package}.{info.name}"))
    for entry in entry_points(group=group):
        if entry.name in found:
            raise PluginError(f"{kind} '{entry.name}' from entry point {entry.value} clashes with a built-in {kind}")
        try:
            module = entry.load()
        except Exception as exc:  # noqa: BLE001 - any import failure of a third-party plugin is named, not raised raw
            raise PluginError(f"{kind} '{entry.name}' ({entry.value}) failed to import: {exc}") from exc
        found[entry.name] = _checked(kind, entry.name, module)
    return found


def _checked(kind: str, name: str, module: ModuleType) -> ModuleType:
    missing = [attr for attr in REQUIRED[kind] if not hasattr(module, attr)]
    if missing:
        raise PluginError(f"{kind} '{name}' ({module.__name__}) does not define {', '.join(missing)}")
    if kind == "target" and "budgets" not in module.Config.model_fields:
        raise PluginError(f"target '{name}' ({module.__name__}): its Config has no `budgets` field")
    if kind == "stage" and not hasattr(module.Config, "produces"):
        raise PluginError(f"stage '{name}' ({module.__name__}): its Config is not a pipeline.schema.StageConfig")
    return module


@functools.cache
def stages() -> dict[str, ModuleType]:
    """Every stage by recipe key: `pipeline/stages/<name>/`, then `edge_pipeline.stages` entry points."""
    return _discover("stage", "pipeline.stages", STAGE_GROUP)


@functools.cache
def targets() -> dict[str, ModuleType]:
    """Every target by recipe key: `targets/<name>/`, then `edge_pipeline.targets` entry points."""
    return _discover("target", "targets", TARGET_GROUP)


def stage(name: str) -> ModuleType:
    return _one("stage", name, stages())


def target(name: str) -> ModuleType:
    return _one("target", name, targets())


def _one(kind: str, name: str, known: dict[str, ModuleType]) -> ModuleType:
    if name not in known:
        raise PluginError(f"no {kind} '{name}' is installed (known: {', '.join(known)})")
    return known[name]


def find_models(stages: list[tuple[str, Path]], targets_: list[tuple[str, Path]]) -> list[ModelRef]:
    """Every model of a run, in chain order, from stage and target folders (cache entries or a run dir)."""
    models = []
    for name, folder in stages:
        if (folder / "model.keras").exists():
            models.append(ModelRef(name, "keras", folder / "model.keras", "Keras float32"))
        elif (folder / "model.tflite").exists() and name != "export":  # export is quantize's model again
            models.append(ModelRef(name, "tflite", folder / "model.tflite", "LiteRT"))
    for name, folder in targets_:
        plugin = targets().get(name)
        if plugin is not None and hasattr(plugin, "explain_models"):
            models += plugin.explain_models(folder)
    return models
