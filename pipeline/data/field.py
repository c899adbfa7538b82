"""Field test sets: folders of real recordings in the Speech Commands layout, to judge models on people.

`<label>/<file>.wav`, where a label is a keyword, `_unknown_` or `_silence_`; any other word folder counts as
`_unknown_` (as in the training loader) and `_background_noise_` is not a test clip. WAVs of any rate, channel
count or sample format that `scipy.io.wavfile` reads are converted to the recipe's mono 16 kHz clip; a file that
cannot be read is named and counted, never fatal.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from math import gcd
from pathlib import Path

import numpy as np

from pipeline.data.speech_commands import SILENCE, UNKNOWN

SKIPPED_FOLDERS = ("_background_noise_",)
MAX_NAMED_PROBLEMS = 20


@dataclass
class FieldClips:
    audio: np.ndarray  # float32 [n, clip_samples]
    y: np.ndarray  # int64 [n]
    files: list[str]  # relative paths, in order
    unreadable: dict[str, str] = field(default_factory=dict)  # relative path -> reason
    converted: int = 0  # clips resampled or down-mixed on the way in


def list_clips(root: Path, labels: list[str]) -> list[tuple[str, int]]:
    """(relative path, label index) of every WAV, sorted; word folders that are not keywords are `_unknown_`."""
    keywords = set(labels[2:])
    out = []
    for folder in sorted(p for p in Path(root).iterdir() if p.is_dir() and p.name not in SKIPPED_FOLDERS):
        name = folder.name
        label = labels.index(name) if name in (SILENCE, UNKNOWN) or name in keywords else labels.index(UNKNOWN)
        for wav in sorted(folder.rglob("*")):
            if wav.is_file() and wav.suffix.lower() == ".wav":
                out.append((wav.relative_to(root).as_posix(), label))
    return out


def listing_key(root: Path, suffixes: tuple[str, ...] = (".wav",)) -> list[tuple[str, int, int]]:
    """Name, size and modification time of every file under `root` ending in one of `suffixes` (any case):
    identifies a folder's content without reading it. Sizes alone do not: every 1 s 16-bit clip is 32,044 bytes,
    so a clip recorded again under its old name would be judged by its stale cached features."""
    entries = []
    for dirpath, _, files in os.walk(root):
        for name in files:
            if name.lower().endswith(suffixes):
                path = os.path.join(dirpath, name)
                stat = os.stat(path)
                entries.append((os.path.relpath(path, root), stat.st_size, stat.st_mtime_ns))
    return sorted(entries)


def read_any_wav(path: Path, sample_rate: int) -> tuple[np.ndarray, bool]:
    """Mono float32 in [-1, 1] at `sample_rate`, from any PCM/float WAV; (audio, whether it was converted)."""
    from scipy.io import wavfile
    from scipy.signal import resample_poly

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", wavfile.WavFileWarning)  # odd chunks (LIST, cue) are fine
        rate, data = wavfile.read(path)
    if data.size == 0:
        raise ValueError("no samples")
    converted = data.ndim > 1 or rate != sample_rate or data.dtype != np.int16
    if data.dtype == np.uint8:
        audio = (data.astype(np.float32) - 128.0) / 128.0
    elif np.issubdtype(data.dtype, np.integer):
        audio = data.astype(np.float32) / float(-np.iinfo(data.dtype).min)
    else:
        audio = data.astype(np.float32)
    if audio.ndim > 1:
        audio = audio.mean(axis=1)
    if rate != sample_rate:
        g = gcd(int(rate), sample_rate)
        audio = resample_poly(audio, sample_rate // g, int(rate) // g).astype(np.float32)
    if not np.all(np.isfinite(audio)):
        raise ValueError("non-finite samples")
    return audio, converted


def load_field_clips(root: Path, labels: list[str], sample_rate: int, clip_samples: int) -> FieldClips:
    clips = list_clips(root, labels)
    audio = np.zeros((len(clips), clip_samples), np.float32)
    keep, files, ys, unreadable, converted = [], [], [], {}, 0
    for i, (rel, label) in enumerate(clips):
        try:
            samples, was_converted = read_any_wav(Path(root) / rel, sample_rate)
        except Exception as exc:  # a broken file can make scipy's reader fail in any way; never fatal
            unreadable[rel] = f"{type(exc).__name__}: {exc}"
            continue
        converted += was_converted
        samples = samples[:clip_samples]
        audio[i, : len(samples)] = samples
        keep.append(i)
        files.append(rel)
        ys.append(label)
    return FieldClips(audio[keep], np.array(ys, np.int64), files, unreadable, converted)
