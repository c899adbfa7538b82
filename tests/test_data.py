"""Synthetic data: deterministic for a seed, voice-disjoint splits, the real layout; MFCC shape."""

import csv
import hashlib
import typing
from pathlib import Path

import numpy as np
import pytest

from pipeline.data import speech_commands, synthetic
from pipeline.recipe import Background, FeaturesConfig, SyntheticConfig

KEYWORDS = ["yes", "no", "left"]
CFG = SyntheticConfig(
    train_voices=6,
    val_voices=2,
    test_voices=3,
    val_variants=3,
    test_variants=4,
    unknown_words=["cat", "dog"],
    backgrounds=["white_noise", "clatter"],  # a steady and a changing noise: the set uses these, no others
)


def file_hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth") / "sc"
    summary = synthetic.generate(root, CFG, KEYWORDS, seed=5, sample_rate=16000, clip_samples=16000, workers=2)
    return root, summary


def test_generation_is_deterministic_whatever_the_worker_count(generated, tmp_path):
    root, _ = generated
    again = tmp_path / "sc"
    synthetic.generate(again, CFG, KEYWORDS, seed=5, sample_rate=16000, clip_samples=16000, workers=1)
    assert file_hashes(root) == file_hashes(again)


def test_another_seed_gives_other_audio(generated, tmp_path):
    root, _ = generated
    other = tmp_path / "sc"
    synthetic.generate(other, CFG, KEYWORDS, seed=6, sample_rate=16000, clip_samples=16000, workers=2)
    assert file_hashes(root) != file_hashes(other)


def test_splits_are_voice_disjoint(generated):
    root, summary = generated
    with open(root / "voices.csv") as f:
        rows = list(csv.DictReader(f))
    variants = {s: {r["variant"] for r in rows if r["split"] == s} for s in ("train", "val", "test")}
    assert variants["train"].isdisjoint(variants["test"])
    assert variants["train"].isdisjoint(variants["val"])
    assert variants["val"].isdisjoint(variants["test"])
    assert variants["test"] <= set(summary["variants"]["test"])
    speaker_split = {r["speaker"]: r["split"] for r in rows}
    for list_file, split in (("testing_list.txt", "test"), ("validation_list.txt", "val")):
        listed = (root / list_file).read_text().split()
        assert listed and all(speaker_split[Path(p).name.split("_nohash_")[0]] == split for p in listed)


def test_layout_is_speech_commands(generated):
    root, _ = generated
    assert sorted(p.name for p in (root / "_background_noise_").glob("*.wav")) == sorted(
        ["clatter.wav", "white_noise.wav"]
    )
    clip = next((root / "yes").glob("*_nohash_*.wav"))
    audio, rate = synthetic.read_wav(clip)
    assert rate == 16000 and audio.shape == (16000,)
    assert 0.01 < np.abs(audio).max() <= 1.0


def test_the_recipe_names_the_generators_noises_and_defaults_to_the_steady_ones():
    assert typing.get_args(Background) == synthetic.BACKGROUNDS
    assert tuple(SyntheticConfig().backgrounds) == synthetic.BACKGROUNDS[:5]


def test_changing_noises_change_within_a_second_and_steady_ones_do_not():
    from scipy import signal

    high_pass = signal.butter(4, 1000, "highpass", fs=16000, output="sos")  # brown noise's bass wanders anyway
    spread = {}
    for kind in synthetic.BACKGROUNDS:
        x = synthetic.make_background(kind, 3, 16000)
        assert x.shape == (60 * 16000,) and x.dtype == np.float32 and np.isclose(np.abs(x).max(), 0.5)
        frames = signal.sosfilt(high_pass, x[: 10 * 16000].astype(np.float64)).reshape(-1, 320)  # 20 ms over 10 s
        energy = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-12)
        spread[kind] = np.percentile(energy, 95) - np.percentile(energy, 5)
    # the fan swells slowly (0.7 Hz) and sits between the two
    assert all(spread[k] < 3 for k in ("white_noise", "pink_noise", "brown_noise", "mains_hum")), spread
    assert all(spread[k] > 7 for k in ("clatter", "running_water", "machine")), spread


def test_loader_builds_twelve_class_style_splits(generated):
    root, _ = generated
    index = speech_commands.index_dataset(root, KEYWORDS, silence_fraction=0.1, unknown_fraction=0.1, seed=1)
    train = index["train"]
    labels = [c.label for c in train]
    n_keywords = sum(lab >= 2 for lab in labels)
    assert n_keywords == CFG.train_voices * len(KEYWORDS)
    assert labels.count(1) == int(np.ceil(0.1 * n_keywords))  # unknown, subsampled
    assert labels.count(0) == int(np.ceil(0.1 * n_keywords))  # silence from background noise
    test_speakers = {c.speaker for c in index["test"] if c.path}
    assert test_speakers.isdisjoint({c.speaker for c in train if c.path})


def test_loader_reports_a_missing_keyword(generated):
    root, _ = generated
    with pytest.raises(speech_commands.DataLayoutError, match="no folder for keyword"):
        speech_commands.index_dataset(root, ["yes", "banana"], 0.1, 0.1, seed=1)


def test_mfcc_shape_and_determinism(generated):
    from pipeline.data.features import mfcc

    root, _ = generated
    clips = speech_commands.index_dataset(root, KEYWORDS, 0.1, 0.1, seed=1)["test"]
    audio = speech_commands.load_clips(root, clips, 16000, speech_commands.load_backgrounds(root), seed=3)
    features = mfcc(audio, FeaturesConfig())
    assert features.shape == (len(clips), 49, 10) and features.dtype == np.float32
    assert np.isfinite(features).all()
    np.testing.assert_array_equal(features, mfcc(audio, FeaturesConfig()))
    wide = FeaturesConfig(window_ms=40, stride_ms=20, coefficients=13)
    assert mfcc(audio[:2], wide).shape == (2, 49, 13) == (2, *wide.shape)
