"""The tool outside the lab: foreign --out folders, re-measured nights, runtime upgrades, children that fail for
reasons other than arena size, and missing data folders."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from pipeline.engine.fingerprint import fingerprint, import_closure
from tests.conftest import ROOT, TINY, run_cli


def test_out_onto_a_foreign_folder_is_refused_and_left_intact(tmp_path):
    precious = tmp_path / "home"
    (precious / "notes").mkdir(parents=True)
    (precious / "sentinel.txt").write_text("mine")
    (precious / "notes" / "a.txt").write_text("also mine")
    before = sorted(p.relative_to(precious) for p in precious.rglob("*"))
    done = run_cli("run", str(TINY), "--runs-dir", str(tmp_path / "runs"), "--out", str(precious))
    assert done.returncode == 2
    assert "was not written by `pipeline run`" in done.stderr and str(precious) in done.stderr
    assert sorted(p.relative_to(precious) for p in precious.rglob("*")) == before
    assert (precious / "sentinel.txt").read_text() == "mine"
    assert not (tmp_path / "runs").exists()  # refused before any work
    a_file = tmp_path / "report.txt"
    a_file.write_text("x")
    done = run_cli("run", str(TINY), "--runs-dir", str(tmp_path / "runs"), "--out", str(a_file))
    assert done.returncode == 2 and "not a folder" in done.stderr and a_file.read_text() == "x"


def test_out_replaces_an_earlier_run_of_its_own(tiny_run, tmp_path):
    runs, _ = tiny_run
    out = tmp_path / "run"
    for _ in range(2):
        done = run_cli("run", str(TINY), "--runs-dir", str(runs), "--out", str(out), "-q")
        assert done.returncode == 0, done.stderr[-3000:]
        assert (out / ".edge-pipeline-run").is_file() and (out / "report.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no .tmp/.old folder left beside it


def test_report_warns_when_data_path_is_missing(tiny_run):
    runs, done = tiny_run
    report = json.loads((runs / "tiny" / "latest" / "report.json").read_text())
    assert "data.path 'does/not/exist' does not exist" in done.stderr.replace("\n", " ")
    assert any("does/not/exist" in w and "synthetic" in w for w in report["warnings"])
    assert "**Warning:** data.path 'does/not/exist'" in (runs / "tiny" / "latest" / "report.md").read_text()


def test_fallback_none_makes_a_missing_data_path_an_error(tmp_path):
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(TINY.read_text().replace("fallback: synthetic", "fallback: none"))
    done = run_cli("run", str(recipe), "--runs-dir", str(tmp_path / "runs"))
    assert done.returncode == 2
    assert "data.path 'does/not/exist' does not exist" in done.stderr and str(tmp_path) in done.stderr
    assert not list((tmp_path / "runs").glob("tiny*")) and not list((tmp_path / "runs").glob(".cache/*"))


def test_library_chatter_goes_to_the_run_log(tiny_run):
    runs, done = tiny_run
    first = min(p for p in (runs / "tiny").iterdir() if not p.is_symlink())  # the fixture's run (later ones replay)
    log = (first / "run.log").read_text()
    assert "pipeline INFO: train:" in log  # what the console showed, plus ...
    assert "nncf" in log  # ... what the libraries said, which the console did not
    for chatter in ("FutureWarning", "nncf INFO", "Skipping variable loading"):
        assert chatter not in done.stderr


# --- what a cache key covers ----------------------------------------------------------------------------------


def test_cache_keys_follow_the_import_closure_and_child_processes():
    modules, external = import_closure("targets.tflm")
    assert {"targets.tflm", "pipeline.runtimes.tflm_child", "targets.tflm.bundle", "pipeline.tflite_model"} <= set(
        modules
    )
    assert "pipeline.runtimes.tflm_child" in modules  # started as `python -m`, found through run_module(...)
    assert "targets.openvino" not in modules and "pipeline.analysis.report" not in modules
    assert "tflite_micro" in external
    assert "openvino" in import_closure("targets.openvino")[1]
    assert "targets.openvino.child" in import_closure("targets.openvino")[0]
    tflm = fingerprint("targets.tflm")
    assert any(name.startswith("tflite") and name.endswith("micro") for name in tflm["runtimes"])
    assert fingerprint("targets.tflm")["code"] != fingerprint("targets.android")["code"]


def test_a_new_runtime_version_rebuilds_the_steps_that_use_it(tiny_run, tmp_path, monkeypatch):
    """tflite-micro 'upgraded': the TFLM and Android targets (which read models with tflite-micro's schema) and
    explain rebuild; training and OpenVINO do not."""
    from importlib import metadata

    import pipeline.engine.fingerprint as fp
    from pipeline.engine.progress import Reporter
    from pipeline.engine.runner import run_recipe
    from pipeline.recipe import load_recipe

    real = metadata.version
    monkeypatch.setattr(fp.metadata, "version", lambda d: "9.9.9" if d.replace("-", "_") == "tflite_micro" else real(d))
    runs, _ = tiny_run
    result = run_recipe(load_recipe(TINY), TINY, Reporter(quiet=True), runs_root=runs, out=tmp_path / "run")
    cached = {row["name"]: row["cached"] for row in result.report["stages"] + result.report["targets"]}
    assert cached == {"train": True, "prune": True, "finetune": True, "quantize": True, "export": True,
                      "tflm": False, "android": False, "openvino": True}  # fmt: skip


def test_remeasure_takes_new_figures_and_keeps_the_builds(tiny_run, tmp_path):
    runs, _ = tiny_run
    before = json.loads((runs / "tiny" / "latest" / "report.json").read_text())
    done = run_cli("run", str(TINY), "--runs-dir", str(runs), "--out", str(tmp_path / "run"), "--remeasure")
    assert done.returncode == 0, done.stderr[-3000:]
    after = json.loads((tmp_path / "run" / "report.json").read_text())
    assert all(s["cached"] for s in after["stages"]) and not any(t["cached"] for t in after["targets"])
    for old, new in zip(before["targets"], after["targets"], strict=True):
        assert new["measured_at"] >= old["measured_at"]
        # A new timing, not a replay (the host's: the emulated board's instruction count repeats exactly).
        timing = "host_latency_ms" if "host_latency_ms" in new else "latency_ms"
        assert new[timing]["median"] != old[timing]["median"]
        assert new["accuracy"] == old["accuracy"]  # the same builds
    assert after["targets"][0]["arena"]["measured"] == before["targets"][0]["arena"]["measured"]


SLOW_TFLM = '''
"""Injected by a test: every TFLM invoke takes 3 ms longer (the runtime got slower, nothing else changed)."""
import importlib.abc, importlib.util, sys, time

class _Slow(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != "tflite_micro.python.tflite_micro.runtime":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        run = spec.loader.exec_module
        def exec_module(module):
            run(module)
            invoke = module.Interpreter.invoke
            def slow(self, *args, **kwargs):
                time.sleep(0.003)
                return invoke(self, *args, **kwargs)
            module.Interpreter.invoke = slow
        spec.loader.exec_module = exec_module
        return spec

sys.meta_path.insert(0, _Slow())
'''


def test_nightly_measures_again_and_names_an_injected_slowdown(tiny_run, tmp_path):
    runs = tmp_path / "runs"  # its own runs folder (nights repoint `latest`), the shared cache
    runs.mkdir()
    (runs / ".cache").symlink_to(tiny_run[0] / ".cache")
    inventory = tmp_path / "devices.yaml"
    inventory.write_text("devices:\n  - {name: this-host, kind: host}\n")
    history = tmp_path / "history.json"
    nightly = [sys.executable, str(ROOT / "scripts" / "nightly.py"), str(TINY), "--runs-dir", str(runs),
               "--inventory", str(inventory), "--history", str(history)]  # fmt: skip
    first = subprocess.run(nightly, capture_output=True, text=True, cwd=tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr[-3000:]
    slow = tmp_path / "slow"
    slow.mkdir()
    (slow / "sitecustomize.py").write_text(textwrap.dedent(SLOW_TFLM))
    env = {**os.environ, "PYTHONPATH": str(slow)}
    second = subprocess.run(nightly, capture_output=True, text=True, cwd=tmp_path, env=env)
    assert second.returncode == 1, second.stdout + second.stderr[-3000:]
    regressions = next(line for line in second.stdout.splitlines() if line.startswith("regressions:"))
    # The host interpreter got slower; the firmware's instruction count on the emulated board did not move.
    assert "tflm.host_latency_ms" in regressions and "accuracy" not in regressions
    assert "tflm.instructions" not in regressions
    nights = json.loads(history.read_text())
    assert nights[1]["figures"]["tflm.host_latency_ms"] > nights[0]["figures"]["tflm.host_latency_ms"] + 2.5


# --- TFLM children fail for their own reasons -------------------------------------------------------------------


def test_a_failing_probe_is_not_a_small_arena(tmp_path):
    from pipeline.runtimes.tflm import TflmError, allocates

    sample = tmp_path / "x.npy"
    np.save(sample, np.zeros((1, 4), np.int8))
    with pytest.raises(TflmError) as info:
        allocates(tmp_path / "missing.tflite", 4096, sample)
    assert "No such file" in str(info.value) and "exit code 1" in str(info.value)


@pytest.fixture(scope="module")
def hybrid_model(tmp_path_factory) -> Path:
    """Dynamic-range quantization: int8 weights, float activations (LiteRT runs it, TFLM does not)."""
    import tensorflow as tf

    model = tf.keras.Sequential([tf.keras.Input((64,)), tf.keras.layers.Dense(64), tf.keras.layers.Dense(8)])
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    path = tmp_path_factory.mktemp("hybrid") / "hybrid.tflite"
    path.write_bytes(converter.convert())
    return path


def test_profile_names_a_hybrid_model_and_the_fix(hybrid_model, tmp_path):
    shutil.copy(hybrid_model, tmp_path / "hybrid.tflite")
    done = run_cli("profile", "hybrid.tflite", "--out", "bundle", cwd=tmp_path)
    assert done.returncode == 2
    assert "hybrid model" in done.stderr and "representative" in done.stderr and "TFLITE_BUILTINS_INT8" in done.stderr
    assert "could not allocate" not in done.stderr


def test_tflm_own_hybrid_message_is_named_too(hybrid_model, tmp_path):
    """Past the static check: TFLM's own words from the child become the same named reason."""
    from pipeline.runtimes.tflm import ModelNotSupportedError, allocates

    sample = tmp_path / "x.npy"
    np.save(sample, np.zeros((1, 64), np.float32))
    with pytest.raises(ModelNotSupportedError, match="representative data set"):
        allocates(hybrid_model, 1 << 20, sample)


def test_explain_crash_exits_3_not_the_budget_code(tiny_run, tmp_path):
    runs, _ = tiny_run
    run_dir = tmp_path / "copy"
    shutil.copytree((runs / "tiny" / "latest").resolve(), run_dir)
    shutil.rmtree(run_dir / "export" / "tflm")
    done = run_cli("explain", str(run_dir), "--cache", str(runs / ".cache"))
    assert done.returncode == 3 and "explain section failed" in done.stderr
