"""The runner: recipe -> data -> stages -> artifacts -> targets -> report, one way.

Each step's output is a content-addressed store entry (see `pipeline.engine.store`): an unchanged re-run finds every
entry and re-computes nothing; a changed stage config changes that stage's key and so every key after it. Keys
cover the code each step runs and the runtime versions it uses (`pipeline.engine.fingerprint`).

A target is two entries: what it compiles (cached like a stage) and what it measures. Measurements of a machine
are not a pure function of their inputs: `remeasure=True` (`pipeline run --remeasure`, nightly) re-takes them,
and a measurement that could not reach a device the recipe names is never reused.

The run directory is assembled in a temporary folder and renamed into place, then `latest` is repointed. An
existing `--out` folder is replaced only when this tool wrote it (it holds `RUN_MARKER`).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pipeline import budgets as budget_checks
from pipeline.analysis.report import render_markdown
from pipeline.data import FeatureSet, FieldSet, prepare, prepare_field_set, prepare_field_sets, synthetic_test_set
from pipeline.data.field import listing_key
from pipeline.engine.fingerprint import fingerprint
from pipeline.engine.progress import Reporter
from pipeline.engine.store import META, Artifact, Store, digest, replace_dir, write_atomic, write_json
from pipeline.engine.versions import versions
from pipeline.plugins import TargetContext, find_models, stage, target
from pipeline.recipe import FeaturesConfig, Recipe, StreamingConfig
from pipeline.runtimes import ModelRef
from pipeline.stages import StageContext

DEFAULT_RUNS = Path("runs")
RUN_MARKER = ".edge-pipeline-run"  # in every run folder: --out may replace a folder only when it holds this


class OutputError(ValueError):
    """--out names something this tool must not overwrite."""


def check_out(out: Path) -> None:
    """Refuse, before any work, an --out that is a file or a non-empty folder no run of this tool wrote."""
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise OutputError(f"--out {out}: exists and is not a folder; nothing was written")
    if out.is_dir() and not (out / RUN_MARKER).is_file() and any(out.iterdir()):
        raise OutputError(
            f"--out {out}: the folder exists and was not written by `pipeline run` (no {RUN_MARKER} in it); "
            "refusing to replace it. Choose a new or empty folder, or an earlier run's folder."
        )


@dataclass
class RunResult:
    run_dir: Path
    report: dict[str, Any]

    @property
    def failed_budgets(self) -> list[dict[str, Any]]:
        return [b for b in self.report["budgets"] if not b["ok"]]


def stage_key(recipe: Recipe, index: int, data: FeatureSet, upstream: Artifact | None) -> str:
    entry = recipe.stages[index]
    return digest(
        {
            "stage": entry.name,
            "config": entry.config.model_dump(mode="json"),
            "input": upstream.key if upstream else None,
            "data": data.key,
            "seed": recipe.seed,
            # Only the first stage builds the model; later ones inherit it through their input's key.
            "model": recipe.model.model_dump(mode="json") if entry.config.consumes is None else None,
            "code": fingerprint(stage(entry.name).__name__),
            "outside": entry.config.outside_inputs(recipe),
        }
    )


def run_recipe(
    recipe: Recipe,
    recipe_file: Path,
    reporter: Reporter,
    runs_root: Path = DEFAULT_RUNS,
    out: Path | None = None,
    cache: Path | None = None,
    remeasure: bool = False,
) -> RunResult:
    started = time.time()
    if out is not None:
        check_out(out)
    store = Store(cache or runs_root / ".cache")
    removed = store.clean_partial()
    if removed:
        reporter.log(f"removed {removed} unfinished artifact(s) left by an interrupted run")

    reporter.scope = "data"
    data, data_art = prepare(recipe, store, reporter.progress, reporter.warn)
    reporter.log(
        f"{data.source}: {len(data.train)} train / {len(data.val)} val / {len(data.test)} test clips"
        + (" (cached)" if data_art.cached else "")
    )
    field_sets = prepare_field_sets(recipe, data.labels, store, reporter.progress, reporter.warn)
    for fs in field_sets:
        reporter.log(f"field test {fs.name}: {len(fs.y)} real clips from {fs.root}")

    stages: list[tuple[str, Artifact]] = []
    upstream: Artifact | None = None
    for i, entry in enumerate(recipe.stages):
        reporter.scope = entry.name
        module = stage(entry.name)
        key = stage_key(recipe, i, data, upstream)

        def build(tmp: Path, meta: dict, module=module, entry=entry, upstream=upstream) -> None:
            def retrain(k: int) -> Artifact:
                return retrain_first_stage(recipe, data, store, reporter, k, f"teacher {k + 1}")

            def features_as(features: FeaturesConfig) -> FeatureSet:
                other = recipe.model_copy(update={"data": recipe.data.model_copy(update={"features": features})})
                return prepare(other, store, reporter.progress, reporter.warn)[0]

            ctx = StageContext(recipe, data, upstream, tmp, reporter.log, reporter.progress, dict(stages), retrain,
                               features_as, cached_arrays(store, data))  # fmt: skip
            meta["stage"] = entry.name
            meta["metrics"] = module.run(entry.config, ctx)

        art = store.get_or_build(f"stage-{entry.name}", key, build)
        _log_done(reporter, art)
        stages.append((entry.name, art))
        upstream = art

    float_model = _last_float_model(recipe, stages)
    targets: list[tuple[str, Artifact]] = []
    compiled_keys: list[str] = []
    for entry in recipe.targets:
        reporter.scope = entry.name
        compiled, art = run_target(entry.name, entry.config, recipe, data, upstream, float_model, store, reporter,
                                   remeasure)  # fmt: skip
        _log_done(reporter, art)
        targets.append((entry.name, art))
        compiled_keys.append(compiled.key)
    field_art = run_field_tests(field_sets, data, stages, targets, compiled_keys, store, reporter)
    explain_art = run_explain(recipe, data, stages, targets, compiled_keys, store, reporter, field_sets)
    streaming_art = run_streaming(recipe, data, targets, compiled_keys, store, reporter)
    reporter.scope = ""

    results = budget_checks.check(
        recipe, stages[-1][1].meta["metrics"], {name: art.meta["metrics"] for name, art in targets}
    )
    if explain_art is not None:
        results += budget_checks.check_explain(recipe, explain_art.meta["result"])
    run_id = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S") + f"-{recipe.fingerprint()[:6]}"
    report = {
        "recipe": recipe.name,
        "recipe_file": str(recipe_file),
        "recipe_fingerprint": recipe.fingerprint(),
        "run_id": run_id,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "ok": all(b.ok for b in results),
        "warnings": list(reporter.warnings),
        "recipe_dir": str(recipe.base_dir or Path.cwd()),  # relative paths in recipe.yaml resolve against it
        "data": data.summary() | {"seconds": data_art.meta.get("seconds"), "cached": data_art.cached},
        "trained_from": trained_from(recipe, data),
        "stages": [_row(name, art) for name, art in stages],
        "targets": [_row(name, art) for name, art in targets],
        "budgets": [b.as_dict() for b in results],
        "field_tests": field_art.meta["result"] if field_art is not None else None,
        "explain": explain_art.meta["result"] if explain_art is not None else None,
        "streaming": streaming_art.meta["result"] if streaming_art is not None else None,
        "wall_seconds": round(time.time() - started, 2),
        "versions": versions(),
    }
    run_dir = out or runs_root / recipe.name / run_id
    _publish(run_dir, recipe_file, stages, targets, report, explain_art, reporter.log_file, streaming_art)
    if out is None:
        _point_latest(run_dir)
    return RunResult(run_dir, report)


def trained_from(recipe: Recipe, data: FeatureSet) -> list[dict[str, str]]:
    """Everything that taught the models, for the report: data, pretrained weights, recordings of people."""
    out = []
    if data.source == "synthetic":
        synth = recipe.data.synthetic
        engines = ["espeak-ng"] + [
            f"{name} ({share:.0%} of the training draws)"
            for name, share in (("CMU Flite", synth.flite_share), ("Kokoro-82M", synth.kokoro_share),
                                ("Piper", synth.piper_share)) if share
        ]  # fmt: skip
        out.append({"what": "synthetic speech", "source": f"{data.summary()['voices']['train']:,} training voices "
                    f"spoken by {', '.join(engines)}; no recording of a person"})  # fmt: skip
    else:
        out.append({"what": "recordings of people", "source": f"the Speech Commands folder {data.root}"})
    if recipe.model.arch == "speech_embedding":
        from pipeline.models.speech_embedding_assets import SOURCE

        out.append({"what": "pretrained speech embedding (frozen)", "source": SOURCE + "; learnt by its authors from "
                    "a large corpus of real speech, none of it seen here"})  # fmt: skip
    for entry in recipe.stages:
        distill = getattr(entry.config, "distill", None)
        if distill is not None and distill.teacher_run is not None:
            run = recipe.resolve_path(distill.teacher_run)
            taught = json.loads((run / "report.json").read_text()).get("trained_from", [])
            learnt = "; ".join(f"{t['what']}: {t['source']}" for t in taught) or "see its report"
            out.append({"what": f"a teacher ({entry.name} distils from another run)",
                        "source": f"{run}: {learnt}"})  # fmt: skip
    for extra in data.extra_train:
        times = f", each {extra['repeat']} times" if extra.get("repeat", 1) > 1 else ""
        out.append({"what": "recordings of people", "source": f"{extra['clips']:,} clips from {extra['path']} "
                    f"(data.extra_train, training split only{times}; {extra['unreadable']} unreadable skipped, "
                    f"{extra['converted']} converted)"})  # fmt: skip
    return out


def run_target(
    name: str,
    config: Any,
    recipe: Recipe,
    data: FeatureSet,
    export: Artifact,
    float_model: Path | None,
    store: Store,
    reporter: Reporter,
    remeasure: bool = False,
) -> tuple[Artifact, Artifact]:
    """(compiled, measured) entries of one target. The measured entry holds the compiled files too, so it is
    what a run folder publishes."""
    module = target(name)
    key = digest(
        {
            "target": name,
            "config": config.model_dump(mode="json"),
            "export": export.key,
            "data": data.key,
            "code": fingerprint(module.__name__),
            **{section: getattr(recipe, section) and getattr(recipe, section).model_dump(mode="json")
               for section in getattr(module, "RECIPE_SECTIONS", ())},
        }
    )  # fmt: skip

    def context(out: Path) -> TargetContext:
        from pipeline.data.features import mfcc

        c_front_end = recipe.data.features.kind == "mfcc"  # the bundle's C front end computes MFCCs only
        return TargetContext(
            recipe, data, export, out, reporter.log, reporter.progress, float_model,
            features=(lambda audio: mfcc(audio, recipe.data.features)) if c_front_end else None,
            stream=(lambda split, cfg: listened(recipe, data, split, cfg)) if recipe.streaming else None,
        )  # fmt: skip

    def build_compiled(tmp: Path, meta: dict) -> None:
        module.compile(config, context(tmp))
        meta["target"] = name

    compiled = store.get_or_build(f"compiled-{name}", key, build_compiled)

    def build_measured(tmp: Path, meta: dict) -> None:
        shutil.copytree(compiled.path, tmp, dirs_exist_ok=True, ignore=shutil.ignore_patterns(META))
        ctx = context(tmp)
        meta["target"] = name
        meta["metrics"] = module.measure(config, ctx)
        meta["measured_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        if ctx.unreachable:
            meta["unreachable"] = ctx.unreachable

    def reusable(art: Artifact) -> bool:
        if art.meta.get("unreachable"):
            reporter.log(f"measuring again: last time {'; '.join(art.meta['unreachable'])}")
            return False
        return not remeasure

    measured = store.get_or_build(f"target-{name}", key, build_measured, reuse=reusable)
    return compiled, measured


EXPLAIN_CODE = "pipeline.analysis.explain"
FIELD_CODE = "pipeline.analysis.field"
STREAMING_CODE = ("pipeline.analysis.streaming", "pipeline.analysis.streaming_plots", "pipeline.streams")


def run_field_tests(
    field_sets: list[FieldSet],
    data: FeatureSet,
    stages: list[tuple[str, Artifact]],
    targets: list[tuple[str, Artifact]],
    compiled_keys: list[str],
    store: Store,
    reporter: Reporter,
) -> Artifact | None:
    """Every model of the run on the synthetic test split and on each field set, through its own runtime."""
    if not field_sets:
        return None
    from pipeline.analysis.field import evaluate

    reporter.scope = "field"
    sets = [synthetic_test_set(data), *field_sets]
    key = digest(
        {
            "field": [fs.key for fs in sets],
            "models": [art.key for _, art in stages] + compiled_keys,
            "code": fingerprint(FIELD_CODE),
        }
    )

    def build(tmp: Path, meta: dict) -> None:
        meta["result"] = evaluate(find_models(_dirs(stages), _dirs(targets)), sets, data.labels, reporter.log)

    art = store.get_or_build("field-tests", key, build)
    _log_done(reporter, art)
    return art


def synthetic_stream_of(recipe: Recipe, data: FeatureSet, split: str, cfg: StreamingConfig):
    """The stream of one split of the run's data set, composed as `cfg` says."""
    from pipeline.streams import synthetic_stream

    features = recipe.data.features
    return synthetic_stream(data.root, split, data.labels, cfg, features.sample_rate, features.clip_samples,
                            recipe.seed)  # fmt: skip


