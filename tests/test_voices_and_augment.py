"""Training data that transfers: perturbed espeak-ng voices, rooms and mics, SpecAugment, and the ablation bench."""

import csv
import shutil
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import click
import numpy as np
import pytest
import yaml
from pydantic import ValidationError

from pipeline.data import synthetic
from pipeline.data.espeak import Espeak, data_with_variants, variant_text
from pipeline.recipe import FeaturesConfig, RecipeError, RecipeLoader, SyntheticConfig, load_recipe
from pipeline.stages.train import AugmentConfig

ROOT = Path(__file__).resolve().parent.parent


def voice(scale: float, variant: str = "m3", speaker: str = "abcd1234") -> synthetic.Voice:
    return synthetic.Voice(speaker, "train", "en-us", variant, 160, 50, 50, scale, ("yes",), (1, 0, 0))


def formants(text: str) -> dict[int, list[int]]:
    return {
        int(p[1]): [int(v) for v in p[2:]] for p in (line.split() for line in text.splitlines()) if p[:1] == ["formant"]
    }


def centroid(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64)))
    return float((spectrum * np.fft.rfftfreq(len(samples), 1 / rate)).sum() / spectrum.sum())


def test_vocal_tract_factor_scales_every_formant_and_fills_the_missing_ones():
    base = formants(variant_text("m3"))
    for scale in (0.85, 1.18):
        text = synthetic.perturbed_variant(variant_text("m3"), voice(scale))
        scaled = formants(text)
        assert set(scaled) == set(range(9))
        for n, (frequency, *_) in base.items():
            assert 0.95 * scale <= scaled[n][0] / frequency <= 1.05 * scale, (n, scale)
    # a variant that names no formants gets all nine, scaled from 100 %
    assert set(formants(synthetic.perturbed_variant("language variant\nname bare\n", voice(1.1)))) == set(range(9))
    assert synthetic.perturbed_variant(variant_text("m3"), voice(1.0)) == synthetic.perturbed_variant(
        variant_text("m3"), voice(1.0)
    )


def test_espeak_speaks_the_perturbed_voice_with_higher_formants(tmp_path):
    texts = {f"x{s}": synthetic.perturbed_variant(variant_text("m3"), voice(s / 100)) for s in (85, 118)}
    engine = Espeak(data_with_variants(tmp_path, texts))
    low = centroid(engine.speak("yes", "en-us+x85", noise_seed=1), engine.sample_rate)
    high = centroid(engine.speak("yes", "en-us+x118", noise_seed=1), engine.sample_rate)
    assert high > 1.15 * low


def test_more_voices_than_espeak_can_list(tmp_path):
    """espeak-ng lists at most 350 voices and variants; 400 draws, each with its own variant, must all speak."""
    cfg = SyntheticConfig(train_voices=396, val_voices=2, test_voices=2, unknown_per_voice=0, val_variants=2,
                          test_variants=2, formant_scale=(0.85, 1.18), reverb_probability=0.5)  # fmt: skip
    scratch_before = set(Path(tempfile.gettempdir()).glob("espeak-*"))
    summary = synthetic.generate(tmp_path / "sc", cfg, ["yes"], seed=3, sample_rate=16000, clip_samples=16000)
    assert summary["clips"] == {"train": 396, "val": 2, "test": 2}
    with open(tmp_path / "sc" / "voices.csv") as f:
        scales = [float(r["formant_scale"]) for r in csv.DictReader(f)]
    assert len(scales) == 400 and 0.85 <= min(scales) < 0.9 and 1.13 < max(scales) <= 1.18
    assert len(list((tmp_path / "sc" / synthetic.IMPULSE_RESPONSES).glob("*.wav"))) == 400 // 16
    assert set(Path(tempfile.gettempdir()).glob("espeak-*")) <= scratch_before, "scratch espeak data left behind"


def test_rooms_reverberate_and_mics_colour():
    rirs = synthetic.make_impulse_responses(4, seed=1, sample_rate=16000, rt60_s=(0.3, 0.6))
    assert all(np.argmax(np.abs(r)) < 0.05 * 16000 and len(r) > 0.1 * 16000 for r in rirs)  # direct path, then a tail
    assert [len(r) for r in rirs] == [len(r) for r in synthetic.make_impulse_responses(4, 1, 16000, (0.3, 0.6))]


