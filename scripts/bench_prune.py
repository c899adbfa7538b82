#!/usr/bin/env python3
"""What does the recipe's pruning buy? The pruned chain against the same model left unpruned, side by side.

    .venv/bin/python scripts/bench_prune.py [recipes/kws_mcu.yaml]

Both models come from the same seed and data, through the same `train` stage (cached, shared). The unpruned
one then gets a `finetune` of as many epochs as the pruned chain spends in `prune` + `finetune`, so both see
the same training budget, with the recipe's fine-tune settings except distillation (the baseline is trained
the plain way); both are quantized to int8 the same way and measured on the same TFLM target.
TFLM latency is re-timed here, the two models alternating in rounds, so the ratio compares like with like
even when the machine's load drifts. Goals (issue #3) are printed beside the ratios; the exit code is 0
unless `--strict` is given and a goal is missed.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import click
import numpy as np
import yaml
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from pipeline.progress import Reporter  # noqa: E402
from pipeline.recipe import Recipe, load_recipe  # noqa: E402
from pipeline.runner import RunResult, run_recipe  # noqa: E402

GOALS = {"latency": 0.6, "bytes": 0.6, "arena": 0.8, "accuracy_points": 1.5}


def unpruned_twin(recipe: Recipe) -> dict:
    """The recipe without pruning: `train`, then a fine-tune as long as the pruned chain's prune + finetune."""
    prune, finetune = recipe.stage("prune"), recipe.stage("finetune")
    if prune is None:
        raise click.UsageError(f"recipe '{recipe.name}' has no prune stage: nothing to compare")
    data = recipe.model_dump(mode="json", exclude_defaults=False)
    # The same fine-tune (learning rate, schedule, patience) minus distillation: a teacher is how the pruned
    # model recovers, and the baseline should be the unpruned model trained the plain way.
    if finetune:
        extra = finetune.model_dump(mode="json", exclude={"distill"})
    else:
        extra = {"lr": prune.lr, "batch_size": prune.batch_size, "patience": 0}
    extra |= {"epochs": prune.epochs + (finetune.epochs if finetune else 0)}
    stages = []
    for entry in data["stages"]:
        (name,) = (k for k, v in entry.items() if v is not None)
        if name == "prune":
            stages.append({"finetune": extra})
        elif name != "finetune":
            stages.append({name: entry[name]})
    data["stages"] = stages
    data["targets"] = [{k: v for k, v in t.items() if v is not None} for t in data["targets"] if t.get("tflm")]
    data["name"] = f"{recipe.name}-unpruned"
    data["explain"] = {"enabled": False}  # the twin is a yardstick for size, speed and accuracy: no need to explain it
    return data


def run(recipe_file: Path, runs_dir: Path, reporter: Reporter) -> tuple[RunResult, RunResult]:
    recipe = load_recipe(recipe_file)
    twin_data = unpruned_twin(recipe)
    with tempfile.TemporaryDirectory() as tmp:
        twin_file = Path(tmp) / f"{twin_data['name']}.yaml"
        twin_file.write_text(yaml.safe_dump(twin_data, sort_keys=False))
        twin = load_recipe(twin_file)
        reporter.log(f"[bold]unpruned[/bold]: {' → '.join(s.name for s in twin.stages)}")
        base = run_recipe(twin, twin_file, reporter, runs_root=runs_dir)
    reporter.log(f"[bold]pruned[/bold]: {' → '.join(s.name for s in recipe.stages)}")
    pruned = run_recipe(recipe, recipe_file, reporter, runs_root=runs_dir)
    return base, pruned


def interleaved_latency(runs: list[RunResult], rounds: int, invokes: int) -> list[np.ndarray]:
    """TFLM invoke times (ms) of each run's export, alternating models round by round."""
    from targets.tflm import time_invokes

    times: list[list[float]] = [[] for _ in runs]
    for _ in range(rounds):
        for i, result in enumerate(runs):
            tflm = next(t for t in result.report["targets"] if t["name"] == "tflm")
            times[i] += time_invokes(result.run_dir / "export" / "model.tflite", tflm["arena"]["bundle"], invokes)
    return [np.array(t) for t in times]


def _fmt(name: str, value: float) -> str:
    return f"{value:.4f}" if "accuracy" in name else f"{value:.3f}" if name.endswith("(ms)") else f"{value:,.0f}"


@click.command()
@click.argument("recipe_file", type=click.Path(exists=True, path_type=Path), default=ROOT / "recipes/kws_mcu.yaml")
@click.option("--runs-dir", type=click.Path(path_type=Path), default=ROOT / "runs", show_default=True)
@click.option("--rounds", default=5, show_default=True, help="Alternating latency rounds per model.")
@click.option("--invokes", default=200, show_default=True, help="Timed invokes per round.")
@click.option("--strict", is_flag=True, help="Exit 1 when a goal is missed.")
def main(recipe_file: Path, runs_dir: Path, rounds: int, invokes: int, strict: bool) -> None:
    reporter = Reporter()
    base, pruned = run(recipe_file, runs_dir, reporter)
    reporter.log(f"timing both on TFLM: {rounds} alternating rounds × {invokes} invokes")
    lat_base, lat_pruned = interleaved_latency([base, pruned], rounds, invokes)

    def figures(result: RunResult, latency: np.ndarray) -> dict[str, float]:
        export = next(s for s in result.report["stages"] if s["name"] == "export")
        tflm = next(t for t in result.report["targets"] if t["name"] == "tflm")
        return {
            "int8 accuracy (LiteRT)": export["accuracy"],
            "int8 accuracy (TFLM)": tflm["accuracy"],
            "params": export["params"],
            "MACs": export["macs"],
            ".tflite bytes": export["bytes"],
            "TFLM arena bytes": tflm["arena"]["measured"],
            "TFLM latency median (ms)": float(np.median(latency)),
        }

    a, b = figures(base, lat_base), figures(pruned, lat_pruned)
    table = Table(title=f"pruning: {load_recipe(recipe_file).name}, unpruned vs pruned + fine-tuned (int8)")
    for col in ("figure", "unpruned", "pruned", "pruned / unpruned", "goal"):
        table.add_column(col, justify="left" if col == "figure" else "right")
    goals = {
        ".tflite bytes": ("bytes", GOALS["bytes"]),
        "TFLM arena bytes": ("arena", GOALS["arena"]),
        "TFLM latency median (ms)": ("latency", GOALS["latency"]),
    }
    missed = []
    for name in a:
        ratio = b[name] / a[name] if a[name] else float("nan")
        goal = ""
        if name in goals:
            key, limit = goals[name]
            ok = ratio <= limit
            goal = f"≤ {limit}× {'✓' if ok else '✗'}"
            missed += [] if ok else [name]
        elif name == "int8 accuracy (LiteRT)":
            drop = 100 * (a[name] - b[name])
            ok = drop <= GOALS["accuracy_points"]
            goal = f"Δ {-drop:+.2f} pts (≥ -{GOALS['accuracy_points']}) {'✓' if ok else '✗'}"
            missed += [] if ok else [name]
        table.add_row(name, _fmt(name, a[name]), _fmt(name, b[name]), f"{ratio:.3f}", goal)
    Console(width=120).print(table)
    print(f"unpruned run: {base.run_dir}\npruned run:   {pruned.run_dir}")
    if missed:
        print(f"goals missed: {', '.join(missed)}")
        if strict:
            sys.exit(1)


if __name__ == "__main__":
    main()