def listened(recipe: Recipe, data: FeatureSet, split: str, cfg: StreamingConfig) -> tuple[Any, Any]:
    """A split's stream and the model's input for each of its windows at the recipe's stride."""
    from pipeline.analysis.streaming import window_features
    from pipeline.detection import hop_samples

    stream = synthetic_stream_of(recipe, data, split, cfg)
    return stream, window_features(stream.audio, recipe.data.features, hop_samples(cfg, recipe.data.features))


def judged_streams(recipe: Recipe, data: FeatureSet, cfg: StreamingConfig) -> list:
    """The streams a run is judged on: the synthetic test split's and one per field set (the validation split's
    chooses the thresholds)."""
    from pipeline.streams import field_stream

    features = recipe.data.features
    args = (data.labels, cfg, features.sample_rate, features.clip_samples, recipe.seed)
    judged = [synthetic_stream_of(recipe, data, "test", cfg)]
    for test in recipe.data.field_tests:
        root = recipe.resolve_path(test.path)
        if root.is_dir():
            judged.append(field_stream(test.name, root, *args))
    return judged


def run_streaming(
    recipe: Recipe,
    data: FeatureSet,
    targets: list[tuple[str, Artifact]],
    compiled_keys: list[str],
    store: Store,
    reporter: Reporter,
) -> Artifact | None:
    """Every target's model listening to streams on its own runtime: thresholds, misses, false accepts per hour
    and DET curves (`pipeline.analysis.streaming`), cached like any step."""
    if recipe.streaming is None or not targets:
        return None
    from pipeline.analysis.streaming import cost, evaluate
    from pipeline.analysis.streaming_plots import plot_det

    reporter.scope = "streaming"
    key = digest(
        {
            "streaming": recipe.streaming.model_dump(mode="json"),
            "data": data.key,
            "field": [listing_key(recipe.resolve_path(t.path)) for t in recipe.data.field_tests
                      if recipe.resolve_path(t.path).is_dir()],
            "models": compiled_keys + [art.key for _, art in targets],
            "code": fingerprint(*STREAMING_CODE),
        }
    )  # fmt: skip

    def build(tmp: Path, meta: dict) -> None:
        calibration = [synthetic_stream_of(recipe, data, "val", recipe.streaming)]
        judged = judged_streams(recipe, data, recipe.streaming)
        for s in calibration + judged:
            reporter.log(f"stream {s.name}: {s.hours * 60:.1f} min, {len(s.events)} keywords, "
                         f"{s.negative_seconds / 60:.1f} keyword-free min")  # fmt: skip
        models = find_models([], _dirs(targets))
        shipped = {name: art.meta["metrics"]["detector"] for name, art in targets
                   if art.meta["metrics"].get("detector")}  # fmt: skip
        before = {name: {"thresholds": d["calibration"]["thresholds"], "calibration": d["calibration"]}
                  for name, d in shipped.items()}  # the bundle's own choice, made on the same scores  # fmt: skip
        result = evaluate(models, calibration, judged, data.labels, recipe.streaming, recipe.data.features,
                          reporter.log, reporter.progress, chosen_before=before)  # fmt: skip
        result["plot"] = plot_det(result, tmp / "det.png")
        result["cost"] = cost(recipe.streaming, recipe.data.features, {n: a.meta["metrics"] for n, a in targets})
        meta["result"] = result

    art = store.get_or_build("streaming", key, build)
    _log_done(reporter, art)
    return art


