"""The bundle as Cortex-M firmware: pinned sources, the TFLM library and firmware build, the emulated board.

The firmware tests use the tiny recipe's run (its TFLM target builds and runs the firmware on QEMU's Cortex-M4
board), the real cross-compiler and the real emulator; they skip, saying why, on a machine without them."""

import dataclasses
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest

from pipeline.budgets import _capacity
from pipeline.runtimes.tflm import tflm_outputs
from targets.tflm import sources
from targets.tflm.boards import BOARDS
from targets.tflm.firmware import build_firmware, linker_script, section_split
from targets.tflm.on_board import run_firmware, unavailable_reason
from tests.conftest import ROOT, run_cli

M4 = BOARDS["cortex-m4f-256k"]


def _needs_firmware() -> None:
    reason = unavailable_reason(M4)
    folder = sources.sources_dir()
    if reason is None and sources.missing(folder):
        reason = f"the pinned TFLM sources are not in {folder} ({sources.SETUP_HINT})"
    if reason:
        pytest.skip(reason)


@pytest.fixture(scope="module")
def board_run(tiny_run):
    _needs_firmware()
    runs, _ = tiny_run
    run_dir = (runs / "tiny" / "latest").resolve()
    report = json.loads((run_dir / "report.json").read_text())
    tflm = next(t for t in report["targets"] if t["name"] == "tflm")
    return run_dir, tflm


