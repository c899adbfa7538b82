"""Runs, sweeps and nights in MLflow: a finished run's report, recipe and bundle logged as one MLflow run.

Logging reads only what a run wrote (its folder's report.json and recipe.yaml), so a run is logged the same way
at its end, after the fact (`pipeline track`), by a sweep for each trial, and by the nightly job. A run is
logged once per experiment: it carries its run id as a tag, and logging it again completes or skips it.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import yaml

from pipeline.measurement import Measurement
from pipeline.recipe import RecipeLoader

IDENTITY_TAG = "pipeline.identity"  # how a run already logged is found again (the pipeline's run id, or a night)
COMPLETE_TAG = "pipeline.logged"  # set once everything is logged: a run without it is completed, not duplicated
ARTIFACTS = ("report.md", "report.json", "recipe.yaml", "run.log", "hil.json")
UNIT_SUFFIX = {"B": "bytes", "ms": "ms"}


class TrackingError(Exception):
    """MLflow could not be reached or refused a run: the pipeline's own outputs are complete regardless."""


MLFLOW_SCHEMES = ("file:", "sqlite:", "databricks", "postgresql:", "mysql:")  # URIs MLflow reads, beside `://` ones


def local_folder(uri: str, base: Path | None = None) -> Path | None:
    """The folder a plain-folder URI names, made absolute (relative ones from `base`), or None for MLflow URIs."""
    if "://" in uri or uri.startswith(MLFLOW_SCHEMES):
        return None
    return ((base or Path.cwd()) / Path(uri).expanduser()).resolve()


def store(uri: str, base: Path | None = None) -> tuple[str, str | None]:
    """(tracking URI, artifact root or None) for what a user wrote. A plain folder becomes a SQLite store inside it
    with its artifacts beside it: MLflow 3 keeps its `file:` store in maintenance mode and refuses it unless
    asked, so `file:` URIs are passed on with that permission, for teams with an mlruns/ folder already."""
    if uri.startswith("file:"):
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        return uri, None
    if uri.startswith(("http://", "https://")):
        # MLflow retries a refused connection 7 times with growing waits (about 4 minutes): a server that is down
        # should cost a run seconds, not minutes. The user's own settings win.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "60")
    folder = local_folder(uri, base)
    if folder is None:
        return uri, None
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / 'mlflow.db'}", (folder / "artifacts").as_uri()


def metrics(report: dict[str, Any]) -> tuple[list[tuple[str, float, int]], dict[str, str]]:
    """(metrics as (name, value, step), tags) of a report: every stage and target figure, field test, streaming
    operating point and budget. A figure's unit is in its name and its provenance ('measured: ...' or
    'estimate: ...') is the tag of the same name."""
    out: list[tuple[str, float, int]] = []
    tags: dict[str, str] = {}

    def put(name: str, value: Any, step: int = 0) -> None:
        if _finite(value):
            out.append((_metric_name(name), float(value), step))

    for stage in report.get("stages", []):
        prefix = f"stage/{stage['name']}"
        for key in ("accuracy", "val_accuracy", "params", "macs", "bytes", "epochs_run", "seconds"):
            put(f"{prefix}/{key}", stage.get(key))
        for label, value in (stage.get("per_class") or {}).items():
            put(f"{prefix}/class/{label}", value)
        for key, values in (stage.get("history") or {}).items():
            for epoch, value in enumerate(values):
                put(f"{prefix}/history/{key}", value, epoch)
    for target in report.get("targets", []):
        prefix = f"target/{target['name']}"
        for figure, data in (target.get("figures") or {}).items():
            m = Measurement.from_dict(data)
            name = f"{prefix}/{figure}_{UNIT_SUFFIX.get(m.unit, m.unit)}"
            put(name, m.value)
            tags[_metric_name(name)] = f"{m.label}: {m.method}"[:5000]
        for key in ("accuracy", "agreement_with_export", "seconds"):
            put(f"{prefix}/{key}", target.get(key))
        put(f"{prefix}/host_latency_ms", (target.get("host_latency_ms") or {}).get("median"))
        put(f"{prefix}/arena_bytes", (target.get("arena") or {}).get("measured"))
        put(f"{prefix}/instructions_per_invoke", (target.get("on_board") or {}).get("instructions_per_invoke"))
        for label, value in (target.get("per_class") or {}).items():
            put(f"{prefix}/class/{label}", value)
        for variant in target.get("variants") or []:
            name = variant.get("variant") or variant.get("precision")
            put(f"{prefix}/{name}/accuracy", variant.get("accuracy"))
            put(f"{prefix}/{name}/bytes", variant.get("bytes"))
            latency = variant.get("latency_ms") or next(iter(variant.get("host") or []), {}).get("latency_ms")
            put(f"{prefix}/{name}/latency_ms", (latency or {}).get("median"))
    for model in (report.get("field_tests") or {}).get("models", []):
        for name, result in model.get("sets", {}).items():
            put(f"field/{name}/{model['model']}/accuracy", result.get("accuracy"))
            put(f"field/{name}/{model['model']}/balanced_accuracy", result.get("balanced_accuracy"))
    for model in (report.get("streaming") or {}).get("models", []):
        for name, result in model.get("sets", {}).items():
            put(f"stream/{name}/{model['model']}/miss_rate", result.get("miss_rate"))
            put(f"stream/{name}/{model['model']}/fa_per_hour", result.get("fa_per_hour"))
    for budget in report.get("budgets", []):
        put(f"budget/{budget['name']}", budget.get("actual"))
        tags[_metric_name(f"budget/{budget['name']}")] = "ok" if budget.get("ok") else budget.get("message", "violated")
    put("run/wall_seconds", report.get("wall_seconds"))
    put("run/within_budgets", report.get("ok"))
    return out, tags


