"""Hardware in the loop, here through the software device on a pty: the runner cannot tell it from a board."""

import json
import os
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from pipeline.connect.hil import SoftDevice, load_inventory, run_hil
from pipeline.recipe import RecipeError
from pipeline.runtimes.tflm import tflm_outputs
from targets.serial_dut import DutError, DutTimeout, SerialDut
from tests.conftest import ROOT, run_cli


@pytest.fixture(scope="module")
def bundle(tiny_run):
    runs, _ = tiny_run
    run_dir = (runs / "tiny" / "latest").resolve()
    tflm = run_dir / "export" / "tflm"
    return run_dir, tflm, json.loads((tflm / "manifest.json").read_text()), dict(np.load(tflm / "test_vectors.npz"))


def test_runner_reads_the_software_device_outputs_equal_to_tflm(bundle):
    run_dir, tflm, manifest, vectors = bundle
    expected = tflm_outputs(tflm / "model.tflite", manifest["arena_bytes"], vectors["x"])
    with SoftDevice(tflm / "model.tflite", manifest["arena_bytes"], "soft-test") as port:
        assert port.startswith("/dev/pts/")
        with SerialDut(port) as dut:
            assert dut.name() == "soft-test"
            profile = dut.profile()
            assert manifest["model_sha256"].startswith(profile["model"])
            assert int(profile["arena"]) == manifest["arena_bytes"]
            for x, want in zip(vectors["x"], expected, strict=True):
                dut.load(x.tobytes())
                got = dut.infer(20, 3)  # repeated invokes must not change the answer
                assert np.array_equal(got.outputs, want)
                assert len(got.timings_us) == 20 and got.lap_us >= got.timings_us.sum()
            assert np.array_equal(dut.results(), expected[-1])
            with pytest.raises(DutError, match="unknown command: selfdestruct"):
                dut.command("selfdestruct")


def test_a_device_that_stops_answering_times_out():
    master, slave = os.openpty()
    try:
        started = time.monotonic()
        with SerialDut(os.ttyname(slave), timeout=0.3, retries=1) as dut, pytest.raises(DutTimeout, match="2 tries"):
            dut.name()
        assert time.monotonic() - started < 5
    finally:
        os.close(master)
        os.close(slave)


def test_garbled_lines_are_skipped_and_counted():
    import tty

    master, slave = os.openpty()
    tty.setraw(slave)

    def board():
        os.read(master, 100)
        os.write(master, b"\xff\xfe\x00noise\r\nboot banner v1\r\nm-name-dut-flaky\r\nm-ready\r\n")

    thread = threading.Thread(target=board)
    thread.start()
    try:
        with SerialDut(os.ttyname(slave), timeout=2) as dut:
            assert dut.name() == "flaky"
            assert dut.garbled == 2
    finally:
        thread.join()
        os.close(master)
        os.close(slave)


