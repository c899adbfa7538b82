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


def to_pcm16(audio: np.ndarray) -> np.ndarray:
    """float audio in [-1, 1) -> little-endian int16 PCM, as a microphone driver hands it to the front end."""
    return np.round(np.asarray(audio) * 32768).clip(-32768, 32767).astype("<i2")


def check_harness(name: str) -> str:
    """C for checks (tests, scripts/bench_frontend.py): `harness CLIPS.raw FLOAT.out INT8.out` runs the bundle's
    front end on every int16 clip of CLIPS.raw and writes its float features and int8 model input."""
    ns = c_identifier(name)
    prefix = f"{ns.upper()}_FRONTEND"
    return f"""#include <stdio.h>
#include "frontend.h"
int main(int argc, char** argv) {{
  if (argc != 4) return 2;
  FILE* in = fopen(argv[1], "rb"); FILE* f32 = fopen(argv[2], "wb"); FILE* i8 = fopen(argv[3], "wb");
  static int16_t pcm[{prefix}_CLIP_SAMPLES];
  static float features[{prefix}_FEATURES];
  static int8_t quantized[{prefix}_FEATURES];
  while (fread(pcm, sizeof pcm[0], {prefix}_CLIP_SAMPLES, in) == {prefix}_CLIP_SAMPLES) {{
    {ns}_frontend_float(pcm, features);
    fwrite(features, sizeof features[0], {prefix}_FEATURES, f32);
    {ns}_frontend_int8(pcm, quantized);
    fwrite(quantized, 1, {prefix}_FEATURES, i8);
  }}
  return fclose(in) || fclose(f32) || fclose(i8);
}}
"""


def _floats(values: np.ndarray, per_line: int = 8) -> str:
    items = [_c_float(float(v)) for v in np.asarray(values, np.float32).ravel()]
    return ",\n  ".join(", ".join(items[i : i + per_line]) for i in range(0, len(items), per_line))


def _ints(values: Any, per_line: int = 16) -> str:
    items = [str(int(v)) for v in values]
    return ",\n  ".join(", ".join(items[i : i + per_line]) for i in range(0, len(items), per_line))


def bit_reverse(element: str) -> str:
    """The C loop that puts (re, im) of `element`s into bit-reversed order, ahead of the butterflies."""
    return f"""  for (int i = 1, j = 0; i < N_FFT; ++i) {{
    int bit = N_FFT >> 1;
    for (; j & bit; bit >>= 1) j ^= bit;
    j ^= bit;
    if (i < j) {{
      {element} t = re[i]; re[i] = re[j]; re[j] = t;
      t = im[i]; im[i] = im[j]; im[j] = t;
    }}
  }}
"""


def _quantizer(scale: float) -> tuple[int, int]:
    """(M, m): round(x / scale) = x * M / 2^m, with M below 2^31, for the fixed-point quantizer."""
    m = 30
    while round(2**m / scale) >= 2**31:
        m -= 1
    return round(2**m / scale), m


