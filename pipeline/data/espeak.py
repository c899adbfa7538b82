"""espeak-ng through ctypes, from the library and voices the PyPI package `espeakng-loader` ships.

Synchronous mode with a synth callback: no audio device, no subprocess, one engine per process.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np

AUDIO_OUTPUT_SYNCHRONOUS = 2
INITIALIZE_DONT_EXIT = 0x8000
POS_CHARACTER = 1
CHARS_UTF8 = 1
PARAM_RATE, PARAM_PITCH, PARAM_RANGE = 1, 3, 4
PHONEMES_IPA = 0x02

_SynthCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


class EspeakError(RuntimeError):
    pass


class Espeak:
    """A speaking engine. espeak-ng keeps global state, so create one per process."""

    def __init__(self, data_parent: Path | None = None) -> None:
        """`data_parent`: a folder holding `espeak-ng-data` (e.g. from `data_with_variants`); default: the
        package's own."""
        import espeakng_loader

        self._lib = ctypes.CDLL(espeakng_loader.get_library_path())
        data_parent = data_parent or Path(espeakng_loader.get_data_path()).parent
        self.sample_rate = self._lib.espeak_Initialize(
            AUDIO_OUTPUT_SYNCHRONOUS, 0, str(data_parent).encode(), INITIALIZE_DONT_EXIT
        )
        if self.sample_rate <= 0:
            raise EspeakError(f"espeak_Initialize failed ({self.sample_rate})")
        self._chunks: list[np.ndarray] = []
        self._callback = _SynthCallback(self._collect)  # keep a reference: the C side holds only a pointer
        self._lib.espeak_SetSynthCallback(self._callback)

    def _collect(self, wav, count, _events) -> int:
        if count > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, (count,)).copy())
        return 0

    def speak(
        self, text: str, voice: str, rate: int = 175, pitch: int = 50, pitch_range: int = 50, noise_seed: int = 0
    ) -> np.ndarray:
        """Return int16 samples at `self.sample_rate`.

        `noise_seed` seeds the breath/aspiration noise, which espeak-ng otherwise seeds from the clock at start-up.
        """
        self._lib.espeak_ng_SetRandSeed(ctypes.c_long(noise_seed))
        if self._lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise EspeakError(f"espeak-ng has no voice {voice!r}")
        for param, value in ((PARAM_RATE, rate), (PARAM_PITCH, pitch), (PARAM_RANGE, pitch_range)):
            self._lib.espeak_SetParameter(param, int(value), 0)
        self._chunks = []
        raw = text.encode()
        status = self._lib.espeak_Synth(raw, len(raw) + 1, 0, POS_CHARACTER, 0, CHARS_UTF8, None, None)
        self._lib.espeak_Synchronize()
        if status != 0 or not self._chunks:
            raise EspeakError(f"espeak-ng could not speak {text!r} with {voice!r} (status {status})")
        return np.concatenate(self._chunks)

    def phonemes(self, text: str, voice: str = "en-us") -> str:
        """`text` in IPA as `voice` would pronounce it (stress marks included; words separated by spaces)."""
        if self._lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise EspeakError(f"espeak-ng has no voice {voice!r}")
        self._lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
        self._lib.espeak_TextToPhonemes.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_int, ctypes.c_int]
        buffer = ctypes.create_string_buffer(text.encode())
        cursor = ctypes.c_void_p(ctypes.addressof(buffer))
        out = []
        while cursor.value:  # one clause per call; the library advances the cursor, NULL at the end
            out.append(self._lib.espeak_TextToPhonemes(ctypes.byref(cursor), CHARS_UTF8, PHONEMES_IPA).decode())
        return " ".join(out).strip()


def _variant_folder() -> Path:
    import espeakng_loader

    return Path(espeakng_loader.get_data_path()) / "voices" / "!v"


def variants() -> list[str]:
    """Voice variants shipped with espeak-ng (``en-us+<variant>``), sorted for a stable split."""
    return sorted(p.name for p in _variant_folder().iterdir() if p.is_file())


def variant_text(name: str) -> str:
    return (_variant_folder() / name).read_text(encoding="utf-8", errors="replace")


def data_with_variants(dest: Path, extra: dict[str, str]) -> Path:
    """An espeak-ng data folder under `dest` that is the package's own plus `extra` variant files (name -> text),
    made of symlinks so nothing large is copied. Returns the folder to pass as `Espeak(data_parent=...)`."""
    import espeakng_loader

    source = Path(espeakng_loader.get_data_path())
    data = Path(dest) / "espeak-ng-data"
    (data / "voices" / "!v").mkdir(parents=True)
    for entry in source.iterdir():
        if entry.name != "voices":
            (data / entry.name).symlink_to(entry)
    for entry in (source / "voices").iterdir():
        if entry.name != "!v":
            (data / "voices" / entry.name).symlink_to(entry)
    for entry in _variant_folder().iterdir():
        (data / "voices" / "!v" / entry.name).symlink_to(entry)
    for name, text in extra.items():
        (data / "voices" / "!v" / name).write_text(text, encoding="utf-8")
    return Path(dest)
