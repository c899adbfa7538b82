"""Offline synthetic Speech Commands: espeak-ng voices saying the words, placed in 1 s of generated noise.

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
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from pipeline.recipe import SyntheticConfig

SPLITS = ("train", "val", "test")
BACKGROUND_SECONDS = 60
SHARDS = 32  # fixed: changing it changes the audio (see the module docstring)
BACKGROUNDS = ("white_noise", "pink_noise", "brown_noise", "mains_hum", "fan")


@dataclass(frozen=True)
class Voice:
    speaker: str
    split: str
    accent: str
    variant: str
    rate: int
    pitch: int
    pitch_range: int
    words: tuple[str, ...]
    seed: tuple[int, ...]

    @property
    def espeak_name(self) -> str:
        return f"{self.accent}+{self.variant}"


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
                    words=tuple(keywords) + tuple(str(w) for w in extra),
                    seed=vseed,
                )
            )
    return voices


# --- noise ------------------------------------------------------------------------------------------------


def _shaped_noise(rng: np.random.Generator, n: int, sample_rate: int, exponent: float) -> np.ndarray:
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / sample_rate)
    freqs[0] = freqs[1]
    return np.fft.irfft(spectrum / freqs ** (exponent / 2), n)


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
    speech: np.ndarray, background: np.ndarray, clip_samples: int, snr_db: float, rng: np.random.Generator
) -> np.ndarray:
    """Trim the spoken word, put it at a random offset in the clip and add noise at `snr_db`."""
    loud = np.flatnonzero(np.abs(speech) > 0.02 * np.max(np.abs(speech)))
    word = speech[loud[0] : loud[-1] + 1][:clip_samples]
    word = word / np.max(np.abs(word)) * rng.uniform(0.25, 0.9)
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


def _init_worker(root: str, sample_rate: int, clip_samples: int, snr_db: tuple[float, float]) -> None:
    from pipeline.data.espeak import Espeak

    engine = Espeak()
    _worker.update(
        engine=engine,
        root=Path(root),
        sample_rate=sample_rate,
        clip_samples=clip_samples,
        snr_db=snr_db,
        backgrounds=[read_wav(Path(root) / "_background_noise_" / f"{b}.wav")[0] for b in BACKGROUNDS],
    )


def _speak_shard(voices: list[Voice]) -> list[list[str]]:
    return [_speak_voice(v) for v in voices]


def _speak_voice(voice: Voice) -> list[str]:
    from scipy.signal import resample_poly

    w = _worker
    written = []
    for i, word in enumerate(voice.words):
        rng = np.random.default_rng(voice.seed + (i,))
        noise_seed = int(rng.integers(1 << 31))
        raw = w["engine"].speak(word, voice.espeak_name, voice.rate, voice.pitch, voice.pitch_range, noise_seed)
        speech = resample_poly(raw.astype(np.float32) / 32768.0, w["sample_rate"], w["engine"].sample_rate)
        background = w["backgrounds"][int(rng.integers(len(w["backgrounds"])))]
        clip = place_in_clip(speech, background, w["clip_samples"], rng.uniform(*w["snr_db"]), rng)
        rel = f"{word}/{voice.speaker}_nohash_{i}.wav"
        write_wav(w["root"] / rel, clip, w["sample_rate"])
        written.append(rel)
    return written


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
    for b in BACKGROUNDS:
        write_wav(root / "_background_noise_" / f"{b}.wav", make_background(b, seed, sample_rate), sample_rate)
    for word in sorted({w for v in voices for w in v.words}):
        (root / word).mkdir()

    workers = workers or min(mp.cpu_count(), 4)
    ctx = mp.get_context("spawn")  # never fork a process that may hold TensorFlow threads
    init_args = (str(root), sample_rate, clip_samples, tuple(cfg.snr_db))
    shards = [voices[i::SHARDS] for i in range(SHARDS) if voices[i::SHARDS]]
    files: dict[str, list[str]] = {s: [] for s in SPLITS}
    done = 0
    with ctx.Pool(workers, initializer=_init_worker, initargs=init_args, maxtasksperchild=1) as pool:
        for shard, shard_files in zip(shards, pool.imap(_speak_shard, shards), strict=True):
            for voice, rels in zip(shard, shard_files, strict=True):
                files[voice.split].extend(rels)
            done += len(shard)
            if on_progress:
                on_progress(done, len(voices))

    (root / "validation_list.txt").write_text("".join(f"{r}\n" for r in sorted(files["val"])))
    (root / "testing_list.txt").write_text("".join(f"{r}\n" for r in sorted(files["test"])))
    with open(root / "voices.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, ["speaker", "split", "accent", "variant", "rate", "pitch", "pitch_range"])
        writer.writeheader()
        for v in voices:
            row = asdict(v)
            writer.writerow({k: row[k] for k in writer.fieldnames})
    return {
        "voices": {s: sum(v.split == s for v in voices) for s in SPLITS},
        "clips": {s: len(files[s]) for s in SPLITS},
        "variants": split_variants(all_variants, cfg, seed),
    }


def read_voices(root: Path) -> dict[str, dict[str, str]]:
    """speaker -> its row of voices.csv (empty for a real data set, which has none)."""
    path = Path(root) / "voices.csv"
    if not path.is_file():
        return {}
    with open(path, newline="") as f:
        return {row["speaker"]: row for row in csv.DictReader(f)}