def _archive(tmp_path: Path, files: dict[str, bytes], name: str = "repo-abc.tar.gz") -> Path:
    path = tmp_path / name
    with tarfile.open(path, "w:gz") as tar:
        for rel, data in files.items():
            info = tarfile.TarInfo(f"repo-abc/{rel}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_sources_are_accepted_by_their_files_not_their_bytes(tmp_path):
    files = {"a.c": b"int a;\n", "sub/b.h": b"#define B 1\n"}
    first = _archive(tmp_path, files)
    pinned = sources.Upstream("repo", "owner/repo", "abc", sources.files_digest(first), "MIT")
    (tmp_path / "again").mkdir()
    again = _archive(tmp_path / "again", dict(reversed(files.items())))  # other order, other bytes, same files
    assert first.read_bytes() != again.read_bytes()
    sources.verify(again, pinned)
    tampered = _archive(tmp_path / "again", files | {"a.c": b"int a = 1;\n"}, "tampered.tar.gz")
    with pytest.raises(sources.SourcesError, match="not owner/repo at abc"):
        sources.verify(tampered, pinned)
    with pytest.raises(sources.SourcesError, match="missing in .*scripts/setup.sh"):
        sources.unpack(tmp_path, tmp_path / "out")


def test_the_shared_archives_are_the_pinned_commits():
    folder = ROOT.parent / "shared" / "vendor" / "tflm"
    if sources.missing(folder):
        pytest.skip(f"no pinned archives in {folder}")
    for upstream in sources.UPSTREAM:
        sources.verify(folder / upstream.archive, upstream)


def test_linker_script_holds_the_boards_memory():
    script = linker_script(M4)
    assert "FLASH (rx)  : ORIGIN = 0x00000000, LENGTH = 1024K" in script
    assert "RAM   (rwx) : ORIGIN = 0x20000000, LENGTH = 256K" in script
    assert "LENGTH = 4096K" in linker_script(M4, emulator_memory=True)


def test_the_tflm_target_measures_the_firmware_on_the_emulated_board(board_run):
    run_dir, tflm = board_run
    board = tflm["on_board"]
    assert board["machine"] == "mps2-an386" and board["kernels"] == "cmsis_nn"
    assert board["outputs_match"] == board["vectors"] == 12  # bit for bit with the host interpreter
    assert board["deterministic"] and len(set(board["instructions_repeat"])) == 1
    assert 1e5 < board["instructions_per_invoke"] < 1e8
    assert board["library"]["minimal_kernels"]  # only the model's kernels were compiled
    # The headline figures are the board's: linked flash without the harness, target RAM, latency from instructions.
    parts = board["sizes"]["by_component"]
    flash = sum(v["flash"] for k, v in parts.items() if k != "harness")
    statics = sum(v["ram"] for k, v in parts.items() if k != "harness")
    assert tflm["figures"]["flash"] == board["figures"]["flash"] and tflm["flash_bytes"] == flash
    assert {"model", "TFLM runtime", "TFLM kernels", "CMSIS-NN", "front end"} <= set(parts)
    assert parts["model"]["flash"] >= (run_dir / "export" / "tflm" / "model.tflite").stat().st_size
    assert tflm["ram_bytes"] == board["arena_used_bytes"] + statics + board["stack_used_bytes"]
    assert board["arena_used_bytes"] < tflm["arena"]["measured"]  # 32-bit pointers: less than the 64-bit host
    latency = tflm["figures"]["latency"]
    assert not latency["measured"] and "assumed" in latency["method"]
    assert latency["value"] == pytest.approx(board["instructions_per_invoke"] * M4.cpi / (M4.clock_mhz * 1e3))
    assert tflm["host_figures"]["latency"]["method"].startswith("median invoke()")
    assert board["frontend"]["inputs_equal"] == 1.0 and board["frontend"]["instructions_per_clip"] > 1e5
    budgets = {b["name"]: b for b in json.loads((run_dir / "report.json").read_text())["budgets"]}
    assert (
        budgets["tflm.cortex-m4f-256k.flash_kb"]["ok"] and budgets["tflm.ram_kb"]["actual"] == tflm["ram_bytes"] / 1024
    )
    report = (run_dir / "report.md").read_text()
    assert "instructions per invoke" in report and "| **total ELF** |" in report
    manifest = json.loads((run_dir / "export" / "tflm" / "manifest.json").read_text())
    assert (
        manifest["firmware"]["board"] == M4.name
        and "firmware/cortex-m4f-256k-cmsis_nn/firmware.elf" in manifest["files"]
    )


def test_a_rerun_counts_the_same_instructions_and_outputs(board_run, tmp_path):
    run_dir, tflm = board_run
    bundle = run_dir / "export" / "tflm"
    firmware = build_firmware(bundle, "tiny", M4, "cmsis_nn", tmp_path / "fw")
    assert firmware.library.cached  # the run built it: a firmware for the same core and kernels reuses it
    vectors = np.load(bundle / "test_vectors.npz")["x"][:4]
    first, second = (run_firmware(firmware, M4, vectors, runs=3) for _ in range(2))
    assert first.counts == second.counts and first.counts[0] == tflm["on_board"]["instructions_by_vector"][0]
    expected = tflm_outputs(
        bundle / "model.tflite", json.loads((bundle / "manifest.json").read_text())["arena_bytes"], vectors
    )
    assert np.array_equal(first.outputs, expected.reshape(len(vectors), -1))


def test_firmware_the_board_cannot_hold_fails_by_name(board_run, tmp_path):
    run_dir, tflm = board_run
    small = dataclasses.replace(M4, name="tiny-8k", ram_kb=8, flash_kb=64)
    firmware = build_firmware(run_dir / "export" / "tflm", "tiny", small, "cmsis_nn", tmp_path / "fw")
    assert (
        firmware.fits is not None and "does not fit board tiny-8k" in firmware.fits and "FLASH over by" in firmware.fits
    )
    assert section_split(firmware.map, {})["flash_bytes"] > 64 * 1024  # measured all the same, on the emulator's memory
    checks = _capacity("tflm", tflm | {"capacity": {"name": small.name, "flash_kb": 64, "ram_kb": 8}})
    failed = {c.name: c.describe() for c in checks if not c.ok}
    assert "tflm.tiny-8k.flash_kb" in failed and "over the limit 64 KB" in failed["tflm.tiny-8k.flash_kb"]


def test_profile_runs_any_model_as_firmware_on_the_board(board_run, tmp_path):
    run_dir, tflm = board_run
    out = tmp_path / "profiled"
    done = run_cli("profile", str(run_dir / "export" / "model.tflite"), "--board", M4.name, "--out", str(out),
                   "--runs", "20", cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((out / "profile.json").read_text())
    assert report["on_board"]["outputs_match"] == report["on_board"]["vectors"] == 16
    assert "instructions per invoke" in done.stdout and "linked flash" in done.stdout


@pytest.mark.slow
@pytest.mark.parametrize("name", ["cortex-m7-512k", "cortex-m33-256k", "cortex-m55-512k"])
def test_every_emulated_core_runs_the_bundle_bit_exact(board_run, tmp_path, name):
    """The other emulated cores (M7 on mps2-an500; M33 and M55 in the Secure state of the TrustZone boards, the
    M55 with CMSIS-NN's Helium kernels and a SysTick counter): same outputs as the interpreter, counts in range."""
    run_dir, tflm = board_run
    board = BOARDS[name]
    bundle = run_dir / "export" / "tflm"
    firmware = build_firmware(bundle, "tiny", board, "cmsis_nn", tmp_path / "fw")
    vectors = np.load(bundle / "test_vectors.npz")["x"][:4]
    run = run_firmware(firmware, board, vectors, runs=3)
    arena = json.loads((bundle / "manifest.json").read_text())["arena_bytes"]
    assert np.array_equal(run.outputs, tflm_outputs(bundle / "model.tflite", arena, vectors).reshape(len(vectors), -1))
    assert 0.1 < run.counts[0] / tflm["on_board"]["instructions_per_invoke"] < 2
