"""Versioned bundles in a registry: publish, list, pull with verification, concurrent publishers (issue #19)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys

import pytest

from pipeline.connect.registry import RegistryError, list_versions, publish, pull
from targets.tflm.bundle import verify_manifest, write_manifest


@pytest.fixture
def run_dir(tiny_run):
    runs, _ = tiny_run
    return (runs / "tiny" / "latest").resolve()


def test_publish_list_pull_and_publishing_twice_is_a_no_op(run_dir, tmp_path):
    url = f"file://{tmp_path / 'registry'}"  # any fsspec URL; a plain folder works the same
    first = publish(run_dir, url)
    assert first["status"] == "published" and first["version"] == 1 and first["name"] == "tiny"
    again = publish(run_dir, url)
    assert again["status"] == "already published" and again["version"] == 1
    (listed,) = list_versions(url)["tiny"]
    assert listed["figures"]["targets"]["tflm"]["ram_bytes"] > 0 and listed["figures"]["accuracy_synthetic"] is not None
    index = json.loads((tmp_path / "registry" / "index.json").read_text())
    assert [v["version"] for v in index["tiny"]] == [1]
    into = tmp_path / "firmware" / "model"
    pulled = pull("tiny@1", url, into)
    assert (
        pulled["model_sha256"]
        == json.loads((run_dir / "export" / "tflm" / "manifest.json").read_text())["model_sha256"]
    )
    assert (
        verify_manifest(into) == []
        and (into / "src" / "model_data.cpp").read_bytes()
        == (run_dir / "export" / "tflm" / "src" / "model_data.cpp").read_bytes()
    )
    assert pull("tiny", url, into)["version"] == 1  # the latest; an earlier pull may be replaced
    with pytest.raises(RegistryError, match=r"no version 7 of 'tiny' \(published: 1\)"):
        pull("tiny@7", url, into)


def test_a_tampered_version_never_reaches_the_firmware_tree(run_dir, tmp_path):
    registry = tmp_path / "registry"
    version = publish(run_dir, str(registry))
    folder = registry / "tiny" / f"1-{version['model_sha256'][:8]}"
    data = folder / "src" / "model_data.cpp"
    data.write_text(data.read_text().replace("0x", "0X", 1))
    into = tmp_path / "firmware"
    into.mkdir()
    (into / "main.cc").write_text("int main() {}\n")  # the team's own code: a pull must not touch it
    with pytest.raises(RegistryError, match="was not written by `pipeline pull`"):
        pull("tiny", str(registry), into)
    target = into / "model"
    with pytest.raises(RegistryError, match=r"fails its checksums \(src/model_data.cpp\): tampered or partial"):
        pull("tiny", str(registry), target)
    assert not target.exists() and (into / "main.cc").read_text() == "int main() {}\n"
    assert sorted(p.name for p in into.iterdir()) == ["main.cc"]  # no temporary folder left behind


def _another_model(run_dir, tmp_path):
    """A copy of the run whose model's bytes differ, with a manifest of its own."""
    other = tmp_path / "other"
    shutil.copytree(run_dir, other, symlinks=True)
    bundle = other / "export" / "tflm"
    model = bytearray((bundle / "model.tflite").read_bytes())
    model[-1] ^= 0xFF
    (bundle / "model.tflite").write_bytes(bytes(model))
    manifest = json.loads((bundle / "manifest.json").read_text())
    info = {k: v for k, v in manifest.items() if k != "files"} | {"model_sha256": hashlib.sha256(model).hexdigest()}
    write_manifest(bundle, info)
    return other


def test_a_publisher_with_a_stale_view_takes_the_next_number(run_dir, tmp_path, monkeypatch):
    """The race made deterministic: the second publisher reads the numbers before the first one claimed 1."""
    import pipeline.connect.registry as registry

    url = str(tmp_path / "registry")
    assert publish(run_dir, url)["version"] == 1
    monkeypatch.setattr(registry, "_claimed_numbers", lambda *_: [])
    assert publish(_another_model(run_dir, tmp_path), url)["version"] == 2
    assert [v["version"] for v in list_versions(url)["tiny"]] == [1, 2]


def test_concurrent_publishes_land_with_distinct_versions(run_dir, tmp_path):
    """Two processes publish two different models at once: both land, numbered 1 and 2."""
    other = _another_model(run_dir, tmp_path)
    registry = tmp_path / "registry"
    code = (
        "import sys; from pipeline.connect.registry import publish; print(publish(sys.argv[1], sys.argv[2])['version'])"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, str(d), str(registry)], stdout=subprocess.PIPE, text=True,
                              env=os.environ) for d in (run_dir, other)]  # fmt: skip
    numbers = sorted(int(p.communicate(timeout=120)[0].strip()) for p in procs)
    assert numbers == [1, 2] and all(p.returncode == 0 for p in procs)
    assert [v["version"] for v in list_versions(str(registry))["tiny"]] == [1, 2]


def test_the_cli_publishes_and_pulls(run_dir, tmp_path):
    from tests.conftest import run_cli

    registry = str(tmp_path / "reg")
    done = run_cli("publish", str(run_dir), "--registry", registry)
    assert done.returncode == 0 and "tiny@1" in done.stdout and "published" in done.stdout
    done = run_cli("list", "--registry", registry)
    assert done.returncode == 0 and done.stdout.startswith("tiny@1")
    done = run_cli("pull", "nosuch", "--registry", registry, "--into", str(tmp_path / "x"))
    assert done.returncode == 2 and "no published versions of 'nosuch'" in done.stderr
