"""The ethos_u target: Vela compiles the exported int8 model; the report carries exactly Vela's figures."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from pipeline.recipe import RecipeError, RecipeLoader, parse_recipe
from targets.ethos_u import Config, VelaError, builtin_config_file, parse_placement, run_vela
from targets.tflm.bundle import decode_c_array, verify_manifest
from tests.conftest import ROOT, TINY


def _tiny_with_targets(targets: list[dict]) -> dict:
    data = yaml.load(TINY.read_text(), Loader=RecipeLoader)
    data["targets"] = targets
    data["data"]["path"] = str(ROOT / "tests" / "recipes" / "does" / "not" / "exist")  # the tiny run's data key
    return data


@pytest.fixture(scope="module")
def ethos_run(tiny_run, tmp_path_factory):
    """The tiny recipe's exported model (from the tiny run's cache) through the ethos_u target."""
    runs, _ = tiny_run
    folder = tmp_path_factory.mktemp("ethos")
    data = _tiny_with_targets(
        [{"ethos_u": {"accelerator": "ethos-u55-128", "budgets": {"flash_kb": 64, "ram_kb": 64, "latency_ms": 50}}}]
    )
    path = folder / "tiny_ethos.yaml"
    path.write_text(yaml.safe_dump(data))
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", "run", str(path), "--runs-dir", str(folder / "runs"), "--cache",
         str(runs / ".cache")],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    return folder / "runs" / "tiny" / "latest", done


def test_sram_and_flash_are_exactly_what_vela_reports(ethos_run, tmp_path):
    latest, done = ethos_run
    report = json.loads((latest / "report.json").read_text())
    (target,) = report["targets"]
    # Vela run by hand, its own command line, on the exported model with the same configuration.
    subprocess.run(
        [sys.executable, "-m", "ethosu.vela", str(latest / "export" / "model.tflite"), "--config",
         str(builtin_config_file()), "--accelerator-config", "ethos-u55-128", "--system-config",
         "Ethos_U55_High_End_Embedded", "--memory-mode", "Shared_Sram", "--output-dir", str(tmp_path)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    (summary_csv,) = tmp_path.glob("*_summary_*.csv")
    with open(summary_csv, newline="") as f:
        summary = next(csv.DictReader(f))
    assert target["ram_bytes"] == round(float(summary["sram_memory_used"]) * 1024)
    assert target["flash_bytes"] == round(float(summary["off_chip_flash_memory_used"]) * 1024)
    assert target["latency_ms"]["median"] == pytest.approx(float(summary["inference_time"]) * 1e3)
    assert target["figures"]["latency"]["measured"] is False and target["figures"]["ram"]["measured"] is True
    assert (tmp_path / "model_vela.tflite").read_bytes() == (
        latest / "export" / "ethos_u" / "model_vela.tflite"
    ).read_bytes()
    # The latency is Vela's estimate: the budget refuses it (exit 1) and says why; flash and SRAM gate normally.
    assert done.returncode == 1, done.stderr[-3000:]
    budgets = {b["name"]: b for b in report["budgets"]}
    assert budgets["ethos_u.flash_kb"]["ok"] and budgets["ethos_u.ram_kb"]["ok"]
    assert not budgets["ethos_u.latency_ms"]["ok"] and "is an estimate" in budgets["ethos_u.latency_ms"]["message"]


def test_the_bundle_ships_the_compiled_model_and_the_npu_operator(ethos_run):
    latest, _ = ethos_run
    bundle = latest / "export" / "ethos_u"
    compiled = (bundle / "model_vela.tflite").read_bytes()
    assert decode_c_array((bundle / "model_data.cpp").read_text()) == compiled
    assert "resolver.AddEthosU()" in (bundle / "op_resolver.h").read_text()
    config = (bundle / "model_config.h").read_text()
    vela = json.loads((bundle / "vela.json").read_text())
    assert f"constexpr int kTensorArenaSize = {vela['cpu_arena']['bundle']};" in config
    assert vela["cpu_arena"]["bundle"] >= vela["cpu_arena"]["live_tensors"] > 0
    assert vela["placement"] == {"npu_ops": vela["placement"]["npu_ops"], "cpu_ops": 0, "cpu": []}
    assert vela["ops"] == ["CUSTOM:ethos-u"]  # the whole tiny DS-CNN runs on the NPU
    assert verify_manifest(bundle) == []
    markdown = (latest / "report.md").read_text()
    assert "### ethos_u" in markdown and "Per layer (Vela `--verbose-performance`)" in markdown
    assert "*estimate*" in markdown and "Accuracy: not measured" in markdown


def test_operators_vela_cannot_map_are_named_with_vela_reason(tmp_path):
    """CUMSUM has no NPU mapping: it stays on the CPU, named with Vela's reason, and the resolver registers it."""
    import tensorflow as tf

    inputs = tf.keras.Input((49, 10, 1))
    x = tf.keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    x = tf.keras.layers.Lambda(lambda t: tf.math.cumsum(t, axis=1))(x)
    x = tf.keras.layers.GlobalAveragePooling2D()(x)
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(4)(x))
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    rng = np.random.default_rng(0)
    converter.representative_dataset = lambda: ([rng.random((1, 49, 10, 1), np.float32)] for _ in range(8))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = converter.inference_output_type = tf.int8
    path = tmp_path / "model.tflite"
    path.write_bytes(converter.convert())
    vela = run_vela(path, Config(), builtin_config_file(), tmp_path / "out")
    cpu = {op["op"]: op for op in vela["placement"]["cpu"]}
    assert "CUMSUM" in cpu and cpu["CUMSUM"]["reason"] == "Unsupported opType"
    assert vela["placement"]["npu_ops"] > 0 and vela["placement"]["cpu_ops"] == len(vela["placement"]["cpu"]) == 3
    assert any(row["Target"] == "NPU" for row in vela["layers"])


def test_unsupported_configurations_are_named(tmp_path):
    model = _small_int8_model(tmp_path)
    cfg = Config(accelerator="ethos-u55-128", memory_mode="Dedicated_Sram")  # a U55 has no DRAM port for the arena
    with pytest.raises(VelaError, match=r"for ethos-u55-128 \(Ethos_U55_High_End_Embedded, Dedicated_Sram\): .*arena"):
        run_vela(model, cfg, builtin_config_file(), tmp_path / "out")


def test_recipe_errors_name_the_key_and_the_nearest_choice():
    with pytest.raises(
        RecipeError, match=r"targets\[0\]\.ethos_u: unknown system_config 'Ethos_U55_High_End'; did you"
    ):
        parse_recipe(yaml.safe_dump(_tiny_with_targets([{"ethos_u": {"system_config": "Ethos_U55_High_End"}}])))
    with pytest.raises(RecipeError, match=r"targets\[0\]\.ethos_u\.accelerator"):
        parse_recipe(yaml.safe_dump(_tiny_with_targets([{"ethos_u": {"accelerator": "ethos-u55-100"}}])))
    assert parse_placement("")["cpu"] == []


def _small_int8_model(folder: Path) -> Path:
    import tensorflow as tf

    inputs = tf.keras.Input((8, 8, 1))
    model = tf.keras.Model(inputs, tf.keras.layers.Conv2D(4, 3)(inputs))
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([np.ones((1, 8, 8, 1), np.float32)] for _ in range(4))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = converter.inference_output_type = tf.int8
    path = folder / "small.tflite"
    path.write_bytes(converter.convert())
    return path
