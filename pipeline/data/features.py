"""Features, computed once per data set and cached, so training, calibration and every target's evaluation see the
very same numbers.

`mfcc`: 49 frames x 10 coefficients for 1 s at 16 kHz (30 ms window, 20 ms stride), the layout of ARM's KWS models
and MLPerf Tiny. `speech_mel`: the log-mel frames of the pinned speech embedding's own front end, run as shipped
(ONNX Runtime on `melspectrogram.onnx`), so the embedding sees what it was trained on.
"""

from __future__ import annotations

import numpy as np

from pipeline.recipe import FeaturesConfig

PCM_SCALE = 32767.0  # the melspectrogram model takes 16-bit PCM values; the pipeline's audio is float in [-1, 1]


def compute(audio: np.ndarray, cfg: FeaturesConfig) -> np.ndarray:
    """float32 [n, clip_samples] -> float32 [n, *cfg.shape], by the recipe's feature kind."""
    return speech_mel(audio, cfg) if cfg.kind == "speech_mel" else mfcc(audio, cfg)


def mfcc(audio: np.ndarray, cfg: FeaturesConfig, batch: int = 2048) -> np.ndarray:
    """float32 [n, clip_samples] -> float32 [n, frames, coefficients]."""
    out = np.zeros((len(audio), cfg.frames, cfg.coefficients), np.float32)
    for start in range(0, len(audio), batch):
        out[start : start + batch] = _mfcc(audio[start : start + batch, : cfg.clip_samples], cfg)
    return out


def mfcc_frames(audio: np.ndarray, cfg: FeaturesConfig, block_frames: int = 50_000) -> np.ndarray:
    """float32 [samples] of any length -> float32 [frames, coefficients], frame f starting at sample
    f * stride_samples: the frames of a clip cut at a multiple of the stride are rows of this, computed once."""
    win, stride = cfg.window_samples, cfg.stride_samples
    total = 0 if len(audio) < win else 1 + (len(audio) - win) // stride
    out = np.zeros((total, cfg.coefficients), np.float32)
    for first in range(0, total, block_frames):
        n = min(block_frames, total - first)
        chunk = audio[first * stride : (first + n - 1) * stride + win]
        out[first : first + n] = _mfcc(chunk[None].astype(np.float32), cfg)[0]
    return out


def _mfcc(audio: np.ndarray, cfg: FeaturesConfig) -> np.ndarray:
    import tensorflow as tf

    fft_length = 1 << (cfg.window_samples - 1).bit_length()
    mel_matrix = tf.signal.linear_to_mel_weight_matrix(
        num_mel_bins=cfg.mel_bins,
        num_spectrogram_bins=fft_length // 2 + 1,
        sample_rate=cfg.sample_rate,
        lower_edge_hertz=cfg.lower_hz,
        upper_edge_hertz=cfg.upper_hz,
    )
    stft = tf.signal.stft(tf.constant(audio), cfg.window_samples, cfg.stride_samples, fft_length=fft_length)
    mel = tf.tensordot(tf.abs(stft), mel_matrix, 1)
    log_mel = tf.math.log(mel + 1e-6)
    return tf.signal.mfccs_from_log_mel_spectrograms(log_mel)[..., : cfg.coefficients].numpy()


def speech_mel(audio: np.ndarray, cfg: FeaturesConfig) -> np.ndarray:
    """float32 [n, clip_samples] -> float32 [n, frames, 32]: the clip centred in silence, as 16-bit PCM values,
    through the pinned `melspectrogram.onnx`. One clip per call: the model's 80 dB floor is relative to the loudest
    value of everything it is given at once."""
    import onnxruntime as ort

    from pipeline.models.speech_embedding_assets import model_path

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(model_path("melspectrogram.onnx")), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    clip = audio[:, : cfg.clip_samples]
    left = (cfg.padded_samples - clip.shape[1]) // 2
    padded = np.zeros((len(audio), cfg.padded_samples), np.float32)
    padded[:, left : left + clip.shape[1]] = clip * PCM_SCALE
    out = np.empty((len(audio), *cfg.shape), np.float32)
    for i, pcm in enumerate(padded):
        out[i] = session.run(None, {name: pcm[None]})[0].reshape(cfg.shape)
    return out
