"""Streaming detection: a model run every stride on the last clip of a stream, and the decisions firmware makes.

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

from pipeline.measurement import figure
from pipeline.runtimes import ModelRef, Predictor
from pipeline.streams import Stream

if TYPE_CHECKING:  # the recipe imports the targets, whose bundles use this module
    from pipeline.recipe import FeaturesConfig, StreamingConfig

GRID = np.round(np.arange(0.05, 1.0, 0.01), 2)  # thresholds tried (a share of the top score)
CHUNK = 20_000  # windows scored per call


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
        hop = int(round(cfg.stride_ms * features.sample_rate / 1000))
        keywords = tuple(range(2, len(labels)))
        return cls(hop, cfg.smoothing, math.ceil(cfg.suppression_ms / cfg.stride_ms), keywords, (1.0,) * len(keywords))

    def with_thresholds(self, thresholds: Sequence[float]) -> Detector:
        return Detector(
            self.hop, self.smoothing, self.suppression, self.keyword_ids, tuple(float(t) for t in thresholds)
        )


def window_features(audio: np.ndarray, features: FeaturesConfig, hop: int) -> np.ndarray:
    """The model's input for every window of the stream ending at clip_samples + i x hop, float32 [n, *shape]:
    MFCC frames are computed once and shared by overlapping windows (the C detector's ring buffer does the same);
    other front ends are run on each window's clip."""
    from pipeline.data import features as feats

    clip = features.clip_samples
    n = 0 if len(audio) < clip else 1 + (len(audio) - clip) // hop
    if features.kind == "mfcc" and hop % features.stride_samples == 0:
        frames = feats.mfcc_frames(audio[: clip + (n - 1) * hop] if n else audio[:0], features)
        step = hop // features.stride_samples
        view = np.lib.stride_tricks.sliding_window_view(frames, (features.frames, features.coefficients))[:, 0]
        return np.ascontiguousarray(view[: (n - 1) * step + 1 : step]) if n else frames[:0].reshape(0, *features.shape)
    clips = np.lib.stride_tricks.sliding_window_view(audio, clip)[::hop][:n]
    return np.concatenate([feats.compute(np.ascontiguousarray(clips[i : i + 2048]), features)
                           for i in range(0, n, 2048)]) if n else np.zeros((0, *features.shape), np.float32)  # fmt: skip


def scores(predict: Predictor, stream: Stream, features: FeaturesConfig, hop: int,
           progress: Callable[[int, int], None] = lambda done, total: None) -> np.ndarray:  # fmt: skip
    """Class scores [windows, classes] of a model on every window of the stream."""
    x = window_features(stream.audio, features, hop)
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


def evaluate(
    models: list[ModelRef],
    calibration: list[Stream],
    judged: list[Stream],
    labels: list[str],
    cfg: StreamingConfig,
    features: FeaturesConfig,
    log: Callable[[str], None] = lambda m: None,
    progress: Callable[[str, int, int], None] | None = None,
    predictor: Callable[[ModelRef], Predictor] | None = None,
    chosen_before: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Each model on its own runtime: thresholds chosen on the calibration streams (or taken from
    `chosen_before[model]`, a row of an earlier result), then misses, false accepts per hour and a DET curve on
    every judged stream."""
    if predictor is None:
        from pipeline.runtimes.any import predictor
    base = Detector.from_config(cfg, features, labels)
    rows = []
    for ref in models:
        run = predictor(ref)

        def tick(done: int, total: int, what: str, model: str = ref.name) -> None:
            if progress:
                progress(f"{model} listening to {what}", done, total)

        before = (chosen_before or {}).get(ref.name)
        if before is not None:
            chosen = base.with_thresholds([before["thresholds"][labels[k]] for k in base.keyword_ids])
            calibrated = before["calibration"]
        else:
            cal = [scores(run, s, features, base.hop, lambda d, t, n=s.name: tick(d, t, n)) for s in calibration]
            chosen, calibrated = choose_thresholds(cal, calibration, base, features.clip_samples,
                                                   cfg.target_fa_per_hour)  # fmt: skip
        row: dict[str, Any] = {
            "model": ref.name, "runtime": ref.runtime, "role": ref.role,
            "thresholds": {labels[k]: t for k, t in zip(chosen.keyword_ids, chosen.thresholds, strict=True)},
            "calibration": calibrated, "sets": {},
        }  # fmt: skip
        for stream in judged:
            probs = scores(run, stream, features, base.hop, lambda d, t, n=stream.name: tick(d, t, n))
            result = judge(detect(probs, chosen), stream, chosen, features.clip_samples)
            result["per_keyword_miss_rate"] = {labels[k]: v for k, v in result["per_keyword_miss_rate"].items()}
            result["det"] = det_curve(probs, stream, base, features.clip_samples)
            row["sets"][stream.name] = result
        log(f"{ref.name}: " + ", ".join(
            f"{n} misses {r['miss_rate']:.1%} at {r['fa_per_hour']:.2f} FA/h" for n, r in row["sets"].items()
            if r["miss_rate"] is not None))  # fmt: skip
        rows.append(row)
    return {
        "settings": cfg.model_dump(mode="json"),
        "detector": {"hop_samples": base.hop, "smoothing": base.smoothing, "suppression_outputs": base.suppression},
        "calibration_streams": [s.summary() for s in calibration],
        "streams": [s.summary() for s in judged],
        "models": rows,
    }


def cost(cfg: StreamingConfig, features: FeaturesConfig, targets: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Runs per second, how busy each target's core is at that rate (its own latency figure), and the bundle's
    front end per stride: one new frame (incremental) against every frame of the window."""
    per_second = 1000 / cfg.stride_ms
    out: dict[str, Any] = {"invokes_per_second": per_second, "targets": []}
    for name, metrics in targets.items():
        latency = figure(metrics, "latency")
        if latency is not None:
            out["targets"].append({"target": name, "latency_ms": latency.value, "latency_kind": latency.label,
                                   "method": latency.method, "duty": per_second * latency.value / 1000})  # fmt: skip
    on_board = (targets.get("tflm") or {}).get("on_board") or {}
    board = on_board.get("streaming")
    if board:
        out["board"] = board | {"duty": per_second * board["latency_ms_per_run"] / 1000, "board": on_board["board"]}
        whole = (on_board.get("frontend") or {}).get("instructions_per_clip")
        if whole:  # measured on the core: all frames of a window, against a run's new frames and decision
            incremental = board["instructions_per_run"] - on_board["instructions_per_invoke"]
            out["board"] |= {"frontend_window_instructions": whole, "incremental_instructions": incremental,
                             "frontend_ratio": whole / incremental if incremental > 0 else None}  # fmt: skip
    frontend = (targets.get("tflm") or {}).get("frontend")
    if frontend and features.kind == "mfcc":
        per_frame = frontend["ops_per_clip"] // features.frames  # the front end counts frames x per-frame work
        new_frames = round(cfg.stride_ms / features.stride_ms)
        out["frontend"] = {
            "frames": features.frames, "frame_stride_ms": features.stride_ms, "ops_per_new_frame": per_frame,
            "ops_per_window": frontend["ops_per_clip"], "ratio_per_frame": features.frames,
            "new_frames_per_run": new_frames, "ratio_per_run": features.frames / new_frames,
        }  # fmt: skip
    return out