def test_silly_synthesis_ranges_are_rejected(tmp_path):
    for key, value, needle in (
        ("formant_scale", [0.2, 1.0], "formant_scale"),
        ("rt60_s", [0.1, 9.0], "rt60_s"),
        ("peak_dbfs", [-20, 3], "peak_dbfs"),
        ("reverb_probability", 1.5, "reverb_probability"),
    ):
        recipe = yaml.load(
            (ROOT / "tests/recipes/tiny.yaml").read_text(), Loader=RecipeLoader
        )  # YAML 1.2: yes is a word
        recipe["data"]["synthetic"][key] = value
        path = tmp_path / f"{key}.yaml"
        path.write_text(yaml.safe_dump(recipe))
        with pytest.raises(RecipeError, match=needle):
            load_recipe(path)


def test_spec_augment_shifts_and_masks_with_the_mean_and_is_reproducible():
    import tensorflow as tf

    from pipeline.stages.train.augment import augment

    frames, coefficients = 49, 10
    x = np.tile(np.arange(frames, dtype=np.float32)[None, :, None, None], (64, 1, coefficients, 1)) + 100
    fill = tf.constant(np.full(coefficients, -7.0, np.float32))
    shift_only = AugmentConfig(time_shift_frames=5)
    shifted = augment(tf.constant(x), shift_only, fill, tf.constant([1, 2])).numpy()
    offsets = shifted[:, 25, 0, 0] - x[:, 25, 0, 0]  # a middle frame: the clip moved by -offset frames
    assert set(np.unique(offsets)) <= set(range(-5, 6)) and len(np.unique(offsets)) > 5
    assert np.all(np.diff(shifted[:, :, 0, 0], axis=1) >= 0)  # order kept, edges repeat

    masked_cfg = AugmentConfig(time_masks=2, time_mask_frames=5, coefficient_masks=1, coefficient_mask_width=2)
    masked = augment(tf.constant(x), masked_cfg, fill, tf.constant([3, 4])).numpy()
    filled = masked == -7.0
    assert filled.any() and np.all((masked == x) | filled)
    per_clip_frames = filled[..., 0].all(axis=2).sum(axis=1)  # whole frames masked in time
    assert per_clip_frames.max() <= 10
    again = augment(tf.constant(x), masked_cfg, fill, tf.constant([3, 4])).numpy()
    other = augment(tf.constant(x), masked_cfg, fill, tf.constant([5, 6])).numpy()
    assert np.array_equal(masked, again) and not np.array_equal(masked, other)


def test_augmented_copies_for_a_frozen_embedding_are_shifted_reproducible_and_distinct():
    from pipeline.stages.train.augment import augmented_copies

    frames = 40
    x = np.tile(np.arange(frames, dtype=np.float32)[None, :, None], (50, 1, 8)) + 100
    cfg = AugmentConfig(time_shift_frames=4, copies=3)
    copies = list(augmented_copies(x, cfg, seed=1, batch_size=16))  # several batches: each draws its own seeds
    assert len(copies) == 3 and all(c.shape == x.shape for c in copies)
    for c in copies:
        offsets = c[:, 20, 0] - x[:, 20, 0]
        assert set(np.unique(offsets)) <= set(range(-4, 5)) and len(np.unique(offsets)) > 3
        assert np.all(np.diff(c[..., 0], axis=1) >= 0)  # order kept, edges repeat
    assert not np.array_equal(copies[0], copies[1]) and not np.array_equal(copies[0][:16], copies[0][16:32])
    again = list(augmented_copies(x, cfg, seed=1, batch_size=16))
    assert all(np.array_equal(a, b) for a, b in zip(copies, again, strict=True))
    assert not np.array_equal(next(augmented_copies(x, cfg, seed=2, batch_size=16)), copies[0])
    # Copy k alone, as the embedding cache computes it, is the k-th of any number of copies (fine-tuning with one copy
    # loads training's first).
    from pipeline.stages.train.augment import augmented_copy

    fewer = AugmentConfig(time_shift_frames=4, copies=1)
    assert all(np.array_equal(augmented_copy(x, fewer, 1, k, batch_size=16), copies[k]) for k in range(3))


