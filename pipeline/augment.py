"""Training-time augmentation on feature batches: time shift and SpecAugment (Park et al. 2019).

Applied to the training split only, from stateless seeds: a run is as reproducible as one without it. Batch
positions draw the same seeds every epoch, but the batches are reshuffled, so a clip meets new shifts and masks. Masks are filled with the training set's mean per coefficient (these features are not normalised, so
zero would be a loud, unnatural value).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from pipeline.stages.train import AugmentConfig


def training_dataset(
    x: np.ndarray, y: Any, batch_size: int, cfg: AugmentConfig, seed: int, relabel: Any = None
) -> tf.data.Dataset:
    """Shuffled, augmented batches of (x[..., None], y) for `model.fit`; `y` may be a tuple of arrays.
    `relabel(x, y)`, when given, replaces each batch's y from its augmented x (a teacher scoring what it sees)."""
    fill = tf.constant(x.reshape(-1, x.shape[-1]).mean(axis=0), tf.float32)
    data = tf.data.Dataset.from_tensor_slices((x[..., None], y))
    data = data.shuffle(len(x), seed=seed, reshuffle_each_iteration=True).batch(batch_size)
    seeds = tf.data.Dataset.random(seed=seed).batch(2)
    batches = tf.data.Dataset.zip((data, seeds)).map(
        lambda batch, s: (augment(batch[0], cfg, fill, tf.cast(s, tf.int32)), batch[1]),
        num_parallel_calls=1,
        deterministic=True,
    )
    if relabel is not None:
        batches = batches.map(lambda bx, by: (bx, relabel(bx, by)), num_parallel_calls=1, deterministic=True)
    return batches.prefetch(2)


def augment(x: tf.Tensor, cfg: AugmentConfig, fill: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """x: [batch, frames, coefficients, 1]."""
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
    return x


def _band(batch: tf.Tensor, length: int, max_width: int, width_seed: tf.Tensor, start_seed: tf.Tensor) -> tf.Tensor:
    """[batch, length] booleans: one band of 0..max_width positions per example, at a random start."""
    width = tf.random.stateless_uniform([batch, 1], width_seed, 0, max_width + 1, tf.int32)
    start = tf.cast(
        tf.random.stateless_uniform([batch, 1], start_seed) * tf.cast(length - width + 1, tf.float32), tf.int32
    )
    position = tf.range(length)[None, :]
    return (position >= start) & (position < start + width)
