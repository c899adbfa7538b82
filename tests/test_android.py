"""Android target pieces: benchmark_model parsing, the adb code path against a software phone, recipe checks."""

import os
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from pipeline.recipe import RecipeError, parse_recipe
from targets.android import Config as AndroidConfig
from targets.android.adb import Adb, BenchmarkParseError, benchmark_on_phone, parse_benchmark_output
from tests.conftest import ROOT

FIXTURES = ROOT / "tests" / "fixtures" / "benchmark_model"


def test_parses_older_plain_output_with_peak_memory():
    got = parse_benchmark_output((FIXTURES / "plain_peak_memory.txt").read_text())
    assert got == {
        "init_us": 2417.0, "first_inference_us": 611.0, "warmup_avg_us": 301.5, "inference_avg_us": 266.2,
        "runs": 200, "min_us": 243.0, "max_us": 702.0, "std_us": 22.0, "model_size_mb": 0.097832,
        "memory_init_mb": 2.14453, "memory_overall_mb": 3.01562, "memory_kind": "peak",
    }  # fmt: skip


def test_parses_logcat_output_with_percentiles():
    got = parse_benchmark_output((FIXTURES / "logcat_percentiles.txt").read_text())
    assert (got["runs"], got["median_us"], got["p5_us"], got["p95_us"]) == (100, 399.0, 393.0, 441.0)
    assert (got["init_us"], got["inference_avg_us"]) == (4210.0, 405.3)
    assert got["memory_kind"] == "delta from tool start" and got["memory_overall_mb"] == 2.0625


def test_parses_scientific_notation_and_periodic_peak():
    got = parse_benchmark_output((FIXTURES / "info_periodic_peak.txt").read_text())
    assert got["inference_avg_us"] == 190.21 and got["first_inference_us"] == 2103.4
    assert got["runs"] == 100 and got["median_us"] == 187.0  # the measured phase, not the warm-up line
    assert got["memory_peak_mb"] == 9.87891 and got["memory_init_mb"] == 3.03516


def test_failed_benchmark_is_an_error_that_shows_the_tool_output():
    with pytest.raises(BenchmarkParseError) as info:
        parse_benchmark_output((FIXTURES / "failed.txt").read_text())
    assert "did benchmark_model fail?" in str(info.value) and "Benchmarking failed." in str(info.value)


@pytest.fixture
def software_phone(tmp_path, monkeypatch):
    """`adb` on PATH is tests/fakes/fake_adb.py: a phone with serial 'soft-1' whose storage is a folder."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    adb = bin_dir / "adb"
    adb.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{ROOT / "tests" / "fakes" / "fake_adb.py"}" "$@"\n')
    adb.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_ADB_ROOT", str(tmp_path / "phone"))
    monkeypatch.setenv("FAKE_ADB_SERIAL", "soft-1")
    return tmp_path


@pytest.fixture(scope="module")
def tflite_file(tmp_path_factory) -> Path:
    from pipeline.models import build_model
    from pipeline.models.zoo import ModelConfig
    from targets.android import convert_variant

    path = tmp_path_factory.mktemp("android") / "model_fp32.tflite"
    path.write_bytes(convert_variant(build_model((49, 10, 1), 4, ModelConfig(filters=8, blocks=1)), "fp32"))
    return path


def test_phone_code_path_against_a_software_phone(software_phone, tflite_file):
    phone = Adb("soft-1")
    assert phone.attached() and phone.model_name() == "Software Phone"
    assert not Adb("unplugged-7").attached()
    binary = software_phone / "benchmark_model"
    binary.write_text("stand-in for the aarch64 binary\n")
    got = benchmark_on_phone(phone, binary, tflite_file, threads=1, runs=30, warmup=3, xnnpack=True)
    assert got["runs"] == 30 and 0 < got["p5_us"] <= got["median_us"] <= got["p95_us"]
    pushed = software_phone / "phone" / "data/local/tmp/edge-pipeline"
    assert (pushed / "model_fp32.tflite").read_bytes() == tflite_file.read_bytes()
    assert (pushed / "benchmark_model").exists()


def test_android_target_fills_phone_rows_through_adb(software_phone, tflite_file):
    from targets.android import measure_on_phone

    out = software_phone / "target"
    out.mkdir()
    (out / "model_fp32.tflite").write_bytes(tflite_file.read_bytes())
    binary = software_phone / "benchmark_model"
    binary.write_text("stand-in\n")
    cfg = AndroidConfig(variants=["fp32"], threads=[1, 2], latency_runs=20, adb_serial="soft-1", benchmark_model=binary)
    got = measure_on_phone(cfg, SimpleNamespace(out=out, log=lambda msg: None, unavailable=lambda msg: None))
    assert got["status"] == "measured" and got["device"] == "Software Phone"
    rows = got["variants"]["fp32"]
    assert [r["threads"] for r in rows] == [1, 2]
    assert all(r["latency_ms"]["statistic"] == "median" and r["latency_ms"]["runs"] == 20 for r in rows)
    assert rows[0]["latency_ms"]["runtime"] == "benchmark_model on Software Phone (soft-1)"
    absent = AndroidConfig(variants=["fp32"], adb_serial="soft-2", benchmark_model=binary)
    unreachable: list[str] = []  # the runner will not reuse a measurement that could not reach its phone
    ctx = SimpleNamespace(out=out, log=lambda msg: None, unavailable=unreachable.append)
    assert measure_on_phone(absent, ctx)["status"] == "not attached"
    assert len(unreachable) == 1 and "soft-2" in unreachable[0]


RECIPE = """\
name: demo
data:
  keywords: [yes, no]
stages:
  - train: {}
  - quantize: {}
  - export: {}
targets:
  - android: {variants: [fp32, int8], threads: [1, 4]}
"""


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("int8]", "int4]", "r.yaml:9: targets[0].android.variants[1]: Input should be 'fp32', 'fp16', 'dynamic_int8' "
                           "or 'int8' (got 'int4')"),
        ("[1, 4]", "[1, 0]", "targets[0].android.threads: thread counts must be at least 1"),
        ("[1, 4]}", "[1, 4], adb_serial: R58M}", "adb_serial needs benchmark_model"),
    ],
)  # fmt: skip
def test_bad_android_settings_are_rejected(old, new, message):
    with pytest.raises(RecipeError) as info:
        parse_recipe(RECIPE.replace(old, new), "r.yaml")
    assert message in str(info.value)
