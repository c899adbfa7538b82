"""Offline synthetic Speech Commands: espeak-ng voices saying the words, placed in 1 s of generated noise.

To sound less like one synthesiser, every voice draw speaks through its own espeak-ng variant file: the base
variant with its formants jittered, and optionally scaled by a vocal-tract-length factor (shorter tracts, higher
formants). Optionally each spoken word then passes a room (an impulse response from a bank that pyroomacoustics
simulates once per data set) and a microphone (audiomentations' parametric EQ and band limits) before it is placed
in noise at its level. Which of these help on real speech is measured, not assumed (docs/real-speech.md).

With `flite_share`, that share of the *training* draws is spoken by one of Debian's flite voices instead (another
synthesis method: statistical-parametric and diphone), at its own pitch and tempo, speed-perturbed by resampling.
With `kokoro_share`, another share is spoken by Kokoro-82M, a neural synthesiser learnt from people's recordings:
each draw a new speaker (a Dirichlet blend of the shipped speakers' style vectors), tempo and speed perturbation.
With `piper_share`, another share is spoken by a Piper voice (VITS learnt from one native speaker), at its own tempo,
prosody noise and speed perturbation.
Validation and test stay espeak-ng, so the synthetic test stays variant-disjoint and comparable across recipes.

It writes the real data set's folder layout (a folder per word, ``_background_noise_``, ``validation_list.txt``,
``testing_list.txt``, files named ``<speaker>_nohash_<n>.wav``) so one loader serves both. The split is by voice
*variant*: a variant heard in test is never heard in training or validation. ``voices.csv`` records every
speaker's accent, variant, rate and pitch so reports can show accuracy per voice.

Determinism: espeak-ng keeps static synthesis state across calls (even across espeak_Terminate/Initialize) and seeds
its breath noise from the clock (we reseed it per word), so the same word spoken twice in one process differs slightly; what a
process outputs is a function of everything it spoke since it started. Voices are therefore cut into a fixed number
of shards, each spoken in order by a fresh process: the output depends on the seed only, never on the core count.
"""

from __future__ import annotations

import csv
import hashlib
import multiprocessing as mp
import wave
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # annotations only: the generated set must not depend on the recipe module's code
    from pipeline.recipe import SyntheticConfig

SPLITS = ("train", "val", "test")  # every data set's splits, in this order
BACKGROUND_SECONDS = 60
SHARDS = 32  # fixed: changing it changes the audio (see the module docstring)
# Steady noises first (the default), then noise that changes within a second, as kitchens and gyms do: appended, so
# the steady kinds keep their seeds. `pipeline.recipe.Background` names the same (a test keeps them equal).
BACKGROUNDS = ("white_noise", "pink_noise", "brown_noise", "mains_hum", "fan", "clatter", "running_water", "machine")
IMPULSE_RESPONSES = "_impulse_responses_"  # a leading underscore: not a word folder
IMPULSE_RESPONSE_COUNT = 120  # at most


@dataclass(frozen=True)
class Voice:
    speaker: str
    split: str
    accent: str
    variant: str
    rate: int
    pitch: int
    pitch_range: int
    formant_scale: float
    words: tuple[str, ...]
    seed: tuple[int, ...]
    engine: str = "espeak"  # or "flite": then `variant` is a flite voice, `pitch` its f0 target in Hz and `rate`
    # its tempo in percent of the voice's own; `formant_scale` is the speed perturbation. Or "kokoro": `variant` is
    # the speaker blend ("jf_alpha=0.300,jm_kumo=0.700"), `rate` the tempo in percent, `formant_scale` the speed.
    # Or "piper": `variant` is the voice package, `rate` the tempo in percent, `pitch` and `pitch_range` VITS'
    # noise_scale and noise_w in thousandths, `formant_scale` the speed

    @property
    def own_variant(self) -> str:
        """The name of this draw's own variant file (its base variant, perturbed)."""
        return f"x{self.speaker}"

    @property
    def espeak_name(self) -> str:
        return f"{self.accent}+{self.own_variant}"


