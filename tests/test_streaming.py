"""Listening continuously (issue #45): streams with known keyword times, the detector firmware uses, thresholds for a
false-accept target, every target's runtime on streams, the C detector in the bundle, `pipeline evaluate --stream`.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest

from pipeline.analysis.streaming import window_features
from pipeline.detection import Detector, choose_thresholds, detect, judge, smoothed
from pipeline.recipe import FeaturesConfig, RecipeError, StreamingConfig, parse_recipe
from pipeline.streams import LabelsError, Stream, compose, read_labels, spoken_span
from tests.conftest import ROOT, run_cli

LABELS = ["_silence_", "_unknown_", "yes", "no"]
RATE = 16000


def _tone(freq: float, seconds: float = 0.4, clip: float = 1.0, at: float = 0.3) -> np.ndarray:
    audio = np.zeros(int(clip * RATE), np.float32)
    t = np.arange(int(seconds * RATE)) / RATE
    audio[int(at * RATE) : int(at * RATE) + len(t)] = 0.5 * np.sin(2 * np.pi * freq * t)
    return audio


def _stream(events: list[tuple[float, float, int]], seconds: float = 3600.0) -> Stream:
    return Stream("s", np.zeros(int(seconds * 100), np.float32), 100, np.array(events, float).reshape(-1, 3))


def test_windows_of_a_stream_are_the_clip_features_of_each_window():
    """Frames computed once over the stream give every window exactly the features its own clip would."""
    from pipeline.data.features import mfcc

    cfg = FeaturesConfig()
    rng = np.random.default_rng(0)
    audio = (rng.standard_normal(RATE * 3) * 0.1).astype(np.float32)
    audio[RATE : RATE + 8000] += _tone(700, 0.5, 0.5, 0.0)
    hop = 1600
    windows = window_features(audio, cfg, hop)
    starts = range(0, len(audio) - cfg.clip_samples + 1, hop)
    clips = np.stack([audio[s : s + cfg.clip_samples] for s in starts])
    assert windows.shape == (len(clips), 49, 10)
    np.testing.assert_allclose(windows, mfcc(clips, cfg), atol=2e-4)


def test_detector_smooths_thresholds_picks_the_loudest_and_suppresses():
    probs = np.zeros((12, 4))
    probs[:, 0] = 1.0
    probs[2, [0, 2]] = [0.0, 1.0]  # alone: sum over 2 outputs is 1.0 < 2 x 0.6
    probs[3, [0, 2]] = [0.0, 1.0]  # with output 2: 2.0 >= 1.2 -> 'yes' at 3
    probs[4, [0, 3]] = [0.0, 1.0]  # suppressed (runs 4-5)
    probs[6, [0, 2, 3]] = [0.0, 0.25, 0.75]
    probs[7, [0, 2, 3]] = [0.0, 0.5, 0.5]  # sums: yes 0.75, no 1.25 -> 'no' at 7
    d = Detector(hop=1, smoothing=2, suppression=2, keyword_ids=(2, 3), thresholds=(0.6, 0.6))
    assert detect(probs, d).tolist() == [[3, 2], [7, 3]]
    assert smoothed(probs, 2)[0, 0] == 1.0  # before the first output, zeros
    louder = Detector(hop=1, smoothing=2, suppression=0, keyword_ids=(2, 3), thresholds=(0.3, 0.3))
    assert detect(probs, louder)[-1].tolist() == [7, 3]  # both over: the larger sum wins


def test_hits_misses_and_false_accepts_follow_the_keyword_times():
    stream = _stream([(10.0, 10.5, 2), (20.0, 20.6, 3), (30.0, 30.4, 2)])
    d = Detector(hop=100, smoothing=2, suppression=0, keyword_ids=(2, 3), thresholds=(0.5, 0.5))
    # output i ends at (100 + 100 i) / 100 s = 1 + i seconds; a word is heard until 1 s + 1 output after its end
    detections = np.array([[10, 2], [11, 2], [20, 3], [29, 3], [40, 2]])  # hit, repeat, hit, wrong word, nothing said
    result = judge(detections, stream, d, clip_samples=100)
    assert result["misses"] == 1 and result["false_accepts"] == 2
    assert result["per_keyword_miss_rate"] == {2: 0.5, 3: 0.0}
    assert result["fa_per_hour"] == pytest.approx(2.0)


def test_thresholds_meet_the_false_accept_target_on_the_calibration_streams():
    rng = np.random.default_rng(3)
    n = 36_000  # an hour of outputs at 100 ms
    probs = rng.dirichlet([4, 1, 0.3, 0.3], size=n)  # noise, now and then peaky
    events = []
    for k, at in enumerate(range(500, n - 100, 1500)):
        label = 2 + k % 2
        probs[at : at + 3] = np.eye(4)[label] * 0.95 + 0.0125
        events.append((at / 10 + 0.5, at / 10 + 0.8, label))
    stream = Stream("cal", np.zeros(n * 10, np.float32), 100, np.array(events, float))
    base = Detector(hop=10, smoothing=2, suppression=10, keyword_ids=(2, 3), thresholds=(1.0, 1.0))
    chosen, info = choose_thresholds([probs], [stream], base, clip_samples=100, target=2.0)
    result = judge(detect(probs, chosen), stream, chosen, clip_samples=100)
    assert info["met"] and result["fa_per_hour"] <= 2.0
    assert result["miss_rate"] < 0.1  # the spikes are found
    low = judge(detect(probs, base.with_thresholds([0.3, 0.3])), stream, base, 100)
    assert low["fa_per_hour"] > 2.0  # a low threshold would not have met it: the choice mattered


def test_label_files_csv_and_audacity(tmp_path):
    csv = tmp_path / "a.csv"
    csv.write_text("start,end,word\n1.0,1.5,yes\n2,2.4,cat\n# a comment\n3.5,4.0,no\n")
    events, others = read_labels(csv, LABELS)
    assert events.tolist() == [[1.0, 1.5, 2], [3.5, 4.0, 3]] and others == 1
    audacity = tmp_path / "labels.txt"
    audacity.write_text("1.000000\t1.500000\tyes\n\\\t100.0\t2000.0\n7.25\t7.25\tno\n")
    events, _ = read_labels(audacity, LABELS)
    assert events.tolist() == [[1.0, 1.5, 2], [7.25, 8.25, 3]]  # a point label spans a second
    bad = tmp_path / "bad.csv"
    bad.write_text("start,end,word\n1.0,1.5,yes\n2.0,1.0,no\n")
    with pytest.raises(LabelsError, match=r"bad.csv:3: need 0 <= start <= end"):
        read_labels(bad, LABELS)
    bad.write_text("1.0;1.5;yes\n")
    with pytest.raises(LabelsError, match=r"bad.csv:1: expected start, end, word"):
        read_labels(bad, LABELS)


def test_streams_put_keywords_where_the_events_say_and_are_reproducible():
    keywords = [(_tone(500 + 100 * i, at=0.2 + 0.05 * i), 2 + i % 2) for i in range(6)]
    fillers = [_tone(2000, 0.3)]
    noise = [np.full(RATE * 2, 0.001, np.float32)]
    args = (keywords, fillers, noise, RATE, 5, (0.5, 1.0), 0.5, (1.0, 1.0), 20.0)
    a, b = compose("a", *args), compose("a", *args)
    assert np.array_equal(a.audio, b.audio) and np.array_equal(a.events, b.events)
    assert len(a.events) == 6 and a.negative_seconds >= 20.0
    for start, end, _ in a.events:
        said = a.audio[int(start * RATE) : int(end * RATE)]
        assert np.sqrt(np.mean(said**2)) > 0.2  # the tone is there
    first, last = spoken_span(keywords[0][0], RATE)
    assert abs(first / RATE - 0.15) < 0.02 and abs(last / RATE - 0.65) < 0.02  # trimmed to the tone, 50 ms margin
    steady = np.full(RATE, 0.1, np.float32)  # noise as loud everywhere: never an empty span
    assert spoken_span(steady, RATE)[1] - spoken_span(steady, RATE)[0] > 0
    tail = a.audio[int(a.events[-1, 1] * RATE) + RATE :]

    assert len(tail) >= 19 * RATE and np.max(np.abs(tail)) > 0.2  # keyword-free stretch, with filler words


def test_training_windows_are_labelled_as_a_streaming_detector_must_answer():
    """Cut at random times: a whole keyword keeps its label, a keyword heard less than half or another word is
    _unknown_, noise alone is _silence_, and windows holding more than half of a keyword but not all are not kept."""
    from pipeline.streams import cut_windows

    events = np.array([[2.0, 2.4, 2], [6.0, 6.5, 3]])
    stream = Stream("s", np.arange(10 * RATE, dtype=np.float32), RATE, events, other_spans=np.array([[8.0, 8.3]]))
    clips, y, starts = cut_windows(stream, 400, RATE, seed=1)
    assert len(y) == 400 and set(y.tolist()) == {0, 1, 2, 3}
    assert np.array_equal(clips[:, 0], starts)  # each clip is the audio from its start
    for start, label in zip(starts / RATE, y, strict=True):
        end = start + 1.0
        heard = (np.minimum(end, events[:, 1]) - np.maximum(start, events[:, 0])) / (events[:, 1] - events[:, 0])
        assert not np.any((heard > 0.5) & (heard < 1.0))
        if np.any(heard >= 1.0):
            assert label == events[np.argmax(heard), 2]
        elif np.any(heard > 0) or (start < 8.3 and end > 8.0):
            assert label == 1
        else:
            assert label == 0


def test_stream_stride_must_start_on_a_frame():
    text = (ROOT / "tests" / "recipes" / "tiny.yaml").read_text()
    with pytest.raises(RecipeError, match=r"streaming.stride_ms: 90.0 ms is not a multiple of the features' stride"):
        parse_recipe(text.replace("stride_ms: 100", "stride_ms: 90"), "tiny.yaml")
    assert StreamingConfig().target_fa_per_hour == 0.5


# --- the tiny run: every target on streams, the bundle's C detector, evaluate --stream ---------------------------


def test_every_target_listens_on_its_own_runtime_and_the_report_shows_it(tiny_run):
    runs, _ = tiny_run
    run = runs / "tiny" / "latest"
    report = json.loads((run / "report.json").read_text())
    result = report["streaming"]
    models = {row["model"]: row for row in result["models"]}
    assert {"tflm", "android.int8", "openvino.fp32"} <= set(models)
    assert {row["runtime"] for row in models.values()} >= {"TFLite Micro", "LiteRT", "OpenVINO CPU"}
    for row in models.values():
        test = row["sets"]["synthetic-test"]
        assert test["keywords"] == len(test["per_keyword_miss_rate"]) * 6 and test["hours"] > 0.02
        assert len(test["det"]) > 10 and set(row["thresholds"]) == {"yes", "no", "up", "down"}
    bundle = json.loads((run / "export" / "tflm" / "manifest.json").read_text())["detector"]
    assert bundle["thresholds"] == list(models["tflm"]["thresholds"].values())  # what ships is what was judged
    assert (run / "streaming" / "det.png").stat().st_size > 10_000
    md = (run / "report.md").read_text()
    assert "## Listening continuously" in md and "streaming/det.png" in md
    fe = result["cost"]["frontend"]
    assert fe["ratio_per_frame"] == 49 and fe["ops_per_window"] == pytest.approx(49 * fe["ops_per_new_frame"])


needs_cmake = pytest.mark.skipif(shutil.which("cmake") is None or shutil.which("cc") is None, reason="no cmake/cc")


def _ctest(source, build) -> subprocess.CompletedProcess:
    for step in (["cmake", "-S", str(source), "-B", str(build)], ["cmake", "--build", str(build)]):
        done = subprocess.run(step, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return subprocess.run(["ctest", "--test-dir", str(build), "-V", "-R", "detector"], capture_output=True,
                          text=True, timeout=300)  # fmt: skip


@needs_cmake
def test_the_c_detector_decides_event_for_event_as_the_python_one(tiny_run, tmp_path):
    """The bundle's detector with thresholds low enough to fire often, on its recorded stream and TFLM outputs:
    the ctest passes in both arithmetics with the Python detector's detections, and fails when one is moved."""
    from pipeline.recipe import load_recipe
    from pipeline.tflite_model import read_model
    from targets.tflm.detector import STREAM_FILE, write_detector, write_stream_vectors

    runs, _ = tiny_run
    bundle = tmp_path / "bundle"
    shutil.copytree(runs / "tiny" / "latest" / "export" / "tflm", bundle)
    raw = (bundle / STREAM_FILE).read_bytes()
    samples, n_runs, classes, _ = np.frombuffer(raw[8:24], "<u4")
    pcm = np.frombuffer(raw[24 : 24 + 2 * samples], "<i2")
    q = np.frombuffer(raw[24 + 2 * samples : 24 + 2 * samples + n_runs * classes], np.int8).reshape(n_runs, classes)
    manifest = json.loads((bundle / "manifest.json").read_text())
    recipe = load_recipe(runs / "tiny" / "latest" / "recipe.yaml")
    features = recipe.data.features
    graph = read_model((bundle / "model.tflite").read_bytes())
    out = graph.tensors[graph.outputs[0]]
    scale, zero = out.scale, out.zero_point
    probs = (q.astype(np.float32) - zero) * np.float32(scale)  # as the runtime dequantizes
    d = Detector.from_config(recipe.streaming, features, ["_silence_", "_unknown_", "yes", "no", "up", "down"])
    sums = smoothed(probs, d.smoothing)[:, 2:] / d.smoothing
    d = d.with_thresholds(np.round(np.quantile(sums, 0.98, axis=0), 2))  # the tiny model is barely trained
    detections = detect(probs, d)
    assert len(detections) >= 3
    info = {"stride_samples": features.stride_samples, "window_samples": features.window_samples,
            "frames": features.frames, "coefficients": features.coefficients}  # fmt: skip
    write_detector(bundle / "src", "tiny", d, int(classes), scale, zero, info)
    write_stream_vectors(bundle, pcm, q, detections)
    assert manifest["detector"]["hop_frames"] == 5
    done = _ctest(bundle, tmp_path / "build")
    assert done.returncode == 0, done.stdout[-3000:]
    assert done.stdout.count(f"{len(detections)} detections (expected {len(detections)})") == 2  # float and fixed
    assert "0 input(s) differing from the whole-window front end" in done.stdout
    moved = detections.copy()
    moved[0, 0] += 1
    write_stream_vectors(bundle, pcm, q, moved)
    done = _ctest(bundle, tmp_path / "build")
    assert done.returncode != 0 and "NOT in the pipeline's list" in done.stdout


