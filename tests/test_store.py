"""The content-addressed store: finished entries are reused, a crash leaves no half artifact."""

import json
import os
import subprocess
import sys

import pytest

from pipeline.engine.store import HOST, LOCKS, Store, digest, write_atomic


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
    assert [p.name for p in tmp_path.iterdir()] == [LOCKS]  # only the lock files (empty)


def test_killed_build_is_cleaned_and_rebuilt(tmp_path):
    """A process killed mid-build leaves only a temp dir, which the next run removes before resuming."""
    script = (
        "import os, sys\n"
        "from pipeline.engine.store import Store\n"
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
    assert [p.name for p in tmp_path.iterdir()] == [LOCKS]


def test_clean_partial_spares_a_live_build(tmp_path):
    live = tmp_path / f".tmp-{os.getpid()}@{HOST}-stage-a-xyz"
    live.mkdir()
    other_host = tmp_path / ".tmp-999999999@0badc0de-stage-a-xyz"  # a dead pid here, but not this host's process
    other_host.mkdir()
    assert Store(tmp_path).clean_partial() == 0 and live.exists() and other_host.exists()


def test_processes_sharing_a_cache_build_an_entry_once(tmp_path):
    """Four processes ask for the same entry at once (sweep trials sharing a train stage): one builds, three wait
    and reuse it."""
    log = tmp_path / "builds.log"
    script = (
        "import sys, time\n"
        "from pipeline.engine.store import Store\n"
        "def build(tmp, meta):\n"
        f"    open({str(log)!r}, 'a').write('built\\n')\n"
        "    time.sleep(1.0)\n"
        "    (tmp / 'model.bin').write_bytes(b'weights')\n"
        f"art = Store({str(tmp_path / 'cache')!r}).get_or_build('stage-train', 'k4' * 16, build)\n"
        "print(art.cached, (art.path / 'model.bin').read_bytes().decode())\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True) for _ in range(4)]
    outputs = sorted(p.communicate(timeout=60)[0].strip() for p in procs)
    assert log.read_text() == "built\n" and all(p.returncode == 0 for p in procs)
    assert outputs == ["False weights"] + ["True weights"] * 3


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