def params(recipe: dict[str, Any]) -> dict[str, str]:
    """The recipe as flat params: `data.synthetic.train_voices`, `stages.train.epochs`, `targets.tflm.board`."""
    out: dict[str, str] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict) and value:
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), inner)
        elif isinstance(value, list) and value and all(isinstance(v, dict) and len(v) == 1 for v in value):
            for entry in value:  # stages and targets: one-key mappings, named by their key
                ((name, inner),) = entry.items()
                walk(f"{prefix}.{name}", inner if inner is not None else {})
        else:
            out[prefix[:250]] = json.dumps(value)[:6000] if not isinstance(value, str) else value[:6000]

    walk("", {k: v for k, v in recipe.items() if k != "tracking"})
    return out


def log_run(
    run_dir: Path,
    uri: str,
    experiment: str | None = None,
    *,
    base: Path | None = None,
    parent: str | None = None,
    tags: dict[str, str] | None = None,
    extra_metrics: dict[str, float] | None = None,
    identity: str | None = None,
) -> tuple[str, str]:
    """Log the finished run in `run_dir` (its report, recipe, plots and bundles) into `experiment` (default: the
    recipe's name). `identity` (default: the pipeline's run id) is what makes a second call the same MLflow run.
    Returns (MLflow run id, a link or location for people)."""
    report_file = run_dir / "report.json"
    if not report_file.is_file():
        raise TrackingError(f"{run_dir}: no report.json: not a finished run")
    try:
        report = json.loads(report_file.read_text())
        missing = [key for key in ("recipe", "run_id") if not isinstance(report.get(key), str)]
    except (ValueError, AttributeError):
        report, missing = {}, ["a JSON object"]
    if missing:
        raise TrackingError(f"{report_file}: not a report of this tool (no {', '.join(missing)})")
    recipe_file = run_dir / "recipe.yaml"
    recipe = yaml.load(recipe_file.read_text(), Loader=RecipeLoader) if recipe_file.is_file() else {}
    tracking = recipe.get("tracking") if isinstance(recipe, dict) else None
    experiment = experiment or (tracking or {}).get("experiment") or report["recipe"]
    tracking_uri, artifact_root = store(uri, base)
    try:
        return _log(run_dir, report, recipe, tracking_uri, artifact_root, experiment, parent, tags or {},
                    extra_metrics or {}, identity or report["run_id"])  # fmt: skip
    except Exception as exc:  # MLflow's own errors (connection refused, HTTP 4xx/5xx) come in many classes
        raise _mlflow_error(tracking_uri, exc) from exc


