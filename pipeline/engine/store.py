"""Content-addressed artifact store and atomic writes.

Every step's output lives in ``<cache>/<kind>-<key>/`` where the key hashes what the output is a pure function of
(its config, its inputs' keys, the code that makes it and the runtimes it uses: `pipeline.engine.fingerprint`). An
entry is built in a temporary directory and renamed into place only when complete, so a crash leaves no half artifact
and a re-run resumes from the last finished entry. Processes sharing a cache (sweep trials, machines on a shared
path) build each entry once: a POSIX lock per entry (`fcntl.lockf`, which NFS honours) makes the second builder wait
and then reuse the first's.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

META = "meta.json"
LOCKS = ".locks"  # one lock file per entry, named like the entry
# Temporary build folders are named `.tmp-<pid>@<host>-...`: only this host may judge whether <pid> is alive.
HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]
PREDICTIONS = "test_predictions.npy"  # every model-making step's top-1 on the test split, in test order


def digest(obj: Any) -> str:
    blob = json.dumps(obj, sort_keys=True, default=str, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_atomic(path: Path, data: bytes | str) -> None:
    """Write a file so readers see the old content or the new, never a torn one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = "wb" if isinstance(data, bytes) else "w"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def replace_dir(new: Path, dest: Path) -> None:
    """Put the finished folder `new` at `dest` (a sibling path), replacing what is there: readers see the old folder
    or the new one, never a mix. The old one is renamed aside first and removed only after the swap."""
    if dest.exists():
        old = dest.parent / f".{dest.name}.old-{os.getpid()}"
        os.rename(dest, old)
        os.rename(new, dest)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(new, dest)


def write_json(path: Path, obj: Any) -> None:
    write_atomic(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):  # numpy scalars
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


@dataclass
class Artifact:
    """A finished store entry: a directory of files plus the metadata its producer recorded."""

    kind: str
    key: str
    path: Path
    meta: dict[str, Any] = field(default_factory=dict)
    cached: bool = False

    def file(self, name: str) -> Path:
        return self.path / name


class Store:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    def entry(self, kind: str, key: str) -> Path:
        return self.root / f"{kind}-{key[:20]}"

    def get(self, kind: str, key: str) -> Artifact | None:
        path = self.entry(kind, key)
        meta_file = path / META
        if not meta_file.is_file():
            return None
        meta = json.loads(meta_file.read_text())
        if meta.get("key") != key:  # truncated-key collision: treat as absent, it will be rebuilt
            return None
        return Artifact(kind, key, path, meta, cached=True)

    @contextmanager
    def build(self, kind: str, key: str) -> Iterator[tuple[Path, dict[str, Any]]]:
        """Yield (temporary dir, meta dict); on clean exit the dir is published atomically with its meta."""
        self.root.mkdir(parents=True, exist_ok=True)
        final = self.entry(kind, key)
        tmp = Path(tempfile.mkdtemp(dir=self.root, prefix=f".tmp-{os.getpid()}@{HOST}-{kind}-"))
        meta: dict[str, Any] = {"kind": kind, "key": key}
        started = time.time()
        try:
            yield tmp, meta
            meta.setdefault("seconds", round(time.time() - started, 3))
            write_json(tmp / META, meta)
            if final.exists():  # a stale or colliding entry: replace it
                shutil.rmtree(final)
            os.rename(tmp, final)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    def get_or_build(self, kind: str, key: str, build_fn, reuse: Callable[[Artifact], bool] | None = None) -> Artifact:
        """The entry for (kind, key), built by `build_fn(tmp, meta)` when absent or when `reuse` refuses it."""
        found = self.get(kind, key)
        if found is not None and (reuse is None or reuse(found)):
            return found
        with self._lock(kind, key):
            found = self.get(kind, key)  # another process may have built it while we waited
            if found is not None and (reuse is None or reuse(found)):
                return found
            with self.build(kind, key) as (tmp, meta):
                build_fn(tmp, meta)
        return Artifact(kind, key, self.entry(kind, key), meta, cached=False)

    @contextmanager
    def _lock(self, kind: str, key: str) -> Iterator[None]:
        """Exclusive while one process builds (kind, key); released when it exits, even by a crash."""
        (self.root / LOCKS).mkdir(parents=True, exist_ok=True)  # lock files stay: unlinking one races a waiter
        with open(self.root / LOCKS / self.entry(kind, key).name, "a+b") as handle:
            fcntl.lockf(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.lockf(handle, fcntl.LOCK_UN)

    def clean_partial(self) -> int:
        """Remove temporary dirs left by a crashed build; returns how many."""
        if not self.root.is_dir():
            return 0
        stale = []
        for p in self.root.glob(".tmp-*"):
            pid, _, host = p.name.split("-")[1].partition("@")
            if p.is_dir() and host in ("", HOST) and not _pid_alive(pid):  # another host's build is its own
                stale.append(p)
        for p in stale:
            shutil.rmtree(p, ignore_errors=True)
        return len(stale)


def _pid_alive(pid: str) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True
