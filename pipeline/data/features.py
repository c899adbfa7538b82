"""MFCC features: 49 frames x 10 coefficients for 1 s at 16 kHz (30 ms window, 20 ms stride).

The layout of ARM's KWS models and MLPerf Tiny. Computed once per data set and cached, so training,
calibration and every target's evaluation see the very same numbers.
"""

from __future__ import annotations

import numpy as np

from pipeline.recipe import FeaturesConfig


def mfcc(audio: np.ndarray, cfg: FeaturesConfig, batch: int = 2048) -> np.ndarray:
    """float32 [n, clip_samples] -> float32 [n, frames, coefficients]."""
    import tensorflow as tf

    fft_length = 1 << (cfg.window_samples - 1).bit_length()
    mel_matrix = tf.signal.linear_to_mel_weight_matrix(
        num_mel_bins=cfg.mel_bins,
        num_spectrogram_bins=fft_length // 2 + 1,
        sample_rate=cfg.sample_rate,
        lower_edge_hertz=cfg.lower_hz,
        upper_edge_hertz=cfg.upper_hz,
    )
    out = np.zeros((len(audio), cfg.frames, cfg.coefficients), np.float32)
    for start in range(0, len(audio), batch):
        chunk = tf.constant(audio[start : start + batch, : cfg.clip_samples])
        stft = tf.signal.stft(chunk, cfg.window_samples, cfg.stride_samples, fft_length=fft_length)
        mel = tf.tensordot(tf.abs(stft), mel_matrix, 1)
        log_mel = tf.math.log(mel + 1e-6)
        out[start : start + batch] = tf.signal.mfccs_from_log_mel_spectrograms(log_mel)[..., : cfg.coefficients]
    return out
