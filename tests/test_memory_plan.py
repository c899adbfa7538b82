"""Offline memory plans: smaller arenas than TFLM's planner, checked on the real TFLM interpreter before shipping."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

from pipeline.runtimes.tflm import tflm_outputs
from pipeline.tflite_model import random_inputs, read_model
from targets.tflm import measure_with_plan, memory_plan
from targets.tflm.bundle import decode_c_array, verify_manifest
from targets.tflm.memory_plan import Buffer, check_plan, lower_bound, plan, read_plan
from tests.conftest import ROOT, run_cli

spec = importlib.util.spec_from_file_location("bench_memory_plan", ROOT / "scripts" / "bench_memory_plan.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)

# (size, first op, last op): largest-first placement (TFLM's order) needs 208 B; 176 B, the lower bound, suffices.
GREEDY_LOSES = [Buffer(i, size, first, last) for i, (size, first, last) in
                enumerate([(80, 0, 2), (96, 0, 1), (80, 4, 5), (32, 2, 4)])]  # fmt: skip


def test_the_planner_reaches_the_bound_where_largest_first_does_not():
    conflicts = {b.tensor: [o for o in GREEDY_LOSES if o.tensor != b.tensor and b.overlaps(o)] for b in GREEDY_LOSES}
    by_size = memory_plan._place(sorted(GREEDY_LOSES, key=lambda b: -b.size), conflicts)
    assert memory_plan._head(GREEDY_LOSES, by_size) == 208
    result = plan(GREEDY_LOSES)
    assert result["head"] == lower_bound(GREEDY_LOSES) == 176 and result["optimal"]
    assert check_plan(GREEDY_LOSES, result["offsets"]) == []
    found, _, finished = memory_plan._branch_and_bound(sorted(GREEDY_LOSES, key=lambda b: -b.size), conflicts, 208,
                                                       176, 10_000)  # fmt: skip
    assert finished and memory_plan._head(GREEDY_LOSES, found) == 176  # the exact search alone gets there too


def test_a_plan_that_overlaps_live_tensors_is_caught():
    offsets = {0: 0, 1: 0, 2: 0, 3: 96}  # tensors 0 and 1 live together at the same offset
    problems = check_plan(GREEDY_LOSES, offsets)
    assert any("tensors 0 and 1 are alive together" in p for p in problems)
    assert any("not 16-byte aligned" in p for p in check_plan(GREEDY_LOSES, {0: 8, 1: 96, 2: 0, 3: 176}))


@pytest.fixture(scope="module")
def mobilenet(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mobilenet")
    path = folder / "mobilenet.tflite"
    path.write_bytes(bench.mobilenet_v1())
    return path


def test_mobilenet_ships_a_plan_at_the_lower_bound_with_identical_outputs(mobilenet, tmp_path):
    """MobileNet-V1 0.25 at 96x96: TFLM's greedy head is 1.33x the live-tensor bound; the shipped plan is at it."""
    out = tmp_path / "bundle"
    done = run_cli("profile", str(mobilenet), "--out", str(out), "--runs", "10", timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((out / "profile.json").read_text())
    p = report["memory_plan"]
    assert p["shipped"] and p["planned_head"] == p["lower_bound"] == p["verified_head"] == report["arena"]["head"]
    assert p["tflm_head"] >= 1.3 * p["lower_bound"] and p["arena_saved"] >= p["tflm_head"] - p["planned_head"]
    assert p["seconds"] < 10
    shipped = (out / "model.tflite").read_bytes()
    assert read_plan(shipped) is not None and decode_c_array((out / "src" / "model_data.cpp").read_text()) == shipped
    assert f"kTensorArenaSize = {report['arena']['bundle']};" in (out / "src" / "model_config.h").read_text()
    assert verify_manifest(out) == []
    # Independently of the tool's own check: other inputs, both models on TFLM, every output byte the same.
    graph = read_model(mobilenet.read_bytes())
    inputs = random_inputs(graph.tensors[graph.inputs[0]], 6, seed=42)
    before = tflm_outputs(mobilenet, p["tflm_head"] + report["arena"]["tail"] + 4096, inputs)
    after = tflm_outputs(out / "model.tflite", report["arena"]["bundle"], inputs)
    assert np.array_equal(before, after)
    unplanned = run_cli("profile", str(mobilenet), "--out", str(tmp_path / "plain"), "--runs", "10",
                        "--no-memory-plan", timeout=600)  # fmt: skip
    assert unplanned.returncode == 0
    plain = json.loads((tmp_path / "plain" / "profile.json").read_text())
    assert plain["memory_plan"] is None and plain["arena"]["head"] == p["tflm_head"]
    assert plain["arena"]["measured"] - report["arena"]["measured"] == p["arena_saved"]


def test_a_plan_that_breaks_the_outputs_cannot_ship(mobilenet, tmp_path, monkeypatch):
    """Every tensor at offset 0 and the plan's own check switched off: TFLM then computes garbage, and the
    output comparison refuses the plan; the original model stays."""
    path = tmp_path / "model.tflite"
    path.write_bytes(mobilenet.read_bytes())
    graph = read_model(path.read_bytes())
    monkeypatch.setattr(memory_plan, "plan", lambda bufs: {"offsets": {b.tensor: 0 for b in bufs}, "head": 16,
                                                           "lower_bound": lower_bound(bufs), "method": "broken",
                                                           "optimal": False, "seconds": 0.0})  # fmt: skip
    monkeypatch.setattr(memory_plan, "check_plan", lambda bufs, offsets: [])
    inputs = random_inputs(graph.tensors[graph.inputs[0]], 4, seed=1)
    _, report = measure_with_plan(path, graph, inputs, 1, 5, 0.0, True, "m")
    assert not report["shipped"]
    assert report["reason"].startswith("outputs differ on ")
    assert path.read_bytes() == mobilenet.read_bytes() and read_plan(path.read_bytes()) is None


def test_where_tflm_is_already_optimal_nothing_is_shipped(tmp_path):
    path = tmp_path / "ae.tflite"
    path.write_bytes(bench.autoencoder())
    graph = read_model(path.read_bytes())
    inputs = random_inputs(graph.tensors[graph.inputs[0]], 4, seed=1)
    measured, report = measure_with_plan(path, graph, inputs, 1, 5, 0.0, True, "ae")
    assert not report["shipped"] and "as small" in report["reason"]
    assert report["tflm_head"] == report["lower_bound"] == measured["arena"]["head"]
    assert read_plan(path.read_bytes()) is None
