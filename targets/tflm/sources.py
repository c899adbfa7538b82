"""The upstream sources a Cortex-M firmware build needs, pinned like any dependency.

TFLite Micro, Arm's CMSIS-NN kernels and what they include, at the commits TFLM's own download scripts pin. They
are found, in order, in the recipe's `tflm: {sources: DIR}`, in `$EDGE_PIPELINE_TFLM_SOURCES`, or in the user cache
that `scripts/setup.sh` fills (`python -m targets.tflm.sources fetch`: from a local folder of archives, or
downloaded from GitHub when online). Nothing is downloaded while a recipe runs.

An archive is accepted by the digest of the files inside it (path and SHA-256 of each, the top folder stripped),
not of its bytes: GitHub's archive bytes vary between downloads, the files do not. Nothing from them is copied
into this repository; they are unpacked into the firmware cache and compiled there.

    python -m targets.tflm.sources fetch [--from DIR]   # fill the cache (setup does this)
    python -m targets.tflm.sources check [DIR]          # verify a folder of archives
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tarfile
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from pipeline.engine.store import write_atomic

ENV = "EDGE_PIPELINE_TFLM_SOURCES"
SETUP_HINT = "run scripts/setup.sh (it fetches them), or name a folder of the archives in tflm.sources or $" + ENV


class SourcesError(RuntimeError):
    """A pinned source is missing or is not what was pinned."""


@dataclass(frozen=True)
class Upstream:
    name: str  # the folder the build expects
    repo: str  # owner/name on GitHub
    commit: str
    files_sha256: str  # digest of (path, SHA-256) of every file inside the archive, top folder stripped
    licence: str

    @property
    def archive(self) -> str:
        return f"{self.repo.split('/')[1]}-{self.commit}.tar.gz"

    @property
    def url(self) -> str:
        return f"https://github.com/{self.repo}/archive/{self.commit}.tar.gz"


UPSTREAM = (
    Upstream("tflite-micro", "tensorflow/tflite-micro", "90b983c2b3f1480642e040bbd2ddb37b998f3424",
             "d67ab912fcf0d37846fd2dc1546bd3530dd19cadb2a04a4d4065f95bdaa11a65", "Apache-2.0"),
    Upstream("cmsis_nn", "ARM-software/CMSIS-NN", "4ab83cc3cc98fb85ed6dafb55e8ca02f1628dcae",
             "c1493cf02f421c1335d788cfd85aee2ef859250e02e824fbcf0cc5371620a999", "Apache-2.0"),
    Upstream("cmsis", "ARM-software/CMSIS_6", "5782d6f8057906d360f4b95ec08a2354afe5c9b9",
             "ed9a056c9d2d112173b81bbd9de9f29b026b5baafe76a60198a1b243ba358040", "Apache-2.0"),
    Upstream("cortex_dfp", "ARM-software/Cortex_DFP", "c2c70a97a20fb355815e2ead3d4a40e35a4a3cdf",
             "ddb9c9a6647319cef0efa38cc14ef083ed5aa708ff3c28ee7faf7792836f0663", "Apache-2.0"),
    Upstream("flatbuffers", "google/flatbuffers", "187240970746d00bbd26b0f5873ed54d2477f9f3",
             "dc0ed490f7d928b6c2df6c14224fcef82a9822e6ede4c0dcbc543c5516320821", "Apache-2.0"),
    Upstream("gemmlowp", "google/gemmlowp", "719139ce755a0f31cbf1c37f7f98adcc7fc9f425",
             "f76f2794915edf374afa8a097628a3b5a8ae0df2e5eedafe0b4b54344747d09d", "Apache-2.0"),
    Upstream("ruy", "google/ruy", "d37128311b445e758136b8602d1bbd2a755e115d",
             "7d2e8d4f2e00bf47a7820b1db82603b789d571699da6fe7c0cc1a8fcbc121222", "Apache-2.0"),
)  # fmt: skip


def cache_root() -> Path:
    """Where toolchain-level artefacts live (sources, TFLM libraries): shared by every recipe and run folder."""
    base = os.environ.get("EDGE_PIPELINE_FIRMWARE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "edge-pipeline", "firmware"
    )
    return Path(base)


def files_digest(archive: Path) -> str:
    """SHA-256 over every member's (path without the top folder, content SHA-256 or link target), sorted."""
    entries = []
    try:
        with tarfile.open(archive) as tar:
            for member in tar:
                if not (member.isfile() or member.issym()):
                    continue
                rel = member.name.split("/", 1)[1] if "/" in member.name else ""
                if member.issym():
                    content = "link:" + member.linkname
                else:
                    content = hashlib.sha256(tar.extractfile(member).read()).hexdigest()
                entries.append(f"{rel}\0{content}\n")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise SourcesError(f"{archive}: not a readable .tar.gz ({exc})") from None
    h = hashlib.sha256()
    for entry in sorted(entries):
        h.update(entry.encode())
    return h.hexdigest()


