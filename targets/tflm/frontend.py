"""The audio front end in portable C: 16-bit PCM in, the model's int8 input out, computed as training computed it.

Every firmware team otherwise re-implements the MFCC and hopes it matches `tf.signal`; a mismatch is the classic
reason a keyword spotter that scores well on the host hears nothing on the board. This writes `frontend.h` and
`frontend.c` (C99, no heap, no libraries beyond <math.h>) with the recipe's parameters and tables baked in:

    PCM / 32768 -> frames (window_samples, stride_samples) x periodic Hann -> zero-padded real FFT
    -> |X| -> mel filterbank (TF's HTK-style linear_to_mel_weight_matrix) -> log(mel + 1e-6)
    -> DCT-II scaled as tf.signal.mfccs_from_log_mel_spectrograms -> first `coefficients`
    -> quantized with the model's input scale and zero point.

`pipeline/data/features.py` is the reference; tests compile this with the host `cc`, run it on recorded clips and
compare features and the int8 model's top-1 on TFLM.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from targets.tflm.bundle import _banner, _c_float, c_identifier

LOG_OFFSET = 1e-6  # as pipeline/data/features.py


def fft_length(window_samples: int) -> int:
    return 1 << (window_samples - 1).bit_length()


def mel_matrix(features: dict[str, Any]) -> np.ndarray:
    """TF's `linear_to_mel_weight_matrix` [spectrogram bins, mel bins], in float32 as TF computes it."""
    bins = fft_length(features["window_samples"]) // 2 + 1
    mel_bins = features["mel_bins"]

    def to_mel(hz: np.ndarray) -> np.ndarray:
        return (1127.0 * np.log1p(hz / np.float32(700.0))).astype(np.float32)

    linear = np.linspace(0.0, features["sample_rate"] / 2.0, bins, dtype=np.float32)[1:]
    spectrogram_mel = to_mel(linear)[:, None]
    edges = np.linspace(to_mel(np.float32(features["lower_hz"])), to_mel(np.float32(features["upper_hz"])),
                        mel_bins + 2, dtype=np.float32)  # fmt: skip
    lower, center, upper = edges[:-2][None], edges[1:-1][None], edges[2:][None]
    weights = np.maximum(0.0, np.minimum((spectrogram_mel - lower) / (center - lower),
                                         (upper - spectrogram_mel) / (upper - center)))  # fmt: skip
    return np.vstack([np.zeros((1, mel_bins), np.float32), weights.astype(np.float32)])


def dct_matrix(coefficients: int, mel_bins: int) -> np.ndarray:
    """[coefficients, mel bins]: DCT-II times 1/sqrt(2 N), as tf.signal.mfccs_from_log_mel_spectrograms."""
    n = np.arange(mel_bins)
    k = np.arange(coefficients)[:, None]
    return (2.0 * np.cos(np.pi * k * (2 * n + 1) / (2 * mel_bins)) / math.sqrt(2.0 * mel_bins)).astype(np.float32)


def _floats(values: np.ndarray, per_line: int = 8) -> str:
    items = [_c_float(float(v)) for v in np.asarray(values, np.float32).ravel()]
    return ",\n  ".join(", ".join(items[i : i + per_line]) for i in range(0, len(items), per_line))


def _ints(values: Any, per_line: int = 16) -> str:
    items = [str(int(v)) for v in values]
    return ",\n  ".join(", ".join(items[i : i + per_line]) for i in range(0, len(items), per_line))


