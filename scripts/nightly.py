#!/usr/bin/env python3
"""Nightly: run a recipe, measure its exports on the attached devices, compare with the previous night.

    .venv/bin/python scripts/nightly.py recipes/kws_mcu.yaml --inventory devices.yaml --history nightly.json

Every figure (per target: accuracy, latency, RAM/arena, flash, and an emulated core's instructions per invoke;
per measured device: latency, output match and, for firmware on an emulated core, instructions per invoke)
is compared with the last entry of the history file. Every night measures again: the run is made with
`--remeasure`, so builds come from the cache but latency, memory and device figures are taken tonight. A regression beyond its tolerance (latency +10%, accuracy
-1 point, RAM/arena/flash +5% by default) makes the script exit 1 and name the figure; the night is appended to
the history either way, so tomorrow compares with today. `--run-dir` measures an existing run instead of
running the recipe (for re-checking a night, and for tests). A latency must also have grown by more than
`--latency-floor-ms` (0.05 ms by default): a sub-millisecond host timing moves 10 % on scheduling noise alone.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.engine.store import write_json  # noqa: E402
from pipeline.recipe import load_recipe  # noqa: E402

# figure suffix -> (direction, kind of tolerance); "up" means larger is worse
RULES = {
    "latency_ms": ("up", "relative"),
    "ram_bytes": ("up", "relative"),
    "flash_bytes": ("up", "relative"),
    "accuracy": ("down", "points"),
    "outputs_match": ("down", "absolute"),
    "instructions": ("up", "relative"),  # an emulated core's count: deterministic, so any real growth shows
}


def figures(run_dir: Path) -> dict[str, float]:
    """Flat figure names -> values from a run's report.json and, when present, its hil.json."""
    report = json.loads((run_dir / "report.json").read_text())
    out: dict[str, float] = {}
    for t in report["targets"]:
        if t["accuracy"] is not None:  # a target measured without a runtime here (ethos_u: Vela) has none
            out[f"{t['name']}.accuracy"] = t["accuracy"]
        out[f"{t['name']}.latency_ms"] = t["latency_ms"]["median"]
        if "host_latency_ms" in t:  # the host interpreter's time, kept beside a board's figure as the cross-check
            out[f"{t['name']}.host_latency_ms"] = t["host_latency_ms"]["median"]
        out[f"{t['name']}.ram_bytes"] = t["ram_bytes"]
        out[f"{t['name']}.flash_bytes"] = t["flash_bytes"]
        if "on_board" in t:
            out[f"{t['name']}.instructions"] = t["on_board"]["instructions_per_invoke"]
    hil = run_dir / "hil.json"
    if hil.exists():
        for d in json.loads(hil.read_text())["devices"]:
            if d["status"] == "measured" and "latency_ms" in d:
                out[f"hil.{d['device']}.latency_ms"] = d["latency_ms"]["median"]
            if d["status"] == "measured" and "instructions" in d:
                out[f"hil.{d['device']}.instructions"] = d["instructions"]
            if "outputs_match" in d:
                out[f"hil.{d['device']}.outputs_match"] = d["outputs_match"]
    return out


def compare(
    previous: dict[str, float],
    current: dict[str, float],
    tolerances: dict[str, float],
    floors: dict[str, float] | None = None,
) -> list[dict]:
    """Every figure present both nights, with its change and whether that change is a regression: worse than its
    tolerance and, where `floors` names its suffix, worse by more than that much in the figure's own unit."""
    rows = []
    for name in sorted(set(previous) & set(current)):
        suffix = next((s for s in RULES if name.endswith(s)), None)
        if suffix is None:
            continue
        direction, kind = RULES[suffix]
        before, now = previous[name], current[name]
        if kind == "relative":
            change = (now - before) / before if before else 0.0
            shown = f"{change:+.1%}"
        elif kind == "points":
            change = 100 * (now - before)
            shown = f"{change:+.2f} pts"
        else:
            change = now - before
            shown = f"{change:+g}"
        worse = change if direction == "up" else -change
        step = now - before if direction == "up" else before - now
        regression = worse > tolerances[suffix] and step > (floors or {}).get(suffix, 0.0)
        rows.append({"figure": name, "before": before, "now": now, "change": shown,
                     "regression": regression, "tolerance": tolerances[suffix]})  # fmt: skip
    return rows


