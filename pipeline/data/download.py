"""Fetch a data set archive into `data.path`: resumable, checksum-verified, extracted atomically.

The archive is streamed to `<data.path>.part` (an interrupted download resumes from its last byte, with an HTTP
Range request or a seek for file:// URLs), its SHA-256 is checked against the recipe's, and it is unpacked into a
sibling folder that is renamed to `data.path` only when complete: a crash leaves either nothing or the whole set.
Tar members that would land outside the folder (absolute paths, `..`, links out) are refused (tarfile's "data"
filter).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

CHUNK = 1 << 20
Progress = Callable[[str, int, int], None]


class DownloadError(RuntimeError):
    pass


def fetch_dataset(url: str, sha256: str, dest: Path, progress: Progress | None = None) -> Path:
    """Make `dest` hold the archive's contents (a no-op when it exists). Returns `dest`."""
    dest = Path(dest)
    if dest.is_dir():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    download(url, part, progress)
    actual = file_sha256(part)
    if actual != sha256.lower():
        part.unlink()
        raise DownloadError(
            f"{url}: SHA-256 {actual} does not match the recipe's {sha256.lower()}; the download was removed"
        )
    extract(part, dest)
    part.unlink()
    return dest


def download(url: str, part: Path, progress: Progress | None = None) -> None:
    """Append the bytes of `url` that `part` does not hold yet."""
    have = part.stat().st_size if part.exists() else 0
    with _open(url, have) as (source, total, resumed):
        mode = "ab" if resumed else "wb"
        done = have if resumed else 0
        with open(part, mode) as out:
            while chunk := source.read(CHUNK):
                out.write(chunk)
                done += len(chunk)
                if progress:
                    progress("downloading", done, total or done)
            out.flush()
            os.fsync(out.fileno())
    if total and done != total:
        raise DownloadError(f"{url}: got {done:,} of {total:,} bytes; run again to resume")


class _open:
    """(stream, total size or 0, whether it starts at `offset`) for http(s):// and file:// URLs."""

    def __init__(self, url: str, offset: int):
        self.url, self.offset = url, offset

    def __enter__(self) -> tuple[BinaryIO, int, bool]:
        parsed = urllib.parse.urlparse(self.url)
        if parsed.scheme == "file":
            path = Path(urllib.request.url2pathname(parsed.path))
            if not path.is_file():
                raise DownloadError(f"{self.url}: no such file")
            self.stream = open(path, "rb")
            total = path.stat().st_size
            resumed = 0 < self.offset <= total
            self.stream.seek(self.offset if resumed else 0)
            return self.stream, total, resumed
        if parsed.scheme not in ("http", "https"):
            raise DownloadError(f"{self.url}: only http(s):// and file:// URLs can be fetched")
        request = urllib.request.Request(self.url, headers={"Range": f"bytes={self.offset}-"} if self.offset else {})
        try:
            self.stream = urllib.request.urlopen(request, timeout=60)
        except OSError as exc:
            raise DownloadError(f"{self.url}: {exc}") from None
        resumed = self.offset > 0 and self.stream.status == 206
        length = int(self.stream.headers.get("Content-Length") or 0)
        return self.stream, length + (self.offset if resumed else 0), resumed

    def __exit__(self, *exc: object) -> None:
        self.stream.close()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def extract(archive: Path, dest: Path) -> None:
    staging = dest.with_name(f".{dest.name}.extracting-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(staging, filter="data")
    except (tarfile.TarError, OSError) as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise DownloadError(f"{archive}: cannot unpack ({exc})") from None
    entries = list(staging.iterdir())
    root = entries[0] if len(entries) == 1 and entries[0].is_dir() else staging  # one top folder: its contents
    os.replace(root, dest)
    shutil.rmtree(staging, ignore_errors=True)