def run_explain(
    recipe: Recipe,
    data: FeatureSet,
    stages: list[tuple[str, Artifact]],
    targets: list[tuple[str, Artifact]],
    compiled_keys: list[str],
    store: Store,
    reporter: Reporter,
    field_sets: list[FieldSet] = (),
) -> Artifact | None:
    """The explain section as one more cached step: it depends on every model of the run (the compiled targets,
    not their measurements, so `--remeasure` does not redo it), on the control twin, and on the data."""
    if not recipe.explain.enabled or not stages or not stages[0][1].file("model.keras").exists():
        return None
    from pipeline.analysis.explain import explain

    twin = control_twin(recipe, data, store, reporter)
    reporter.scope = "explain"
    key = digest(
        {
            "explain": recipe.explain.model_dump(mode="json", exclude={"budgets"}),  # budgets are checked, not computed
            "models": [art.key for _, art in stages] + compiled_keys,
            "twin": twin[1].key if twin else None,
            "data": data.key,
            "field": [fs.key for fs in field_sets],
            "seed": recipe.seed,
            "code": fingerprint(EXPLAIN_CODE),
        }
    )

    def build(tmp: Path, meta: dict) -> None:
        models = find_models(_dirs(stages), _dirs(targets))
        removed = _pruned_filters(_dirs(stages))
        meta["result"] = explain(models, data, recipe.explain, recipe.seed, tmp, removed, reporter.log,
                                 twin[0] if twin else None, field_sets)  # fmt: skip

    art = store.get_or_build("explain", key, build)
    _log_done(reporter, art)
    return art


