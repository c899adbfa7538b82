"""Keras (TensorFlow) models in process."""

from __future__ import annotations

from pathlib import Path

from pipeline.runtimes import Predictor


def keras_predictor(path: Path) -> Predictor:
    import tensorflow as tf

    model = tf.keras.models.load_model(path)
    return lambda x: model.predict(x[..., None], batch_size=512, verbose=0)