def test_mel_masks_hold_bands_of_mel_channels_still_and_leave_the_rest():
    import tensorflow as tf

    from pipeline.stages.train.augment import MelSpace, augment, hold_mel_channels, mel_to_cepstrum, training_dataset

    rng = np.random.default_rng(0)
    dct = mel_to_cepstrum(40, 10)
    mel = MelSpace(FeaturesConfig(), 10)  # the default features' filterbank: 40 channels, this DCT
    log_mel = rng.normal(size=(32, 49, 40)).astype(np.float32)
    cepstra = tf.signal.mfccs_from_log_mel_spectrograms(log_mel)[..., :10].numpy()
    assert np.allclose(log_mel @ dct, cepstra, atol=1e-4)  # the features' own DCT
    # what the 10 coefficients say of the spectrum, with channels 5-12 flat over time: its MFCCs are the result
    smooth = cepstra @ np.linalg.pinv(dct)
    held = np.zeros((32, 40), bool)
    held[:, 5:13] = True
    flat = np.where(held[:, None, :], smooth.mean(axis=1, keepdims=True), smooth)
    out = hold_mel_channels(tf.constant(cepstra[..., None]), tf.constant(held), mel).numpy()[..., 0]
    assert np.allclose(out, flat @ dct, atol=1e-4)
    assert np.allclose(hold_mel_channels(tf.constant(cepstra[..., None]), tf.zeros((32, 40), tf.bool), mel)[..., 0],
                       cepstra, atol=1e-5)  # fmt: skip
    # drawn bands: every clip keeps its mean (its colouring), most clips change, reproducible from the seed
    cfg = AugmentConfig(mel_masks=2, mel_mask_bins=8)
    fill = tf.constant(np.zeros(10, np.float32))
    drawn = augment(tf.constant(cepstra[..., None]), cfg, fill, tf.constant([3, 4]), mel).numpy()[..., 0]
    assert np.allclose(drawn.mean(axis=1), cepstra.mean(axis=1), atol=1e-4)
    assert (np.abs(drawn - cepstra).max(axis=(1, 2)) > 1e-3).mean() > 0.8
    again = augment(tf.constant(cepstra[..., None]), cfg, fill, tf.constant([3, 4]), mel).numpy()[..., 0]
    other = augment(tf.constant(cepstra[..., None]), cfg, fill, tf.constant([5, 6]), mel).numpy()[..., 0]
    assert np.array_equal(drawn, again) and not np.array_equal(drawn, other)
    with pytest.raises(ValueError, match="mel_bins"):
        training_dataset(cepstra, np.zeros(32), 8, cfg, seed=1)


def test_mel_warp_stretches_each_clips_spectrum_along_frequency():
    import tensorflow as tf

    from pipeline.stages.train.augment import MelSpace, augment, training_dataset, warp_mel_channels

    features = FeaturesConfig()
    mel = MelSpace(features, 10)
    # the channels' centres are where TF's filterbank (the features' own) peaks, to within an FFT bin
    bank = tf.signal.linear_to_mel_weight_matrix(40, 257, 16000, features.lower_hz, features.upper_hz).numpy()
    assert np.abs(bank.argmax(axis=0) * 8000 / 256 - mel.centres_hz).max() <= 8000 / 256
    assert np.allclose(mel.warp_sources(tf.ones([2, 1])), np.arange(40), atol=1e-4)  # factor 1 reads in place
    # a formant at 1 kHz moves to 1.1 kHz when the spectrum is stretched by 1.1, and to 900 Hz at 0.9
    centres = np.asarray(mel.centres_hz)
    log_mel = np.broadcast_to(np.exp(-(((centres - 1000.0) / 150.0) ** 2)), (3, 49, 40)).astype(np.float32)
    cepstra = (log_mel @ mel.dct)[..., None]
    factors = tf.constant([[1.0], [1.1], [0.9]])
    warped = warp_mel_channels(tf.constant(cepstra), mel.warp_sources(factors), mel).numpy()[..., 0]
    assert np.allclose(warped[0], cepstra[0, ..., 0], atol=1e-4)
    smooth = warped[:, 0] @ np.linalg.pinv(mel.dct)  # the spectrum the warped coefficients describe
    peaks = [centres[np.argmax(row)] for row in smooth]
    assert abs(peaks[1] - 1100) < abs(peaks[1] - 1000) and abs(peaks[2] - 900) < abs(peaks[2] - 1000)
    assert peaks[2] < peaks[0] < peaks[1]
    # drawn per clip, reproducible from the seed; the other augmentations draw as they do without it
    rng = np.random.default_rng(1)
    clips = tf.constant(rng.normal(size=(64, 49, 10, 1)).astype(np.float32))
    cfg = AugmentConfig(mel_warp=(0.9, 1.1), time_masks=1)
    fill = tf.zeros(10)
    drawn = augment(clips, cfg, fill, tf.constant([3, 4]), mel).numpy()
    assert np.array_equal(drawn, augment(clips, cfg, fill, tf.constant([3, 4]), mel).numpy())
    assert not np.array_equal(drawn, augment(clips, cfg, fill, tf.constant([5, 6]), mel).numpy())
    unwarped = augment(clips, AugmentConfig(time_masks=1), fill, tf.constant([3, 4]), mel).numpy()
    assert np.array_equal(drawn == 0, unwarped == 0)  # the same frames masked
    assert (np.abs(drawn - unwarped).max(axis=(1, 2, 3)) > 1e-3).mean() > 0.9
    # training batches: the warp needs the features' filterbank, and with it changes what `fit` sees
    x, labels, warp_only = clips.numpy()[..., 0], np.arange(64) % 12, AugmentConfig(mel_warp=(0.9, 1.1))
    with pytest.raises(ValueError, match="mel filterbank"):
        training_dataset(x, labels, 64, warp_only, seed=1)
    warped_batch, _ = next(iter(training_dataset(x, labels, 64, warp_only, seed=1, features=features)))
    plain_batch, _ = next(iter(training_dataset(x, labels, 64, AugmentConfig(), seed=1)))  # the same shuffle
    assert warped_batch.shape == (64, 49, 10, 1) and not np.allclose(warped_batch, plain_batch, atol=1e-3)
    with pytest.raises(ValidationError, match="mel_warp"):
        AugmentConfig(mel_warp=(1.1, 0.9))
    with pytest.raises(ValidationError, match="mel_warp"):
        AugmentConfig(mel_warp=(0.2, 1.1))


