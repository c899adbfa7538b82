"""The TFLM target's measurements on the real interpreter, for a model built outside the pipeline."""

import numpy as np
import pytest

from targets import tflm
from targets.tflm_child import parse_allocations


@pytest.fixture(scope="module")
def int8_model(tmp_path_factory):
    """A small int8 conv net converted with plain TensorFlow."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(0)
    model = tf.keras.Sequential(
        [
            tf.keras.Input((49, 10, 1)),
            tf.keras.layers.Conv2D(8, (10, 4), strides=2, padding="same", activation="relu"),
            tf.keras.layers.DepthwiseConv2D(3, padding="same", activation="relu"),
            tf.keras.layers.Conv2D(8, 1, activation="relu"),
            tf.keras.layers.GlobalAveragePooling2D(),
            tf.keras.layers.Dense(4, activation="softmax"),
        ]
    )
    rng = np.random.default_rng(0)
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([rng.normal(size=(1, 49, 10, 1)).astype(np.float32)] for _ in range(20))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    folder = tmp_path_factory.mktemp("tflm")
    path = folder / "model.tflite"
    path.write_bytes(converter.convert())
    sample = folder / "sample.npy"
    np.save(sample, rng.integers(-128, 127, size=(1, 49, 10, 1), dtype=np.int8))
    return path, sample


def test_min_arena_is_the_smallest_that_works(int8_model):
    path, sample = int8_model
    arena, probes = tflm.find_min_arena(path, sample)
    assert arena % tflm.ALIGN == 0 and probes >= 3
    assert tflm.allocates(path, arena, sample)
    assert not tflm.allocates(path, arena - tflm.ALIGN, sample)


def test_measure_child_reports_allocations_and_outputs(int8_model, tmp_path):
    import json

    path, sample = int8_model
    arena, _ = tflm.find_min_arena(path, sample)
    inputs = tmp_path / "inputs.npy"
    np.save(inputs, np.repeat(np.load(sample), 5, axis=0))
    out = tmp_path / "result.json"
    done = tflm._child("measure", str(path), str(arena), str(inputs), str(out), "--warmup", "1", "--runs", "7")
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    alloc = result["allocations"]
    assert alloc["total"] == alloc["head"] + alloc["tail"]
    assert abs(alloc["total"] - arena) <= tflm.ALIGN  # the probes and TFLM's own report agree
    assert len(result["latency_ns"]) == 7 and min(result["latency_ns"]) > 0
    assert len(set(result["predictions"])) == 1  # five copies of one input: one answer


def test_c_array_decodes_to_the_model(int8_model, tmp_path):
    path, _ = int8_model
    model = path.read_bytes()
    names = tflm.write_c_array(model, tmp_path, "kws-mcu.v2")
    source = (tmp_path / "model_data.cc").read_text()
    header = (tmp_path / "model_data.h").read_text()
    assert names["symbol"] == "g_kws_mcu_v2_model_data"
    assert "alignas(16) const unsigned char g_kws_mcu_v2_model_data[]" in source
    assert f"g_kws_mcu_v2_model_data_len = {len(model)};" in source
    assert "extern const unsigned char g_kws_mcu_v2_model_data[];" in header
    assert tflm.decode_c_array(source) == model


def test_parse_allocations():
    text = (
        "[RecordingMicroAllocator] Arena allocation total 24128 bytes\n"
        "[RecordingMicroAllocator] Arena allocation head 16000 bytes\n"
        "[RecordingMicroAllocator] Arena allocation tail 8128 bytes\n"
        "[RecordingMicroAllocator] 'TfLiteEvalTensor data' used 792 bytes with alignment overhead "
        "(requested 792 bytes for 33 allocations)\n"
    )
    parsed = parse_allocations(text)
    assert (parsed["total"], parsed["head"], parsed["tail"]) == (24128, 16000, 8128)
    assert parsed["records"]["TfLiteEvalTensor data"] == {"used": 792, "requested": 792, "count": 33}