def split_variants(all_variants: list[str], cfg: SyntheticConfig, seed: int) -> dict[str, list[str]]:
    need = cfg.test_variants + cfg.val_variants + 1
    if len(all_variants) < need:
        raise ValueError(
            f"data.synthetic: test_variants + val_variants = {need - 1} leaves no training voice "
            f"(espeak-ng ships {len(all_variants)} variants)"
        )
    order = np.random.default_rng([seed, 7]).permutation(len(all_variants))
    shuffled = [all_variants[i] for i in order]
    test = sorted(shuffled[: cfg.test_variants])
    val = sorted(shuffled[cfg.test_variants : cfg.test_variants + cfg.val_variants])
    train = sorted(shuffled[cfg.test_variants + cfg.val_variants :])
    return {"train": train, "val": val, "test": test}


def plan_voices(cfg: SyntheticConfig, keywords: list[str], seed: int, all_variants: list[str]) -> list[Voice]:
    pools = split_variants(all_variants, cfg, seed)
    draws = {"train": cfg.train_voices, "val": cfg.val_voices, "test": cfg.test_voices}
    unknown = [w for w in cfg.unknown_words if w not in keywords]
    voices = []
    for split_index, split in enumerate(SPLITS):
        for draw in range(draws[split]):
            vseed = (seed, split_index, draw)
            rng = np.random.default_rng(vseed)
            extra = rng.choice(unknown, size=min(cfg.unknown_per_voice, len(unknown)), replace=False) if unknown else []
            speaker = hashlib.sha1(f"{seed}/{split}/{draw}".encode()).hexdigest()[:8]
            voices.append(
                Voice(
                    speaker=speaker,
                    split=split,
                    accent=str(rng.choice(cfg.accents)),
                    variant=str(rng.choice(pools[split])),
                    rate=int(rng.uniform(*cfg.rate_wpm)),
                    pitch=int(rng.uniform(*cfg.pitch)),
                    pitch_range=int(rng.uniform(20, 80)),
                    formant_scale=round(float(rng.uniform(*cfg.formant_scale)), 3),
                    words=tuple(keywords) + tuple(str(w) for w in extra),
                    seed=vseed,
                )
            )
            if split == "train":
                engine_draw = np.random.default_rng((*vseed, 11)).random()  # flite first: its draws stay its own
                if engine_draw < cfg.flite_share:
                    voices[-1] = flite_voice(voices[-1], cfg)
                elif engine_draw < cfg.flite_share + cfg.kokoro_share:
                    voices[-1] = kokoro_voice(voices[-1], cfg)
                elif engine_draw < cfg.flite_share + cfg.kokoro_share + cfg.piper_share:
                    voices[-1] = piper_voice(voices[-1], cfg)
    return voices


def flite_voice(voice: Voice, cfg: SyntheticConfig) -> Voice:
    """`voice` (its speaker, words and seed kept) spoken by a flite voice at a pitch and tempo of its own. Drawn
    from a generator of its own, so the espeak-ng draws of a recipe stay what they are without flite."""
    from pipeline.data.flite import DEFAULT_F0_HZ, NATURAL_F0_HZ

    rng = np.random.default_rng((*voice.seed, 13))
    name = str(rng.choice(cfg.flite_voices))
    f0 = NATURAL_F0_HZ.get(name, DEFAULT_F0_HZ) * 2 ** rng.uniform(-0.4, 0.4)  # within ~5 semitones
    return replace(
        voice,
        engine="flite",
        accent="",  # the flite voice is its accent
        variant=name,
        pitch=round(f0),
        rate=round(100 * rng.uniform(0.8, 1.25)),
        pitch_range=0,
        formant_scale=round(float(rng.uniform(*cfg.flite_speed)), 3),
    )