def test_ablation_ladder_recipes_are_valid_and_cumulative(tmp_path):
    sys.path.insert(0, str(ROOT / "scripts"))
    import bench_real_speech as bench

    recipe = load_recipe(ROOT / "recipes/kws_mcu.yaml")
    data = bench.with_fields(bench.pruned_chain(recipe), recipe, {"mine": tmp_path})
    whole = tmp_path / "kws_mcu.yaml"
    whole.write_text(yaml.safe_dump(data))
    assert load_recipe(whole).model_dump(exclude={"data"}) == recipe.model_dump(exclude={"data"})
    assert data["data"]["field_tests"][-1] == {"name": "mine", "path": str(tmp_path.resolve()), "optional": False}
    assert Path(data["data"]["field_tests"][0]["path"]).is_absolute()
    loaded = []
    for label, synth, training in bench.LADDER:
        variant = bench.ablation_recipe(data, label, synth, training, epochs=3)
        path = tmp_path / f"{variant['name']}.yaml"
        path.write_text(yaml.safe_dump(variant))
        loaded.append(load_recipe(path))
    assert len({r.name for r in loaded}) == len(loaded)
    synth = [r.data.synthetic for r in loaded]
    assert [s.formant_scale for s in synth] == [(1.0, 1.0)] + [(0.85, 1.18)] * 4 + [(1.0, 1.0)] * 14
    assert [s.microphone_probability for s in synth] == [0.0, 0.0, 0.7, 0.7, 0.7] + [0.0] * 14
    assert [s.reverb_probability for s in synth] == [0.0, 0.0, 0.0, 0.5, 0.5] + [0.0] * 11 + [0.5, 0.0, 0.0]
    assert [s.flite_share for s in synth] == [0.0] * 6 + [0.3, 0.5] + [0.3] * 11
    assert [s.kokoro_share for s in synth] == [0.0] * 10 + [0.2] + [0.0] * 8
    assert [s.piper_share for s in synth] == [0.0] * 17 + [0.3, 0.0]
    assert [s.unknown_per_voice for s in synth] == [1] * 12 + [3, 3, 1, 1, 1, 1, 1]
    # a data-level setting, pinned too
    assert [r.data.unknown_fraction for r in loaded] == [0.1] * 12 + [0.3, 0.3, 0.1, 0.1, 0.1, 0.1, 0.1]
    assert [len(s.unknown_words) for s in synth] == [25] * 13 + [25 + 137, 25, 25, 25, 25, 25]
    trains = [r.stages[0].config for r in loaded]
    assert [t.augment is not None for t in trains] == [False] * 4 + [True] * 2 + [False] * 2 + [True] * 11
    assert [t.label_smoothing for t in trains] == [0.0] * 9 + [0.1] * 10
    assert [t.weight_average for t in trains] == [None] * 11 + [0.999] * 8  # pinned, whatever the flagship uses
    # a model-level setting, pinned too: rungs 1-14 train the plain model, whatever the flagship uses
    normalized = ["cepstral_mean", "cepstral_mean_variance"] + ["cepstral_mean"] * 3  # rungs 15-19
    assert [r.model.normalize for r in loaded] == ["none"] * 14 + normalized
    flagship_train = next(s.config for s in recipe.stages if s.name == "train")  # docs/real-speech.md: rung 19 is it
    assert trains[18].model_dump(exclude={"epochs"}) == flagship_train.model_dump(exclude={"epochs"})
    assert loaded[18].model == recipe.model and synth[18] == recipe.data.synthetic
    assert loaded[14].model == recipe.model and synth[14] == recipe.data.synthetic
    assert synth[9] == recipe.data.synthetic
    assert synth[16] == synth[14].model_copy(update={"reverb_probability": 0.5}) and loaded[16].model == recipe.model
    piper = {"piper_share": 0.3, "piper_speed": (0.85, 1.18)}
    assert synth[17] == synth[14].model_copy(update=piper) and loaded[17].model == recipe.model
    assert trains[10] == trains[9] and synth[10] == synth[9].model_copy(update={"kokoro_share": 0.2})
    assert trains[11] == trains[9].model_copy(update={"weight_average": 0.999}) and synth[11] == synth[9]
    assert trains[12] == trains[13] == trains[14] == trains[15] == trains[16] == trains[17] == trains[11]
    assert synth[14] == synth[15] == synth[11] == synth[18]
    mel_masks = trains[14].augment.model_copy(update={"mel_masks": 2, "mel_mask_bins": 8})
    assert trains[18] == trains[14].model_copy(update={"augment": mel_masks})
    assert all(len(r.stages) == 1 and r.stages[0].config.epochs == 3 and not r.targets for r in loaded)
    # --seeds: the same rung at another recipe seed, and the mean and spread the table adds
    seeded = bench.ablation_recipe(data, *bench.LADDER[9], epochs=3, seed=4321)
    assert seeded["seed"] == 4321 and {**seeded, "seed": recipe.seed} == bench.ablation_recipe(
        data, *bench.LADDER[9], epochs=3
    )
    rows = [{"runtime": "Keras", "sets": {"synthetic": {"accuracy": a}, "mine": {"accuracy": b}}}
            for a, b in ((0.9, 0.6), (0.8, 0.7))]  # fmt: skip
    mean = bench.mean_row(rows, ["synthetic", "mine"])
    assert mean["sets"]["mine"] == pytest.approx({"accuracy": 0.65, "spread": 0.0707}, abs=1e-4)
    assert bench.cell(mean, "mine") == "65.00% ± 7.1" and bench.cell(rows[0], "mine") == "60.00%"
    assert bench.integers("1234,777", "--seeds") == [1234, 777]
    for text, allowed, message in (("12;34", None, "comma-separated integers"), ("2,13", range(1, 13), "no rung 13")):
        with pytest.raises(click.BadParameter, match=message):
            bench.integers(text, "--rungs", allowed)


