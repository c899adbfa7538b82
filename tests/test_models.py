"""The model zoo's input normalisation: what it removes from a clip, and that it survives conversion."""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from pipeline.models import build_model  # noqa: E402
from pipeline.models.zoo import ModelConfig  # noqa: E402


@pytest.mark.parametrize("normalize", ["none", "cepstral_mean", "cepstral_mean_variance"])
def test_cepstral_mean_normalisation_removes_a_fixed_colouring(normalize: str):
    """A microphone's fixed colouring adds a constant to each cepstral coefficient of every frame: with the
    normalisation the model's answer ignores it, without it the answer moves (so the first case can fail)."""
    tf.keras.utils.set_random_seed(5)
    model = build_model((49, 10, 1), 6, ModelConfig(filters=8, blocks=1, normalize=normalize))
    rng = np.random.default_rng(5)
    clips = rng.normal(size=(16, 49, 10, 1)).astype(np.float32)
    colouring = rng.normal(0, 3, size=(1, 1, 10, 1)).astype(np.float32)
    moved = np.abs(model.predict(clips, verbose=0) - model.predict(clips + colouring, verbose=0)).max()
    if normalize != "none":
        assert moved < 1e-5
    else:
        assert moved > 1e-3


def test_standardisation_also_removes_a_fixed_gain():
    """Variance normalisation makes the answer blind to a per-coefficient gain as well; mean normalisation is not."""
    rng = np.random.default_rng(8)
    clips = rng.normal(size=(16, 49, 10, 1)).astype(np.float32)
    gain = rng.uniform(0.3, 3.0, size=(1, 1, 10, 1)).astype(np.float32)
    moved = {}
    for normalize in ("cepstral_mean", "cepstral_mean_variance"):
        tf.keras.utils.set_random_seed(8)
        model = build_model((49, 10, 1), 6, ModelConfig(filters=8, blocks=1, normalize=normalize))
        moved[normalize] = np.abs(model.predict(clips, verbose=0) - model.predict(clips * gain, verbose=0)).max()
    assert moved["cepstral_mean_variance"] < 1e-4 < moved["cepstral_mean"]


def test_standardised_model_saves_and_loads(tmp_path):
    """The variance normalisation's rsqrt is a TensorFlow op in the graph: the saved model loads back without
    custom objects, as every stage and target loads it."""
    tf.keras.utils.set_random_seed(9)
    model = build_model((49, 10, 1), 4, ModelConfig(filters=8, blocks=1, normalize="cepstral_mean_variance"))
    model.save(tmp_path / "model.keras")
    clips = np.random.default_rng(9).normal(size=(8, 49, 10, 1)).astype(np.float32)
    again = tf.keras.models.load_model(tmp_path / "model.keras")
    np.testing.assert_allclose(again.predict(clips, verbose=0), model.predict(clips, verbose=0), atol=1e-6)


@pytest.mark.parametrize(
    ("normalize", "ops"),
    [
        ("cepstral_mean", {"AVERAGE_POOL_2D", "SUB"}),
        ("cepstral_mean_variance", {"AVERAGE_POOL_2D", "SUB", "MUL", "RSQRT"}),
    ],
)
def test_normalised_model_converts_to_int8_builtins(normalize: str, ops: set[str]):
    """The normalisation is built from TFLite builtins, so TFLM, LiteRT and Vela run it without a custom op and
    nothing is left in float; the int8 model agrees with the float one."""
    tf.keras.utils.set_random_seed(6)
    model = build_model((49, 10, 1), 4, ModelConfig(filters=8, blocks=1, normalize=normalize))
    rng = np.random.default_rng(6)
    scale = rng.uniform(0.5, 10, size=(32, 1, 10, 1))  # clips of different spread, as real MFCCs are
    clips = (rng.normal(size=(32, 49, 10, 1)) * scale + rng.normal(0, 5, size=(32, 1, 10, 1))).astype(np.float32)
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([clip[None]] for clip in clips)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = converter.inference_output_type = tf.int8  # as the quantize stage converts
    interpreter = tf.lite.Interpreter(model_content=converter.convert())
    found = {op["op_name"] for op in interpreter._get_ops_details()}
    assert ops <= found and not found & {"DEQUANTIZE", "QUANTIZE"}  # int8 end to end: nothing falls back to float
    interpreter.allocate_tensors()
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    scale, zero = inp["quantization"]
    float_answers = model.predict(clips, verbose=0).argmax(axis=1)
    int8_answers = []
    for clip in clips:
        interpreter.set_tensor(inp["index"], np.clip(np.round(clip / scale + zero), -128, 127).astype(np.int8)[None])
        interpreter.invoke()
        int8_answers.append(interpreter.get_tensor(out["index"]).argmax())
    assert np.mean(np.array(int8_answers) == float_answers) >= 0.9