def cached_arrays(store: Store, data: FeatureSet) -> Callable[[str, dict[str, Any], Callable[[], dict]], dict]:
    """`StageContext.cached` for `data`: arrays a stage computes from the data set, stored under (kind, the data
    set's key and what else they depend on), so later stages and reruns load them instead of computing them. The
    key covers nothing else: `depends` must name every other input, the code that computes them included (e.g. its
    `fingerprint`)."""

    def cached(kind: str, depends: dict[str, Any], compute: Callable[[], dict]) -> dict:
        import numpy as np

        def build(tmp: Path, meta: dict) -> None:
            arrays = compute()
            for name, array in arrays.items():
                np.save(tmp / f"{name}.npy", array)
            meta["arrays"] = sorted(arrays)

        art = store.get_or_build(kind, digest({"data": data.key, **depends}), build)
        return {name: np.load(art.file(f"{name}.npy")) for name in art.meta["arrays"]}

    return cached


RETRAIN_SEED_OFFSET = 1000003  # k-th retraining of the first stage: the recipe's seed + k x this (mod 2^32)


def retrain_first_stage(
    recipe: Recipe, data: FeatureSet, store: Store, reporter: Reporter, k: int, what: str
) -> Artifact:
    """The chain's first stage (train) again at its k-th other seed, same data and schedule; cached like any stage,
    so a model the explain control (k = 1) and a distillation teacher share is trained once."""
    retrained = recipe.model_copy(update={"seed": (recipe.seed + k * RETRAIN_SEED_OFFSET) % 2**32})
    entry = recipe.stages[0]
    module = stage(entry.name)
    key = stage_key(retrained, 0, data, None)
    scope, reporter.scope = reporter.scope, what

    def build(tmp: Path, meta: dict) -> None:
        reporter.log(f"training {what} (seed {retrained.seed})")
        ctx = StageContext(retrained, data, None, tmp, reporter.log, reporter.progress, {},
                           cached=cached_arrays(store, data))  # fmt: skip
        meta["stage"] = entry.name
        meta["metrics"] = module.run(entry.config, ctx)

    try:
        art = store.get_or_build(f"stage-{entry.name}", key, build)
        _log_done(reporter, art)
    finally:
        reporter.scope = scope
    art.meta.setdefault("seed", retrained.seed)
    return art


