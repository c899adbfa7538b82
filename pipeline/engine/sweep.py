"""Sweeps: the most accurate model within a device's budgets, found by Ray Tune over variants of one recipe.

A sweep file names a base recipe, a search space over any recipe key (`stages.prune.target`, `model.filters`,
`targets.tflm.memory_plan`, ...), objectives read from each trial's report (`tflm.accuracy`, `tflm.ram_kb`,
`field.real_speech_dev.tflm`, ...), budgets, and a search method: grid, random, or multi-objective Optuna through
Ray Tune's `OptunaSearch`. Each trial is a whole `pipeline run` of one variant, in a Ray worker; every trial uses the
same content-addressed cache, whose per-entry lock makes a stage that several trials share (the `train` stage of
every variant that differs only downstream) get computed once. Ray starts in-process unless `--address` or
`RAY_ADDRESS` names a cluster; then the cache must sit on a path every node sees (`--cache`).

Results: `pareto.json` (every trial: config, figures, state, reason when it failed; the non-dominated set and the
best trial within budgets), `pareto.png` / `pareto.html`, `best.yaml` (a runnable recipe) and each trial's run
folder under `trials/`. An interrupted sweep resumes from Ray Tune's experiment state without redoing finished
trials; a failing trial is recorded with its reason and the sweep goes on.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, field_validator, model_validator

from pipeline.budgets import MEASURES, BudgetsConfig
from pipeline.recipe import (
    Problem,
    Recipe,
    RecipeError,
    RecipeLoader,
    _line_index,
    _nearest_line,
    format_path,
    parse_document,
    read_text,
)
from pipeline.schema import MAX_THREADS, Strict, located, suggest

SWEEP_MARKER = ".edge-pipeline-sweep"  # in every folder `pipeline sweep` wrote: it may only resume such a folder
# An objective's figure on a target -> the budget key whose reader (`pipeline.budgets.MEASURES`) extracts it.
TARGET_FIGURES = {"accuracy": "min_accuracy", "flash_kb": "flash_kb", "ram_kb": "ram_kb", "latency_ms": "latency_ms"}


class RangeSpec(Strict):
    """A numeric axis: integers when low, high (and step) are integers; `step` makes it a grid."""

    low: float = Field(description="lowest value of the axis")
    high: float = Field(description="highest value of the axis (included)")
    step: float | None = Field(
        None, gt=0, description="spacing of the values (a grid needs one); null: any value in range (random, optuna)"
    )
    log: bool = Field(False, description="random and optuna: draw on a log scale (needs low > 0)")

    @model_validator(mode="after")
    def _ordered(self) -> RangeSpec:
        if self.low > self.high:
            raise ValueError(f"low {self.low} is above high {self.high}")
        if self.log and self.low <= 0:
            raise ValueError("a log range needs low > 0")
        return self

    @property
    def integer(self) -> bool:
        return all(float(v).is_integer() for v in (self.low, self.high, self.step or 1))

    def values(self) -> list[float | int]:
        if self.step is None:
            raise ValueError("needs a `step` (or a list of values) for a grid search")
        count = int(math.floor((self.high - self.low) / self.step + 1e-9)) + 1
        values = [self.low + i * self.step for i in range(count)]
        return [int(v) for v in values] if self.integer else [round(v, 12) for v in values]


class SearchConfig(Strict):
    method: Literal["grid", "random", "optuna"] = Field(
        "grid", description="grid (every combination), random, or optuna (multi-objective, Ray Tune's OptunaSearch)"
    )
    samples: int = Field(8, ge=1, le=10_000, description="trials for random and optuna (grid: every combination)")
    seed: int = Field(0, ge=0, lt=2**32, description="seed of the random and optuna searches")


class ResourcesConfig(Strict):
    cpus_per_trial: int = Field(1, ge=1, le=MAX_THREADS, description="Ray CPUs per trial; TensorFlow's threads too")
    max_concurrent: int | None = Field(None, ge=1, le=10_000, description="default: the cluster's CPUs / per trial")


class SweepConfig(Strict):
    name: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        max_length=64,
        description="names the default output folder (runs/sweeps/<name>) and Ray Tune's experiment",
    )
    recipe: Path = Field(description="the base recipe, relative to the sweep file")
    set: dict[str, Any] = Field(default_factory=dict, description="recipe keys every trial overrides the same way")
    space: dict[str, list[Any] | RangeSpec] = Field(
        min_length=1, description="axes: a dotted recipe key (stages.prune.target) and its values or a range"
    )
    objectives: dict[str, Literal["max", "min"]] = Field(
        min_length=1,
        description="figures trials are judged on, max or min: tflm.accuracy, <stage>.accuracy, field.<set>.<model>",
    )
    budgets: dict[str, BudgetsConfig] = Field(default_factory=dict, description="per target, over the recipe's own")
    search: SearchConfig = Field(SearchConfig(), description="how trials are chosen")
    resources: ResourcesConfig = Field(ResourcesConfig(), description="CPUs per trial and how many trials run at once")

    @field_validator("space")
    @classmethod
    def _axes(cls, space: dict[str, Any]) -> dict[str, Any]:
        for key, axis in space.items():
            if isinstance(axis, list) and not axis:
                raise located(("space", key), "an axis needs at least one value")
            if isinstance(axis, list) and len({json.dumps(v, sort_keys=True) for v in axis}) != len(axis):
                raise located(("space", key), "a value is listed twice")
        return space


class SweepError(RecipeError):
    """A sweep file's problems, located like a recipe's (`file:line: key: message`)."""


# --- recipe variants ---------------------------------------------------------------------------------------


def _entry_index(entries: list[Any], name: str, what: str) -> int:
    names = [next(iter(e)) if isinstance(e, dict) and len(e) == 1 else "?" for e in entries]
    if name.isdigit() and int(name) < len(entries):
        return int(name)
    if name not in names:
        raise KeyError(f"the recipe has no {what} '{name}'{suggest(name, names)}")
    return names.index(name)


def apply(raw: dict[str, Any], key: str, value: Any) -> None:
    """Set dotted `key` in a recipe's raw mapping: `stages.<stage name>.<field>`, `targets.<target>.<field>`,
    `model.filters`, `data.synthetic.noise_snr_db`, ... (missing mappings on the way are created)."""
    parts = key.split(".")
    node: Any = raw
    for i, part in enumerate(parts[:-1]):
        if i == 0 and part in ("stages", "targets") and isinstance(node.get(part), list):
            entries = node[part]
            j = _entry_index(entries, parts[1], part[:-1])
            entry = entries[j]
            name = next(iter(entry))
            if entry[name] is None:
                entry[name] = {}
            node = entry[name]
            rest = parts[2:]
            for sub in rest[:-1]:
                node = node.setdefault(sub, {})
                if not isinstance(node, dict):
                    raise KeyError(f"'{sub}' in '{key}' is not a mapping in the recipe")
            if not rest:
                raise KeyError(f"'{key}' names a {part[:-1]}, not one of its keys (e.g. '{key}.epochs')")
            node[rest[-1]] = value
            return
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise KeyError(f"'{part}' in '{key}' is not a mapping in the recipe")
    node[parts[-1]] = value


def variant(raw: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(raw)
    for key, value in overrides.items():
        apply(out, key, value)
    return out


def _budget_overrides(budgets: dict[str, BudgetsConfig]) -> dict[str, Any]:
    return {
        f"targets.{target}.budgets.{k}": v
        for target, cfg in budgets.items()
        for k, v in cfg.model_dump(exclude_defaults=True).items()
    }


class Sweep:
    """A validated sweep: its config, the base recipe's raw mapping, and where its relative paths resolve."""

    def __init__(self, config: SweepConfig, file: Path, raw: dict[str, Any], base_dir: Path, lines: dict):
        self.config, self.file, self.raw, self.base_dir, self._lines = config, file, raw, base_dir, lines

    def fixed(self) -> dict[str, Any]:
        """Overrides every trial shares: `set`, then the sweep's budgets."""
        return dict(self.config.set) | _budget_overrides(self.config.budgets)

    def recipe(self, point: dict[str, Any], fixed: dict[str, Any] | None = None) -> Recipe:
        """The trial's recipe: base + fixed overrides + this point of the space, validated."""
        data = variant(self.raw, (self.fixed() if fixed is None else fixed) | point)
        return Recipe.model_validate(data).with_base_dir(self.base_dir)

    def grid(self) -> list[dict[str, Any]]:
        axes = {k: (v if isinstance(v, list) else v.values()) for k, v in self.config.space.items()}
        return [dict(zip(axes, combo, strict=True)) for combo in itertools.product(*axes.values())]

    def line(self, *path: str) -> int | None:
        return _nearest_line(self._lines, path)