def test_microphone_chain_colours_only_when_asked(tmp_path):
    rng = np.random.default_rng(0)
    speech = (0.1 * rng.standard_normal(16000)).astype(np.float32)
    off = synthetic.microphone_chain(tmp_path, SyntheticConfig())
    assert off(speech, sample_rate=16000) is speech
    on = synthetic.microphone_chain(tmp_path, SyntheticConfig(microphone_probability=1.0))
    coloured = on(speech, sample_rate=16000)
    assert coloured.shape == speech.shape and not np.allclose(coloured, speech, atol=1e-3)


needs_flite = pytest.mark.skipif(
    shutil.which("flite") is None, reason="no flite program (scripts/setup.sh installs it)"
)


def test_flite_speaks_a_share_of_training_draws_only_and_leaves_the_espeak_draws_alone():
    without = SyntheticConfig(train_voices=400, val_voices=40, test_voices=40, val_variants=2, test_variants=2)
    with_flite = without.model_copy(update={"flite_share": 0.3})
    variants = [f"v{i}" for i in range(10)]
    before = synthetic.plan_voices(without, ["yes"], 5, variants)
    after = synthetic.plan_voices(with_flite, ["yes"], 5, variants)
    flite = [v for v in after if v.engine == "flite"]
    assert {v.split for v in flite} == {"train"} and 0.24 < len(flite) / 400 < 0.36
    assert {v.variant for v in flite} == {"kal16", "awb", "rms", "slt"}
    assert all(0.9 <= v.formant_scale <= 1.1 and 80 <= v.rate <= 125 for v in flite)
    espeak_after = {v.speaker: v for v in after if v.engine == "espeak"}
    assert len(espeak_after) == len(before) - len(flite)
    assert all(espeak_after[v.speaker] == v for v in before if v.speaker in espeak_after)  # the same draws