def control_twin(
    recipe: Recipe, data: FeatureSet, store: Store, reporter: Reporter
) -> tuple[ModelRef, Artifact] | None:
    """The unpruned twin explain compares against: the first retraining of the chain's first stage (train)."""
    if not recipe.explain.control or recipe.stages[0].name != "train":
        return None
    art = retrain_first_stage(recipe, data, store, reporter, 1, "explain twin")
    ref = ModelRef("twin", "keras", art.file("model.keras"), "Keras float32", role="control")
    return ref, art


def _dirs(steps: list[tuple[str, Artifact]]) -> list[tuple[str, Path]]:
    return [(name, art.path) for name, art in steps]


def _pruned_filters(stage_dirs: list[tuple[str, Path]]) -> dict[str, Any] | None:
    """The prune stage's per-filter importance and kept flags, when the chain pruned."""
    from pipeline.stages.prune import FILTERS

    path = next((folder / FILTERS for name, folder in stage_dirs if name == "prune"), None)
    return json.loads(path.read_text()) if path is not None and path.exists() else None


def _last_float_model(recipe: Recipe, stages: list[tuple[str, Artifact]]) -> Path | None:
    """The last Keras model in the chain; the export key covers it, since keys chain through every stage."""
    from pipeline.stages.train import MODEL

    keras = [art for entry, (_, art) in zip(recipe.stages, stages, strict=True) if entry.config.produces == "keras"]
    return keras[-1].file(MODEL) if keras else None