def test_pipeline_hil_measures_reachable_devices_and_skips_the_rest(bundle, tmp_path):
    run_dir, *_ = bundle
    inventory = tmp_path / "devices.yaml"
    inventory.write_text(
        "devices:\n"
        "  - {name: soft-board, kind: soft-serial}\n"
        "  - {name: this-host, kind: host}\n"
        "  - {name: nucleo, kind: serial, port: /dev/ttyACM-not-here}\n"
        "  - {name: pixel, kind: adb, serial: NOPHONE1, benchmark_model: /opt/benchmark_model}\n"
    )
    done = run_cli("hil", str(run_dir), "--inventory", str(inventory), "--runs", "30", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads((tmp_path / "hil.json").read_text())
    status = {d["device"]: d["status"] for d in result["devices"]}
    assert status == {"soft-board": "measured", "this-host": "measured", "nucleo": "skipped", "pixel": "skipped"}
    soft = result["devices"][0]
    assert soft["outputs_match"] == soft["vectors"] == 12 and soft["reported_name"] == "soft-board"
    assert soft["latency_ms"]["runs"] == 30 and "latency_ms" not in result["devices"][2]
    suite = ET.parse(tmp_path / "hil.xml").getroot()
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("4", "0", "2")


def test_bad_inventory_is_rejected_with_its_line(tmp_path):
    inventory = tmp_path / "devices.yaml"
    inventory.write_text("devices:\n  - {name: a, kind: host}\n  - {name: b, kind: serail, port: /dev/x}\n")
    with pytest.raises(RecipeError) as info:
        load_inventory(inventory)
    assert f"{inventory}:3: devices[1]" in str(info.value) and "serail" in str(info.value)


def test_nightly_names_an_injected_regression(bundle, tmp_path):
    run_dir, *_ = bundle
    inventory = tmp_path / "devices.yaml"
    inventory.write_text("devices:\n  - {name: soft-board, kind: soft-serial}\n")
    history = tmp_path / "history.json"
    nightly = [sys.executable, str(ROOT / "scripts" / "nightly.py"), "--run-dir", str(run_dir),
               "--inventory", str(inventory), "--history", str(history),
               "--latency-tolerance", "100",  # a 0.2 ms host latency swings >10% on a busy CI machine
               "--mlflow", str(tmp_path / "mlruns")]  # fmt: skip
    first = subprocess.run(nightly, capture_output=True, text=True, cwd=ROOT)
    assert first.returncode == 0, first.stdout + first.stderr
    past = json.loads(history.read_text())
    past[0]["figures"]["tflm.ram_bytes"] *= 0.5  # last night's arena was half: today's is a +100% regression
    history.write_text(json.dumps(past))
    second = subprocess.run(nightly, capture_output=True, text=True, cwd=ROOT)
    assert second.returncode == 1
    assert "regressions: tflm.ram_bytes\n" in second.stdout  # that one, and only that one
    assert len(json.loads(history.read_text())) == 2
    # Both nights are MLflow runs of the same run folder, the second tagged with its regression.
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    recipe = json.loads((run_dir / "report.json").read_text())["recipe"]
    nights = client.search_runs([client.get_experiment_by_name(f"{recipe}-nightly").experiment_id],
                                order_by=["attributes.start_time ASC"])  # fmt: skip
    assert [r.data.tags["pipeline.regressions"] for r in nights] == ["none", "tflm.ram_bytes"]
    assert nights[1].data.metrics["nightly/tflm.ram_bytes"] == past[0]["figures"]["tflm.ram_bytes"] * 2


def test_nightly_latency_regression_needs_the_relative_and_the_absolute_step():
    sys.path.insert(0, str(ROOT / "scripts"))
    from nightly import compare

    tolerances = {"latency_ms": 0.10, "ram_bytes": 0.05, "flash_bytes": 0.05, "accuracy": 1.0, "outputs_match": 0.0}
    before = {"hil.board.latency_ms": 0.20, "tflm.latency_ms": 2.0, "tflm.ram_bytes": 1000}
    now = {"hil.board.latency_ms": 0.24, "tflm.latency_ms": 2.4, "tflm.ram_bytes": 1001}  # +20 % each latency
    verdict = {r["figure"]: r["regression"] for r in compare(before, now, tolerances, {"latency_ms": 0.05})}
    assert verdict == {"hil.board.latency_ms": False, "tflm.latency_ms": True, "tflm.ram_bytes": False}
    assert all(r["regression"] for r in compare(before, now, tolerances) if "latency" in r["figure"])  # no floor


@pytest.mark.hil
def test_inventory_devices_reproduce_tflm_outputs(bundle):
    """Nightly boards: HIL_INVENTORY names the attached devices; without one, the bundle's firmware on the emulated
    Cortex-M4 stands in (and the software device, for machines without QEMU)."""
    run_dir, *_ = bundle
    path = os.environ.get("HIL_INVENTORY")
    if path:
        inventory = load_inventory(Path(path))
    else:
        from pipeline.connect.hil import Inventory

        inventory = Inventory.model_validate({"devices": [
            {"name": "m4-qemu", "kind": "qemu", "board": "cortex-m4f-256k"},
            {"name": "soft-board", "kind": "soft-serial"},
        ]})  # fmt: skip
    result = run_hil(run_dir, inventory, runs=50, warmup=5)
    assert not [d for d in result["devices"] if d["status"] == "failed"], result
    if not path:
        assert [d["status"] for d in result["devices"]][1] == "measured"
    for d in result["devices"]:
        if d["status"] == "measured" and "vectors" in d:
            assert d["outputs_match"] == d["vectors"]


def test_inventory_paths_are_taken_from_the_inventory_folder(tmp_path, monkeypatch):
    folder = tmp_path / "lab"
    folder.mkdir()
    (folder / "devices.yaml").write_text(
        "devices:\n"
        "  - {name: p, kind: adb, serial: X1, benchmark_model: tools/benchmark_model}\n"
        "  - {name: q, kind: adb, serial: X2, benchmark_model: /opt/tflite/benchmark_model}\n"
    )
    monkeypatch.chdir(tmp_path)  # the nightly job runs somewhere else
    relative, absolute = load_inventory(Path("lab/devices.yaml")).devices
    assert relative.benchmark_model == folder / "tools" / "benchmark_model"
    assert absolute.benchmark_model == Path("/opt/tflite/benchmark_model")


def _needs_emulator():
    from targets.tflm import sources
    from targets.tflm.boards import BOARDS
    from targets.tflm.on_board import unavailable_reason

    reason = unavailable_reason(BOARDS["cortex-m4f-256k"])
    if reason is None and sources.missing(sources.sources_dir()):
        reason = f"the pinned TFLM sources are missing ({sources.SETUP_HINT})"
    if reason:
        pytest.skip(reason)


def test_pipeline_hil_runs_the_bundles_firmware_on_the_emulated_board(bundle, tmp_path):
    """`kind: qemu`: the run's bundle built as Cortex-M4 firmware, on QEMU, through the same serial code path."""
    _needs_emulator()
    run_dir, *_ = bundle
    inventory = tmp_path / "devices.yaml"
    inventory.write_text("devices:\n  - {name: m4-qemu, kind: qemu, board: cortex-m4f-256k}\n")
    done = run_cli("hil", str(run_dir), "--inventory", str(inventory), "--runs", "5", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr[-2000:]
    (board,) = json.loads((tmp_path / "hil.json").read_text())["devices"]
    assert board["status"] == "measured" and board["reported_name"] == "mps2-an386"
    assert board["outputs_match"] == board["vectors"] == 12 and board["max_abs_diff"] == 0
    assert board["instructions"] > 1e5 and int(board["profile"]["arena-used"]) > 0
    assert "estimate" in board["latency_ms"]["runtime"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("devices:\n  - {name: x, kind: qemu, board: esp32-s3}\n")
    with pytest.raises(RecipeError, match="no emulator for board 'esp32-s3'"):
        load_inventory(bad)


@pytest.mark.hil
def test_nightly_flags_firmware_built_without_cmsis_nn(bundle, tmp_path):
    """The injected regression is real: tonight's firmware uses TFLM's reference kernels instead of CMSIS-NN."""
    _needs_emulator()
    run_dir, *_ = bundle
    history = tmp_path / "history.json"
    nights = []
    for kernels in ("cmsis_nn", "reference"):
        inventory = tmp_path / f"{kernels}.yaml"
        inventory.write_text(f"devices:\n  - {{name: m4-qemu, kind: qemu, kernels: {kernels}}}\n")
        nights.append(subprocess.run(
            [sys.executable, str(ROOT / "scripts" / "nightly.py"), "--run-dir", str(run_dir), "--inventory",
             str(inventory), "--history", str(history)], capture_output=True, text=True, cwd=ROOT,
        ))  # fmt: skip
    assert nights[0].returncode == 0, nights[0].stdout + nights[0].stderr
    assert nights[1].returncode == 1
    assert "regressions: hil.m4-qemu.instructions, hil.m4-qemu.latency_ms\n" in nights[1].stdout
    figures = [n["figures"] for n in json.loads(history.read_text())]
    assert figures[1]["hil.m4-qemu.instructions"] > 2 * figures[0]["hil.m4-qemu.instructions"]
    assert figures[1]["hil.m4-qemu.outputs_match"] == figures[0]["hil.m4-qemu.outputs_match"] == 12