def verify(archive: Path, upstream: Upstream) -> None:
    got = files_digest(archive)
    if got != upstream.files_sha256:
        raise SourcesError(
            f"{archive}: its files are not {upstream.repo} at {upstream.commit[:12]} (files digest {got[:16]}..., "
            f"pinned {upstream.files_sha256[:16]}...)"
        )


def sources_dir(configured: str | Path | None = None) -> Path:
    """The folder holding every pinned archive: the recipe's, the environment's, or setup's cache."""
    for candidate, what in ((configured, "tflm.sources"), (os.environ.get(ENV), f"${ENV}")):
        if candidate:
            folder = Path(candidate).expanduser()
            if not folder.is_dir():
                raise SourcesError(f"{what}: {folder} is not a folder")
            return folder
    return cache_root() / "sources"


def missing(folder: Path) -> list[str]:
    return [u.archive for u in UPSTREAM if not (folder / u.archive).is_file()]


def unpack(folder: Path, dest: Path) -> None:
    """Every pinned archive from `folder`, verified, unpacked into `dest/<name>/`."""
    absent = missing(folder)
    if absent:
        raise SourcesError(f"TFLM firmware sources missing in {folder}: {', '.join(absent)}; {SETUP_HINT}")
    for upstream in UPSTREAM:
        archive = folder / upstream.archive
        verify(archive, upstream)
        with tempfile.TemporaryDirectory(dir=dest) as tmp, tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")
            (top,) = Path(tmp).iterdir()
            os.rename(top, dest / upstream.name)


def fetch(into: Path, local: Path | None, log=print) -> None:
    """Fill `into` with every pinned archive: copied from `local` when it has it, else downloaded; each verified
    before it is kept, written atomically (a rerun after an interruption starts the missing ones again)."""
    into.mkdir(parents=True, exist_ok=True)
    for upstream in UPSTREAM:
        target = into / upstream.archive
        if target.is_file():
            try:
                verify(target, upstream)
                continue
            except SourcesError:
                target.unlink()
        with tempfile.TemporaryDirectory(dir=into) as tmp:
            part = Path(tmp) / upstream.archive
            if local is not None and (local / upstream.archive).is_file():
                shutil.copyfile(local / upstream.archive, part)
                how = f"from {local}"
            else:
                try:
                    with urllib.request.urlopen(upstream.url, timeout=60) as response, open(part, "wb") as out:
                        shutil.copyfileobj(response, out)
                except OSError as exc:
                    raise SourcesError(
                        f"{upstream.repo}@{upstream.commit[:12]}: not in {local or 'a local folder'} and the "
                        f"download failed ({exc}); set ${ENV} to a folder holding {upstream.archive}"
                    ) from None
                how = "downloaded"
            verify(part, upstream)
            write_atomic(target, part.read_bytes())
        log(f"sources: {upstream.repo}@{upstream.commit[:12]} {how}, verified")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m targets.tflm.sources", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    fetch_cmd = sub.add_parser("fetch", help="fill the cache from a local folder, or download")
    fetch_cmd.add_argument("--from", dest="local", type=Path, help=f"a folder of the archives (default: ${ENV})")
    check_cmd = sub.add_parser("check", help="verify a folder of the archives")
    check_cmd.add_argument("folder", type=Path, nargs="?")
    args = parser.parse_args(argv)
    try:
        if args.command == "fetch":
            local = args.local or (Path(os.environ[ENV]) if os.environ.get(ENV) else None)
            fetch(cache_root() / "sources", local)
        else:
            folder = sources_dir(args.folder)
            absent = missing(folder)
            if absent:
                raise SourcesError(f"missing in {folder}: {', '.join(absent)}")
            for upstream in UPSTREAM:
                verify(folder / upstream.archive, upstream)
            print(f"{folder}: all {len(UPSTREAM)} archives verified")
    except SourcesError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
