"""Training-time augmentation on feature batches: time shift and SpecAugment (Park et al. 2019).

SpecAugment's frequency masks act on mel channels; these features are the first few cepstral coefficients of the
log-mel spectrum, so a mel mask goes back to the (smoothed) log-mel spectrum through the DCT's pseudo-inverse,
flattens a band of channels to its mean over the clip, and comes forward again: the band's movement over time is
gone, as when a microphone or a voice carries little there. Coefficient masks blank cepstral coefficients instead.
The mel warp (vocal tract length perturbation, Jaitly & Hinton 2013) takes the same way back to stretch each clip's
spectrum along frequency by its own factor: a longer or shorter vocal tract than the synthesiser's.

Applied to the training split only, from stateless seeds: a run is as reproducible as one without it. Batch
positions draw the same seeds every epoch, but the batches are reshuffled, so a clip meets new shifts and masks. Masks are filled with the training set's mean per coefficient (these features are not normalised, so
zero would be a loud, unnatural value).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import tensorflow as tf

from pipeline.recipe import FeaturesConfig
from pipeline.stages.train import AugmentConfig


def training_dataset(
    x: np.ndarray,
    y: Any,
    batch_size: int,
    cfg: AugmentConfig,
    seed: int,
    relabel: Any = None,
    features: FeaturesConfig | None = None,
) -> tf.data.Dataset:
    """Shuffled, augmented batches of (x[..., None], y) for `model.fit`; `y` may be a tuple of arrays.
    `relabel(x, y)`, when given, replaces each batch's y from its augmented x (a teacher scoring what it sees).
    `features`: the mel filterbank the features summarise (needed for `cfg.mel_masks` and `cfg.mel_warp`)."""
    mel = None
    if cfg.mel_masks or cfg.warps:
        if features is None:
            raise ValueError("mel_masks and mel_warp need the features' mel filterbank (mel_bins, lower_hz, upper_hz)")
        mel = MelSpace(features, x.shape[-1])
    fill = tf.constant(x.reshape(-1, x.shape[-1]).mean(axis=0), tf.float32)
    data = tf.data.Dataset.from_tensor_slices((x[..., None], y))
    data = data.shuffle(len(x), seed=seed, reshuffle_each_iteration=True).batch(batch_size)
    seeds = tf.data.Dataset.random(seed=seed).batch(2)
    batches = tf.data.Dataset.zip((data, seeds)).map(
        lambda batch, s: (augment(batch[0], cfg, fill, tf.cast(s, tf.int32), mel), batch[1]),
        num_parallel_calls=1,
        deterministic=True,
    )
    if relabel is not None:
        batches = batches.map(lambda bx, by: (bx, relabel(bx, by)), num_parallel_calls=1, deterministic=True)
    return batches.prefetch(2)


def augmented_copies(
    x: np.ndarray, cfg: AugmentConfig, seed: int, features: FeaturesConfig | None = None, batch_size: int = 1000
) -> Iterator[np.ndarray]:
    """`cfg.copies` augmented versions of `x` [n, frames, coefficients], one at a time, each batch of `batch_size`
    clips from its own stateless seeds (copy, batch start): for a frozen embedding, which embeds each copy once. The
    same `x`, config and seed give the same copies (finetune's are train's, the ones its teacher learnt from)."""
    for copy in range(cfg.copies):
        yield augmented_copy(x, cfg, seed, copy, features, batch_size)


def augmented_copy(
    x: np.ndarray, cfg: AugmentConfig, seed: int, copy: int, features: FeaturesConfig | None = None,
    batch_size: int = 1000,
) -> np.ndarray:  # fmt: skip
    """The `copy`-th of `augmented_copies` alone (it does not depend on how many copies there are)."""
    mel = MelSpace(features, x.shape[-1]) if cfg.mel_masks or cfg.warps else None
    fill = tf.constant(x.reshape(-1, x.shape[-1]).mean(axis=0), tf.float32)
    out = np.empty_like(x)
    for start in range(0, len(x), batch_size):
        batch = tf.constant(x[start : start + batch_size, ..., None])
        out[start : start + batch_size] = augment(batch, cfg, fill, tf.constant([seed, copy * len(x) + start]),
                                                  mel).numpy()[..., 0]  # fmt: skip
    return out


def mel_to_cepstrum(mel_bins: int, coefficients: int) -> np.ndarray:
    """[mel_bins, coefficients]: the features' own DCT (TF's MFCC, so the same scaling), as a matrix."""
    eye = tf.eye(mel_bins, dtype=tf.float32)
    return tf.signal.mfccs_from_log_mel_spectrograms(eye)[:, :coefficients].numpy()


class MelSpace:
    """The mel filterbank behind the features: their DCT, the way back to the (smoothed) log-mel spectrum, and where
    its channels sit (TF's HTK mel scale)."""

    def __init__(self, features: FeaturesConfig, coefficients: int):
        self.bins = features.mel_bins
        self.dct = mel_to_cepstrum(self.bins, coefficients)
        self._forward = tf.constant(self.dct, tf.float32)
        self._back = tf.constant(np.linalg.pinv(self.dct), tf.float32)
        self.lowest, highest = _hz_to_mel(features.lower_hz), _hz_to_mel(features.upper_hz)
        self.step = (highest - self.lowest) / (self.bins + 1)  # channel m peaks at lowest + (m + 1) * step
        self.centres_hz = _mel_to_hz(self.lowest + self.step * np.arange(1, self.bins + 1))

    def warp_sources(self, factor: tf.Tensor) -> tf.Tensor:
        """factor [batch, 1] -> [batch, mel_bins]: the fractional channel each channel reads from when the spectrum
        is stretched by `factor` (S'(f) = S(f / factor)); beyond the filterbank's edges the edge channel repeats."""
        source_hz = tf.constant(self.centres_hz, tf.float32)[None, :] / factor
        source_mel = 1127.0 * tf.math.log1p(source_hz / 700.0)
        return tf.clip_by_value((source_mel - self.lowest) / self.step - 1.0, 0.0, self.bins - 1.0)

    def log_mel(self, cepstra: tf.Tensor) -> tf.Tensor:
        """[batch, frames, coefficients] -> [batch, frames, mel_bins]: the spectrum the coefficients describe."""
        return tf.einsum("btc,cm->btm", cepstra, self._back)

    def cepstra(self, log_mel: tf.Tensor) -> tf.Tensor:
        """[batch, frames, mel_bins] -> [batch, frames, coefficients]: the features' own DCT."""
        return tf.einsum("btm,mc->btc", log_mel, self._forward)


def _hz_to_mel(hz: Any) -> Any:
    return 1127.0 * np.log1p(np.asarray(hz, np.float64) / 700.0)


def _mel_to_hz(mel: Any) -> Any:
    return 700.0 * np.expm1(np.asarray(mel, np.float64) / 1127.0)


def augment(
    x: tf.Tensor, cfg: AugmentConfig, fill: tf.Tensor, seed: tf.Tensor, mel: MelSpace | None = None
) -> tf.Tensor:
    """x: [batch, frames, coefficients, 1]; `mel`, the features' filterbank, for mel masks and the mel warp."""
    if cfg.warps:
        factor = tf.random.stateless_uniform(
            [tf.shape(x)[0], 1], tf.random.experimental.stateless_fold_in(seed, 2), *cfg.mel_warp
        )
        x = warp_mel_channels(x, mel.warp_sources(factor), mel)
    frames, coefficients = x.shape[1], x.shape[2]
    seeds = tf.random.experimental.stateless_split(seed, 1 + 2 * (cfg.time_masks + cfg.coefficient_masks))
    batch = tf.shape(x)[0]
    if cfg.time_shift_frames:
        shift = tf.random.stateless_uniform(
            [batch, 1], seeds[0], -cfg.time_shift_frames, cfg.time_shift_frames + 1, tf.int32
        )
        index = tf.clip_by_value(tf.range(frames)[None, :] - shift, 0, frames - 1)  # edges repeat
        x = tf.gather(x, index, batch_dims=1)
    fill = tf.reshape(fill, [1, 1, coefficients, 1])
    for i in range(cfg.time_masks):
        mask = _band(batch, frames, cfg.time_mask_frames, seeds[1 + 2 * i], seeds[2 + 2 * i])
        x = tf.where(mask[:, :, None, None], fill, x)
    offset = 1 + 2 * cfg.time_masks
    for i in range(cfg.coefficient_masks):
        mask = _band(batch, coefficients, cfg.coefficient_mask_width, seeds[offset + 2 * i], seeds[offset + 2 * i + 1])
        x = tf.where(mask[:, None, :, None], fill, x)
    if cfg.mel_masks:
        x = _mask_mel_bands(x, cfg, mel, tf.random.experimental.stateless_fold_in(seed, 1))
    return x


def _mask_mel_bands(x: tf.Tensor, cfg: AugmentConfig, mel: MelSpace, seed: tf.Tensor) -> tf.Tensor:
    """`cfg.mel_masks` bands of mel channels per clip held still (`hold_mel_channels`). Its own seeds (folded from
    the batch's), so the other augmentations draw as they do without it."""
    seeds = tf.random.experimental.stateless_split(seed, 2 * cfg.mel_masks)
    batch = tf.shape(x)[0]
    held = tf.zeros([batch, mel.bins], tf.bool)
    for i in range(cfg.mel_masks):
        held |= _band(batch, mel.bins, cfg.mel_mask_bins, seeds[2 * i], seeds[2 * i + 1])
    return hold_mel_channels(x, held, mel)


def hold_mel_channels(x: tf.Tensor, held: tf.Tensor, mel: MelSpace) -> tf.Tensor:
    """x [batch, frames, coefficients, 1]: the cepstra of each clip's log-mel spectrum (as far as its coefficients
    describe it) with the `held` [batch, mel_bins] channels set to their mean over the clip."""
    cepstra = x[..., 0]
    spectrum = mel.log_mel(cepstra)
    moving = (spectrum - tf.reduce_mean(spectrum, axis=1, keepdims=True)) * tf.cast(held[:, None, :], tf.float32)
    return (cepstra - mel.cepstra(moving))[..., None]


def warp_mel_channels(x: tf.Tensor, sources: tf.Tensor, mel: MelSpace) -> tf.Tensor:
    """x [batch, frames, coefficients, 1]: the cepstra of each clip's log-mel spectrum with channel m read from the
    fractional channel `sources` [batch, mel_bins] (linear between neighbours), e.g. `MelSpace.warp_sources`."""
    spectrum = mel.log_mel(x[..., 0])
    below = tf.floor(sources)
    weight = (sources - below)[:, None, :]
    below = tf.cast(below, tf.int32)
    above = tf.minimum(below + 1, mel.bins - 1)
    low, high = tf.gather(spectrum, below, axis=2, batch_dims=1), tf.gather(spectrum, above, axis=2, batch_dims=1)
    return mel.cepstra(low + (high - low) * weight)[..., None]


def _band(batch: tf.Tensor, length: int, max_width: int, width_seed: tf.Tensor, start_seed: tf.Tensor) -> tf.Tensor:
    """[batch, length] booleans: one band of 0..max_width positions per example, at a random start."""
    width = tf.random.stateless_uniform([batch, 1], width_seed, 0, max_width + 1, tf.int32)
    start = tf.cast(
        tf.random.stateless_uniform([batch, 1], start_seed) * tf.cast(length - width + 1, tf.float32), tf.int32
    )
    position = tf.range(length)[None, :]
    return (position >= start) & (position < start + width)
