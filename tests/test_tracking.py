"""MLflow tracking (issue #46): a finished run logged with every figure, its provenance, the recipe and the bundle;
once per experiment; into a local folder, a legacy file store and a real `mlflow server`; a server that is down
costs a warning, never the run."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import TINY, run_cli


def _run_dir(tiny_run) -> Path:
    runs, _ = tiny_run
    return (runs / "tiny" / "latest").resolve()


def _only_run(client, experiment: str):
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no experiment {experiment}"
    runs = client.search_runs([found.experiment_id])
    assert len(runs) == 1, [r.info.run_name for r in runs]
    return runs[0]


def _check_logged(client, run, run_dir: Path) -> None:
    report = json.loads((run_dir / "report.json").read_text())
    tflm = next(t for t in report["targets"] if t["name"] == "tflm")
    metrics, tags = run.data.metrics, run.data.tags
    assert metrics["target/tflm/flash_bytes"] == tflm["figures"]["flash"]["value"]
    assert metrics["target/tflm/accuracy"] == pytest.approx(tflm["accuracy"])
    latency = tflm["figures"]["latency"]
    assert tags["target/tflm/latency_ms"].startswith("measured: " if latency["measured"] else "estimate: ")
    for stage in report["stages"]:
        assert metrics[f"stage/{stage['name']}/accuracy"] == pytest.approx(stage["accuracy"])
    history = client.get_metric_history(run.info.run_id, "stage/train/history/val_accuracy")
    assert [m.step for m in history] == list(range(len(report["stages"][0]["history"]["val_accuracy"])))
    # YAML 1.2, as recipes are read: the keywords stay words, never booleans.
    assert json.loads(run.data.params["data.keywords"]) == ["yes", "no", "up", "down"]
    assert run.data.params["stages.prune.target"] == "0.5" and tags["pipeline.run_id"] == report["run_id"]
    top = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"report.md", "report.json", "recipe.yaml", "export"} <= top
    bundle = {a.path for a in client.list_artifacts(run.info.run_id, "export/tflm")}
    assert "export/tflm/manifest.json" in bundle


def test_a_finished_run_is_logged_once_into_a_local_folder(tiny_run, tmp_path):
    from mlflow.tracking import MlflowClient

    run_dir = _run_dir(tiny_run)
    first = run_cli("track", str(run_dir), "--mlflow", "mlruns", cwd=tmp_path)  # a folder, from outside the checkout
    assert first.returncode == 0, first.stderr[-3000:]
    again = run_cli("track", str(run_dir), "--mlflow", "mlruns", cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    run = _only_run(client, "tiny")  # logged twice, one run
    assert run.info.status == "FINISHED"
    _check_logged(client, run, run_dir)
    assert "Creating initial MLflow database" not in first.stderr + first.stdout


def test_a_file_store_uri_still_works(tiny_run, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    from pipeline.connect.tracking import log_run

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # what `store` would set for the process, undone after
    store = (tmp_path / "mlruns").as_uri()
    log_run(_run_dir(tiny_run), store, "legacy")
    assert (tmp_path / "mlruns").is_dir()
    client = MlflowClient(store)
    _check_logged(client, _only_run(client, "legacy"), _run_dir(tiny_run))


def test_a_recipe_with_tracking_logs_its_runs_and_a_dead_server_costs_only_a_warning(tiny_run, tmp_path):
    runs = tmp_path / "runs"  # its own runs folder (`latest` moves), the tiny run's cache: nothing is retrained
    runs.mkdir()
    (runs / ".cache").symlink_to(tiny_run[0] / ".cache")
    recipes, elsewhere = tmp_path / "recipes", tmp_path / "elsewhere"
    recipes.mkdir(), elsewhere.mkdir()
    recipe = recipes / "tiny.yaml"  # its tracking folder is relative to the recipe's folder, not to where it runs
    recipe.write_text(TINY.read_text() + "tracking: {mlflow: tracked, experiment: e1}\n")
    done = run_cli("run", str(recipe), "--runs-dir", str(runs), "-q", cwd=elsewhere)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "logged to MLflow" in done.stdout and not (elsewhere / "tracked").exists()
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{recipes / 'tracked' / 'mlflow.db'}")
    assert _only_run(client, "e1").data.tags["pipeline.run_id"] == json.loads(
        (runs / "tiny" / "latest" / "report.json").read_text())["run_id"]  # fmt: skip
    port = _free_port()  # nothing listens there
    started = time.monotonic()
    dead = run_cli("track", str(runs / "tiny" / "latest"), "--mlflow", f"http://127.0.0.1:{port}", cwd=tmp_path)
    assert dead.returncode == 3 and f"127.0.0.1:{port}" in dead.stderr and "pipeline track" in dead.stderr
    assert time.monotonic() - started < 120  # MLflow's own retries would wait about 4 minutes


def test_a_run_that_failed_its_budgets_is_logged_once_and_shown_failed(tiny_run, tmp_path):
    import shutil

    from mlflow.tracking import MlflowClient

    from pipeline.connect.tracking import log_run

    run_dir = tmp_path / "over-budget"
    shutil.copytree(_run_dir(tiny_run), run_dir)
    report = json.loads((run_dir / "report.json").read_text())
    report["ok"] = False
    (run_dir / "report.json").write_text(json.dumps(report))
    first, _ = log_run(run_dir, str(tmp_path / "mlruns"))
    second, _ = log_run(run_dir, str(tmp_path / "mlruns"))
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    run = _only_run(client, "tiny")
    assert first == second == run.info.run_id and run.info.status == "FAILED"
    assert run.data.tags["pipeline.within_budgets"] == "False"
    assert len(client.get_metric_history(run.info.run_id, "target/tflm/accuracy")) == 1  # not logged twice


def test_a_bad_tracking_section_is_a_located_recipe_error(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(TINY.read_text() + "tracking: {mlflow: '', experimnt: x}\n")
    done = run_cli("validate", str(recipe), cwd=tmp_path)
    assert done.returncode == 2
    assert f"{recipe}:" in done.stderr and "tracking.mlflow" in done.stderr and "experiment" in done.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def mlflow_server(tmp_path):
    """A real MLflow tracking server on 127.0.0.1 (SQLite backend, artifacts proxied through the server)."""
    port = _free_port()
    mlflow = Path(sys.executable).with_name("mlflow")
    log = (tmp_path / "server.log").open("w")
    server = subprocess.Popen(
        [str(mlflow), "server", "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
         "--artifacts-destination", str(tmp_path / "server-artifacts"), "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1"], stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                if urllib.request.urlopen(f"{url}/health", timeout=1).status == 200:
                    break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail(f"mlflow server did not start: {(tmp_path / 'server.log').read_text()[-2000:]}")
        yield url
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)
        log.close()


def test_a_real_mlflow_server_receives_the_run(tiny_run, mlflow_server, tmp_path):
    from mlflow.tracking import MlflowClient

    done = run_cli("track", str(_run_dir(tiny_run)), "--mlflow", mlflow_server, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"{mlflow_server}/#/experiments/" in done.stdout  # a link a person can open
    client = MlflowClient(mlflow_server)
    _check_logged(client, _only_run(client, "tiny"), _run_dir(tiny_run))
    body = json.dumps({"experiment_ids": [client.get_experiment_by_name("tiny").experiment_id]}).encode()
    request = urllib.request.Request(f"{mlflow_server}/api/2.0/mlflow/runs/search", data=body,
                                     headers={"Content-Type": "application/json"})  # fmt: skip
    (run,) = json.loads(urllib.request.urlopen(request, timeout=30).read())["runs"]  # the REST API, as the UI reads it
    assert any(m["key"] == "target/tflm/ram_bytes" for m in run["data"]["metrics"])


@pytest.mark.slow
def test_two_runs_compare_side_by_side_in_the_mlflow_ui(tiny_run, mlflow_server, tmp_path):
    """The UI a team will use, rendered by a real browser: two runs of the tiny recipe on the compare page."""
    import shutil

    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        pytest.skip("no Chromium here (apt install chromium)")
    from mlflow.tracking import MlflowClient

    second = tmp_path / "second"
    shutil.copytree(_run_dir(tiny_run), second)
    report = json.loads((second / "report.json").read_text())
    report["run_id"] += "-copy"
    (second / "report.json").write_text(json.dumps(report))
    for run_dir in (_run_dir(tiny_run), second):
        assert run_cli("track", str(run_dir), "--mlflow", mlflow_server, cwd=tmp_path).returncode == 0
    client = MlflowClient(mlflow_server)
    experiment = client.get_experiment_by_name("tiny").experiment_id
    ids = [r.info.run_id for r in client.search_runs([experiment])]
    url = f"{mlflow_server}/#/compare-runs?runs={json.dumps(ids)}&experiments={json.dumps([experiment])}"
    dom = subprocess.run([browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=20000",
                          "--dump-dom", url], capture_output=True, text=True, timeout=120).stdout  # fmt: skip
    assert "Comparing 2 Runs" in dom and report["run_id"] in dom and report["run_id"].removesuffix("-copy") in dom
