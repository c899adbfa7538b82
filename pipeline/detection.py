"""The detector firmware ships: a model run every stride on the last clip of a stream, and its decisions.

The detector is the one a firmware team ships (TFLM's micro_speech `RecognizeCommands`, in integers in the
bundle's `detector.c`): the class scores of the last `smoothing` outputs are summed (missing outputs at the start
count as zero), a keyword fires when its sum reaches `threshold x smoothing` (the highest sum wins when several
do), and nothing fires for `suppression` outputs after a detection. Scores of an int8 model are multiples of its
output scale, so the float64 sums here are exact and the C detector's integer sums decide the same way.

Thresholds are chosen per keyword on validation streams (never on field sets): each keyword gets an equal share of
the false-accept budget, then all are raised together until the whole detector meets it. A detection is a hit
when it names a keyword said no earlier than the window could hear it and no later than a window plus the
smoothing delay after its end; a second detection of the same word is neither hit nor false accept; every other
detection is a false accept.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.runtimes import Predictor

if TYPE_CHECKING:  # targets use this module: it imports neither the recipe nor the data streams are made of
    from pipeline.recipe import FeaturesConfig, StreamingConfig
    from pipeline.streams import Stream

GRID = np.round(np.arange(0.05, 1.0, 0.01), 2)  # thresholds tried (a share of the top score)
CHUNK = 20_000  # windows scored per call


def hop_samples(cfg: StreamingConfig, features: FeaturesConfig) -> int:
    """Samples between two runs of the model (the recipe checks that `stride_ms` is a whole number of them)."""
    return int(round(cfg.stride_ms * features.sample_rate / 1000))


@dataclass(frozen=True)
class Detector:
    """The knobs firmware uses, in model outputs: run every `hop` samples, sum `smoothing` outputs, stay silent
    `suppression` outputs after a detection. `thresholds[i]` belongs to class `keyword_ids[i]`."""

    hop: int
    smoothing: int
    suppression: int
    keyword_ids: tuple[int, ...]
    thresholds: tuple[float, ...]

    @classmethod
    def from_config(cls, cfg: StreamingConfig, features: FeaturesConfig, labels: list[str]) -> Detector:
        """The recipe's detector, every keyword's threshold at 1.0 until they are chosen."""
        keywords = tuple(range(2, len(labels)))
        return cls(hop_samples(cfg, features), cfg.smoothing, math.ceil(cfg.suppression_ms / cfg.stride_ms), keywords,
                   (1.0,) * len(keywords))  # fmt: skip

    def with_thresholds(self, thresholds: Sequence[float]) -> Detector:
        return Detector(
            self.hop, self.smoothing, self.suppression, self.keyword_ids, tuple(float(t) for t in thresholds)
        )


def predict_chunks(predict: Predictor, x: np.ndarray,
                   progress: Callable[[int, int], None] = lambda done, total: None) -> np.ndarray:  # fmt: skip
    """A model's class scores on many windows, `CHUNK` per call (each TFLM call is a child process)."""
    out = []
    for start in range(0, len(x), CHUNK):
        progress(start, len(x))
        out.append(np.asarray(predict(x[start : start + CHUNK]), np.float32))
    progress(len(x), len(x))
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def smoothed(probs: np.ndarray, smoothing: int) -> np.ndarray:
    """Sum of each output and the `smoothing - 1` before it (zeros before the first), float64 and exact for
    scores that are multiples of a power of two."""
    padded = np.concatenate([np.zeros((smoothing, probs.shape[1])), probs.astype(np.float64)])
    total = np.cumsum(padded, axis=0)
    return total[smoothing:] - total[:-smoothing]


def detect(probs: np.ndarray, detector: Detector, sums: np.ndarray | None = None) -> np.ndarray:
    """Detections [n, 2]: (output index, class index), in order."""
    sums = smoothed(probs, detector.smoothing) if sums is None else sums
    kw = sums[:, list(detector.keyword_ids)]
    over = kw >= np.asarray(detector.thresholds) * detector.smoothing
    out = []
    quiet_until = -1
    for i in np.flatnonzero(over.any(axis=1)):
        if i <= quiet_until:
            continue
        candidates = np.where(over[i], kw[i], -np.inf)
        out.append((int(i), detector.keyword_ids[int(np.argmax(candidates))]))
        quiet_until = i + detector.suppression
    return np.array(out, np.int64).reshape(-1, 2)


