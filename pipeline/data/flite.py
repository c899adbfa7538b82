"""CMU Flite voices (the Debian `flite` program): statistical-parametric and diphone voices unlike espeak-ng's
formant synthesis, so a training set spoken by both is less one synthesiser's sound.

One process per word (a few ms for the voices compiled into the program); pitch through `int_f0_target_mean`,
tempo through `duration_stretch`. Output is deterministic for given settings.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import wave
from functools import cache
from pathlib import Path

import numpy as np

PROGRAM = "flite"
INSTALL_HINT = "install the Debian package `flite` (scripts/setup.sh does when it runs as root)"
# Each voice's own f0 in Hz, rounded down a little (librosa.pyin median on its default "stop": kal16 104, awb 123,
# rms 83, slt 178): draws are spread around it, so no voice is pushed to a pitch it cannot make. `rms` ignores the f0
# target; its pitch moves with the speed perturbation only.
NATURAL_F0_HZ = {"kal": 100.0, "kal16": 100.0, "awb": 115.0, "rms": 83.0, "slt": 170.0}
DEFAULT_F0_HZ = 120.0


class FliteError(RuntimeError):
    pass


def program() -> str:
    path = shutil.which(PROGRAM)
    if path is None:
        raise FliteError(f"the `{PROGRAM}` program is not on PATH: {INSTALL_HINT}")
    return path


@cache
def version() -> str:
    """The program's version line: it keys the synthetic data set (another flite speaks differently)."""
    out = subprocess.run([program(), "--version"], capture_output=True, text=True).stdout  # exits 1 after printing
    if "version" not in out:
        raise FliteError(f"`{program()} --version` printed no version: is it CMU Flite?")
    return next((line.strip() for line in out.splitlines() if "version" in line), out.strip())


@cache
def voices() -> tuple[str, ...]:
    done = subprocess.run([program(), "-lv"], capture_output=True, text=True)
    if done.returncode != 0 or ":" not in done.stdout:
        raise FliteError(f"`{program()} -lv` listed no voices: {done.stderr.strip() or done.returncode}")
    listed = done.stdout.split(":", 1)[-1].split()
    return tuple(v for v in listed if not v.endswith("_time"))  # awb_time speaks clock times only


def speak(text: str, voice: str, f0_hz: float, duration_stretch: float, scratch: Path) -> tuple[np.ndarray, int]:
    """`text` spoken by `voice`: float32 samples in [-1, 1) and their sample rate."""
    if not re.fullmatch(r"[A-Za-z' -]+", text):
        raise FliteError(f"flite speaks plain words only, got {text!r}")
    out = Path(scratch) / f"flite-{voice}.wav"
    command = [program(), "-voice", voice, "--setf", f"int_f0_target_mean={f0_hz:.1f}",
               "--setf", f"duration_stretch={duration_stretch:.3f}", "-t", text, "-o", str(out)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0 or not out.is_file():
        raise FliteError(f"flite could not speak {text!r} with {voice!r}: {done.stderr.strip() or done.returncode}")
    with wave.open(str(out), "rb") as w:
        samples = np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float32) / 32768.0
        rate = w.getframerate()
    out.unlink()
    return samples, rate
