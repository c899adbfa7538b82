"""Explainability measures on models whose right answer is known."""

from types import SimpleNamespace

import numpy as np
import pytest

from pipeline.analysis.explain import (
    beyond_noise,
    bootstrap_ci,
    compare_maps,
    exemplars,
    explain,
    integrated_gradients,
    occlusion,
)
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


def test_bootstrap_intervals_cover_the_mean_at_the_expected_width():
    values = np.random.default_rng(3).normal(0.1, 1.0, 2000)
    low, high = bootstrap_ci(values, 2000, seed=0)
    assert low < values.mean() < high and low < 0.1 < high
    assert (high - low) == pytest.approx(2 * 1.96 / np.sqrt(2000), rel=0.15)
    assert bootstrap_ci(np.array([np.nan, 1.0]), 200, seed=0) is None  # one defined value: no interval


def test_beyond_noise_says_which_side_of_the_twin_a_model_lies():
    rng = np.random.default_rng(4)
    twin = (rng.random(3000) < 0.97).astype(float)  # a retrain agrees on ~97 % of clips
    worse = twin * (rng.random(3000) < 0.9)  # loses another ~10 % of them
    same = twin.copy()
    assert beyond_noise(worse, twin, 1000, 0)["verdict"] == "beyond retrain noise"
    assert beyond_noise(worse, twin, 1000, 0)["value"] == pytest.approx(0.097, abs=0.02)
    assert beyond_noise(same, twin, 1000, 0)["verdict"] == "within retrain noise"
    assert beyond_noise(twin, worse, 1000, 0)["verdict"] == "less than a retrain"


def test_exemplars_are_where_the_model_leaves_the_trained_model_and_the_twin_stays():
    reference = np.array([0, 1, 1, 0, 2, 2])
    twin = np.array([0, 1, 0, 0, 2, 1])
    model = np.array([1, 1, 0, 1, 2, 0])
    y = np.array([0, 1, 1, 0, 2, 2])
    found = exemplars(model, reference, twin, y, ["a", "b", "c"])
    # clip 0 and 3: model differs, twin agrees -> exemplars; clip 2: the twin differs too -> noise; clip 5: same
    assert found["clips"] == [0, 3] and found["per_class"] == {"a": 2, "b": 0, "c": 0} and found["count"] == 2


def test_the_control_separates_what_compression_changed_from_retrain_noise(toy, tmp_path):
    """A twin identical to the trained model and a 'compressed' model that listens elsewhere: the control puts
    the whole drift beyond noise, and the exemplars are exactly the clips the compressed model flipped."""
    import tensorflow as tf

    folder, x, y = toy
    model = tf.keras.models.load_model(folder / "model.keras")
    kernel, bias = model.layers[-1].get_weights()
    grid = kernel.reshape(49, 10, 2)
    grid[:, :, :] = 0
    grid[0:7, 0:2, 0], grid[0:7, 0:2, 1] = 0.5, -0.5  # decides by another region
    model.layers[-1].set_weights([grid.reshape(490, 2), bias])
    model.save(tmp_path / "other.keras")
    split = SimpleNamespace(x=x, y=y)
    data = SimpleNamespace(train=split, test=split, labels=["pos", "neg"])
    ref = ModelRef("train", "keras", folder / "model.keras", "Keras")
    squeezed = ModelRef("finetune", "keras", tmp_path / "other.keras", "Keras")
    twin = ModelRef("twin", "keras", folder / "model.keras", "Keras", role="control")
    cfg = ExplainConfig(samples=40, ig_steps=4, pictures_per_class=0, bootstrap=500)
    (tmp_path / "ex").mkdir()
    field = SimpleNamespace(name="real", x=x[::-1].copy(), y=y[::-1].copy())  # a field set: the same clips reversed
    result = explain([ref, squeezed], data, cfg, seed=0, out=tmp_path / "ex", twin=twin, field_sets=[field])
    control = result["control"]["models"]["finetune"]
    flipped = np.argmax(predictor(squeezed)(x), -1) != np.argmax(predictor(ref)(x), -1)
    assert control["agreement"]["value"] == pytest.approx(flipped.mean())
    assert control["agreement"]["verdict"] == "beyond retrain noise" and control["agreement"]["ci"][0] > 0
    assert control["occlusion_spearman"]["verdict"] == "beyond retrain noise"
    assert result["control"]["exemplars"]["finetune"]["synthetic"]["count"] == int(flipped.sum())
    assert result["control"]["exemplars"]["finetune"]["real"]["count"] == int(flipped.sum())  # same clips, reordered
    on_field = control["field_agreement"]["real"]
    assert on_field["twin"] == 1.0 and on_field["model"] == pytest.approx(1 - flipped.mean())
    assert on_field["value"] == pytest.approx(flipped.mean()) and on_field["verdict"] == "beyond retrain noise"
    twin_row = next(r for r in result["models"] if r["model"] == "twin")
    assert twin_row["agreement"] == 1.0 and twin_row["role"] == "control" and result["deployed"] == "finetune"
    assert (tmp_path / "ex" / result["global"]["plot"]).is_file()
    assert result["control"]["exemplar_plot"] and (tmp_path / "ex" / result["control"]["exemplar_plot"]).is_file()


def test_noise_budgets_gate_the_deployed_model_and_need_the_control():
    from pipeline import budgets as budget_checks
    from pipeline.recipe import RecipeError, parse_recipe
    from tests.conftest import TINY

    text = TINY.read_text() + "explain: {budgets: {max_agreement_drop_beyond_noise: 0.02}}\n"
    recipe = parse_recipe(text)
    row = {"model": "tflm", "role": "target", "agreement": 0.9, "occlusion": {"spearman": 0.5}}
    result = {"models": [{"model": "train"}, row],
              "control": {"models": {"tflm": {"agreement": {"value": 0.05, "ci": [0.03, 0.07]}}}}}  # fmt: skip
    (gate,) = budget_checks.check_explain(recipe, result)
    assert gate.name == "explain.tflm.max_agreement_drop_beyond_noise" and not gate.ok and gate.actual == 0.05
    with pytest.raises(RecipeError, match="needs `control: true`"):
        parse_recipe(
            TINY.read_text() + "explain: {control: false, budgets: {max_attribution_drop_beyond_noise: 0.1}}\n"
        )