def write_frontend(out: Path, name: str, features: dict[str, Any], input_scale: float, input_zero_point: int) -> dict:
    """`frontend.h` and `frontend.c`; returns their static RAM, table bytes and operation count per clip."""
    ns = c_identifier(name)
    win, stride, frames = features["window_samples"], features["stride_samples"], features["frames"]
    n_fft, coeffs, mel_bins = fft_length(win), features["coefficients"], features["mel_bins"]
    bins = n_fft // 2 + 1
    window = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win) / win)).astype(np.float32)  # periodic Hann
    mel = mel_matrix(features)
    starts, lengths, weights = [], [], []
    for m in range(mel_bins):
        nz = np.flatnonzero(mel[:, m] > 0)
        first, last = (int(nz[0]), int(nz[-1])) if len(nz) else (0, -1)
        starts.append(first)
        lengths.append(last - first + 1)
        weights.extend(mel[first : last + 1, m])
    dct = dct_matrix(coeffs, mel_bins)
    twiddle = np.exp(-2j * np.pi * np.arange(n_fft // 2) / n_fft)
    dct_rows = ",\n  ".join("{" + _floats(row) + "}" for row in dct)
    prefix = f"{ns.upper()}_FRONTEND"
    header = f"""{_banner(name)}#ifndef {prefix}_H_
#define {prefix}_H_

#include <stdint.h>

#ifdef __cplusplus
extern "C" {{
#endif

// The features the model was trained on (pipeline/data/features.py), from {features["clip_samples"]} samples of
// 16-bit PCM at {features["sample_rate"]} Hz: {frames} frames x {coeffs} MFCC coefficients.
#define {prefix}_CLIP_SAMPLES {features["clip_samples"]}
#define {prefix}_FRAMES {frames}
#define {prefix}_COEFFICIENTS {coeffs}
#define {prefix}_FEATURES ({frames} * {coeffs})

// float features; returns 0.
int {ns}_frontend_float(const int16_t* pcm, float* features);
// The model's int8 input: round(feature / {input_scale!r}) + {input_zero_point}, clamped to [-128, 127]; returns 0.
int {ns}_frontend_int8(const int16_t* pcm, int8_t* features);

#ifdef __cplusplus
}}
#endif

#endif  // {prefix}_H_
"""
    source = f"""{_banner(name)}// No heap: the work buffers below are static ({(2 * n_fft + bins + mel_bins) * 4} bytes).
#include "frontend.h"

#include <math.h>

#define N_FFT {n_fft}
#define BINS {bins}
#define WINDOW {win}
#define STRIDE {stride}
#define MEL_BINS {mel_bins}

static const float kWindow[WINDOW] = {{
  {_floats(window)}
}};
static const float kTwiddleRe[N_FFT / 2] = {{
  {_floats(twiddle.real)}
}};
static const float kTwiddleIm[N_FFT / 2] = {{
  {_floats(twiddle.imag)}
}};
static const int16_t kMelStart[MEL_BINS] = {{
  {_ints(starts)}
}};
static const int16_t kMelLength[MEL_BINS] = {{
  {_ints(lengths)}
}};
static const float kMelWeights[{len(weights)}] = {{
  {_floats(weights)}
}};
static const float kDct[{coeffs}][MEL_BINS] = {{
  {dct_rows}
}};

static float re[N_FFT], im[N_FFT], magnitude[BINS], log_mel[MEL_BINS];

// In-place iterative radix-2 FFT of (re, im).
static void fft(void) {{
  for (int i = 1, j = 0; i < N_FFT; ++i) {{
    int bit = N_FFT >> 1;
    for (; j & bit; bit >>= 1) j ^= bit;
    j ^= bit;
    if (i < j) {{
      float t = re[i]; re[i] = re[j]; re[j] = t;
      t = im[i]; im[i] = im[j]; im[j] = t;
    }}
  }}
  for (int len = 2; len <= N_FFT; len <<= 1) {{
    const int step = N_FFT / len;
    for (int i = 0; i < N_FFT; i += len) {{
      for (int k = 0; k < len / 2; ++k) {{
        const float wr = kTwiddleRe[k * step], wi = kTwiddleIm[k * step];
        const int a = i + k, b = i + k + len / 2;
        const float xr = re[b] * wr - im[b] * wi, xi = re[b] * wi + im[b] * wr;
        re[b] = re[a] - xr; im[b] = im[a] - xi;
        re[a] += xr; im[a] += xi;
      }}
    }}
  }}
}}

int {ns}_frontend_float(const int16_t* pcm, float* features) {{
  for (int f = 0; f < {frames}; ++f) {{
    for (int i = 0; i < N_FFT; ++i) {{
      re[i] = i < WINDOW ? (float)pcm[f * STRIDE + i] / 32768.0f * kWindow[i] : 0.0f;
      im[i] = 0.0f;
    }}
    fft();
    for (int k = 0; k < BINS; ++k) magnitude[k] = sqrtf(re[k] * re[k] + im[k] * im[k]);
    const float* w = kMelWeights;
    for (int m = 0; m < MEL_BINS; ++m) {{
      float sum = 0.0f;
      for (int k = 0; k < kMelLength[m]; ++k) sum += magnitude[kMelStart[m] + k] * w[k];
      w += kMelLength[m];
      log_mel[m] = logf(sum + {_c_float(LOG_OFFSET)});
    }}
    for (int c = 0; c < {coeffs}; ++c) {{
      float sum = 0.0f;
      for (int m = 0; m < MEL_BINS; ++m) sum += log_mel[m] * kDct[c][m];
      features[f * {coeffs} + c] = sum;
    }}
  }}
  return 0;
}}

int {ns}_frontend_int8(const int16_t* pcm, int8_t* features) {{
  static float values[{frames * coeffs}];
  {ns}_frontend_float(pcm, values);
  for (int i = 0; i < {frames * coeffs}; ++i) {{
    const float q = roundf(values[i] / {_c_float(input_scale)}) + {input_zero_point};
    features[i] = (int8_t)(q < -128.0f ? -128.0f : q > 127.0f ? 127.0f : q);
  }}
  return 0;
}}
"""
    (out / "frontend.h").write_text(header, encoding="utf-8")
    (out / "frontend.c").write_text(source, encoding="utf-8")
    fft_ops = 5 * (n_fft // 2) * int(math.log2(n_fft))  # butterflies: 4 mul + 6 add, counted as ~10 flops / 2
    per_frame = 2 * win + fft_ops + 3 * bins + 2 * len(weights) + mel_bins + 2 * coeffs * mel_bins
    return {
        "static_ram_bytes": (2 * n_fft + bins + mel_bins + frames * coeffs) * 4,
        "table_bytes": 4 * (win + n_fft + len(weights) + coeffs * mel_bins) + 4 * mel_bins,
        "float_ops_per_clip": frames * per_frame,
        "fft_length": n_fft,
    }
