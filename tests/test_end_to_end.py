"""The tiny recipe through every stage and the TFLM target, as a user runs it."""

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from pipeline.tflite_model import read_model
from targets.tflm.bundle import decode_c_array, verify_manifest
from targets.tflm.metadata import read_identity
from tests.conftest import TINY, run_cli


def test_run_writes_report_bundle_and_latest(tiny_run):
    runs, done = tiny_run
    latest = runs / "tiny" / "latest"
    assert latest.is_symlink()
    report = json.loads((latest / "report.json").read_text())
    assert report["recipe"] == "tiny" and report["ok"] is True
    assert [s["name"] for s in report["stages"]] == ["train", "prune", "finetune", "quantize", "export"]
    for stage in report["stages"]:
        assert 0.0 <= stage["accuracy"] <= 1.0 and stage["params"] > 0 and stage["macs"] > 0
    train, _, finetune = report["stages"][:3]  # the tiny finetune ends on a weight average, train on its best epoch
    assert finetune["ended_on"] == "weight average 0.9" and "best_epoch" not in finetune
    assert train["best_epoch"] == 1 and "ended_on" not in train and 0.0 <= finetune["val_accuracy"] <= 1.0
    target = report["targets"][0]
    assert [t["name"] for t in report["targets"]] == ["tflm", "android", "openvino"]
    bundle = latest / "export" / "tflm"
    model = (bundle / "model.tflite").read_bytes()
    host = target["host_figures"]  # the interpreter's figures; the headline ones are the firmware's (test_firmware)
    assert host["flash"]["value"] == len(model)
    # The model says who it is: the export's model plus an identity entry (issue #19, item 2).
    identity = read_identity(model)
    assert identity["recipe"] == "tiny" and identity["recipe_fingerprint"] == report["recipe_fingerprint"]
    assert identity["labels"] == ["_silence_", "_unknown_", "yes", "no", "up", "down"]
    assert identity["arena_bytes"] == target["arena"]["bundle"] and identity["features"]["frames"] == 49
    assert read_identity((latest / "export" / "model.tflite").read_bytes()) is None
    arena = target["arena"]
    assert host["ram"]["value"] == arena["measured"] > 0
    assert arena["agrees_with_report"] and arena["head"] + arena["tail"] == arena["reported_total"]
    latency = target["host_latency_ms"]
    assert latency["runs"] >= 50 and 0 < latency["median"] <= latency["p90"]
    assert latency["runtime"].startswith("tflite-micro")
    # TFLM and LiteRT run the same int8 flatbuffer: their top-1 should all but coincide.
    assert target["agreement_with_export"] >= 0.95
    budgets = {b["name"]: b for b in report["budgets"]}
    assert set(budgets) == {"tflm.ram_kb", "tflm.min_accuracy", "android.min_accuracy", "openvino.min_accuracy",
                            "tflm.cortex-m4f-256k.flash_kb", "tflm.cortex-m4f-256k.ram_kb"}  # fmt: skip
    assert budgets["tflm.ram_kb"]["actual"] == target["ram_bytes"] / 1024 and budgets["tflm.ram_kb"]["ok"]
    assert decode_c_array((bundle / "src" / "model_data.cpp").read_text()) == model
    assert verify_manifest(bundle) == []
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["bundle"] == target["bundle"] and manifest["bundle"].startswith("tiny-")
    assert set(manifest["files"]) >= {"model.tflite", "src/model_data.cpp", "src/model_data.h", "src/op_resolver.h",
                                      "src/model_config.h", "README.md"}  # fmt: skip
    config = (bundle / "src" / "model_config.h").read_text()
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
    assert report["data"]["cached"] and all(s["cached"] for s in report["stages"])
    # Measurements are replayed, except the phone the recipe names: absent last time, so it is looked for again.
    assert {t["name"]: t["cached"] for t in report["targets"]} == {"tflm": True, "android": False, "openvino": True}
    assert "phone tiny-phone-0 is not attached" in done.stderr
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
    assert cached == {"train": True, "prune": True, "finetune": True, "quantize": False, "export": False,
                      "tflm": False, "android": False, "openvino": False}  # fmt: skip
    assert report["stages"][3]["calibration_samples"] == 40