def load_sweep(path: str | Path) -> Sweep:
    """A sweep file, validated with its base recipe: every axis value and every objective is tried against the
    recipe, and a problem is reported at the sweep file's line that causes it."""
    from pipeline.recipe import load_recipe

    path = Path(path)
    text = read_text(path, "sweep")
    config = parse_document(text, path, SweepConfig, "a sweep is a YAML mapping (name, recipe, space, objectives)")
    loader = RecipeLoader(text)
    try:
        lines = _line_index(loader.get_single_node())
    finally:
        loader.dispose()
    recipe_path = (path.resolve().parent / config.recipe).resolve()
    problems: list[Problem] = []
    try:
        base = load_recipe(recipe_path)
    except RecipeError as exc:
        raise SweepError(path, [Problem(("recipe",), f"{config.recipe}: {exc}", lines.get(("recipe",)))]) from None
    raw = yaml.load(read_text(recipe_path, "recipe"), Loader=RecipeLoader)
    sweep = Sweep(config, path, raw, recipe_path.parent, lines)

    targets = [t.name for t in base.targets]
    for name in config.budgets:
        if name not in targets:
            problems.append(Problem(("budgets", name), f"no target '{name}' in the recipe{suggest(name, targets)}",
                                    sweep.line("budgets", name)))  # fmt: skip
    fixed = dict(config.set) | _budget_overrides({k: v for k, v in config.budgets.items() if k in targets})

    def attempt(where: tuple, overrides: dict[str, Any]) -> None:
        try:
            sweep.recipe(overrides, fixed)
        except KeyError as exc:
            problems.append(Problem(where, str(exc.args[0]), sweep.line(*where)))
        except RecipeError as exc:
            problems.append(Problem(where, exc.problems[0].message, sweep.line(*where)))
        except ValueError as exc:  # pydantic's ValidationError: name the recipe key it reached
            err = exc.errors()[0] if hasattr(exc, "errors") else None
            detail = f"{format_path(tuple(err['loc']))}: {err['msg']}" if err else str(exc)
            problems.append(Problem(where, f"makes the recipe invalid: {detail}", sweep.line(*where)))

    for key, value in config.set.items():
        attempt(("set", key), {key: value})
    if not any(p.path[0] == "set" for p in problems):
        for key, axis in config.space.items():
            if isinstance(axis, RangeSpec):
                if config.search.method == "grid" and axis.step is None:
                    problems.append(Problem(("space", key), "a grid needs a list or a range with `step`",
                                            sweep.line("space", key)))  # fmt: skip
                    continue
                candidates = [int(axis.low), int(axis.high)] if axis.integer else [axis.low, axis.high]
            else:
                candidates = axis
            for value in candidates:
                before = len(problems)
                attempt(("space", key), {key: value})
                if len(problems) > before:
                    problems[-1] = Problem(problems[-1].path, f"{value!r}: {problems[-1].message}", problems[-1].line)
                    break
    for metric in config.objectives:
        problem = _metric_problem(metric, base)
        if problem:
            problems.append(Problem(("objectives", metric), problem, sweep.line("objectives", metric)))
    if problems:
        raise SweepError(path, sorted(problems, key=lambda p: p.line or 0))
    return sweep