def kokoro_voice(voice: Voice, cfg: SyntheticConfig) -> Voice:
    """`voice` (its speaker, words and seed kept) spoken by Kokoro as a speaker of its own: a blend of the shipped
    speakers with Dirichlet(0.5) weights (mostly one or two of them), its own tempo and speed perturbation."""
    rng = np.random.default_rng((*voice.seed, 17))
    weights = rng.dirichlet(np.full(len(cfg.kokoro_voices), 0.5))
    mix = ",".join(f"{name}={w:.3f}" for name, w in zip(cfg.kokoro_voices, weights, strict=True) if w >= 0.0005)
    return replace(
        voice,
        engine="kokoro",
        accent="",
        variant=mix,
        pitch=0,
        rate=round(100 * rng.uniform(0.8, 1.2)),
        pitch_range=0,
        formant_scale=round(float(rng.uniform(*cfg.kokoro_speed)), 3),
    )


def piper_voice(voice: Voice, cfg: SyntheticConfig) -> Voice:
    """`voice` (its speaker, words and seed kept) spoken by a Piper voice at its own tempo, prosody noise (VITS'
    noise_scale around its default 0.667, noise_w around 0.8) and speed perturbation."""
    rng = np.random.default_rng((*voice.seed, 19))
    return replace(
        voice,
        engine="piper",
        accent="",
        variant=str(rng.choice(cfg.piper_voices)),
        rate=round(100 * rng.uniform(0.8, 1.25)),
        pitch=round(1000 * rng.uniform(0.4, 0.9)),
        pitch_range=round(1000 * rng.uniform(0.5, 1.0)),
        formant_scale=round(float(rng.uniform(*cfg.piper_speed)), 3),
    )


def kokoro_weights(variant: str) -> dict[str, float]:
    """A Kokoro draw's `variant` back into speaker -> weight."""
    return {name: float(w) for name, w in (item.split("=") for item in variant.split(","))}


def perturbed_variant(base: str, voice: Voice) -> str:
    """The text of `voice`'s own variant file: `base` with every formant's frequency scaled by the voice's
    vocal-tract factor (jittered +-4% per formant) and its height and width by +-20%."""
    rng = np.random.default_rng((*voice.seed, 101))
    lines, seen = [], set()
    for line in base.splitlines():
        parts = line.split()
        if len(parts) == 5 and parts[0] == "formant" and parts[1].isdigit():
            seen.add(int(parts[1]))
            parts[2:5] = _scaled_formant([float(v) for v in parts[2:5]], voice.formant_scale, rng)
            line = " ".join(parts)
        lines.append(line)
    for n in sorted(set(range(9)) - seen):  # a variant that leaves a formant alone uses 100 100 100
        lines.append(" ".join(["formant", str(n), *_scaled_formant([100, 100, 100], voice.formant_scale, rng)]))
    return "\n".join(lines) + "\n"


def _scaled_formant(values: list[float], scale: float, rng: np.random.Generator) -> list[str]:
    frequency, height, width = values
    return [
        str(max(1, round(frequency * scale * rng.uniform(0.96, 1.04)))),
        str(max(1, round(height * rng.uniform(0.8, 1.2)))),
        str(max(1, round(width * rng.uniform(0.8, 1.2)))),
    ]


# --- rooms and microphones ------------------------------------------------------------------------------


def make_impulse_responses(count: int, seed: int, sample_rate: int, rt60_s: tuple[float, float]) -> list[np.ndarray]:
    """Room impulse responses of simulated shoebox rooms (image source method), speaker 0.3-2.5 m from the mic."""
    import pyroomacoustics as pra

    rng = np.random.default_rng([seed, 31])
    out = []
    for _ in range(count):
        dims = rng.uniform([3.0, 2.5, 2.4], [9.0, 7.0, 3.5])
        rt60 = rng.uniform(*rt60_s)
        try:
            absorption, max_order = pra.inverse_sabine(rt60, dims)
        except ValueError:  # a reverberation time the room cannot have: use the room's longest
            absorption, max_order = 0.01, 30
        room = pra.ShoeBox(dims, fs=sample_rate, materials=pra.Material(absorption), max_order=min(max_order, 30))
        mic = rng.uniform(0.5, dims - 0.5)
        direction = rng.standard_normal(3)
        source = np.clip(mic + direction / np.linalg.norm(direction) * rng.uniform(0.3, 2.5), 0.2, dims - 0.2)
        room.add_source(source)
        room.add_microphone(mic)
        room.compute_rir()
        rir = np.asarray(room.rir[0][0], np.float64)
        out.append((rir / np.max(np.abs(rir))).astype(np.float32))
    return out