def _experiment(tracking_uri: str, artifact_root: str | None, experiment: str) -> tuple[Any, str]:
    """(MLflow client, id of `experiment`, created when new)."""
    import logging

    from mlflow.tracking import MlflowClient

    for name in ("mlflow", "alembic"):  # a new store's table creation is not news for the console
        logging.getLogger(name).setLevel(logging.WARNING)
    client = MlflowClient(tracking_uri=tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is not None:
        return client, found.experiment_id
    location = f"{artifact_root}/{quote(experiment, safe='')}" if artifact_root else None
    return client, client.create_experiment(experiment, artifact_location=location)


def _log(  # noqa: PLR0913 - every argument is one of log_run's, already checked
    run_dir: Path,
    report: dict[str, Any],
    recipe: dict[str, Any],
    tracking_uri: str,
    artifact_root: str | None,
    experiment: str,
    parent: str | None,
    tags: dict[str, str],
    extra_metrics: dict[str, float],
    identity: str,
) -> tuple[str, str]:
    from mlflow.entities import Metric, Param, RunTag

    client, experiment_id = _experiment(tracking_uri, artifact_root, experiment)
    run_id = report["run_id"]
    existing = _tagged(client, experiment_id, IDENTITY_TAG, identity)
    if existing and existing[0].data.tags.get(COMPLETE_TAG) == "true":
        return existing[0].info.run_id, _where(tracking_uri, experiment_id, existing[0].info.run_id)
    run_tags = {IDENTITY_TAG: identity, "pipeline.run_id": run_id, "pipeline.recipe": report["recipe"],
                "pipeline.run_dir": str(run_dir), "pipeline.recipe_fingerprint": report.get("recipe_fingerprint", ""),
                "pipeline.within_budgets": str(report.get("ok")), **tags}  # fmt: skip
    for name, version in (report.get("versions") or {}).items():
        run_tags[f"version.{name}"] = str(version)
    if parent:
        run_tags["mlflow.parentRunId"] = parent
    if existing:  # an earlier attempt stopped half-way: finish that run instead of starting a second
        mlflow_run = existing[0].info.run_id
    else:
        start = _start_ms(report) if identity == run_id else int(time.time() * 1000)  # a night starts now
        name = run_tags.pop("mlflow.runName", f"{report['recipe']} {run_id}")
        mlflow_run = client.create_run(experiment_id, start_time=start, tags=run_tags, run_name=name).info.run_id
    values, figure_tags = metrics(report)
    values += [(_metric_name(k), float(v), 0) for k, v in extra_metrics.items() if _finite(v)]
    now = int(time.time() * 1000)
    batch_metrics = [Metric(name, value, now, step) for name, value, step in values]
    batch_params = [Param(k, v) for k, v in params(recipe).items()]
    batch_tags = [RunTag(k, v) for k, v in {**run_tags, **figure_tags}.items()]
    for i in range(0, len(batch_metrics), 1000):  # MLflow's limits per request: 1,000 metrics, 100 params, 100 tags
        client.log_batch(mlflow_run, metrics=batch_metrics[i : i + 1000])
    for i in range(0, max(len(batch_params), len(batch_tags)), 100):
        client.log_batch(mlflow_run, params=batch_params[i : i + 100], tags=batch_tags[i : i + 100])
    for name in ARTIFACTS:
        if (run_dir / name).is_file():
            client.log_artifact(mlflow_run, str(run_dir / name))
    for png in sorted(run_dir.rglob("*.png")):
        if png.relative_to(run_dir).parts[0] != "export":  # the export folder goes whole, below
            client.log_artifact(mlflow_run, str(png), artifact_path=str(png.parent.relative_to(run_dir)))
    if (run_dir / "export").is_dir():
        client.log_artifacts(mlflow_run, str(run_dir / "export"), artifact_path="export")
    wall = report.get("wall_seconds")
    end = _start_ms(report) + int(wall * 1000) if wall and identity == run_id else None  # the run's, not the logging's
    # A run whose budgets failed is complete but shows red in MLflow's lists, as it fails its recipe.
    client.set_terminated(mlflow_run, "FINISHED" if report.get("ok") else "FAILED", end_time=end)
    client.set_tag(mlflow_run, COMPLETE_TAG, "true")  # last: a run without it is completed by the next attempt
    return mlflow_run, _where(tracking_uri, experiment_id, mlflow_run)


def log_sweep(out: Path, result: dict[str, Any], uri: str, experiment: str | None = None, *,
              base: Path | None = None) -> tuple[str, list[str]]:  # fmt: skip
    """Log a finished sweep: a parent run (objectives, the Pareto front's files, best.yaml) and, under it, one child
    run per finished trial, tagged with its point of the search space. Returns (where to look, the trials that
    could not be logged, with why); logging it again completes what is missing."""
    experiment = experiment or result["sweep"]
    tracking_uri, artifact_root = store(uri, base)
    try:
        client, experiment_id = _experiment(tracking_uri, artifact_root, experiment)
        marker = str(out.resolve())
        found = _tagged(client, experiment_id, "pipeline.sweep_dir", marker)
        parent = found[0].info.run_id if found else None
        if parent is None:
            tags = {"pipeline.sweep": result["sweep"], "pipeline.sweep_dir": marker,
                    "pipeline.best_trial": result["best"] or "none within budgets"}  # fmt: skip
            parent = client.create_run(experiment_id, tags=tags, run_name=f"sweep {result['sweep']}").info.run_id
        if not found or found[0].data.tags.get(COMPLETE_TAG) != "true":
            client.log_param(parent, "objectives", json.dumps(result["objectives"]))
            client.log_param(parent, "method", result["method"])
            client.log_metric(parent, "trials", len(result["trials"]))
            client.log_metric(parent, "pareto_front", len(result["pareto"]))
            for name in ("sweep.yaml", "pareto.json", "pareto.png", "pareto.html", "best.yaml"):
                if (out / name).is_file():
                    client.log_artifact(parent, str(out / name))
    except Exception as exc:
        raise _mlflow_error(tracking_uri, exc) from exc
    failed: list[str] = []
    for trial in result["trials"]:
        if trial["state"] != "done" or not trial.get("run_dir"):
            continue  # a failed trial has no run to log; pareto.json, logged above, keeps its reason
        tags = {"pipeline.trial": trial["name"], "pipeline.pareto": str(trial.get("pareto", False))}
        tags |= {f"trial.{key}": json.dumps(value) for key, value in trial["config"].items()}
        try:
            log_run(Path(trial["run_dir"]), uri, experiment, base=base, parent=parent, tags=tags)
        except TrackingError as exc:  # the other trials still go in; a second `pipeline sweep` retries this one
            failed.append(f"{trial['name']}: {exc}")
    try:
        if not failed:
            client.set_terminated(parent)
            client.set_tag(parent, COMPLETE_TAG, "true")
    except Exception as exc:
        raise _mlflow_error(tracking_uri, exc) from exc
    return _where(tracking_uri, experiment_id, parent), failed


def _tagged(client: Any, experiment_id: str, tag: str, value: str) -> list[Any]:
    """Runs of the experiment whose `tag` is `value`; MLflow's filter strings take either quote, so the one the
    value does not contain is used (a folder may be called o'brien)."""
    mark = '"' if "'" in value else "'"
    if mark in value:
        raise TrackingError(f"cannot search MLflow for a {tag} holding both kinds of quote: {value}")
    return client.search_runs([experiment_id], filter_string=f"tags.`{tag}` = {mark}{value}{mark}", max_results=1)


def _mlflow_error(tracking_uri: str, exc: BaseException) -> TrackingError:
    if isinstance(exc, TrackingError):
        return exc
    first = (str(exc).strip().splitlines() or [""])[0]
    return TrackingError(f"MLflow at {tracking_uri}: {type(exc).__name__}{': ' + first if first else ''}")


def _finite(value: Any) -> bool:
    """A number MLflow can hold (booleans count, as 0 and 1); None and NaN are figures a run does not have."""
    return isinstance(value, int | float) and math.isfinite(value)


def _metric_name(name: str) -> str:
    """MLflow names allow letters, digits, `_ - . / ` and spaces; anything else (a label's odd character) becomes
    `_`."""
    return "".join(c if c.isalnum() or c in "_-./ " else "_" for c in name)[:250]


def _start_ms(report: dict[str, Any]) -> int:
    from datetime import datetime

    try:
        return int(datetime.fromisoformat(report["created"]).timestamp() * 1000)
    except (KeyError, ValueError):
        return int(time.time() * 1000)


def _where(tracking_uri: str, experiment_id: str, run_id: str) -> str:
    if tracking_uri.startswith(("http://", "https://")):
        return f"{tracking_uri.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"
    return f"{tracking_uri} (experiment {experiment_id}, run {run_id})"