def log_night(run_dir: Path, uri: str, experiment: str | None, night: str, current: dict, rows: list[dict]) -> None:
    """One MLflow run per night (a re-checked run is a new night): the run's report and bundles, the night's
    figures under `nightly/`, and which of them regressed; the experiment's charts are then the history."""
    from pipeline.connect.tracking import TrackingError, log_run

    recipe = json.loads((run_dir / "report.json").read_text())["recipe"]
    regressed = ",".join(r["figure"] for r in rows if r["regression"])
    try:
        _, where = log_run(run_dir, uri, experiment or f"{recipe}-nightly", identity=f"night {night}",
                           tags={"pipeline.night": night, "pipeline.regressions": regressed or "none",
                                 "mlflow.runName": f"{recipe} night {night}"},
                           extra_metrics={f"nightly/{k}": v for k, v in current.items()})  # fmt: skip
    except TrackingError as exc:
        click.echo(f"warning: the night was not logged to MLflow: {exc}", err=True)
    else:
        click.echo(f"logged to MLflow: {where}")


@click.command()
@click.argument("recipe", type=click.Path(exists=True, path_type=Path), required=False)
@click.option("--inventory", type=click.Path(exists=True, path_type=Path), required=True)
@click.option("--history", type=click.Path(path_type=Path), required=True, help="JSON history, one entry a night.")
@click.option("--run-dir", type=click.Path(exists=True, path_type=Path), default=None,
              help="Measure this existing run instead of running RECIPE.")  # fmt: skip
@click.option("--runs-dir", type=click.Path(path_type=Path), default=ROOT / "runs", show_default=True)
@click.option("--latency-tolerance", default=0.10, show_default=True, help="Allowed relative latency increase.")
@click.option("--latency-floor-ms", default=0.05, show_default=True,
              help="A latency regression must also exceed this many milliseconds.")  # fmt: skip
@click.option("--accuracy-tolerance", default=1.0, show_default=True, help="Allowed accuracy drop, in points.")
@click.option("--memory-tolerance", default=0.05, show_default=True, help="Allowed relative RAM/arena/flash growth.")
@click.option("--instructions-tolerance", default=0.02, show_default=True,
              help="Allowed relative growth of an emulated core's instructions per invoke.")  # fmt: skip
@click.option("--mlflow", "mlflow_uri", default=None, metavar="URI",
              help="Also log every night to MLflow (a server URL, sqlite:///file.db or a local folder).")  # fmt: skip
@click.option("--experiment", default=None, help="MLflow experiment (default: <recipe>-nightly).")
def main(recipe, inventory, history, run_dir, runs_dir, latency_tolerance, latency_floor_ms, accuracy_tolerance,
         memory_tolerance, instructions_tolerance, mlflow_uri, experiment):  # fmt: skip
    pipeline = [sys.executable, "-m", "pipeline"]
    if run_dir is None:
        if recipe is None:
            raise click.UsageError("give a RECIPE to run, or --run-dir")
        done = subprocess.run([*pipeline, "run", str(recipe), "--runs-dir", str(runs_dir), "--remeasure"])
        if done.returncode not in (0, 1):  # 1 = a budget failed: still measured, still compared
            sys.exit(done.returncode)
        run_dir = runs_dir / load_recipe(recipe).name / "latest"
    run_dir = run_dir.resolve()
    hil = subprocess.run([*pipeline, "hil", str(run_dir), "--inventory", str(inventory)])
    current = figures(run_dir)
    past = json.loads(history.read_text()) if history.exists() else []
    tolerances = {"latency_ms": latency_tolerance, "ram_bytes": memory_tolerance, "flash_bytes": memory_tolerance,
                  "accuracy": accuracy_tolerance, "outputs_match": 0.0,
                  "instructions": instructions_tolerance}  # fmt: skip
    rows = compare(past[-1]["figures"], current, tolerances, {"latency_ms": latency_floor_ms}) if past else []
    night = datetime.now(timezone.utc).isoformat(timespec="seconds")
    past.append({"date": night, "run": str(run_dir), "figures": current})
    write_json(history, past)
    if mlflow_uri:
        log_night(run_dir, mlflow_uri, experiment, night, current, rows)

    console = Console()
    if not rows:
        console.print(f"first night in {history}: {len(current)} figures recorded, nothing to compare")
    table = Table(title="nightly: figures that moved", title_justify="left")
    for col in ("figure", "before", "now", "change", ""):
        table.add_column(col, justify="left" if col == "figure" else "right")
    for r in rows:
        if r["before"] != r["now"]:
            table.add_row(r["figure"], f"{r['before']:.6g}", f"{r['now']:.6g}", r["change"],
                          "[red]REGRESSION[/red]" if r["regression"] else "ok")  # fmt: skip
    if rows:
        console.print(table)
    regressions = [r["figure"] for r in rows if r["regression"]]
    if regressions:
        click.echo(f"regressions: {', '.join(regressions)}")  # one line, never wrapped: scripts read it
        sys.exit(1)
    if hil.returncode != 0:
        console.print("[red]a device failed its hardware-in-the-loop check (see hil.json)[/red]")
        sys.exit(hil.returncode)


if __name__ == "__main__":
    main()