def _metric_problem(metric: str, recipe: Recipe) -> str | None:
    parts = metric.split(".")
    targets, stages = [t.name for t in recipe.targets], [s.name for s in recipe.stages]
    fields = [f.name for f in recipe.data.field_tests]
    if parts[0] == "field":
        if len(parts) != 3:
            return "a field objective is field.<field test>.<target or stage> (its accuracy on that set)"
        if parts[1] not in fields:
            return f"no field test '{parts[1]}' in the recipe{suggest(parts[1], fields)}"
        if parts[2] not in targets + stages:
            return f"no target or stage '{parts[2]}'{suggest(parts[2], targets + stages)}"
        return None
    if len(parts) != 2:
        return "an objective is <target>.<figure> (accuracy, flash_kb, ram_kb, latency_ms), <stage>.accuracy or field.<set>.<model>"
    if parts[0] in stages and parts[0] not in targets:
        return None if parts[1] == "accuracy" else f"a stage reports accuracy only, not '{parts[1]}'"
    if parts[0] not in targets:
        return f"no target or stage '{parts[0]}'{suggest(parts[0], targets + stages)}"
    if parts[1] not in TARGET_FIGURES:
        return f"unknown figure '{parts[1]}'{suggest(parts[1], TARGET_FIGURES)}"
    return None


