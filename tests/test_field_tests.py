"""Field test sets: real recordings judged beside the synthetic test, for every stage and every target."""

import json
import wave
from pathlib import Path

import numpy as np
import pytest

from pipeline.data.field import load_field_clips, read_any_wav
from tests.conftest import ROOT, TINY, run_cli

REAL_SPEECH_DEV = ROOT.parent / "shared" / "data" / "real_speech_dev"
LABELS = ["_silence_", "_unknown_", "yes", "no", "up", "down"]


def _tone(seconds: float, rate: int, hz: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return 0.5 * np.sin(2 * np.pi * hz * t)


def _write(path: Path, audio: np.ndarray, rate: int, width: int = 2, channels: int = 1) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = np.repeat(audio[:, None], channels, axis=1)
    if width == 1:
        data = np.round(frames * 127 + 128).astype(np.uint8)
    else:
        data = np.round(frames * (2 ** (8 * width - 1) - 1)).astype(f"<i{width}")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(data.tobytes())


@pytest.fixture
def field_folder(tmp_path) -> Path:
    """A little field set with the formats people send: 8 kHz, stereo, 8-bit, 32-bit, float, a broken file."""
    root = tmp_path / "field"
    _write(root / "yes" / "a_nohash_0.wav", _tone(1.0, 16000), 16000)
    _write(root / "no" / "b_nohash_0.wav", _tone(1.0, 8000), 8000)
    _write(root / "up" / "c_nohash_0.wav", _tone(1.0, 44100), 44100, channels=2)
    _write(root / "down" / "d_nohash_0.wav", _tone(0.5, 16000), 16000, width=1)
    _write(root / "down" / "e_nohash_0.wav", _tone(1.0, 16000), 16000, width=4)
    from scipy.io import wavfile

    wavfile.write(root / "yes" / "f_nohash_0.wav", 22050, _tone(1.0, 22050).astype(np.float32))
    _write(root / "marvin" / "g_nohash_0.wav", _tone(1.0, 16000), 16000)  # another word: _unknown_
    _write(root / "_silence_" / "noise.wav", np.zeros(16000), 16000)
    _write(root / "_background_noise_" / "long.wav", np.zeros(32000), 16000)  # not a test clip
    (root / "left").mkdir()
    (root / "left" / "broken_nohash_0.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    (root / "yes" / "notes.txt").write_text("not audio")
    return root


def test_every_format_is_converted_and_broken_files_are_named(field_folder):
    clips = load_field_clips(field_folder, LABELS, 16000, 16000)
    assert clips.audio.shape == (8, 16000) and clips.audio.dtype == np.float32
    assert sorted(clips.files) == sorted([
        "yes/a_nohash_0.wav", "no/b_nohash_0.wav", "up/c_nohash_0.wav", "down/d_nohash_0.wav",
        "down/e_nohash_0.wav", "yes/f_nohash_0.wav", "marvin/g_nohash_0.wav", "_silence_/noise.wav",
    ])  # fmt: skip
    labels = dict(zip(clips.files, clips.y.tolist(), strict=True))
    assert labels["marvin/g_nohash_0.wav"] == LABELS.index("_unknown_") and labels["no/b_nohash_0.wav"] == LABELS.index(
        "no"
    )
    assert list(clips.unreadable) == ["left/broken_nohash_0.wav"]  # `left` is no keyword here: still named
    assert clips.converted == 5  # 8 kHz, stereo 44.1 kHz, 8-bit, 32-bit, float 22.05 kHz
    for rel in ("no/b_nohash_0.wav", "up/c_nohash_0.wav", "yes/f_nohash_0.wav"):
        audio = clips.audio[clips.files.index(rel)]
        spectrum = np.abs(np.fft.rfft(audio))
        assert abs(np.argmax(spectrum) - 440) <= 1  # resampled, not just relabelled: the tone stays at 440 Hz
        assert 0.45 < np.max(np.abs(audio)) < 0.55
    short = clips.audio[clips.files.index("down/d_nohash_0.wav")]
    assert np.all(short[8000:] == 0) and np.max(np.abs(short[:8000])) > 0.4  # padded to the clip


def test_read_any_wav_rejects_nan(tmp_path):
    from scipy.io import wavfile

    wavfile.write(tmp_path / "nan.wav", 16000, np.full(100, np.nan, np.float32))
    with pytest.raises(ValueError, match="non-finite"):
        read_any_wav(tmp_path / "nan.wav", 16000)


def test_a_clip_recorded_again_under_its_name_is_read_again(tmp_path):
    """Every 1 s 16-bit clip has the same size: the cache must not judge a new recording by the old one's features."""
    import os

    from pipeline.data import prepare_field_set
    from pipeline.engine.store import Store
    from pipeline.recipe import FeaturesConfig

    root, store, cfg = tmp_path / "field", Store(tmp_path / "cache"), FeaturesConfig()
    clip = root / "yes" / "a_nohash_0.wav"
    _write(clip, _tone(1.0, 16000, hz=440.0), 16000)
    first = prepare_field_set("people", root, LABELS, cfg, store)
    assert prepare_field_set("people", root, LABELS, cfg, store).key == first.key  # unchanged: from the cache
    size = clip.stat().st_size
    _write(clip, _tone(1.0, 16000, hz=1500.0), 16000)
    later = clip.stat().st_mtime_ns + 1_000_000_000  # a second later, whatever the file system's clock grain
    os.utime(clip, ns=(later, later))
    again = prepare_field_set("people", root, LABELS, cfg, store)
    assert clip.stat().st_size == size and again.key != first.key
    assert not np.allclose(again.x, first.x)  # the new recording's features, not the cached ones


def test_evaluate_judges_every_model_of_a_run(tiny_run, field_folder, tmp_path):
    import shutil

    runs, _ = tiny_run
    run_dir = tmp_path / "copy"
    shutil.copytree((runs / "tiny" / "latest").resolve(), run_dir)
    done = run_cli("evaluate", str(run_dir), "--data", str(field_folder), "--name", "people",
                   "--cache", str(runs / ".cache"))  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    # It trains nothing and says nothing about training; what libraries print goes to the run's log.
    assert "training" not in done.stderr and "WARNING" not in done.stderr and "tensorflow" not in done.stderr, (
        done.stderr
    )
    assert list((run_dir / ".logs").glob("*.log"))
    report = json.loads((run_dir / "report.json").read_text())
    field = report["field_tests"]
    assert [s["name"] for s in field["sets"]] == ["synthetic", "people"]
    people = field["sets"][1]
    assert (
        people["clips"] == 8 and people["unreadable"] == 1 and "left/broken_nohash_0.wav" in people["unreadable_files"]
    )
    models = [m["model"] for m in field["models"]]
    assert models[:5] == ["train", "prune", "finetune", "quantize", "tflm"] and "openvino.int8" in models
    by_model = {m["model"]: m["sets"] for m in field["models"]}
    for sets in by_model.values():
        assert sets["people"]["n"] == 8 and np.sum(sets["people"]["confusion"]) == 8
    # the synthetic column is the test split through each model's own runtime: it matches what the run measured
    assert by_model["tflm"]["synthetic"]["accuracy"] == report["targets"][0]["accuracy"]
    assert by_model["finetune"]["synthetic"]["accuracy"] == report["stages"][2]["accuracy"]
    md = (run_dir / "report.md").read_text()
    assert "## Field tests: synthetic voices vs real people" in md and "unreadable: `left/broken_nohash_0.wav`" in md
    assert "| tflm | TFLite Micro |" in md and "most often heard as" in md
    assert "people" in done.stdout and "tflm" in done.stdout


def test_recipe_field_tests_run_with_the_recipe_and_optional_ones_may_be_missing(tiny_run, field_folder, tmp_path):
    runs, _ = tiny_run
    recipe = tmp_path / "tiny.yaml"
    text = TINY.read_text().replace(
        "  fallback: synthetic\n",
        f"  fallback: synthetic\n  field_tests:\n    - {{name: people, path: {field_folder}}}\n"
        "    - {name: absent, path: no/such/folder, optional: true}\n",
    )
    recipe.write_text(text)
    done = run_cli("run", str(recipe), "--runs-dir", str(runs), "--out", str(tmp_path / "run"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "field test 'absent'" in done.stderr and "skipped (optional)" in done.stderr
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert [s["name"] for s in report["field_tests"]["sets"]] == ["synthetic", "people"]
    assert all(s["cached"] for s in report["stages"])  # field tests judge, they do not retrain
    recipe.write_text(text.replace(", optional: true", ""))
    done = run_cli("run", str(recipe), "--runs-dir", str(runs), "--out", str(tmp_path / "run2"))
    assert done.returncode == 2 and "field test 'absent'" in done.stderr and not (tmp_path / "run2").exists()


@pytest.mark.skipif(not REAL_SPEECH_DEV.is_dir(), reason=f"real speech dev set not found at {REAL_SPEECH_DEV}")
def test_real_speech_dev_set_reads_whole(tiny_run, tmp_path):
    """The maintainers' real recordings: every file readable, every label present, speakers as the README says."""
    from pipeline.data import field_speaker

    clips = load_field_clips(REAL_SPEECH_DEV, ["_silence_", "_unknown_", "yes", "no", "up", "down", "left", "right",
                                              "on", "off", "stop", "go"], 16000, 16000)  # fmt: skip
    assert len(clips.y) == 1668 and not clips.unreadable
    assert np.bincount(clips.y).tolist() == [132, 129, 134, 147, 150, 141, 144, 137, 129, 137, 143, 145]
    people = {field_speaker(f) for f in clips.files if not f.startswith("_silence_")}
    silence = {field_speaker(f) for f in clips.files if f.startswith("_silence_")}
    assert (len(people), len(people) + len(silence)) == (77, 209)  # its README counts each silence file as one