def test_evaluate_a_labelled_recording_after_the_fact(tiny_run, tmp_path):
    """A user's WAV and Audacity labels, judged by every target of a finished run from outside the checkout."""
    from pipeline.data.synthetic import write_wav

    runs, _ = tiny_run
    run = tmp_path / "run"
    shutil.copytree(runs / "tiny" / "latest", run, symlinks=True)
    keywords = [(_tone(600), 2), (_tone(900), 3)]
    stream = compose("mine", keywords, [], [], RATE, 1, (1.0, 2.0), 0.0, (0.0, 0.0), 5.0)
    write_wav(tmp_path / "kitchen.wav", stream.audio, RATE)
    (tmp_path / "kitchen.txt").write_text("".join(f"{a:.3f}\t{b:.3f}\t{LABELS[int(k)]}\n" for a, b, k in stream.events))
    cache = ["--cache", str(runs / ".cache")]
    done = run_cli("evaluate", str(run), "--stream", str(tmp_path / "kitchen.wav"), "--labels",
                   str(tmp_path / "kitchen.txt"), *cache, cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [line.split() for line in done.stdout.splitlines() if " kitchen " in line]
    assert {line[0] for line in lines} >= {"tflm", "android.int8", "openvino.int8"} and all(l[2] == "2" for l in lines)
    report = json.loads((run / "report.json").read_text())
    assert {"synthetic-test", "kitchen"} <= {s["name"] for s in report["streaming"]["streams"]}
    assert report["streaming"]["models"][0]["sets"]["kitchen"]["keywords"] == 2
    (tmp_path / "bad.csv").write_text("start,end,word\n0.5,0.2,yes\n")
    done = run_cli("evaluate", str(run), "--stream", str(tmp_path / "kitchen.wav"), "--labels",
                   str(tmp_path / "bad.csv"), *cache, cwd=tmp_path)  # fmt: skip
    assert done.returncode == 2 and "bad.csv:2: need 0 <= start <= end" in done.stderr
    done = run_cli("evaluate", str(run), "--stream", str(tmp_path / "kitchen.wav"), cwd=tmp_path)
    assert done.returncode == 2 and "--stream needs --labels" in done.stderr


def test_the_firmware_listens_with_its_own_detector_on_the_emulated_board(tiny_run):
    """The bundle built as Cortex-M firmware runs the incremental front end, the model and the detector on 20 s
    of the bundle's stream over the serial protocol: one run per hop, each costing more than the invoke alone."""
    runs, _ = tiny_run
    report = json.loads((runs / "tiny" / "latest" / "report.json").read_text())
    tflm = next(t for t in report["targets"] if t["name"] == "tflm")
    board = (tflm.get("on_board") or {}).get("streaming")
    if board is None:
        pytest.skip("no Arm toolchain or QEMU here (scripts/setup.sh installs them)")
    hop = report["streaming"]["detector"]["hop_samples"]
    assert board["runs"] == 1 + (int(board["seconds"] * RATE) - RATE) // hop
    assert board["same_detections"] and board["detections"] == board["expected_detections"]
    assert board["instructions_per_run"] > tflm["on_board"]["instructions_per_invoke"]  # + the new frames
    assert report["streaming"]["cost"]["board"]["duty"] > 0
    assert "listening to 2 s of stream" in (runs / "tiny" / "latest" / "report.md").read_text()


def test_a_run_made_without_streaming_gets_the_section_afterwards(tiny_run, tmp_path):
    """`pipeline evaluate RUN --streams` on a run whose report has no streaming section: thresholds are chosen
    now on the validation stream, every target listens to the recipe's streams, the report gains the section."""
    runs, _ = tiny_run
    run = tmp_path / "run"
    shutil.copytree(runs / "tiny" / "latest", run)
    report = json.loads((run / "report.json").read_text())
    report["streaming"] = None
    (run / "report.json").write_text(json.dumps(report))
    shutil.rmtree(run / "streaming")
    done = run_cli("evaluate", str(run), "--streams", "--cache", str(runs / ".cache"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((run / "report.json").read_text())["streaming"]
    assert [s["name"] for s in result["calibration_streams"]] == ["synthetic-val"]
    assert {row["model"] for row in result["models"]} >= {"tflm", "android.int8", "openvino.fp32"}
    assert (run / "streaming" / "det.png").is_file() and "## Listening continuously" in (run / "report.md").read_text()


def test_front_ends_without_frames_are_computed_per_window(installed):
    """speech_mel (the phone model's front end) cannot share frames across windows: each window's clip goes
    through the front end as a clip would."""
    from pipeline.data.features import compute

    cfg = FeaturesConfig(kind="speech_mel")
    audio = (np.random.default_rng(1).standard_normal(RATE * 2) * 0.05).astype(np.float32)
    windows = window_features(audio, cfg, 4000)
    clips = np.stack([audio[s : s + cfg.clip_samples] for s in range(0, RATE + 1, 4000)])
    assert windows.shape == (5, *cfg.shape)
    np.testing.assert_array_equal(windows, compute(clips, cfg))
