"""The tool as a user installs it: a wheel in a fresh venv, run from a folder that is not the checkout.

The wheel is built from the tracked files and installed with `--no-deps`; the fresh venv reaches the checkout's
.venv site-packages for the (pinned, already installed) dependencies only, so `pipeline` and `targets` can only
come from the wheel. Everything runs with relative paths from a temporary working directory: the TFLM and
OpenVINO child processes must find the installed package and the user's files from there.
"""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

from tests.conftest import ROOT, TINY


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """bin/ folder of a fresh venv holding the wheel built from the tracked sources."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for rel in filter(None, tracked.decode().split("\0")):
        (source / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, source / rel)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "-w", str(work / "dist"), str(source)], check=True)
    wheel = next((work / "dist").glob("edge_pipeline-*.whl"))
    env_dir = work / "venv"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], capture_output=True, text=True
    ).stdout.strip()
    # Dependencies from the project venv (a plain path: its .pth files, the editable checkout's among them, stay
    # unprocessed); the project itself only from the wheel.
    Path(purelib, "project_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([*pip, "--python", str(python), "install", "--no-deps", str(wheel)], check=True)
    return env_dir / "bin"


def _run(bin_dir: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run(
        [str(bin_dir / "pipeline"), *args], cwd=cwd, capture_output=True, text=True, timeout=900, env=env
    )


def test_package_comes_from_the_wheel(installed, tmp_path):
    done = subprocess.run(
        [str(installed / "python"), "-c", "import pipeline, targets; print(pipeline.__file__); print(targets.__file__)"],
        cwd=tmp_path, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    for line in done.stdout.split():
        assert Path(line).is_relative_to(installed.parent) and not Path(line).is_relative_to(ROOT)


def test_run_and_profile_from_another_directory(installed, tiny_run, tmp_path):
    """The tiny recipe (copied, relative paths) and `pipeline profile` of a relative .tflite, from a folder
    outside the checkout. Builds come from the shared cache; --remeasure runs every target's measurement,
    and with it every child process, from here."""
    runs, _ = tiny_run
    (tmp_path / "recipes").mkdir()
    shutil.copy(TINY, tmp_path / "recipes" / "tiny.yaml")
    (tmp_path / "cache").symlink_to(runs / ".cache")
    done = _run(installed, tmp_path, "run", "recipes/tiny.yaml", "--runs-dir", "myruns", "--cache", "cache",
                "--remeasure", "-q")  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    report = json.loads((tmp_path / "myruns" / "tiny" / "latest" / "report.json").read_text())
    assert {t["name"]: t["cached"] for t in report["targets"]} == {"tflm": False, "android": False, "openvino": False}
    assert report["targets"][0]["arena"]["measured"] > 0

    shutil.copy(tmp_path / "myruns" / "tiny" / "latest" / "export" / "model.tflite", tmp_path / "kws.tflite")
    done = _run(installed, tmp_path, "profile", "kws.tflite", "--runs", "20")
    assert done.returncode == 0, done.stderr[-4000:]
    profile = json.loads((tmp_path / "runs" / "profile" / "kws" / "profile.json").read_text())
    assert profile["arena"]["measured"] == report["targets"][0]["arena"]["measured"]
