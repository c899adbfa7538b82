"""The bundle's audio front end in C computes the features the model was trained on (issue #19, item 4)."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest

from pipeline.analysis.evaluation import quantize_input
from pipeline.data.features import mfcc
from pipeline.data.synthetic import read_wav
from pipeline.recipe import load_recipe
from pipeline.runtimes.tflm import tflm_outputs
from targets.tflm.frontend import check_harness, to_pcm16
from tests.conftest import TINY

# Absolute, on MFCCs that span about -60..20. Float: float32 summation order, nothing more. Fixed point: Q30
# tables, a block-floating-point FFT and a table log2 (the bundle's ctest uses the same bounds).
FEATURE_TOLERANCE = {"float": 1e-3, "fixed": 5e-3}


@pytest.fixture(scope="module", params=["float", "fixed"])
def front_end(request, tiny_run, tmp_path_factory):
    """The tiny run's bundle front end compiled with the host cc in one arithmetic, run on the tiny data set's
    recordings."""
    runs, _ = tiny_run
    if shutil.which("cc") is None:
        pytest.skip("no host C compiler (cc)")
    arithmetic = request.param
    folder = tmp_path_factory.mktemp(f"frontend-{arithmetic}")
    bundle = runs / "tiny" / "latest" / "export" / "tflm"
    (folder / "main.c").write_text(check_harness("tiny"))
    build = ["cc", "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-I", str(bundle / "src"), "-o",
             str(folder / "fe"), f"-DTINY_FRONTEND_FIXED_POINT={int(arithmetic == 'fixed')}", str(folder / "main.c"),
             str(bundle / "src" / "frontend.c"), "-lm"]  # fmt: skip
    done = subprocess.run(build, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    recipe = load_recipe(TINY)
    cfg = recipe.data.features
    wavs = sorted((runs / ".cache").glob("speech-synthetic-*/speech_commands/*/*.wav"))
    wavs = [w for w in wavs if w.parent.name != "_background_noise_"][:400]
    audio = np.zeros((len(wavs), cfg.clip_samples), np.float32)
    for i, wav in enumerate(wavs):
        clip, _ = read_wav(wav)
        audio[i, : min(len(clip), cfg.clip_samples)] = clip[: cfg.clip_samples]
    pcm = to_pcm16(audio)
    pcm.tofile(folder / "clips.raw")
    run = [str(folder / "fe"), str(folder / "clips.raw"), str(folder / "f32"), str(folder / "i8")]
    assert subprocess.run(run, timeout=300).returncode == 0
    shape = (len(wavs), cfg.frames, cfg.coefficients)
    c_float = np.fromfile(folder / "f32", np.float32).reshape(shape)
    c_int8 = np.fromfile(folder / "i8", np.int8).reshape(shape)
    return bundle, pcm.astype(np.float32) / 32768.0, c_float, c_int8, cfg, arithmetic


def test_c_features_match_the_training_features(front_end):
    bundle, audio, c_float, c_int8, cfg, arithmetic = front_end
    python = mfcc(audio, cfg)
    assert len(python) >= 100 and np.abs(c_float - python).max() < FEATURE_TOLERANCE[arithmetic]
    info = json.loads((bundle.parent / "model_info.json").read_text())["input"]  # the export's quantization
    q = quantize_input(python, info["scale"], info["zero_point"], np.int8)
    off = np.abs(c_int8.astype(int) - q.astype(int))
    assert off.max() <= 1 and np.mean(off == 0) >= 0.999  # at most a rounding tie away, and almost never
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert {"src/frontend.c", "src/frontend.h"} <= set(manifest["files"]) and manifest["frontend"][
        "static_ram_bytes"
    ] > 0


def test_the_model_hears_the_same_through_the_c_front_end(front_end):
    """Top-1 of the int8 model on TFLM, fed C features vs Python features: at least 99.5 % agreement."""
    bundle, audio, _, c_int8, cfg, _ = front_end
    info = json.loads((bundle.parent / "model_info.json").read_text())["input"]
    python = quantize_input(mfcc(audio, cfg), info["scale"], info["zero_point"], np.int8)
    arena = json.loads((bundle / "manifest.json").read_text())["arena_bytes"]
    model = bundle / "model.tflite"
    from_c = np.argmax(tflm_outputs(model, arena, c_int8[..., None]).reshape(len(audio), -1), axis=1)
    from_python = np.argmax(tflm_outputs(model, arena, python[..., None]).reshape(len(audio), -1), axis=1)
    assert np.mean(from_c == from_python) >= 0.995