def _log_done(reporter: Reporter, art: Artifact) -> None:
    metrics = art.meta.get("metrics", {})
    acc = metrics.get("accuracy")
    what = f"test accuracy {acc:.4f}" if acc is not None else "done"
    how = "cached" if art.cached else f"{art.meta.get('seconds', 0):.1f} s"
    reporter.log(f"✓ {what} ({how})")


def _row(name: str, art: Artifact) -> dict[str, Any]:
    row = {"name": name, **art.meta["metrics"], "seconds": art.meta.get("seconds", 0.0), "cached": art.cached}
    if "measured_at" in art.meta:
        row["measured_at"] = art.meta["measured_at"]
    return row


def _publish(
    run_dir: Path,
    recipe_file: Path,
    stages: list[tuple[str, Artifact]],
    targets: list[tuple[str, Artifact]],
    report: dict[str, Any],
    explain_art: Artifact | None = None,
    log_file: Path | None = None,
    streaming_art: Artifact | None = None,
) -> None:
    """Assemble the run directory beside its final place, then rename: readers never see half a run. A folder
    already at `run_dir` is replaced only when an earlier run wrote it (checked again here, just before)."""
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = run_dir.parent / f".{run_dir.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        shutil.copyfile(recipe_file, tmp / "recipe.yaml")
        for i, (name, art) in enumerate(stages, 1):
            _copy_artifact(art, tmp / "stages" / f"{i}-{name}")
        export = next((art for name, art in stages if name == "export"), None)
        if export is not None:
            _copy_artifact(export, tmp / "export")
        for name, art in targets:
            _copy_artifact(art, tmp / "export" / name)
        if explain_art is not None:
            _copy_artifact(explain_art, tmp / "explain")
        if streaming_art is not None:
            _copy_artifact(streaming_art, tmp / "streaming")
        write_json(tmp / "report.json", report)
        write_atomic(tmp / "report.md", render_markdown(report))
        if log_file is not None and log_file.is_file():
            shutil.copyfile(log_file, tmp / "run.log")
        write_atomic(tmp / RUN_MARKER, f"{report['recipe']} {report['run_id']}\n")
        check_out(run_dir)
        replace_dir(tmp, run_dir)  # --out onto an earlier run (or an empty folder): swapped, the old one dropped
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _copy_artifact(art: Artifact, dest: Path) -> None:
    shutil.copytree(art.path, dest, ignore=shutil.ignore_patterns(META))