def write_frontend(
    out: Path,
    name: str,
    features: dict[str, Any],
    input_scale: float,
    input_zero_point: int,
    fingerprint: str,
    fixed_point: bool = False,
) -> dict:
    """`frontend.h` and `frontend.c`; returns static RAM, table bytes and operations per clip of both arithmetics
    and which one the header selects (`fixed_point`; a build overrides it with -D<NAME>_FRONTEND_FIXED_POINT=0/1).
    `fingerprint` (features + input quantization) is what the model's metadata must name.

    Fixed point: Q30 window, block-floating-point radix-2 FFT on int32 (each frame normalised so its largest sample
    uses 29 bits, each stage halved, so nothing overflows), integer square root, Q15 mel weights with 64-bit sums,
    log2 from the leading bit and a 129-entry Q16 table with interpolation, Q30 DCT, and an integer quantizer; the
    +1e-6 offset before the log is added in each frame's own scale. No float operation on the int8 path."""
    ns = c_identifier(name)
    win, stride, frames = features["window_samples"], features["stride_samples"], features["frames"]
    n_fft, coeffs, mel_bins = fft_length(win), features["coefficients"], features["mel_bins"]
    bins, stages = n_fft // 2 + 1, n_fft.bit_length() - 1
    window = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win) / win)).astype(np.float32)  # periodic Hann
    mel = mel_matrix(features)
    starts, lengths, weights = [], [], []
    for m in range(mel_bins):
        nz = np.flatnonzero(mel[:, m] > 0)
        first, last = (int(nz[0]), int(nz[-1])) if len(nz) else (0, -1)
        starts.append(first)
        lengths.append(last - first + 1)
        weights.extend(mel[first : last + 1, m])
    weights = np.asarray(weights, np.float32)
    dct = dct_matrix(coeffs, mel_bins)
    twiddle = np.exp(-2j * np.pi * np.arange(n_fft // 2) / n_fft)
    dct_rows = ",\n  ".join("{" + _floats(row) + "}" for row in dct)
    dct_q30_rows = ",\n  ".join("{" + _ints(np.round(row.astype(np.float64) * 2**30)) + "}" for row in dct)
    log2_table = np.round(np.log2(1 + np.arange(129) / 128) * 65536).astype(np.int64)
    multiplier, shift = _quantizer(input_scale)
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
// Frame f covers samples [f x STRIDE, f x STRIDE + WINDOW): a stream needs only its newest frame each stride.
#define {prefix}_WINDOW_SAMPLES {win}
#define {prefix}_STRIDE_SAMPLES {stride}
// Names these parameters and the model's input quantization; the model's metadata carries the same value.
#define {prefix}_FINGERPRINT "{fingerprint}"
// 1: integer arithmetic only on the int8 path (for cores without an FPU); 0: float, as training computed.
#ifndef {prefix}_FIXED_POINT
#define {prefix}_FIXED_POINT {int(fixed_point)}
#endif

// float features (in fixed point: the integer features, converted at the end, for checks); returns 0.
int {ns}_frontend_float(const int16_t* pcm, float* features);
// The model's int8 input: round(feature / {input_scale!r}) + {input_zero_point}, clamped to [-128, 127]; returns 0.
int {ns}_frontend_int8(const int16_t* pcm, int8_t* features);
// One frame of that input from the {win} samples at `pcm` ({coeffs} values); the streaming detector's step.
int {ns}_frontend_frame_int8(const int16_t* pcm, int8_t* features);

#ifdef __cplusplus
}}
#endif

#endif  // {prefix}_H_
"""
    static_ram = (2 * n_fft + bins + mel_bins) * 4  # 32-bit work buffers in both arithmetics
    source = f"""{_banner(name)}// No heap: the work buffers below are static ({static_ram} bytes in either arithmetic).
#include "frontend.h"

#define N_FFT {n_fft}
#define BINS {bins}
#define WINDOW {win}
#define STRIDE {stride}
#define MEL_BINS {mel_bins}
#define COEFFS {coeffs}

static const int16_t kMelStart[MEL_BINS] = {{
  {_ints(starts)}
}};
static const int16_t kMelLength[MEL_BINS] = {{
  {_ints(lengths)}
}};

#if !{prefix}_FIXED_POINT
#include <math.h>

static const float kWindow[WINDOW] = {{
  {_floats(window)}
}};
static const float kTwiddleRe[N_FFT / 2] = {{
  {_floats(twiddle.real)}
}};
static const float kTwiddleIm[N_FFT / 2] = {{
  {_floats(twiddle.imag)}
}};
static const float kMelWeights[{len(weights)}] = {{
  {_floats(weights)}
}};
static const float kDct[COEFFS][MEL_BINS] = {{
  {dct_rows}
}};

static float re[N_FFT], im[N_FFT], magnitude[BINS], log_mel[MEL_BINS];

