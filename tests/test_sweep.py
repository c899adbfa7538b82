"""Sweeps on Ray Tune (issue #20): a grid over the tiny recipe, its Pareto front and best recipe, resumption,
a failing trial recorded, and sweep files with located errors."""

from __future__ import annotations

import json
import textwrap

import pytest

from pipeline.engine.sweep import SweepError, load_sweep, pareto_front
from pipeline.recipe import load_recipe
from tests.conftest import ROOT, run_cli

SWEEP = ROOT / "tests" / "recipes" / "tiny_sweep.yaml"


@pytest.fixture(scope="module")
def swept(tiny_run, tmp_path_factory):
    """The tiny sweep run once from a folder outside the checkout, on the tiny run's cache."""
    runs, _ = tiny_run
    where = tmp_path_factory.mktemp("sweep")
    out = where / "out"
    trains_before = sorted(p.name for p in (runs / ".cache").glob("stage-train-*"))
    done = run_cli("sweep", str(SWEEP), "--out", str(out), "--cache", str(runs / ".cache"), "--mlflow", "mlruns",
                   cwd=where)  # fmt: skip
    return runs, out, done, trains_before


def test_a_grid_sweep_writes_every_trial_the_front_and_a_runnable_best_recipe(swept):
    runs, out, done, trains_before = swept
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((out / "pareto.json").read_text())
    trials = result["trials"]
    assert len(trials) == 4 and all(t["state"] == "done" for t in trials)
    assert {(t["config"]["stages.prune.target"], t["config"]["stages.finetune.epochs"]) for t in trials} == {
        (0.25, 1), (0.25, 2), (0.5, 1), (0.5, 2)}  # fmt: skip
    goals = result["objectives"]
    front = {trials[i]["name"] for i in pareto_front([t["figures"] for t in trials], goals)}
    assert set(result["pareto"]) == front and front
    # Pruning a quarter keeps more filters: more RAM than the 11 KB budget (the firmware's RAM on the emulated board:
    # arena, static RAM, stack), so only half-pruned trials qualify.
    for t in trials:
        assert t["within_budgets"] == (t["figures"]["tflm.ram_kb"] <= 11), t
    best = next(t for t in trials if t["name"] == result["best"])
    within = [t for t in trials if t["within_budgets"]]
    assert within and best["figures"]["tflm.accuracy"] == max(t["figures"]["tflm.accuracy"] for t in within)
    recipe = load_recipe(out / "best.yaml")  # runnable: it validates, from anywhere
    assert recipe.stage("prune").target == best["config"]["stages.prune.target"]
    assert recipe.stage("finetune").epochs == best["config"]["stages.finetune.epochs"]
    assert (out / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and "<table>" in (
        out / "pareto.html"
    ).read_text()
    # Every trial is a complete run whose report says the shared train stage came from the cache.
    for t in trials:
        report = json.loads((out / "trials" / t["name"] / "report.json").read_text())
        assert report["stages"][0]["name"] == "train" and report["stages"][0]["cached"]
    assert sorted(p.name for p in (runs / ".cache").glob("stage-train-*")) == trains_before
    assert "4/4 done, 0 running, 0 failed" in done.stderr


def test_a_sweep_is_one_mlflow_run_with_a_child_run_per_trial(swept):
    from mlflow.tracking import MlflowClient

    _, out, done, _ = swept
    client = MlflowClient(f"sqlite:///{out.parent / 'mlruns' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("tiny_sweep")
    runs = client.search_runs([experiment.experiment_id])
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    result = json.loads((out / "pareto.json").read_text())
    assert sorted(r.data.tags["pipeline.trial"] for r in children) == sorted(t["name"] for t in result["trials"])
    for child in children:  # each child carries its point of the space and its own run's figures
        trial = next(t for t in result["trials"] if t["name"] == child.data.tags["pipeline.trial"])
        assert json.loads(child.data.tags["trial.stages.prune.target"]) == trial["config"]["stages.prune.target"]
        assert child.data.metrics["target/tflm/accuracy"] == pytest.approx(trial["figures"]["tflm.accuracy"])
    assert parent.data.tags["pipeline.best_trial"] == result["best"] and "logged to MLflow" in done.stdout
    assert {a.path for a in client.list_artifacts(parent.info.run_id)} >= {"pareto.json", "pareto.png", "best.yaml"}


def test_rerunning_a_finished_sweep_redoes_no_trial(swept):
    runs, out, _, _ = swept
    stamps = {p.name: p.stat().st_mtime_ns for p in (out / "trials").glob("*/report.json")}
    again = run_cli("sweep", str(SWEEP), "--out", str(out), "--cache", str(runs / ".cache"), cwd=out.parent)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resuming" in again.stderr
    assert {p.name: p.stat().st_mtime_ns for p in (out / "trials").glob("*/report.json")} == stamps
    assert len(json.loads((out / "pareto.json").read_text())["trials"]) == 4
    changed = out.parent / "changed.yaml"
    changed.write_text(
        SWEEP.read_text()
        .replace("[1, 2]", "[1, 3]")
        .replace("recipe: tiny.yaml", f"recipe: {SWEEP.parent / 'tiny.yaml'}")
    )
    mixed = run_cli("sweep", str(changed), "--out", str(out), "--cache", str(runs / ".cache"), cwd=out.parent)
    assert mixed.returncode == 2 and "holds a sweep of another version" in mixed.stderr


def test_a_failing_trial_is_recorded_with_its_reason_and_the_sweep_goes_on(tiny_run, tmp_path):
    runs, _ = tiny_run
    sweep = tmp_path / "failing.yaml"
    sweep.write_text(
        textwrap.dedent(f"""\
        name: failing
        recipe: {ROOT / "tests" / "recipes" / "tiny.yaml"}
        set: {{explain.enabled: false, targets.android.adb_serial: null, targets.android.benchmark_model: null}}
        space:
          data.fallback: [synthetic, none]   # 'none': the missing data.path is an error at run time
        objectives: {{tflm.accuracy: max, tflm.ram_kb: min}}
        """)
    )
    done = run_cli("sweep", str(sweep), "--out", str(tmp_path / "out"), "--cache", str(runs / ".cache"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    trials = {
        t["config"]["data.fallback"]: t for t in json.loads((tmp_path / "out" / "pareto.json").read_text())["trials"]
    }
    assert trials["synthetic"]["state"] == "done" and trials["none"]["state"] == "failed"
    assert "does not exist" in trials["none"]["reason"]
    assert "1 failed" in done.stderr and "failed: " in done.stdout


def test_a_bad_sweep_file_gets_located_errors(tmp_path):
    sweep = tmp_path / "bad.yaml"
    sweep.write_text(
        textwrap.dedent(f"""\
        name: bad
        recipe: {ROOT / "tests" / "recipes" / "tiny.yaml"}
        space:
          stages.prnue.target: [0.25, 0.5]
          stages.prune.target: [0.5, 1.5]
          model.filters: {{low: 8, high: 32}}
        objectives:
          tflm.ram_mb: min
          field.nowhere.tflm: max
        budgets:
          tflmm: {{ram_kb: 48}}
        """)
    )
    with pytest.raises(SweepError) as caught:
        load_sweep(sweep)
    text = str(caught.value)
    assert f"{sweep}:4: space.stages.prnue.target: 0.25: the recipe has no stage 'prnue'; did you mean 'prune'?" in text
    assert f"{sweep}:5: space.stages.prune.target: 1.5: makes the recipe invalid" in text
    assert f"{sweep}:6: space.model.filters: a grid needs a list or a range with `step`" in text
    assert f"{sweep}:8: objectives.tflm.ram_mb: unknown figure 'ram_mb'; did you mean 'ram_kb'?" in text
    assert f"{sweep}:9: objectives.field.nowhere.tflm: no field test 'nowhere'" in text
    assert f"{sweep}:11: budgets.tflmm: no target 'tflmm' in the recipe; did you mean 'tflm'?" in text
    done = run_cli("sweep", str(sweep), "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert done.returncode == 2 and "prnue" in done.stderr and not (tmp_path / "out").exists()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    refused = run_cli("sweep", str(SWEEP), "--out", str(tmp_path / "mine"), cwd=tmp_path)
    assert refused.returncode == 2 and "was not written by `pipeline sweep`" in refused.stderr


def test_pareto_front_keeps_exactly_the_non_dominated_points():
    goals = {"acc": "max", "ram": "min"}
    points = [{"acc": 0.9, "ram": 10}, {"acc": 0.8, "ram": 5}, {"acc": 0.8, "ram": 10}, {"acc": 0.95, "ram": 20},
              {"acc": 0.9, "ram": 10}]  # fmt: skip
    assert pareto_front(points, goals) == [0, 1, 3, 4]  # 2 is dominated by 0; equal points both stay


def test_optuna_searches_the_space_with_several_objectives(swept, tmp_path):
    """Multi-objective Optuna through Ray Tune's OptunaSearch; its trials reuse the grid's cached runs."""
    runs, _, _, _ = swept
    sweep = tmp_path / "optuna.yaml"
    text = SWEEP.read_text().replace("name: tiny_sweep", "name: tiny_optuna")
    text = text.replace("recipe: tiny.yaml", f"recipe: {ROOT / 'tests' / 'recipes' / 'tiny.yaml'}")
    sweep.write_text(text.replace("search: {method: grid}", "search: {method: optuna, samples: 3, seed: 1}"))
    done = run_cli("sweep", str(sweep), "--out", str(tmp_path / "out"), "--cache", str(runs / ".cache"), cwd=tmp_path)
    assert done.returncode in (0, 1), done.stderr[-3000:]
    result = json.loads((tmp_path / "out" / "pareto.json").read_text())
    assert result["method"] == "optuna" and len(result["trials"]) == 3
    space = {(0.25, 1), (0.25, 2), (0.5, 1), (0.5, 2)}
    assert all(
        (t["config"]["stages.prune.target"], t["config"]["stages.finetune.epochs"]) in space for t in result["trials"]
    )
    assert all(t["state"] == "done" for t in result["trials"]) and result["pareto"]


def test_the_flagship_sweep_file_loads_and_every_trial_is_a_valid_recipe():
    sweep = load_sweep(ROOT / "recipes" / "kws_mcu_sweep.yaml")
    points = sweep.grid()
    assert len(points) == 8 and {p["model.filters"] for p in points} == {48, 64}
    recipes = [sweep.recipe(p) for p in points]
    assert {(r.model.filters, r.stages[1].config.target) for r in recipes} == {
        (f, t) for f in (48, 64) for t in (0.25, 0.5, 0.625, 0.75)
    }
    assert all(not r.explain.enabled for r in recipes)  # the sweep's shared override