def _point_latest(run_dir: Path) -> None:
    latest = run_dir.parent / "latest"
    tmp = run_dir.parent / f".latest.tmp-{os.getpid()}"
    tmp.unlink(missing_ok=True)
    os.symlink(run_dir.name, tmp)
    os.replace(tmp, latest)


def _open_run(
    run_dir: Path, reporter: Reporter, cache: Path | None
) -> tuple[dict, Recipe, Store, FeatureSet, list[tuple[str, Path]], list[tuple[str, Path]]]:
    """A finished run read back for recomputing a section: its report, recipe (paths relative to the recipe's
    folder), store, features, and the folders of its stages and targets."""
    from pipeline.recipe import load_recipe

    report = json.loads((run_dir / "report.json").read_text())
    recipe = load_recipe(run_dir / "recipe.yaml").with_base_dir(report.get("recipe_dir", run_dir))
    store = Store(cache or run_dir.parent.parent / ".cache")
    reporter.scope = "data"
    data, _ = prepare(recipe, store, reporter.progress, reporter.warn)
    stage_dirs = [(s["name"], run_dir / "stages" / f"{i}-{s['name']}") for i, s in enumerate(report["stages"], 1)]
    target_dirs = [(t["name"], run_dir / "export" / t["name"]) for t in report["targets"]]
    return report, recipe, store, data, stage_dirs, target_dirs


def reexplain(run_dir: Path, reporter: Reporter, cache: Path | None = None) -> dict[str, Any]:
    """Recompute the explain section of a finished run from its own files (no retraining), then swap in the new
    `explain/` folder and rewrite report.json/report.md."""
    from pipeline.analysis.explain import explain

    report, recipe, store, data, stage_dirs, target_dirs = _open_run(run_dir, reporter, cache)
    removed = _pruned_filters(stage_dirs)
    twin = control_twin(recipe, data, store, reporter)  # from the cache, or trained once
    field_sets = prepare_field_sets(recipe, data.labels, store, reporter.progress, reporter.warn)
    reporter.scope = "explain"
    tmp = run_dir / f".explain.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        models = find_models(stage_dirs, target_dirs)
        result = explain(models, data, recipe.explain, recipe.seed, tmp, removed, reporter.log,
                         twin[0] if twin else None, field_sets)  # fmt: skip
        replace_dir(tmp, run_dir / "explain")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    budgets = [b for b in report["budgets"] if not b["name"].startswith("explain.")]
    budgets += [b.as_dict() for b in budget_checks.check_explain(recipe, result)]
    report |= {"explain": result, "budgets": budgets, "ok": all(b["ok"] for b in budgets)}
    write_json(run_dir / "report.json", report)
    write_atomic(run_dir / "report.md", render_markdown(report))
    return report