// In-place iterative radix-2 FFT of (re, im).
static void fft(void) {{
{bit_reverse("float")}  for (int len = 2; len <= N_FFT; len <<= 1) {{
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

// MFCCs of the frame starting at `pcm`.
static void frame_features(const int16_t* pcm, float* out) {{
  for (int i = 0; i < N_FFT; ++i) {{
    re[i] = i < WINDOW ? (float)pcm[i] / 32768.0f * kWindow[i] : 0.0f;
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
  for (int c = 0; c < COEFFS; ++c) {{
    float sum = 0.0f;
    for (int m = 0; m < MEL_BINS; ++m) sum += log_mel[m] * kDct[c][m];
    out[c] = sum;
  }}
}}

int {ns}_frontend_float(const int16_t* pcm, float* features) {{
  for (int f = 0; f < {frames}; ++f) frame_features(pcm + f * STRIDE, features + f * COEFFS);
  return 0;
}}

int {ns}_frontend_frame_int8(const int16_t* pcm, int8_t* features) {{
  float values[COEFFS];
  frame_features(pcm, values);
  for (int c = 0; c < COEFFS; ++c) {{
    const float q = roundf(values[c] / {_c_float(input_scale)}) + {input_zero_point};
    features[c] = (int8_t)(q < -128.0f ? -128.0f : q > 127.0f ? 127.0f : q);
  }}
  return 0;
}}

int {ns}_frontend_int8(const int16_t* pcm, int8_t* features) {{
  for (int f = 0; f < {frames}; ++f) {ns}_frontend_frame_int8(pcm + f * STRIDE, features + f * COEFFS);
  return 0;
}}

#else  // fixed point

// Right shifts of negative values must be arithmetic (every embedded compiler's choice; checked here).
typedef char arithmetic_right_shift_required[(-8 >> 1) == -4 ? 1 : -1];

static const int32_t kWindow[WINDOW] = {{  // Q30: a Q15 window's rounding would leak ~-96 dB into quiet bands
  {_ints(np.round(window.astype(np.float64) * 2**30))}
}};
static const int32_t kTwiddleRe[N_FFT / 2] = {{  // Q30
  {_ints(np.round(twiddle.real * 2**30))}
}};
static const int32_t kTwiddleIm[N_FFT / 2] = {{
  {_ints(np.round(twiddle.imag * 2**30))}
}};
static const uint16_t kMelWeights[{len(weights)}] = {{  // Q15
  {_ints(np.round(weights.astype(np.float64) * 32768).clip(0, 65535))}
}};
static const int32_t kDct[COEFFS][MEL_BINS] = {{  // Q30
  {dct_q30_rows}
}};
static const int32_t kLog2[129] = {{  // log2(1 + i / 128), Q16
  {_ints(log2_table)}
}};
#define LN2_Q30 {round(math.log(2) * 2**30)}
#define OFFSET_Q60 {round(1e-6 * 2**60)}LL  // the 1e-6 added before the log, in Q60
#define QUANT_MULTIPLIER {multiplier}LL  // round(x / scale) = x * QUANT_MULTIPLIER / 2^QUANT_SHIFT
#define QUANT_SHIFT {shift}

static int32_t re[N_FFT], im[N_FFT];
static uint32_t magnitude[BINS];
static int32_t log_mel[MEL_BINS];  // Q16

static int64_t floor_shift(int64_t x, int n) {{ return x >= 0 ? x >> n : -((-x + ((int64_t)1 << n) - 1) >> n); }}

static int leading_bit(uint64_t v) {{  // index of the highest set bit; v > 0
#if defined(__GNUC__) || defined(__clang__)
  return 63 - __builtin_clzll(v);
#else
  int n = 0;
  while (v >>= 1) ++n;
  return n;
#endif
}}

static uint32_t isqrt(uint64_t v) {{  // floor(sqrt(v))
  uint64_t root = 0, bit = (uint64_t)1 << 62;
  while (bit > v) bit >>= 2;
  while (bit) {{
    if (v >= root + bit) {{ v -= root + bit; root = (root >> 1) + bit; }} else root >>= 1;
    bit >>= 2;
  }}
  return (uint32_t)root;
}}

static int32_t log2_q16(uint64_t v) {{  // log2(v) in Q16; v > 0
  const int msb = leading_bit(v);
  const uint32_t frac = (uint32_t)(msb >= 16 ? v >> (msb - 16) : v << (16 - msb)) & 0xFFFF;
  const int i = (int)(frac >> 9);
  const int32_t r = (int32_t)(frac & 0x1FF);
  return (int32_t)msb * 65536 + kLog2[i] + (int32_t)(((kLog2[i + 1] - kLog2[i]) * r + 256) >> 9);
}}

// Block-floating-point FFT: every stage halves, so |values| stay below 2^29 when the input is.
static void fft(void) {{
{bit_reverse("int32_t")}  for (int len = 2; len <= N_FFT; len <<= 1) {{
    const int step = N_FFT / len;
    for (int i = 0; i < N_FFT; i += len) {{
      for (int k = 0; k < len / 2; ++k) {{
        const int64_t wr = kTwiddleRe[k * step], wi = kTwiddleIm[k * step];
        const int a = i + k, b = i + k + len / 2;
        const int32_t xr = (int32_t)((re[b] * wr - im[b] * wi + (1 << 29)) >> 30);
        const int32_t xi = (int32_t)((re[b] * wi + im[b] * wr + (1 << 29)) >> 30);
        const int32_t ar = re[a], ai = im[a];
        re[a] = (ar + xr) >> 1; im[a] = (ai + xi) >> 1;
        re[b] = (ar - xr) >> 1; im[b] = (ai - xi) >> 1;
      }}
    }}
  }}
}}

// MFCCs of the frame starting at `pcm`, Q16.
static void frame_features(const int16_t* pcm, int32_t* out) {{
  int64_t peak = 0;  // sample x window is Q45 (PCM Q15 x window Q30)
  for (int i = 0; i < WINDOW; ++i) {{
    const int64_t x = (int64_t)pcm[i] * kWindow[i];
    if (x > peak) peak = x;
    if (-x > peak) peak = -x;
  }}
  // Normalise: the peak uses 29 bits, one below the headroom a butterfly needs.
  const int shift = peak ? 28 - leading_bit((uint64_t)peak) : 0;
  for (int i = 0; i < N_FFT; ++i) {{
    const int64_t x = i < WINDOW ? (int64_t)pcm[i] * kWindow[i] : 0;
    re[i] = (int32_t)(shift >= 0 ? x * ((int64_t)1 << shift) : floor_shift(x + ((int64_t)1 << (-shift - 1)), -shift));
    im[i] = 0;
  }}
  fft();
  for (int k = 0; k < BINS; ++k) magnitude[k] = isqrt((uint64_t)((int64_t)re[k] * re[k]) + (uint64_t)((int64_t)im[k] * im[k]));
  // |X| = magnitude * 2^-(45 - {stages} + shift), and mel sums carry Q15 weights: mel = sum * 2^-scale. Quiet
  // frames (scale above 60) drop the sums' lowest bits, so the 1e-6 offset fits in the same scale.
  int scale = 45 - {stages} + shift + 15;
  const int drop = scale > 60 ? scale - 60 : 0;
  scale -= drop;
  const uint64_t offset = (uint64_t)((OFFSET_Q60 + ((int64_t)1 << (59 - scale))) >> (60 - scale));
  const uint16_t* w = kMelWeights;
  for (int m = 0; m < MEL_BINS; ++m) {{
    uint64_t sum = 0;
    for (int k = 0; k < kMelLength[m]; ++k) sum += (uint64_t)magnitude[kMelStart[m] + k] * w[k];
    w += kMelLength[m];
    const int64_t log2_mel = (int64_t)log2_q16((sum >> drop) + offset) - (int64_t)scale * 65536;  // Q16
    log_mel[m] = (int32_t)floor_shift(log2_mel * LN2_Q30 + (1 << 29), 30);
  }}
  for (int c = 0; c < COEFFS; ++c) {{
    int64_t sum = 0;
    for (int m = 0; m < MEL_BINS; ++m) sum += (int64_t)log_mel[m] * kDct[c][m];
    out[c] = (int32_t)floor_shift(sum + (1 << 29), 30);
  }}
}}

int {ns}_frontend_float(const int16_t* pcm, float* features) {{
  int32_t values[COEFFS];
  for (int f = 0; f < {frames}; ++f) {{
    frame_features(pcm + f * STRIDE, values);
    for (int c = 0; c < COEFFS; ++c) features[f * COEFFS + c] = (float)values[c] / 65536.0f;
  }}
  return 0;
}}

int {ns}_frontend_frame_int8(const int16_t* pcm, int8_t* features) {{
  int32_t values[COEFFS];
  frame_features(pcm, values);
  for (int c = 0; c < COEFFS; ++c) {{
    const int64_t q = floor_shift((int64_t)values[c] * QUANT_MULTIPLIER + ((int64_t)1 << (QUANT_SHIFT + 15)),
                                  QUANT_SHIFT + 16) + {input_zero_point};
    features[c] = (int8_t)(q < -128 ? -128 : q > 127 ? 127 : q);
  }}
  return 0;
}}

int {ns}_frontend_int8(const int16_t* pcm, int8_t* features) {{
  for (int f = 0; f < {frames}; ++f) {ns}_frontend_frame_int8(pcm + f * STRIDE, features + f * COEFFS);
  return 0;
}}

#endif
"""
    (out / "frontend.h").write_text(header, encoding="utf-8")
    (out / "frontend.c").write_text(source, encoding="utf-8")
    fft_ops = 5 * (n_fft // 2) * stages  # butterflies: 4 mul + 6 add, counted as ~10 operations / 2
    per_frame = 2 * win + fft_ops + 3 * bins + 2 * len(weights) + mel_bins + 2 * coeffs * mel_bins
    tables = 4 * mel_bins  # kMelStart, kMelLength (int16 each)
    return {
        "arithmetic": "fixed" if fixed_point else "float",
        "static_ram_bytes": static_ram,
        "table_bytes": tables
        + (
            4 * win + 4 * n_fft + 2 * len(weights) + 4 * coeffs * mel_bins + 4 * 129
            if fixed_point
            else 4 * (win + n_fft + len(weights) + coeffs * mel_bins)
        ),  # fmt: skip
        "ops_per_clip": frames * per_frame,
        "fft_length": n_fft,
    }
