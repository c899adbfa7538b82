"""Streams through every model of a run: each window's features, each runtime's scores, thresholds chosen on
validation streams and the judged figures (`pipeline.detection` decides), and what listening costs a target.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.detection import Detector, choose_thresholds, det_curve, detect, judge, predict_chunks
from pipeline.measurement import figure
from pipeline.runtimes import ModelRef, Predictor

if TYPE_CHECKING:
    from pipeline.recipe import FeaturesConfig, StreamingConfig
    from pipeline.streams import Stream


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
    return predict_chunks(predict, window_features(stream.audio, features, hop), progress)


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
