"""Explainability measures on models whose right answer is known."""

from types import SimpleNamespace

import numpy as np
import pytest

from pipeline.explain import compare_maps, explain, integrated_gradients, occlusion
from pipeline.recipe import ExplainConfig
from pipeline.runtimes import ModelRef
from pipeline.runtimes.any import predictor

REGION = (slice(14, 21), slice(4, 6))  # one 7x2 occlusion patch: grid row 2, column 2


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """A model whose class is decided by one input region alone: class 0 iff the region's sum is positive."""
    import tensorflow as tf

    inputs = tf.keras.Input((49, 10, 1))
    outputs = tf.keras.layers.Dense(2, activation="softmax")(tf.keras.layers.Flatten()(inputs))
    model = tf.keras.Model(inputs, outputs)
    kernel = np.zeros((49, 10, 2), np.float32)
    kernel[REGION[0], REGION[1], 0], kernel[REGION[0], REGION[1], 1] = 0.5, -0.5
    model.layers[-1].set_weights([kernel.reshape(490, 2), np.zeros(2, np.float32)])
    folder = tmp_path_factory.mktemp("toy")
    model.save(folder / "model.keras")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 49, 10)).astype(np.float32)
    y = (x[:, REGION[0], REGION[1]].sum(axis=(1, 2)) <= 0).astype(np.int64)

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([x[i : i + 1, ..., None]] for i in range(len(x)))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = converter.inference_output_type = tf.int8
    (folder / "model.tflite").write_bytes(converter.convert())
    return folder, x, y


def region_share(maps: np.ndarray, region) -> float:
    mass = np.abs(maps)
    return float(mass[:, region[0], region[1]].sum() / mass.sum())


def test_integrated_gradients_put_the_weight_on_the_deciding_region(toy):
    folder, x, y = toy
    maps = integrated_gradients(folder / "model.keras", x, y, np.zeros((49, 10), np.float32), steps=16)
    assert region_share(maps, REGION) > 0.99


@pytest.mark.parametrize("kind", ["keras", "tflite"])
def test_occlusion_puts_the_weight_on_the_deciding_region_on_each_runtime(toy, kind):
    folder, x, y = toy
    ref = ModelRef(kind, kind, folder / f"model.{kind}", kind)
    maps = occlusion(predictor(ref), x, y, np.zeros((49, 10), np.float32), (7, 2))
    assert maps.shape == (40, 7, 5)
    assert region_share(maps, (slice(2, 3), slice(2, 3))) > 0.9  # the int8 model too, through LiteRT
    assert np.all(np.argmax(maps.reshape(40, -1), axis=1) == 2 * 5 + 2)


def test_a_model_compared_with_itself_scores_one(toy, tmp_path):
    folder, x, y = toy
    maps = np.random.default_rng(1).normal(size=(5, 7, 5))
    rho, iou = compare_maps(maps, maps, 0.1)
    assert np.allclose(rho, 1.0) and np.allclose(iou, 1.0)
    split = SimpleNamespace(x=x, y=y)
    data = SimpleNamespace(train=split, test=split, labels=["pos", "neg"])
    ref = ModelRef("train", "keras", folder / "model.keras", "Keras")
    twin = ModelRef("twin", "keras", folder / "model.keras", "Keras")
    cfg = ExplainConfig(samples=20, ig_steps=4, pictures_per_class=1)
    result = explain([ref, twin], data, cfg, seed=0, out=tmp_path)
    row = result["models"][1]
    assert row["agreement"] == 1.0 and row["occlusion"]["spearman"] == pytest.approx(1.0)
    assert row["gradient"]["spearman"] == pytest.approx(1.0) and row["occlusion"]["iou"] == 1.0
    assert (tmp_path / result["plot"]).stat().st_size > 0 and len(result["pictures"]) == 2
