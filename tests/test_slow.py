"""Nightly-only (`pytest -m slow`): the flagship recipe end to end and the pruning benchmark, as users run them."""

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT, TINY, run_cli

pytestmark = pytest.mark.slow


def test_flagship_recipe_end_to_end(tmp_path):
    """README command 1's job, from a folder outside the checkout (~19 min on 2 cores with no cache)."""
    done = run_cli("run", str(ROOT / "recipes" / "kws_mcu.yaml"), "--runs-dir", "runs", cwd=tmp_path, timeout=5400)
    assert done.returncode == 0, done.stderr[-4000:]
    report = json.loads((tmp_path / "runs" / "kws_mcu" / "latest" / "report.json").read_text())
    assert report["ok"] and [t["name"] for t in report["targets"]] == ["tflm", "android", "openvino", "ethos_u"]
    assert all(t["accuracy"] >= 0.85 for t in report["targets"] if t["name"] != "ethos_u")  # no NPU here
    ethos = report["targets"][-1]
    assert ethos["vela"]["placement"]["cpu_ops"] == 0 and ethos["figures"]["latency"]["measured"] is False
    board = report["targets"][0]["on_board"]  # the firmware on the emulated Cortex-M4F, the MCU's own figures
    assert board["outputs_match"] == board["vectors"] and board["deterministic"]
    assert board["reference_kernels"]["speedup"] > 2 and board["reference_kernels"]["outputs_match"]


def test_bench_prune_prints_its_table_and_exits_by_its_goals(tmp_path):
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench_prune.py"), str(TINY), "--runs-dir", str(tmp_path),
         "--rounds", "1", "--invokes", "20"],
        capture_output=True, text=True, cwd=tmp_path, timeout=3600,
    )  # fmt: skip
    assert done.returncode in (0, 1), done.stderr[-4000:]
    assert "TFLM latency median (ms)" in done.stdout and "pruned / unpruned" in done.stdout
    assert "Cortex-M instructions per invoke" in done.stdout and "beside the MAC ratio" in done.stdout
    assert ("goals missed:" in done.stdout) == (done.returncode == 1)