def end_times(n: int, hop: int, clip_samples: int, sample_rate: int) -> np.ndarray:
    """When each output is available: the end of its window, in seconds."""
    return (clip_samples + hop * np.arange(n)) / sample_rate


def judge(detections: np.ndarray, stream: Stream, detector: Detector, clip_samples: int) -> dict[str, Any]:
    """Hits, misses (per keyword) and false accepts of detections on a stream with known keyword times."""
    rate = stream.sample_rate
    times = end_times(int(detections[:, 0].max()) + 1 if len(detections) else 0, detector.hop, clip_samples, rate)
    late = clip_samples / rate + (detector.smoothing - 1) * detector.hop / rate
    events = stream.events
    hit = np.zeros(len(events), bool)
    false_accepts = 0
    for index, label in detections:
        t = times[index]
        matching = np.flatnonzero((events[:, 2] == label) & (events[:, 0] < t) & (t <= events[:, 1] + late)) \
            if len(events) else []  # fmt: skip
        free = [m for m in matching if not hit[m]]
        if free:
            hit[free[0]] = True
        elif not len(matching):
            false_accepts += 1  # (a word already found, heard again, is neither)
    per_keyword = {}
    for k in detector.keyword_ids:
        said = events[:, 2] == k if len(events) else np.zeros(0, bool)
        if said.any():
            per_keyword[int(k)] = float(np.mean(~hit[said]))
    return {
        "keywords": int(len(events)),
        "misses": int(np.sum(~hit)),
        "miss_rate": float(np.mean(~hit)) if len(events) else None,
        "false_accepts": false_accepts,
        "fa_per_hour": false_accepts / stream.hours if stream.hours else None,
        "hours": stream.hours,
        "per_keyword_miss_rate": per_keyword,
    }


def choose_thresholds(
    probs: list[np.ndarray], streams: list[Stream], detector: Detector, clip_samples: int, target: float
) -> tuple[Detector, dict[str, Any]]:
    """Per-keyword thresholds meeting `target` false accepts per hour on the given (validation) streams: each
    keyword alone gets target / keywords, then all thresholds rise one grid step at a time until the detector
    with every keyword meets the target (or the grid ends: then the highest thresholds, said in the result)."""
    sums = [smoothed(p, detector.smoothing) for p in probs]
    hours = sum(s.hours for s in streams)
    share = target / len(detector.keyword_ids)

    def fa_per_hour(d: Detector) -> float:
        return sum(judge(detect(p, d, s), st, d, clip_samples)["false_accepts"]
                   for p, s, st in zip(probs, sums, streams, strict=True)) / hours  # fmt: skip

    steps = []
    for k in detector.keyword_ids:
        alone = Detector(detector.hop, detector.smoothing, detector.suppression, (k,), (1.0,))
        lo, hi = 0, len(GRID) - 1  # smallest grid index whose false accepts fit the share (bisection)
        if fa_per_hour(alone.with_thresholds([GRID[hi]])) > share:
            lo = hi
        while lo < hi:
            mid = (lo + hi) // 2
            if fa_per_hour(alone.with_thresholds([GRID[mid]])) <= share:
                hi = mid
            else:
                lo = mid + 1
        steps.append(lo)
    raised = 0
    while True:
        chosen = detector.with_thresholds([GRID[min(s + raised, len(GRID) - 1)] for s in steps])
        fa = fa_per_hour(chosen)
        if fa <= target or all(s + raised >= len(GRID) - 1 for s in steps):
            break
        raised += 1
    return chosen, {"fa_per_hour": fa, "hours": hours, "raised_steps": raised, "met": fa <= target}


def det_curve(probs: np.ndarray, stream: Stream, detector: Detector, clip_samples: int) -> list[list[float]]:
    """(false accepts per hour, miss rate) with one threshold for every keyword, over the grid."""
    sums = smoothed(probs, detector.smoothing)
    points = []
    for t in GRID[::2]:
        d = detector.with_thresholds([t] * len(detector.keyword_ids))
        j = judge(detect(probs, d, sums), stream, d, clip_samples)
        points.append([float(t), j["fa_per_hour"], j["miss_rate"]])
    return points