def evaluate_run(
    run_dir: Path, data_dir: Path, name: str, reporter: Reporter, cache: Path | None = None
) -> dict[str, Any]:
    """Judge every model of a finished run on another folder of recordings (no retraining); the set joins the
    run's field tests in report.json/report.md."""
    from pipeline.analysis.field import evaluate

    report, recipe, store, data, stage_dirs, target_dirs = _open_run(run_dir, reporter, cache)
    field_set = prepare_field_set(name, data_dir, data.labels, recipe.data.features, store, reporter.progress)
    if field_set.unreadable:
        reporter.warn(f"{len(field_set.unreadable)} unreadable file(s) in {data_dir} skipped")
    reporter.scope = "field"
    new = evaluate(find_models(stage_dirs, target_dirs), [synthetic_test_set(data), field_set], data.labels,
                   reporter.log)  # fmt: skip
    old = report.get("field_tests")
    if old:  # keep the sets judged before; this one replaces a set of the same name
        new["sets"] = [s for s in old["sets"] if s["name"] != name] + [s for s in new["sets"] if s["name"] == name]
        for row, old_row in zip(new["models"], old["models"], strict=True):
            row["sets"] = {k: v for k, v in old_row["sets"].items() if k != name} | {name: row["sets"][name]}
    report["field_tests"] = new
    write_json(run_dir / "report.json", report)
    write_atomic(run_dir / "report.md", render_markdown(report))
    return report


def evaluate_streams(
    run_dir: Path, reporter: Reporter, cache: Path | None = None, wav: Path | None = None, labels: Path | None = None
) -> dict[str, Any]:
    """Every target model of a finished run listening to a recording with a label file (`wav`, `labels`), or to
    the recipe's streams (synthetic test and field sets) when none is given. Thresholds come from the run's
    streaming section when it has them, else they are chosen now on the synthetic validation stream (the
    recipe's `streaming` settings, or the defaults). The streams join the run's streaming section."""
    from pipeline.analysis.streaming import cost, evaluate
    from pipeline.analysis.streaming_plots import plot_det
    from pipeline.data import DataError
    from pipeline.streams import read_stream

    report, recipe, store, data, _, target_dirs = _open_run(run_dir, reporter, cache)
    models = find_models([], target_dirs)
    if not models:
        raise DataError(f"{run_dir}: the run has no target models to listen with")
    old = report.get("streaming") or {}
    cfg = (
        StreamingConfig.model_validate(old["settings"])
        if old.get("settings")
        else recipe.streaming or StreamingConfig()
    )
    chosen = {row["model"]: row for row in old.get("models", [])}
    reuse = chosen if all(m.name in chosen for m in models) else None
    reporter.scope = "streaming"
    calibration = [] if reuse else [synthetic_stream_of(recipe, data, "val", cfg)]
    if wav is not None:
        judged = [read_stream(wav, labels, data.labels, recipe.data.features.sample_rate)]
    else:
        judged = judged_streams(recipe, data, cfg)
    new = evaluate(models, calibration, judged, data.labels, cfg, recipe.data.features, reporter.log,
                   reporter.progress, chosen_before=reuse)  # fmt: skip
    if reuse:  # keep the streams judged before; these replace streams of the same name
        names = {s["name"] for s in new["streams"]}
        new["calibration_streams"] = old["calibration_streams"]
        new["streams"] = [s for s in old["streams"] if s["name"] not in names] + new["streams"]
        for row in new["models"]:
            row["sets"] = {k: v for k, v in chosen[row["model"]]["sets"].items() if k not in names} | row["sets"]
    metrics = {t["name"]: t for t in report["targets"]}
    new["cost"] = cost(cfg, recipe.data.features, metrics)
    folder = run_dir / "streaming"
    folder.mkdir(exist_ok=True)
    new["plot"] = plot_det(new, folder / "det.png")
    report["streaming"] = new
    write_json(run_dir / "report.json", report)
    write_atomic(run_dir / "report.md", render_markdown(report))
    return report