def test_violated_budget_fails_and_names_it(tiny_run, tmp_path):
    runs, _ = tiny_run
    strict = tmp_path / "tiny.yaml"
    strict.write_text(
        TINY.read_text().replace("ram_kb: 64", "ram_kb: 1").replace("min_accuracy: 0.0", "min_accuracy: 1.0")
    )
    done = run_cli("run", str(strict), "--runs-dir", str(runs), "--out", str(tmp_path / "run"))
    assert done.returncode == 1
    assert "budget violated: tflm.ram_kb:" in done.stderr and "over the limit 1 KB" in done.stderr
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["ok"] is False
    assert {b["name"]: b["ok"] for b in report["budgets"]}["tflm.ram_kb"] is False


def test_filter_pruning_shrinks_the_exported_model(tiny_run):
    """16 filters per conv pruned to 8: the rebuilt model, the report and the .tflite tensors all say so."""
    runs, _ = tiny_run
    latest = runs / "tiny" / "latest"
    report = json.loads((latest / "report.json").read_text())
    train, prune, finetune = report["stages"][:3]
    assert prune["rebuilt_max_abs_diff"] <= 1e-4 and prune["accuracy"] == prune["masked_accuracy"]
    assert [(r["layer"], r["filters_before"], r["filters_after"]) for r in prune["layers"]] == [
        ("conv0", 16, 8),
        ("pw1", 16, 8),
    ]
    assert prune["level"] == 0.5 and prune["before"] == {"params": train["params"], "macs": train["macs"]}
    assert finetune["params"] == prune["params"] < train["params"] and prune["macs"] < train["macs"] / 2
    graph = read_model((latest / "export" / "model.tflite").read_bytes())
    convs = [op for op in graph.operators if op.name in ("CONV_2D", "DEPTHWISE_CONV_2D")]
    assert [graph.tensors[op.outputs[0]].shape[-1] for op in convs] == [8, 8, 8]
    filters = json.loads((latest / "stages" / "2-prune" / "filters.json").read_text())
    scores = filters["layers"][0]["importance"]
    assert filters["importance"] == "L2" and sum(f["kept"] for f in scores) == 8
    md = (latest / "report.md").read_text()
    assert "## Pruning" in md and "| conv0 | 16 | 8 | 0.50× |" in md