def microphone_chain(root: Path, cfg: SyntheticConfig) -> Callable[..., np.ndarray]:
    """The audiomentations chain a spoken word passes before it is placed in noise (identity when all is off)."""
    import audiomentations as am

    chain = []
    if cfg.reverb_probability:
        chain.append(am.ApplyImpulseResponse(sorted((root / IMPULSE_RESPONSES).glob("*.wav")),
                                             p=cfg.reverb_probability, leave_length_unchanged=False))  # fmt: skip
    if cfg.microphone_probability:
        chain += [
            am.SevenBandParametricEQ(-10.0, 10.0, p=cfg.microphone_probability),
            am.HighPassFilter(60.0, 400.0, p=cfg.microphone_probability / 2),
            am.LowPassFilter(3000.0, 7800.0, p=cfg.microphone_probability / 2),
        ]
    return am.Compose(chain) if chain else (lambda samples, sample_rate: samples)


# --- noise ------------------------------------------------------------------------------------------------


def _shaped_noise(rng: np.random.Generator, n: int, sample_rate: int, exponent: float) -> np.ndarray:
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / sample_rate)
    freqs[0] = freqs[1]
    return np.fft.irfft(spectrum / freqs ** (exponent / 2), n)


def _band_pass(x: np.ndarray, low_hz: float, high_hz: float, sample_rate: int) -> np.ndarray:
    from scipy import signal

    return signal.sosfilt(signal.butter(2, [low_hz, high_hz], "bandpass", fs=sample_rate, output="sos"), x)


def make_background(kind: str, seed: int, sample_rate: int) -> np.ndarray:
    n = BACKGROUND_SECONDS * sample_rate
    rng = np.random.default_rng([seed, BACKGROUNDS.index(kind), 99])
    t = np.arange(n) / sample_rate
    if kind == "white_noise":
        x = rng.standard_normal(n)
    elif kind == "pink_noise":
        x = _shaped_noise(rng, n, sample_rate, 1.0)
    elif kind == "brown_noise":
        x = _shaped_noise(rng, n, sample_rate, 2.0)
    elif kind == "mains_hum":
        mains = rng.choice([50.0, 60.0])
        x = sum(np.sin(2 * np.pi * mains * k * t + rng.uniform(0, 2 * np.pi)) / k for k in range(1, 8))
        x = x + 0.3 * rng.standard_normal(n)
    elif kind == "clatter":  # dishes, keys, knocks: decaying bursts of band noise, 0.5-12 per second
        x = 0.02 * rng.standard_normal(n)
        for block in range(0, n, 2 * sample_rate):
            rate = rng.uniform(0.5, 12)
            for at in block + rng.integers(0, 2 * sample_rate, rng.poisson(2 * rate)):
                length = int(sample_rate * rng.uniform(0.01, 0.15))
                burst = rng.standard_normal(length) * np.exp(
                    -np.arange(length) / (sample_rate * rng.uniform(0.003, 0.04))
                )
                low = rng.uniform(200, 3000)
                burst = _band_pass(burst, low, min(low * rng.uniform(1.5, 4), 0.45 * sample_rate), sample_rate)
                end = min(n, at + length)
                x[at:end] += burst[: end - at] * rng.uniform(0.2, 1)
    elif kind == "running_water":  # a tap: band noise whose level flutters about 17 times a second
        x = _band_pass(rng.standard_normal(n), rng.uniform(300, 1500), rng.uniform(3000, 7500), sample_rate)
        flutter = np.cumsum(rng.uniform(5, 30, n)) / sample_rate
        x = x * (1 + 0.5 * np.sin(2 * np.pi * flutter))
    elif kind == "machine":  # a bike, a motor: a thump at one rate per seed (2-12 a second) on band noise, harmonics
        thump = (
            0.5
            + 0.5
            * np.sin(2 * np.pi * np.cumsum(rng.uniform(2, 12) * (1 + 0.1 * np.sin(2 * np.pi * 0.05 * t))) / sample_rate)
        ) ** rng.uniform(1, 6)
        x = _band_pass(rng.standard_normal(n), 80, rng.uniform(1000, 6000), sample_rate) * thump
        base = rng.uniform(40, 120)
        x = x + 0.3 * sum(np.sin(2 * np.pi * k * base * t) / k for k in range(1, 5))
    elif kind == "fan":
        band = np.fft.rfft(rng.standard_normal(n))
        freqs = np.fft.rfftfreq(n, 1 / sample_rate)
        band[(freqs < 200) | (freqs > 2500)] *= 0.05
        x = np.fft.irfft(band, n) * (1 + 0.3 * np.sin(2 * np.pi * 0.7 * t))
        x = x + 0.5 * np.sin(2 * np.pi * rng.uniform(90, 180) * t)
    else:  # pragma: no cover - BACKGROUNDS is closed
        raise ValueError(kind)
    return (0.5 * x / np.max(np.abs(x))).astype(np.float32)