def metric_value(report: dict[str, Any], metric: str) -> float | None:
    """An objective's value in a run's report.json (None when the run does not have it)."""
    parts = metric.split(".")
    if parts[0] == "field":
        models = (report.get("field_tests") or {}).get("models", [])
        row = next((m for m in models if m["model"] == parts[2]), None)
        return row["sets"][parts[1]]["accuracy"] if row and parts[1] in row["sets"] else None
    rows = {t["name"]: t for t in report["targets"]}
    if parts[0] in rows:
        value = MEASURES[TARGET_FIGURES[parts[1]]][0](rows[parts[0]])
        return None if value is None else float(value)
    stage = next((s for s in report["stages"] if s["name"] == parts[0]), None)
    return None if stage is None else stage.get("accuracy")


# --- Pareto front ------------------------------------------------------------------------------------------


def pareto_front(points: list[dict[str, float]], goals: dict[str, str]) -> list[int]:
    """Indices of the points no other point dominates (at least as good on every objective, better on one)."""

    def better_or_equal(a: dict[str, float], b: dict[str, float]) -> bool:
        return all((a[m] >= b[m]) if g == "max" else (a[m] <= b[m]) for m, g in goals.items())

    front = []
    for i, p in enumerate(points):
        dominated = any(
            j != i and better_or_equal(q, p) and any(q[m] != p[m] for m in goals) for j, q in enumerate(points)
        )
        if not dominated:
            front.append(i)
    return front


# --- running on Ray Tune -----------------------------------------------------------------------------------