def generated_twice(tmp_path: Path, cfg: SyntheticConfig, word: str, seed: int) -> tuple[dict, list[str]]:
    """A one-word data set generated twice: its summary and voices.csv's engines, once both runs are byte-identical."""
    runs = []
    for name in ("a", "b"):
        summary = synthetic.generate(tmp_path / name, cfg, [word], seed=seed, sample_rate=16000, clip_samples=16000)
        runs.append(sorted((p.relative_to(tmp_path / name), p.read_bytes()) for p in (tmp_path / name).rglob("*.wav")))
    assert runs[0] == runs[1]
    with open(tmp_path / "a" / "voices.csv") as f:
        return summary, [r["engine"] for r in csv.DictReader(f)]


@pytest.mark.parametrize("engine", ["kokoro", "piper"])
def test_a_data_set_a_neural_voice_speaks_is_reproducible(tmp_path, engine):
    cfg = SyntheticConfig(train_voices=3, val_voices=1, test_voices=1, val_variants=2, test_variants=2,
                          unknown_per_voice=0, **{f"{engine}_share": 1.0})  # fmt: skip
    summary, engines = generated_twice(tmp_path, cfg, "go", seed=3)
    assert summary[f"{engine}_voices"] == 3 and summary["clips"] == {"train": 3, "val": 1, "test": 1}
    assert engines == [engine] * 3 + ["espeak"] * 2


@needs_flite
def test_flite_draws_speak_with_their_pitch_and_speed_and_are_reproducible(tmp_path, monkeypatch):
    cfg = SyntheticConfig(train_voices=6, val_voices=1, test_voices=1, val_variants=2, test_variants=2,
                          unknown_per_voice=0, flite_share=1.0)  # fmt: skip
    summary, engines = generated_twice(tmp_path, cfg, "stop", seed=2)
    assert summary["flite_voices"] == 6 and summary["clips"] == {"train": 6, "val": 1, "test": 1}
    assert engines == ["flite"] * 6 + ["espeak"] * 2
    # speed perturbation: the same voice read 10 % slower is 10 % longer (and lower)
    monkeypatch.setitem(synthetic._worker, "scratch", tmp_path)  # this process's worker state, restored after
    monkeypatch.setitem(synthetic._worker, "sample_rate", 16000)
    slow, fast = (synthetic._flite_speech("stop", replace(voice(s, "slt"), engine="flite", pitch=170, rate=100))
                  for s in (0.9, 1.1))  # fmt: skip
    assert 1.15 < len(slow) / len(fast) < 1.30
    assert centroid(slow, 16000) < 0.95 * centroid(fast, 16000)


@needs_flite
def test_a_flite_voice_flite_lacks_is_named_before_any_work(tmp_path):
    from pipeline.data.flite import FliteError, version

    assert "flite-" in version()  # it keys the data set; `flite --version` exits 1 after printing it

    with pytest.raises(FliteError, match=r"flite_voices: flite has no voice nosuch \(it has .*slt"):
        synthetic.check_flite_voices(["slt", "nosuch"])
    recipe = yaml.load((ROOT / "tests/recipes/tiny.yaml").read_text(), Loader=RecipeLoader)
    recipe["data"]["synthetic"]["flite_voices"] = ["../kal"]
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    with pytest.raises(RecipeError, match="flite_voices"):
        load_recipe(tmp_path / "r.yaml")


def test_a_missing_flite_program_is_named_with_how_to_install_it(monkeypatch, tmp_path):
    from pipeline.data import flite

    flite.voices.cache_clear()
    monkeypatch.setenv("PATH", str(tmp_path))  # no flite here
    try:
        with pytest.raises(flite.FliteError, match=r"flite_share: the `flite` program is not on PATH: install"):
            synthetic.check_flite_voices(["slt"])
    finally:
        flite.voices.cache_clear()
