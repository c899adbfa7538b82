"""The model zoo's input normalisation: what it removes from a clip, and that it survives conversion."""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from pipeline.models import build_model  # noqa: E402
from pipeline.models.zoo import ModelConfig  # noqa: E402


@pytest.mark.parametrize("normalize", ["none", "cepstral_mean"])
def test_cepstral_mean_normalisation_removes_a_fixed_colouring(normalize: str):
    """A microphone's fixed colouring adds a constant to each cepstral coefficient of every frame: with the
    normalisation the model's answer ignores it, without it the answer moves (so the first half can fail)."""
    tf.keras.utils.set_random_seed(5)
    model = build_model((49, 10, 1), 6, ModelConfig(filters=8, blocks=1, normalize=normalize))
    rng = np.random.default_rng(5)
    clips = rng.normal(size=(16, 49, 10, 1)).astype(np.float32)
    colouring = rng.normal(0, 3, size=(1, 1, 10, 1)).astype(np.float32)
    moved = np.abs(model.predict(clips, verbose=0) - model.predict(clips + colouring, verbose=0)).max()
    if normalize == "cepstral_mean":
        assert moved < 1e-5
    else:
        assert moved > 1e-3


def test_normalised_model_converts_to_int8_builtins():
    """The normalisation is built from TFLite builtins (a mean pool and a broadcast subtract), so TFLM, LiteRT and
    Vela run it without a custom op; the int8 model agrees with the float one."""
    tf.keras.utils.set_random_seed(6)
    model = build_model((49, 10, 1), 4, ModelConfig(filters=8, blocks=1, normalize="cepstral_mean"))
    rng = np.random.default_rng(6)
    clips = rng.normal(size=(32, 49, 10, 1)).astype(np.float32)
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([clip[None]] for clip in clips)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    interpreter = tf.lite.Interpreter(model_content=converter.convert())
    ops = {op["op_name"] for op in interpreter._get_ops_details()}
    assert {"AVERAGE_POOL_2D", "SUB"} <= ops
    interpreter.allocate_tensors()
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    float_answers = model.predict(clips, verbose=0).argmax(axis=1)
    int8_answers = []
    for clip in clips:
        interpreter.set_tensor(inp["index"], clip[None])
        interpreter.invoke()
        int8_answers.append(interpreter.get_tensor(out["index"]).argmax())
    assert np.mean(np.array(int8_answers) == float_answers) >= 0.9
