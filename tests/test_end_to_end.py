"""The tiny recipe through every stage and the TFLM target, as a user runs it."""

import json
import time

from targets.tflm_bundle import decode_c_array, verify_manifest
from tests.conftest import TINY, run_cli


def test_run_writes_report_bundle_and_latest(tiny_run):
    runs, done = tiny_run
    latest = runs / "tiny" / "latest"
    assert latest.is_symlink()
    report = json.loads((latest / "report.json").read_text())
    assert report["recipe"] == "tiny" and report["ok"] is True
    assert [s["name"] for s in report["stages"]] == ["train", "quantize", "export"]
    for stage in report["stages"]:
        assert 0.0 <= stage["accuracy"] <= 1.0 and stage["params"] > 0 and stage["macs"] > 0
    (target,) = report["targets"]
    assert target["name"] == "tflm"
    model = (latest / "export" / "model.tflite").read_bytes()
    assert target["flash_bytes"] == len(model)
    arena = target["arena"]
    assert target["ram_bytes"] == arena["measured"] > 0
    assert arena["agrees_with_report"] and arena["head"] + arena["tail"] == arena["reported_total"]
    assert target["latency_ms"]["runs"] >= 50 and 0 < target["latency_ms"]["median"] <= target["latency_ms"]["p90"]
    assert target["latency_ms"]["runtime"].startswith("tflite-micro")
    # TFLM and LiteRT run the same int8 flatbuffer: their top-1 should all but coincide.
    assert target["agreement_with_export"] >= 0.95
    assert report["budgets"] == [
        {"name": "tflm.ram_kb", "limit": 64.0, "actual": arena["measured"] / 1024, "unit": "KB", "floor": False,
         "ok": True, "message": report["budgets"][0]["message"]}
    ]  # fmt: skip
    bundle = latest / "export" / "tflm"
    assert decode_c_array((bundle / "model_data.cc").read_text()) == model
    assert verify_manifest(bundle) == []
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["bundle"] == target["bundle"] and manifest["bundle"].startswith("tiny-")
    assert set(manifest["files"]) >= {"model.tflite", "model_data.cc", "model_data.h", "op_resolver.h",
                                      "model_config.h", "README.md"}  # fmt: skip
    config = (bundle / "model_config.h").read_text()
    assert f"kTensorArenaSize = {arena['bundle']};" in config
    assert 'kLabels[kLabelCount] = {"_silence_", "_unknown_", "yes", "no", "up", "down"};' in config
    assert "constexpr int kFeatureFrames = 49;" in config
    assert arena["lower_bound"] <= arena["head"] and arena["mcu_estimate"]["bytes"] < arena["measured"]
    info = json.loads((latest / "export" / "model_info.json").read_text())
    assert info["input"]["dtype"] == "int8" and info["input"]["shape"] == [1, 49, 10, 1]
    assert info["labels"] == ["_silence_", "_unknown_", "yes", "no", "up", "down"]
    md = (latest / "report.md").read_text()
    assert "## Targets" in md and "Accuracy per test voice" in md


def test_rerun_computes_nothing(tiny_run):
    runs, _ = tiny_run
    start = time.time()
    done = run_cli("run", str(TINY), "--runs-dir", str(runs))
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((runs / "tiny" / "latest" / "report.json").read_text())
    assert report["data"]["cached"] and all(s["cached"] for s in report["stages"] + report["targets"])
    assert time.time() - start < 60
    assert len([p for p in (runs / "tiny").iterdir() if not p.is_symlink()]) == 2


def test_changed_stage_reruns_itself_and_what_follows(tiny_run, tmp_path):
    runs, _ = tiny_run
    changed = tmp_path / "tiny.yaml"
    changed.write_text(TINY.read_text().replace("calibration_samples: 32", "calibration_samples: 40"))
    out = tmp_path / "run"
    done = run_cli("run", str(changed), "--runs-dir", str(runs), "--out", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    cached = {s["name"]: s["cached"] for s in report["stages"] + report["targets"]}
    assert cached == {"train": True, "quantize": False, "export": False, "tflm": False}
    assert report["stages"][1]["calibration_samples"] == 40


def test_violated_budget_fails_and_names_it(tiny_run, tmp_path):
    runs, _ = tiny_run
    strict = tmp_path / "tiny.yaml"
    strict.write_text(TINY.read_text().replace("ram_kb: 64", "ram_kb: 1\n  min_accuracy: 1.0"))
    done = run_cli("run", str(strict), "--runs-dir", str(runs), "--out", str(tmp_path / "run"))
    assert done.returncode == 1
    assert "budget violated: tflm.ram_kb:" in done.stderr and "over the limit 1 KB" in done.stderr
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["ok"] is False
    assert {b["name"]: b["ok"] for b in report["budgets"]}["tflm.ram_kb"] is False