def test_magnitude_sparsity_zeroes_weights_but_keeps_shapes(tiny_run, tmp_path):
    runs, _ = tiny_run
    sparse = tmp_path / "tiny.yaml"
    sparse.write_text(
        TINY.read_text().replace(
            "prune: {target: 0.5, init: 0.25,", "prune: {method: magnitude, target: 0.6, init: 0.3,"
        )
    )
    out = tmp_path / "run"
    done = run_cli("run", str(sparse), "--runs-dir", str(runs), "--out", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    train, prune = report["stages"][:2]
    assert train["cached"] and not prune["cached"]
    assert prune["params"] == train["params"] and all(r["filters_after"] == 16 for r in prune["layers"])
    assert prune["zero_weights"] >= 0.5 and prune["rebuilt_max_abs_diff"] <= 1e-4
    export = report["stages"][-1]
    assert export["deflated_bytes"] < export["bytes"]
    assert "run dense kernels" in (out / "report.md").read_text()


def test_openvino_target_writes_ir_and_measures_each_precision(tiny_run):
    runs, _ = tiny_run
    latest = runs / "tiny" / "latest"
    report = json.loads((latest / "report.json").read_text())
    openvino = next(t for t in report["targets"] if t["name"] == "openvino")
    variants = {v["precision"]: v for v in openvino["variants"]}
    assert list(variants) == ["fp32", "int8"] and openvino["primary"] == "int8"
    for precision, v in variants.items():
        xml = latest / "export" / "openvino" / precision / "model.xml"
        assert v["bytes"] == xml.stat().st_size + xml.with_suffix(".bin").stat().st_size
        assert 0 < v["latency_ms"]["median"] <= v["latency_ms"]["p90"] and v["throughput"]["fps"] > 0
        assert v["memory"]["peak_rss_bytes"] > v["memory"]["runtime_rss_bytes"] > 0
    assert variants["fp32"]["quantize_nodes"] == 0 < variants["int8"]["quantize_nodes"]
    # FP32 IR runs the fine-tuned Keras model: the same top-1 on every test clip.
    assert variants["fp32"]["agreement_with_float"] == 1.0
    assert openvino["flash_bytes"] == variants["int8"]["bytes"] and openvino["accuracy"] == variants["int8"]["accuracy"]
    assert "| INT8 ★ |" in (latest / "report.md").read_text()


def test_android_variants_run_on_litert_and_no_phone_is_invented(tiny_run):
    from pipeline.runtimes import top1
    from pipeline.runtimes.litert import litert_predictor

    runs, _ = tiny_run
    latest = runs / "tiny" / "latest"
    report = json.loads((latest / "report.json").read_text())
    android = next(t for t in report["targets"] if t["name"] == "android")
    variants = {v["variant"]: v for v in android["variants"]}
    assert list(variants) == ["fp32", "fp16", "dynamic_int8", "int8"]
    for name, v in variants.items():
        model = (latest / "export" / "android" / f"model_{name}.tflite").read_bytes()
        sidecar = json.loads((latest / "export" / "android" / f"model_{name}.json").read_text())
        assert v["bytes"] == len(model) and sidecar["labels"] == ["_silence_", "_unknown_", "yes", "no", "up", "down"]
        assert sidecar["input"]["dtype"] == ("int8" if name == "int8" else "float32")
        assert [h["threads"] for h in v["host"]] == [1, 2] and all(h["latency_ms"]["median"] > 0 for h in v["host"])
        assert v["tensor_memory"]["live_lower_bound"] <= v["tensor_memory"]["activations_sum"]
        assert top1(litert_predictor(model), np.zeros((2, 49, 10), np.float32)).shape == (2,)
        assert v["phone"] == []
    assert variants["fp32"]["agreement_with_float"] == 1.0
    int8_export = (latest / "export" / "model.tflite").read_bytes()
    assert (latest / "export" / "android" / "model_int8.tflite").read_bytes() == int8_export
    assert android["phone"]["status"] == "not attached" and "tiny-phone-0" in android["phone"]["message"]
    assert android["recommended"] in variants
    md = (latest / "report.md").read_text()
    assert "phone tiny-phone-0 not attached" in md and "| dynamic_int8 " in md


def test_explain_section_compares_every_model_with_the_trained_one(tiny_run):
    runs, _ = tiny_run
    latest = runs / "tiny" / "latest"
    report = json.loads((latest / "report.json").read_text())
    ex = report["explain"]
    names = [r["model"] for r in ex["models"]]
    assert names == ["train", "prune", "finetune", "quantize", "tflm", "android.fp32", "android.fp16",
                     "android.dynamic_int8", "android.int8", "openvino.fp32", "openvino.int8", "twin"]  # fmt: skip
    # The control: an unpruned twin (another seed, same data and schedule), judged like every model, and every
    # compressed model judged against it with bootstrap intervals (issue #21).
    assert ex["models"][-1]["role"] == "control" and ex["deployed"] == "tflm"
    control = ex["control"]
    assert set(control["models"]) == set(names) - {"train", "twin"}
    tflm = control["models"]["tflm"]
    for figure in ("agreement", "occlusion_spearman", "occlusion_iou"):
        low, high = tflm[figure]["ci"]
        assert low <= tflm[figure]["value"] <= high and tflm[figure]["verdict"] in (
            "beyond retrain noise", "within retrain noise", "less than a retrain")  # fmt: skip
    assert set(tflm["per_class_agreement"]) == set(report["data"]["labels"])
    found = control["exemplars"]["tflm"]["synthetic"]
    assert found["count"] == sum(found["per_class"].values()) and 0 <= found["share"] <= 1
    assert (latest / "explain" / ex["global"]["plot"]).stat().st_size > 1000 and len(
        ex["global"]["biggest_changes"]
    ) == 3
    train = ex["models"][0]
    assert train["agreement"] == 1.0 and train["occlusion"]["spearman"] == 1.0 and train["gradient"]["iou"] == 1.0
    rows = {r["model"]: r for r in ex["models"]}
    assert "gradient" not in rows["tflm"] and rows["tflm"]["runtime"] == "TFLite Micro"
    # TFLM and LiteRT run the same int8 model: same decisions, same maps
    assert rows["tflm"]["agreement"] == rows["quantize"]["agreement"]
    assert rows["tflm"]["accuracy"] == report["targets"][0]["accuracy"]
    for name in [ex["plot"], ex["removed_plot"], *ex["pictures"]]:
        assert (latest / "explain" / name).stat().st_size > 1000
    assert [r["layer"] for r in ex["removed"]] == ["conv0", "pw1"] and ex["removed"][0]["removed"] == 8
    md = (latest / "report.md").read_text()
    assert "## Explainability" in md and "](explain/drift.png)" in md
    assert "### Beyond retrain noise" in md and "Pruning-identified exemplars" in md and "**Global view**" in md
    # The twin was trained once, beside the recipe's own train stage, and is reused from the cache.
    assert len(list((runs / ".cache").glob("stage-train-*"))) >= 2


def _three_teachers_recipe(tmp_path) -> Path:
    """The tiny chain without targets, distilling from train and two retrainings of it."""
    text = TINY.read_text().replace("distill: {teacher: train}", "distill: {teacher: train, teachers: 3}")
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(text[: text.index("targets:")] + "budgets:\n  min_accuracy: 0.0\n")
    return recipe


def test_several_teachers_share_the_control_twin(tiny_run, tmp_path):
    """`distill.teachers: 3`: the fine-tuned model learns from train and two retrainings of it; the first is the
    explain control's twin, already in the cache."""
    runs, _ = tiny_run
    trained_before = set((runs / ".cache").glob("stage-train-*"))
    done = run_cli("run", str(_three_teachers_recipe(tmp_path)), "--runs-dir", str(runs), "--out", str(tmp_path / "o"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(set((runs / ".cache").glob("stage-train-*")) - trained_before) == 1  # only the third is new
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    finetune = next(s for s in report["stages"] if s["name"] == "finetune")
    assert [t["seed"] for t in finetune["teachers"]] == [7, 7 + 1000003, 7 + 2 * 1000003]
    assert report["explain"]["models"][-1]["role"] == "control"
    assert "## Distillation" in (tmp_path / "o" / "report.md").read_text()


@pytest.mark.slow
def test_what_several_teachers_teach_does_not_depend_on_the_cache(tmp_path):
    """From an empty cache every teacher is trained inside the finetune stage; rerun with the teachers cached,
    the student comes out bit-identical."""
    recipe, runs = _three_teachers_recipe(tmp_path), tmp_path / "runs"
    fresh = run_cli("run", str(recipe), "--runs-dir", str(runs), "--out", str(tmp_path / "fresh"))
    assert fresh.returncode == 0, fresh.stderr[-3000:]
    assert "training teacher 3 (seed 2000013)" in fresh.stderr + fresh.stdout
    for entry in (runs / ".cache").glob("stage-finetune-*"):
        shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    warm = run_cli("run", str(recipe), "--runs-dir", str(runs), "--out", str(tmp_path / "warm"))
    assert warm.returncode == 0, warm.stderr[-3000:]
    assert "training teacher" not in warm.stderr + warm.stdout
    predictions = [
        np.load(tmp_path / run / "stages" / "3-finetune" / "test_predictions.npy") for run in ("fresh", "warm")
    ]
    np.testing.assert_array_equal(*predictions)


def test_explain_budget_fails_the_run_and_names_the_model(tiny_run, tmp_path):
    runs, _ = tiny_run
    strict = tmp_path / "tiny.yaml"
    strict.write_text(TINY.read_text() + "explain: {budgets: {min_attribution_correlation: 0.999}}\n")
    done = run_cli("run", str(strict), "--runs-dir", str(runs), "--out", str(tmp_path / "run"))
    assert done.returncode == 1
    assert "budget violated: explain.tflm.min_attribution_correlation:" in done.stderr
    assert "explain.prune." not in done.stderr  # intermediate stages are reported, not gated
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["explain"] is not None and not report["ok"]


def test_pipeline_explain_recomputes_a_finished_run(tiny_run, tmp_path):
    import shutil

    runs, _ = tiny_run
    run_dir = tmp_path / "copy"
    shutil.copytree((runs / "tiny" / "latest").resolve(), run_dir)
    (run_dir / "explain" / "drift.png").unlink()
    report = json.loads((run_dir / "report.json").read_text())
    before = report["explain"]["models"]
    done = run_cli("explain", str(run_dir), "--cache", str(runs / ".cache"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "tflm" in done.stdout and (run_dir / "explain" / "drift.png").exists()
    after = json.loads((run_dir / "report.json").read_text())["explain"]["models"]
    assert [r["agreement"] for r in after] == [r["agreement"] for r in before]
