"""OpenVINO target pieces on a small real model: IR round trip, NNCF INT8, recipe checks."""

import numpy as np
import pytest

from pipeline.models.zoo import ModelConfig
from pipeline.recipe import RecipeError, parse_recipe
from targets.openvino import Config as OpenvinoConfig


@pytest.fixture(scope="module")
def keras_file(tmp_path_factory):
    import tensorflow as tf

    from pipeline.models import build_model

    tf.keras.utils.set_random_seed(5)
    model = build_model((49, 10, 1), 6, ModelConfig(filters=16, blocks=2))
    path = tmp_path_factory.mktemp("ov") / "model.keras"
    model.save(path)
    return path


def test_fp32_ir_round_trip_matches_keras(keras_file, tmp_path):
    import openvino as ov
    import tensorflow as tf

    from targets.openvino import convert

    ov.save_model(convert(keras_file, (49, 10, 1)), tmp_path / "model.xml", compress_to_fp16=False)
    compiled = ov.Core().compile_model(tmp_path / "model.xml", "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    x = np.random.default_rng(0).normal(size=(16, 49, 10, 1)).astype(np.float32)
    keras_out = tf.keras.models.load_model(keras_file).predict(x, verbose=0)
    ir_out = np.concatenate([compiled({0: x[i : i + 1]})[0] for i in range(len(x))])
    assert ir_out.shape == keras_out.shape and np.max(np.abs(ir_out - keras_out)) < 1e-4


def test_int8_model_has_quantize_nodes(keras_file):
    from targets.openvino import convert, quantize_int8, quantize_node_count

    model = convert(keras_file, (49, 10, 1))
    assert quantize_node_count(model) == 0
    calibration = np.random.default_rng(1).normal(size=(32, 49, 10, 1)).astype(np.float32)
    quantized = quantize_int8(model, calibration, **OpenvinoConfig(int8={"subset_size": 32}).int8.model_dump())
    assert quantize_node_count(quantized) >= 5  # the conv inputs and weights at least


def input_range(model) -> float:
    """The upper bound of the FakeQuantize that quantizes the model's input."""
    fq = next(n for n in model.get_ops() if n.get_type_name() == "FakeQuantize"
              and n.input_value(0).get_node().get_type_name() == "Parameter")  # fmt: skip
    return float(fq.input_value(2).get_node().get_data().max())


def test_int8_input_range_spans_every_calibration_clip_by_default(keras_file):
    from targets.openvino import convert, quantize_int8

    calibration = np.random.default_rng(2).normal(size=(32, 49, 10, 1)).astype(np.float32)
    calibration[7] *= 3.0  # one loud clip: the kind that saturates when ranges are averaged over clips
    settings = OpenvinoConfig(int8={"subset_size": 32}).int8.model_dump()
    assert settings["activation_ranges"] == "minmax"
    spanned = input_range(quantize_int8(convert(keras_file, (49, 10, 1)), calibration, **settings))
    averaged = input_range(
        quantize_int8(convert(keras_file, (49, 10, 1)), calibration, **settings | {"activation_ranges": "mean_minmax"})
    )
    assert spanned >= 0.99 * np.abs(calibration).max() > 1.5 * averaged


RECIPE = """\
name: demo
data:
  keywords: [yes, no]
stages:
  - train: {}
  - quantize: {}
  - export: {}
targets:
  - openvino: {device: CPU, precisions: [fp32, int8]}
"""


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("device: CPU", "device: CPUX", "r.yaml:9: targets[0].openvino.device: unknown OpenVINO device 'CPUX'; "
                                        "did you mean 'CPU'?"),
        ("int8]", "int4]", "targets[0].openvino.precisions[1]: Input should be 'fp32', 'fp16' or 'int8' (got 'int4')"),
        ("int8]", "fp32]", "targets[0].openvino.precisions: listed twice: fp32"),
    ],
)  # fmt: skip
def test_unknown_device_or_precision_is_rejected(old, new, message):
    with pytest.raises(RecipeError) as info:
        parse_recipe(RECIPE.replace(old, new), "r.yaml")
    assert message in str(info.value)


def test_openvino_telemetry_stays_off():
    """A telemetry thread that forks once deadlocked the OpenVINO child; importing `pipeline` keeps it out.
    (NNCF stubs its own telemetry under pytest, so only the converter's can be checked here.)"""
    import openvino.tools.ovc.telemetry_utils as ovc_telemetry

    assert ovc_telemetry.tm.__name__ == "openvino.tools.ovc.telemetry_stub"


def test_saved_ir_does_not_depend_on_what_the_process_built_before(tmp_path):
    """OpenVINO names unnamed nodes from a process-wide counter; canonical names make the IR the same bytes
    whether it is the first model a process builds or the second (a resumed run vs an uninterrupted one)."""
    import openvino as ov
    import openvino.opset13 as ops

    from targets.openvino import canonical_names

    def build() -> ov.Model:
        x = ops.parameter([1, 4], np.float32, name="x")
        y = ops.matmul(x, ops.constant(np.ones((4, 3), np.float32)), False, False)
        return ov.Model([ops.relu(y)], [x], "m")

    def saved(model: ov.Model, name: str) -> bytes:
        ov.save_model(model, tmp_path / f"{name}.xml")
        return (tmp_path / f"{name}.xml").read_bytes()

    assert saved(build(), "a") != saved(build(), "b")  # the counter moved on between the two
    assert saved(canonical_names(build()), "c") == saved(canonical_names(build()), "d")


def test_an_int8_ir_that_lost_the_model_is_refused(keras_file, tmp_path, monkeypatch):
    """The INT8 check compares with FP32 on the calibration clips: a faithful INT8 IR passes; one that answers
    something else is quantized again and, failing every attempt, refused by name."""
    import openvino as ov
    import tensorflow as tf

    import targets.openvino
    from targets.openvino import child, convert

    fp32 = convert(keras_file, (49, 10, 1))
    clips = np.random.default_rng(2).normal(size=(40, 49, 10, 1)).astype(np.float32)
    int8 = {"preset": "performance", "subset_size": 40, "fast_bias_correction": True, "activation_ranges": "minmax"}
    assert child.top1_agreement(fp32, child.checked_int8(fp32, clips, int8), clips) >= child.MIN_INT8_AGREEMENT

    compiled = ov.Core().compile_model(fp32, "CPU")
    answers = np.bincount([int(np.argmax(compiled(x[None])[0])) for x in clips], minlength=6)
    rare = int(np.argmin(answers))  # a model that always answers the class FP32 gives least
    inputs = tf.keras.Input((49, 10, 1))
    dense = tf.keras.layers.Dense(6, activation="softmax")
    outputs = dense(tf.keras.layers.Flatten()(inputs))
    dense.set_weights([np.zeros((490, 6), np.float32), np.eye(6, dtype=np.float32)[rare] * 10])
    tf.keras.Model(inputs, outputs).save(tmp_path / "constant.keras")
    constant = convert(tmp_path / "constant.keras", (49, 10, 1))
    assert child.top1_agreement(fp32, constant, clips) == answers[rare] / len(clips) < child.MIN_INT8_AGREEMENT
    monkeypatch.setattr(targets.openvino, "quantize_int8", lambda *args, **kwargs: constant)
    with pytest.raises(RuntimeError, match="after 5 attempts: the INT8 IR is not written"):
        child.checked_int8(fp32, clips, int8)