# --- clips ------------------------------------------------------------------------------------------------


def place_in_clip(
    speech: np.ndarray,
    background: np.ndarray,
    clip_samples: int,
    snr_db: float,
    peak_dbfs: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Trim the spoken word, scale it to `peak_dbfs`, put it at a random offset in the clip and add noise at
    `snr_db`."""
    loud = np.flatnonzero(np.abs(speech) > 0.02 * np.max(np.abs(speech)))
    word = speech[loud[0] : loud[-1] + 1][:clip_samples]
    word = word / np.max(np.abs(word)) * 10 ** (peak_dbfs / 20)
    clip = np.zeros(clip_samples, np.float32)
    offset = int(rng.integers(0, clip_samples - len(word) + 1))
    clip[offset : offset + len(word)] = word
    start = int(rng.integers(0, len(background) - clip_samples))
    noise = background[start : start + clip_samples].astype(np.float64)
    speech_power = np.mean(word.astype(np.float64) ** 2)
    noise_power = np.mean(noise**2) + 1e-12
    noise *= np.sqrt(speech_power / (noise_power * 10 ** (snr_db / 10)))
    return np.clip(clip + noise, -1.0, 1.0).astype(np.float32)


def write_wav(path: Path, audio: np.ndarray, sample_rate: int) -> None:
    pcm = np.clip(np.round(audio * 32767), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm.tobytes())


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2 or w.getnchannels() != 1:
            raise ValueError(f"{path}: expected 16-bit mono PCM")
        data = np.frombuffer(w.readframes(w.getnframes()), "<i2")
        return data.astype(np.float32) / 32768.0, w.getframerate()


# Worker state: one espeak engine and the backgrounds per process.
_worker: dict = {}


def _init_worker(
    root: str,
    scratch: str,
    sample_rate: int,
    clip_samples: int,
    cfg: SyntheticConfig,
    kokoro: dict | None,
    piper: dict | None,
) -> None:
    """`kokoro`: {"model": the assembled ONNX file, "phonemes": word -> Kokoro phonemes} when Kokoro speaks;
    `piper`: voice -> word -> Piper's input ids when Piper does."""
    import tempfile

    from pipeline.data.espeak import Espeak, data_with_variants

    espeak_data = data_with_variants(Path(tempfile.mkdtemp(dir=scratch)), {})
    _worker.update(
        scratch=espeak_data,
        engine=Espeak(espeak_data),
        variants=espeak_data / "espeak-ng-data" / "voices" / "!v",
        root=Path(root),
        sample_rate=sample_rate,
        clip_samples=clip_samples,
        cfg=cfg,
        microphone=microphone_chain(Path(root), cfg),
        backgrounds=[read_wav(Path(root) / "_background_noise_" / f"{b}.wav")[0] for b in cfg.backgrounds],
    )
    if kokoro:
        from pipeline.data.kokoro import Speaker

        _worker.update(kokoro=Speaker(Path(kokoro["model"])), kokoro_phonemes=kokoro["phonemes"])
    _worker.update(piper_ids=piper or {}, piper={})


def _speak_shard(voices: list[Voice]) -> list[list[str]]:
    from pipeline.data.espeak import variant_text

    written = []
    for voice in voices:
        if voice.engine != "espeak":
            written.append(_speak_voice(voice))
            continue
        # espeak-ng lists at most 350 voices and variants: each draw's own file exists only while it speaks.
        own = _worker["variants"] / voice.own_variant
        own.write_text(perturbed_variant(variant_text(voice.variant), voice), encoding="utf-8")
        written.append(_speak_voice(voice))
        own.unlink()
    return written


def _speak_voice(voice: Voice) -> list[str]:
    import random

    from scipy.signal import resample_poly

    w = _worker
    cfg: SyntheticConfig = w["cfg"]
    written = []
    for i, word in enumerate(voice.words):
        rng = np.random.default_rng(voice.seed + (i,))
        noise_seed = int(rng.integers(1 << 31))
        if voice.engine == "flite":
            speech = _flite_speech(word, voice)
        elif voice.engine == "kokoro":
            speech = _kokoro_speech(word, voice)
        elif voice.engine == "piper":
            speech = _piper_speech(word, voice)
        else:
            raw = w["engine"].speak(word, voice.espeak_name, voice.rate, voice.pitch, voice.pitch_range, noise_seed)
            speech = resample_poly(raw.astype(np.float32) / 32768.0, w["sample_rate"], w["engine"].sample_rate)
        chain_seed = int(rng.integers(1 << 31))  # audiomentations draws from the global generators
        random.seed(chain_seed)
        np.random.seed(chain_seed)
        speech = w["microphone"](speech.astype(np.float32), sample_rate=w["sample_rate"])
        background = w["backgrounds"][int(rng.integers(len(w["backgrounds"])))]
        snr_db, peak_dbfs = rng.uniform(*cfg.snr_db), rng.uniform(*cfg.peak_dbfs)
        clip = place_in_clip(speech, background, w["clip_samples"], snr_db, peak_dbfs, rng)
        rel = f"{word}/{voice.speaker}_nohash_{i}.wav"
        write_wav(w["root"] / rel, clip, w["sample_rate"])
        written.append(rel)
    return written


def _speed_perturbed(speech: np.ndarray, rate: int, voice: Voice) -> np.ndarray:
    """Speed perturbation as in Kaldi's recipes: read the audio as if sampled `formant_scale` times slower, so
    tempo, pitch and formants move together (a shorter or longer vocal tract)."""
    from scipy.signal import resample_poly

    source_rate = round(rate * voice.formant_scale)  # 1.1: played 10 % faster and higher
    return resample_poly(speech, _worker["sample_rate"], source_rate).astype(np.float32)


def _flite_speech(word: str, voice: Voice) -> np.ndarray:
    from pipeline.data.flite import speak

    speech, rate = speak(word, voice.variant, voice.pitch, 100 / voice.rate, _worker["scratch"])
    return _speed_perturbed(speech, rate, voice)


def _kokoro_speech(word: str, voice: Voice) -> np.ndarray:
    """The word from Kokoro at the draw's blend and tempo, speed-perturbed like flite's."""
    from pipeline.data.kokoro import SAMPLE_RATE, blend

    style = blend(kokoro_weights(voice.variant))
    speech = _worker["kokoro"].speak(_worker["kokoro_phonemes"][word], style, voice.rate / 100)
    return _speed_perturbed(speech, SAMPLE_RATE, voice)


def _piper_speech(word: str, voice: Voice) -> np.ndarray:
    """The word from the draw's Piper voice at its tempo and prosody noise, speed-perturbed like flite's. A worker
    speaks one shard: its session per voice is seeded by the first draw it speaks, so a shard's audio is a function
    of the recipe seed alone (see the module docstring)."""
    from pipeline.data.piper import Speaker, find_voice

    speakers = _worker["piper"]
    if voice.variant not in speakers:
        seed = int.from_bytes(hashlib.sha256(repr(voice.seed).encode()).digest()[:4], "little")
        speakers[voice.variant] = Speaker(find_voice(voice.variant), seed)
    speaker = speakers[voice.variant]
    ids = _worker["piper_ids"][voice.variant][word]
    speech = speaker.speak(ids, 100 / voice.rate, voice.pitch / 1000, voice.pitch_range / 1000)
    return _speed_perturbed(speech, speaker.voice.sample_rate, voice)


def piper_phoneme_table(words: list[str], voices: list[str]) -> dict[str, dict[str, list[int]]]:
    """Each word as each Piper voice reads it: espeak-ng's IPA in the voice's own espeak voice, as input ids."""
    from pipeline.data.espeak import Espeak
    from pipeline.data.piper import PiperError, find_voice, phoneme_ids

    engine = Espeak()
    table = {}
    for name in voices:
        voice = find_voice(name)
        table[name] = {w: phoneme_ids(engine.phonemes(w.replace("_", " "), voice.espeak_voice), voice) for w in words}
        empty = [w for w, ids in table[name].items() if len(ids) <= 2]
        if empty:
            raise PiperError(f"Piper voice {name} has no phonemes for {', '.join(empty)}")
    return table


def kokoro_phoneme_table(words: list[str]) -> dict[str, str]:
    """Each word as Kokoro reads it: espeak-ng's American IPA, in Kokoro's letters."""
    from pipeline.data.espeak import Espeak
    from pipeline.data.kokoro import KokoroError, kokoro_phonemes

    engine = Espeak()
    table = {word: kokoro_phonemes(engine.phonemes(word.replace("_", " "), "en-us")) for word in words}
    empty = [word for word, phonemes in table.items() if not phonemes]
    if empty:
        raise KokoroError(f"Kokoro has no phonemes for {', '.join(empty)}")
    return table


def generate(
    root: Path,
    cfg: SyntheticConfig,
    keywords: list[str],
    seed: int,
    sample_rate: int,
    clip_samples: int,
    workers: int | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Write the data set into `root` (an empty directory); return a summary for the artifact's metadata."""
    from pipeline.data.espeak import variants

    all_variants = [v for v in variants() if " " not in v]
    voices = plan_voices(cfg, keywords, seed, all_variants)
    (root / "_background_noise_").mkdir(parents=True)
    for b in cfg.backgrounds:
        write_wav(root / "_background_noise_" / f"{b}.wav", make_background(b, seed, sample_rate), sample_rate)
    if cfg.reverb_probability:
        (root / IMPULSE_RESPONSES).mkdir()
        rooms = min(IMPULSE_RESPONSE_COUNT, max(8, len(voices) // 16))  # ~0.15 s each
        for i, rir in enumerate(make_impulse_responses(rooms, seed, sample_rate, cfg.rt60_s)):
            write_wav(root / IMPULSE_RESPONSES / f"room_{i:03d}.wav", rir, sample_rate)
    for word in sorted({w for v in voices for w in v.words}):
        (root / word).mkdir()

    files = _speak_all(root, voices, sample_rate, clip_samples, cfg, workers, on_progress)

    (root / "validation_list.txt").write_text("".join(f"{r}\n" for r in sorted(files["val"])))
    (root / "testing_list.txt").write_text("".join(f"{r}\n" for r in sorted(files["test"])))
    with open(root / "voices.csv", "w", newline="") as f:
        writer = csv.DictWriter(
            f, ["speaker", "split", "engine", "accent", "variant", "rate", "pitch", "pitch_range", "formant_scale"]
        )
        writer.writeheader()
        for v in voices:
            row = asdict(v)
            writer.writerow({k: row[k] for k in writer.fieldnames})
    return {
        "voices": {s: sum(v.split == s for v in voices) for s in SPLITS},
        "flite_voices": sum(v.engine == "flite" for v in voices),
        "kokoro_voices": sum(v.engine == "kokoro" for v in voices),
        "piper_voices": sum(v.engine == "piper" for v in voices),
        "clips": {s: len(files[s]) for s in SPLITS},
        "variants": split_variants(all_variants, cfg, seed),
    }


def check_kokoro_voices(wanted: list[str]) -> None:
    """Fail before any work when Kokoro is missing or lacks a speaker the recipe names."""
    from pipeline.data.kokoro import KokoroError, version, voices

    try:
        have = voices()
        version()
    except (KokoroError, ModuleNotFoundError) as exc:
        raise KokoroError(f"data.synthetic.kokoro_share: {exc}") from None
    missing = [v for v in wanted if v not in have]
    if missing:
        raise KokoroError(
            f"data.synthetic.kokoro_voices: Kokoro has no voice {', '.join(missing)} (it has {', '.join(have)})"
        )


def check_piper_voices(wanted: list[str]) -> None:
    """Fail before any work when a Piper voice the recipe names is missing, or ONNX Runtime is."""
    from pipeline.data.piper import PiperError, find_voice

    try:
        import onnxruntime  # noqa: F401

        for name in wanted:
            find_voice(name)
    except (PiperError, ModuleNotFoundError) as exc:
        raise PiperError(f"data.synthetic.piper_voices: {exc}") from None


def check_flite_voices(wanted: list[str]) -> None:
    """Fail before any work when flite is missing or lacks a voice the recipe names."""
    from pipeline.data.flite import FliteError, voices

    try:
        have = voices()
    except FliteError as exc:
        raise FliteError(f"data.synthetic.flite_share: {exc}") from None
    missing = [v for v in wanted if v not in have]
    if missing:
        raise FliteError(
            f"data.synthetic.flite_voices: flite has no voice {', '.join(missing)} (it has {', '.join(have)})"
        )


def _speak_all(
    root: Path,
    voices: list[Voice],
    sample_rate: int,
    clip_samples: int,
    cfg: SyntheticConfig,
    workers: int | None,
    on_progress: Callable[[int, int], None] | None,
) -> dict[str, list[str]]:
    import tempfile

    workers = workers or min(mp.cpu_count(), 4)
    ctx = mp.get_context("spawn")  # never fork a process that may hold TensorFlow threads
    shards = [voices[i::SHARDS] for i in range(SHARDS) if voices[i::SHARDS]]
    files: dict[str, list[str]] = {s: [] for s in SPLITS}
    done = 0
    # Each worker's espeak-ng data folder (symlinks, plus the variant file of the voice speaking) is scratch, and
    # so is Kokoro's model, joined from its packages.
    with tempfile.TemporaryDirectory(prefix="espeak-") as scratch:
        kokoro = None
        if any(v.engine == "kokoro" for v in voices):
            from pipeline.data.kokoro import assemble_model

            words = _words_spoken_by("kokoro", voices)
            kokoro = {"model": str(assemble_model(Path(scratch))), "phonemes": kokoro_phoneme_table(words)}
        piper = None
        piper_voices = sorted({v.variant for v in voices if v.engine == "piper"})
        if piper_voices:
            piper = piper_phoneme_table(_words_spoken_by("piper", voices), piper_voices)
        init_args = (str(root), scratch, sample_rate, clip_samples, cfg, kokoro, piper)
        with ctx.Pool(workers, initializer=_init_worker, initargs=init_args, maxtasksperchild=1) as pool:
            for shard, shard_files in zip(shards, pool.imap(_speak_shard, shards), strict=True):
                for voice, rels in zip(shard, shard_files, strict=True):
                    files[voice.split].extend(rels)
                done += len(shard)
                if on_progress:
                    on_progress(done, len(voices))
    return files


def _words_spoken_by(engine: str, voices: list[Voice]) -> list[str]:
    return sorted({w for v in voices if v.engine == engine for w in v.words})


def read_voices(root: Path) -> dict[str, dict[str, str]]:
    """speaker -> its row of voices.csv (empty for a real data set, which has none)."""
    path = Path(root) / "voices.csv"
    if not path.is_file():
        return {}
    with open(path, newline="") as f:
        return {row["speaker"]: row for row in csv.DictReader(f)}
