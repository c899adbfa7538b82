import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "tests" / "recipes" / "tiny.yaml"


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 900) -> subprocess.CompletedProcess:
    """The `pipeline` command as a user runs it: a real process, real exit code."""
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args], capture_output=True, text=True, cwd=cwd or ROOT, timeout=timeout
    )


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """The tiny recipe run once end to end; tests share its cache and run directory."""
    runs = tmp_path_factory.mktemp("runs")
    done = run_cli("run", str(TINY), "--runs-dir", str(runs))
    assert done.returncode == 0, done.stderr[-4000:]
    return runs, done


@pytest.fixture(scope="module")
def installed():
    """The pinned speech-embedding models (scripts/setup.sh fetches them), by file name."""
    from pipeline.models import speech_embedding_assets as assets

    try:
        return {name: assets.model_path(name) for name in assets.FILES}
    except assets.AssetError as exc:
        pytest.skip(str(exc))