def _trial(
    config: dict[str, Any], *, sweep_file: str, out: str, cache: str, objectives: dict[str, str], cpus: int
) -> None:
    """One trial in a Ray worker: the variant's whole pipeline run, its objectives reported to Tune."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from ray import tune

    from pipeline.engine.progress import Reporter
    from pipeline.engine.runner import run_recipe
    from pipeline.engine.store import write_atomic

    try:  # keep TensorFlow to this trial's share of the cores (a reused worker may have set it already)
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(cpus)
        tf.config.threading.set_inter_op_parallelism_threads(min(cpus, 2))
    except RuntimeError:
        pass
    sweep = load_sweep(sweep_file)
    point = dict(config)
    recipe = sweep.recipe(point)
    run_dir = Path(out) / "trials" / trial_name(point)
    recipe_file = run_dir.with_name(f"{run_dir.name}.yaml")  # the trial's own recipe, runnable on its own
    write_atomic(recipe_file, recipe_yaml(recipe, f"# Trial {run_dir.name} of sweep '{sweep.config.name}'.\n"))
    reporter = Reporter(quiet=True, log_file=run_dir.with_name(f".{run_dir.name}.log"))
    try:
        result = run_recipe(recipe, recipe_file, reporter, out=run_dir, cache=Path(cache))
    finally:
        reporter.close()
    metrics: dict[str, Any] = {"within_budgets": bool(result.report["ok"]), "run_dir": str(run_dir)}
    for metric in objectives:
        value = metric_value(result.report, metric)
        if value is None:
            raise ValueError(f"the run reports no '{metric}'")
        metrics[metric] = value
    metrics["budgets"] = [b["message"] for b in result.report["budgets"] if not b["ok"]]
    tune.report(metrics)


def trial_name(point: dict[str, Any]) -> str:
    """A folder name that says what the trial varied, stable across a resumed sweep."""
    import hashlib

    text = ",".join(f"{k.split('.')[-1]}={v}" for k, v in sorted(point.items()))
    safe = "".join(ch if ch.isalnum() or ch in "=,._-" else "_" for ch in text)[:80]
    return f"{safe}-{hashlib.sha256(json.dumps(point, sort_keys=True).encode()).hexdigest()[:6]}"


def _tune_space(sweep: Sweep) -> dict[str, Any]:
    from ray import tune

    space: dict[str, Any] = {}
    method = sweep.config.search.method
    for key, axis in sweep.config.space.items():
        if method == "grid":
            space[key] = tune.grid_search(axis if isinstance(axis, list) else axis.values())
        elif isinstance(axis, list):
            space[key] = tune.choice(axis)
        elif axis.integer and axis.log:
            space[key] = tune.lograndint(int(axis.low), int(axis.high) + 1)
        elif axis.integer:
            space[key] = tune.qrandint(int(axis.low), int(axis.high), int(axis.step or 1))
        elif axis.step is not None:
            space[key] = (tune.qloguniform if axis.log else tune.quniform)(axis.low, axis.high, axis.step)
        else:
            space[key] = (tune.loguniform if axis.log else tune.uniform)(axis.low, axis.high)
    return space


def _progress(total: int, echo: Callable[[str], None]) -> Any:
    """A Tune callback: one line whenever the count of done, running or failed trials changes."""
    from ray.tune import Callback

    class Progress(Callback):
        def __init__(self) -> None:
            self.states: dict[str, str] = {}

        def _show(self, trial: Any, state: str) -> None:
            self.states[trial.trial_id] = state
            counts = {s: sum(1 for v in self.states.values() if v == s) for s in ("done", "running", "failed")}
            echo(f"sweep: {counts['done']}/{total} done, {counts['running']} running, {counts['failed']} failed")

        def on_trial_start(self, iteration, trials, trial, **info):  # noqa: ANN001 - Tune's signature
            self._show(trial, "running")

        def on_trial_complete(self, iteration, trials, trial, **info):  # noqa: ANN001
            self._show(trial, "done")

        def on_trial_error(self, iteration, trials, trial, **info):  # noqa: ANN001
            self._show(trial, "failed")

    return Progress()


def run_sweep(
    sweep: Sweep,
    out: Path,
    cache: Path,
    address: str | None = None,
    echo: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run (or resume) the sweep on Ray Tune; write pareto.json/.png/.html and best.yaml into `out`."""
    import ray
    from ray import tune

    cfg = sweep.config
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    (out / SWEEP_MARKER).write_text(cfg.name + "\n")
    (out / "sweep.yaml").write_text(sweep.file.read_text())
    address = address or os.environ.get("RAY_ADDRESS")
    ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False,
             ignore_reinit_error=True, **({} if address else {"num_cpus": os.cpu_count() or 1}))  # fmt: skip
    try:
        cpus = cfg.resources.cpus_per_trial
        concurrent = cfg.resources.max_concurrent or max(1, int(ray.cluster_resources().get("CPU", 1)) // cpus)
        trainable = tune.with_resources(
            tune.with_parameters(
                _trial, sweep_file=str(sweep.file.resolve()), out=str(out), cache=str(Path(cache).resolve()),
                objectives=dict(cfg.objectives), cpus=cpus,
            ),
            {"cpu": cpus},
        )  # fmt: skip
        total = len(sweep.grid()) if cfg.search.method == "grid" else cfg.search.samples
        progress = _progress(total, echo)
        storage = out / "ray"
        experiment = storage / cfg.name
        if tune.Tuner.can_restore(str(experiment)):
            echo(f"sweep: resuming {experiment} (finished trials are kept)")
            tuner = tune.Tuner.restore(str(experiment), trainable, resume_errored=False, restart_errored=False)
        else:
            search_alg = None
            metrics = list(cfg.objectives)
            if cfg.search.method == "optuna":
                from ray.tune.search.optuna import OptunaSearch

                search_alg = OptunaSearch(metric=metrics, mode=[cfg.objectives[m] for m in metrics],
                                          seed=cfg.search.seed)  # fmt: skip
            elif cfg.search.method == "random":
                from ray.tune.search import BasicVariantGenerator

                search_alg = BasicVariantGenerator(random_state=cfg.search.seed)
            tuner = tune.Tuner(
                trainable,
                param_space=_tune_space(sweep),
                tune_config=tune.TuneConfig(
                    search_alg=search_alg, num_samples=1 if cfg.search.method == "grid" else cfg.search.samples,
                    max_concurrent_trials=concurrent,
                ),
                run_config=tune.RunConfig(
                    name=cfg.name, storage_path=str(storage), verbose=0, callbacks=[progress],
                    failure_config=tune.FailureConfig(max_failures=0, fail_fast=False),
                ),
            )  # fmt: skip
        grid = tuner.fit()
        trials = []
        for result in grid:
            point = {k: result.config[k] for k in cfg.space if k in result.config}
            row: dict[str, Any] = {"config": point, "name": trial_name(point)}
            if result.error is not None:
                row |= {"state": "failed", "reason": _reason(result.error)}
            else:
                m = result.metrics or {}
                row |= {
                    "state": "done",
                    "figures": {k: m.get(k) for k in cfg.objectives},
                    "within_budgets": m.get("within_budgets"),
                    "budget_misses": m.get("budgets", []),
                    "run_dir": m.get("run_dir"),
                }
            trials.append(row)
    finally:
        ray.shutdown()
    return write_results(sweep, out, trials, concurrent)


def _reason(error: BaseException) -> str:
    cause = error
    while getattr(cause, "cause", None) is not None:  # Tune wraps the trial's exception
        cause = cause.cause
    text = str(cause).strip().splitlines()
    return (text[-1] if text else type(cause).__name__)[:500]


# --- results -----------------------------------------------------------------------------------------------


def write_results(sweep: Sweep, out: Path, trials: list[dict[str, Any]], concurrent: int) -> dict[str, Any]:
    from pipeline.engine.store import write_atomic, write_json

    cfg = sweep.config
    trials.sort(key=lambda t: t["name"])
    done = [t for t in trials if t["state"] == "done"]
    front = pareto_front([t["figures"] for t in done], dict(cfg.objectives))
    for i, t in enumerate(done):
        t["pareto"] = i in front
    accuracy = next((m for m, g in cfg.objectives.items() if g == "max"), None)
    within = [t for t in done if t["within_budgets"]]
    best = max(within, key=lambda t: t["figures"][accuracy]) if within and accuracy else None
    result = {
        "sweep": cfg.name,
        "recipe": str(sweep.base_dir / Path(cfg.recipe).name),
        "method": cfg.search.method,
        "objectives": dict(cfg.objectives),
        "budgets": {k: v.model_dump(exclude_defaults=True) for k, v in cfg.budgets.items()},
        "concurrent_trials": concurrent,
        "trials": trials,
        "pareto": [t["name"] for t in done if t["pareto"]],
        "best": best["name"] if best else None,
        "best_by": accuracy,
    }
    write_json(out / "pareto.json", result)
    if best is not None:
        write_atomic(out / "best.yaml", best_recipe_yaml(sweep, best))
    plot_pareto(result, out / "pareto.png")
    write_atomic(out / "pareto.html", pareto_html(result, out / "pareto.png"))
    return result


def recipe_yaml(recipe: Recipe, header: str) -> str:
    """A trial's recipe as YAML, runnable from anywhere: relative paths made absolute."""
    data = _absolute_paths(recipe, recipe.model_dump(mode="python", exclude_defaults=True))
    data["stages"] = [{k: v for k, v in s.items() if v is not None} for s in data["stages"]]
    data["targets"] = [{k: v for k, v in t.items() if v is not None} for t in data.get("targets", [])]
    return header + yaml.safe_dump(json.loads(json.dumps(data, default=str)), sort_keys=False, width=110)


def best_recipe_yaml(sweep: Sweep, trial: dict[str, Any]) -> str:
    head = (
        f"# The most accurate trial of sweep '{sweep.config.name}' within its budgets ({trial['name']}):\n"
        + "".join(f"#   {k} = {v}\n" for k, v in trial["config"].items())
        + "".join(f"#   {k}: {v:.6g}\n" for k, v in trial["figures"].items())
    )
    return recipe_yaml(sweep.recipe(trial["config"]), head)


def _absolute_paths(recipe: Recipe, value: Any) -> Any:
    if isinstance(value, Path):
        return str(recipe.resolve_path(value).resolve())
    if isinstance(value, dict):
        return {k: _absolute_paths(recipe, v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_absolute_paths(recipe, v) for v in value]
    return value


def plot_pareto(result: dict[str, Any], path: Path) -> None:
    """Accuracy (the first maximised objective) against each cost objective; the front joined, budgets drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    accuracy = result["best_by"]
    costs = [m for m, g in result["objectives"].items() if g == "min"]
    done = [t for t in result["trials"] if t["state"] == "done"]
    fig, axes = plt.subplots(1, max(len(costs), 1), figsize=(5 * max(len(costs), 1), 4), squeeze=False)
    for ax, cost in zip(axes[0], costs or [None], strict=False):
        if cost is None or accuracy is None:
            ax.set_axis_off()
            continue
        for t in done:
            x, y = t["figures"][cost], t["figures"][accuracy]
            style = dict(color="tab:blue" if t["pareto"] else "0.6", marker="o" if t["within_budgets"] else "x")
            ax.plot(x, y, linestyle="none", markersize=7, **style)
        front = sorted((t["figures"][cost], t["figures"][accuracy]) for t in done if t["pareto"])
        if front:
            ax.step(*zip(*front, strict=True), where="post", color="tab:blue", alpha=0.4)
        target, _, figure = cost.partition(".")
        limit = result["budgets"].get(target, {}).get(figure)
        if limit is not None:
            ax.axvline(limit, color="tab:red", linestyle="--", label=f"budget {limit:g}")
            ax.legend(loc="lower right")
        if result["best"]:
            best = next(t for t in done if t["name"] == result["best"])
            ax.plot(best["figures"][cost], best["figures"][accuracy], "*", color="tab:orange", markersize=14)
        ax.set_xlabel(cost)
        ax.set_ylabel(accuracy)
        ax.grid(alpha=0.3)
    fig.suptitle(f"sweep {result['sweep']}: front in blue, over budget as x, best within budgets as a star")
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    os.replace(tmp, path)


def pareto_html(result: dict[str, Any], png: Path) -> str:
    import base64
    import html

    metrics = list(result["objectives"])
    head = "".join(f"<th>{html.escape(m)} ({result['objectives'][m]})</th>" for m in metrics)
    rows = []
    for t in result["trials"]:
        cells = (
            "".join(f"<td>{t['figures'][m]:.4g}</td>" for m in metrics)
            if t["state"] == "done"
            else f"<td colspan='{len(metrics)}'>{html.escape(t.get('reason', ''))}</td>"
        )
        mark = "★ " if t["name"] == result["best"] else ("◆ " if t.get("pareto") else "")
        config = ", ".join(f"{html.escape(k)} = {html.escape(str(v))}" for k, v in t["config"].items())
        budget = "" if t["state"] != "done" else ("yes" if t["within_budgets"] else "no")
        rows.append(f"<tr><td>{mark}{html.escape(t['name'])}</td><td>{config}</td><td>{t['state']}</td>"
                    f"<td>{budget}</td>{cells}</tr>")  # fmt: skip
    image = base64.b64encode(png.read_bytes()).decode()
    return (
        f"<!doctype html><meta charset='utf-8'><title>sweep {html.escape(result['sweep'])}</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}</style>"
        f"<h1>Sweep {html.escape(result['sweep'])}</h1>"
        f"<p>{len(result['trials'])} trials ({result['method']}), {len(result['pareto'])} on the Pareto front; "
        f"best within budgets: <b>{html.escape(result['best'] or 'none')}</b> (★; ◆ on the front).</p>"
        f"<img alt='Pareto front' src='data:image/png;base64,{image}'>"
        f"<table><tr><th>trial</th><th>config</th><th>state</th><th>within budgets</th>{head}</tr>"
        + "".join(rows)
        + "</table>\n"
    )
