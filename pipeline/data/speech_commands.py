"""Loader for the Google Speech Commands v2 folder layout (the real data set or the synthetic one).

The 12-class task of the original paper and of MLPerf Tiny KWS: the keywords, ``_unknown_`` (every other word,
subsampled) and ``_silence_`` (1 s of background noise at a random volume). Split membership comes from
``validation_list.txt`` and ``testing_list.txt``; every other clip is training data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.data.synthetic import SPLITS, read_wav

SILENCE, UNKNOWN = "_silence_", "_unknown_"


class DataLayoutError(ValueError):
    pass


@dataclass(frozen=True)
class Clip:
    path: str | None  # relative to the data root; None for a silence clip
    label: int
    speaker: str


def index_dataset(
    root: Path, keywords: list[str], silence_fraction: float, unknown_fraction: float, seed: int
) -> dict[str, list[Clip]]:
    root = Path(root)
    if not root.is_dir():
        raise DataLayoutError(f"{root}: no such data folder")
    for required in ("validation_list.txt", "testing_list.txt"):
        if not (root / required).is_file():
            raise DataLayoutError(f"{root}: missing {required} (not a Speech Commands layout)")
    val = set((root / "validation_list.txt").read_text().split())
    test = set((root / "testing_list.txt").read_text().split())
    labels = [SILENCE, UNKNOWN, *keywords]
    words = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("_"))
    missing = [k for k in keywords if k not in words]
    if missing:
        raise DataLayoutError(f"{root}: no folder for keyword(s) {', '.join(missing)}")

    known: dict[str, list[Clip]] = {s: [] for s in SPLITS}
    unknown: dict[str, list[Clip]] = {s: [] for s in SPLITS}
    for word in words:
        label = labels.index(word) if word in keywords else 1
        for wav in sorted((root / word).glob("*.wav")):
            rel = f"{word}/{wav.name}"
            split = "test" if rel in test else "val" if rel in val else "train"
            clip = Clip(rel, label, wav.name.split("_nohash_")[0])
            (known if label > 1 else unknown)[split].append(clip)

    out = {}
    for i, split in enumerate(SPLITS):
        rng = np.random.default_rng([seed, i, 13])
        n_keywords = len(known[split])
        pool = unknown[split]
        n_unknown = min(len(pool), math.ceil(n_keywords * unknown_fraction))
        chosen = [pool[j] for j in sorted(rng.choice(len(pool), n_unknown, replace=False))] if n_unknown else []
        n_silence = math.ceil(n_keywords * silence_fraction)
        silence = [Clip(None, 0, SILENCE) for _ in range(n_silence)]
        out[split] = known[split] + chosen + silence
    return out


def load_backgrounds(root: Path) -> list[np.ndarray]:
    folder = Path(root) / "_background_noise_"
    return [read_wav(p)[0] for p in sorted(folder.glob("*.wav"))] if folder.is_dir() else []


def load_clips(
    root: Path, clips: list[Clip], clip_samples: int, backgrounds: list[np.ndarray], seed: int
) -> np.ndarray:
    """Audio for each clip as float32 [n, clip_samples]; silence is background noise at a random volume."""
    audio = np.zeros((len(clips), clip_samples), np.float32)
    for i, clip in enumerate(clips):
        if clip.path is None:
            if backgrounds:
                rng = np.random.default_rng([seed, i, 17])
                bg = backgrounds[int(rng.integers(len(backgrounds)))]
                start = int(rng.integers(0, max(1, len(bg) - clip_samples)))
                segment = bg[start : start + clip_samples]
                audio[i, : len(segment)] = segment * rng.uniform(0, 1)
            continue
        samples, _ = read_wav(Path(root) / clip.path)
        samples = samples[:clip_samples]
        audio[i, : len(samples)] = samples
    return audio
