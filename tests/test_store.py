"""The content-addressed store: finished entries are reused, a crash leaves no half artifact."""

import json
import os
import subprocess
import sys

import pytest

from pipeline.store import Store, digest, write_atomic


def test_built_entry_is_published_with_meta(tmp_path):
    store = Store(tmp_path)
    calls = []

    def build(tmp, meta):
        calls.append(1)
        (tmp / "out.bin").write_bytes(b"x")
        meta["metrics"] = {"accuracy": 0.5}

    art = store.get_or_build("stage-a", "k1" * 16, build)
    assert not art.cached and art.file("out.bin").read_bytes() == b"x"
    again = store.get_or_build("stage-a", "k1" * 16, build)
    assert again.cached and again.meta["metrics"] == {"accuracy": 0.5}
    assert calls == [1]  # built once, then found


def test_failed_build_leaves_nothing(tmp_path):
    store = Store(tmp_path)

    def build(tmp, meta):
        (tmp / "half.bin").write_bytes(b"partial")
        raise RuntimeError("killed mid-stage")

    with pytest.raises(RuntimeError):
        store.get_or_build("stage-a", "k2" * 16, build)
    assert store.get("stage-a", "k2" * 16) is None
    assert list(tmp_path.iterdir()) == []


def test_killed_build_is_cleaned_and_rebuilt(tmp_path):
    """A process killed mid-build leaves only a temp dir, which the next run removes before resuming."""
    script = (
        "import os, sys\n"
        "from pipeline.store import Store\n"
        "def build(tmp, meta):\n"
        "    (tmp / 'half.bin').write_bytes(b'partial')\n"
        "    os._exit(9)\n"
        f"Store({str(tmp_path)!r}).get_or_build('stage-a', 'k3' * 16, build)\n"
    )
    assert subprocess.run([sys.executable, "-c", script]).returncode == 9
    store = Store(tmp_path)
    assert store.get("stage-a", "k3" * 16) is None
    assert len(list(tmp_path.glob(".tmp-*"))) == 1
    assert store.clean_partial() == 1
    assert list(tmp_path.iterdir()) == []


def test_clean_partial_spares_a_live_build(tmp_path):
    live = tmp_path / f".tmp-{os.getpid()}-stage-a-xyz"
    live.mkdir()
    assert Store(tmp_path).clean_partial() == 0 and live.exists()


def test_key_collision_on_prefix_is_not_a_hit(tmp_path):
    store = Store(tmp_path)
    store.get_or_build("s", "a" * 20 + "1", lambda tmp, meta: None)
    assert store.get("s", "a" * 20 + "2") is None


def test_write_atomic_replaces_whole_file(tmp_path):
    target = tmp_path / "report.json"
    write_atomic(target, json.dumps({"v": 1}))
    with pytest.raises(TypeError):
        write_atomic(target, 12345)  # not writable data: the old content must survive
    assert json.loads(target.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_digest_is_order_independent():
    assert digest({"a": 1, "b": [1, 2]}) == digest({"b": [1, 2], "a": 1})
    assert digest({"a": 1}) != digest({"a": 2})
