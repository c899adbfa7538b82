"""The TFLM target's measurements on the real interpreter, for a model built outside the pipeline."""

import numpy as np
import pytest

from pipeline.runtimes import tflm as tflm_runtime
from pipeline.runtimes.tflm_child import parse_allocations
from targets.tflm import bundle as tflm_bundle


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
    arena, probes = tflm_runtime.find_min_arena(path, sample)
    assert arena % tflm_runtime.ALIGN == 0 and probes >= 3
    assert tflm_runtime.allocates(path, arena, sample)
    assert not tflm_runtime.allocates(path, arena - tflm_runtime.ALIGN, sample)


def test_measure_child_reports_allocations_and_outputs(int8_model, tmp_path):
    import json

    path, sample = int8_model
    arena, _ = tflm_runtime.find_min_arena(path, sample)
    inputs = tmp_path / "inputs.npy"
    np.save(inputs, np.repeat(np.load(sample), 5, axis=0))
    out = tmp_path / "result.json"
    done = tflm_runtime._child("measure", str(path), str(arena), str(inputs), str(out), "--warmup", "1", "--runs", "7")
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    alloc = result["allocations"]
    assert alloc["total"] == alloc["head"] + alloc["tail"]
    assert abs(alloc["total"] - arena) <= tflm_runtime.ALIGN  # the probes and TFLM's own report agree
    assert len(result["latency_ns"]) == 7 and min(result["latency_ns"]) > 0
    assert len(set(result["predictions"])) == 1  # five copies of one input: one answer


def test_c_array_decodes_to_the_model(int8_model, tmp_path):
    path, _ = int8_model
    model = path.read_bytes()
    symbol = tflm_bundle.write_c_array(model, tmp_path, "kws-mcu.v2")
    source = (tmp_path / "model_data.cpp").read_text()
    header = (tmp_path / "model_data.h").read_text()
    assert symbol == "g_kws_mcu_v2_model_data"
    assert "alignas(16) const unsigned char g_kws_mcu_v2_model_data[]" in source
    assert f"g_kws_mcu_v2_model_data_len = {len(model)};" in source
    assert "extern const unsigned char g_kws_mcu_v2_model_data[];" in header
    assert tflm_bundle.decode_c_array(source) == model


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


def _tf_op_names(model: bytes) -> set[str]:
    """The ops as TensorFlow's own interpreter lists them: an independent reading of the flatbuffer."""
    import tensorflow as tf

    interp = tf.lite.Interpreter(model_content=model)
    return {op["op_name"] for op in interp._get_ops_details()}


def test_op_resolver_lists_exactly_the_models_ops(int8_model, tmp_path):
    import re

    from pipeline.tflite_model import read_model

    path, _ = int8_model
    model = path.read_bytes()
    tflm_bundle.write_op_resolver(read_model(model), tmp_path, "toy")
    header = (tmp_path / "op_resolver.h").read_text()
    methods = re.findall(r"resolver\.(Add\w+)\(", header)
    expected = {tflm_bundle.resolver_method(op) for op in _tf_op_names(model)}
    assert sorted(methods) == sorted(expected) and len(methods) == len(set(methods))
    assert f"MicroMutableOpResolver<{len(expected)}>" in header


def test_resolver_method_names():
    assert tflm_bundle.resolver_method("CONV_2D") == "AddConv2D"
    assert tflm_bundle.resolver_method("DEPTHWISE_CONV_2D") == "AddDepthwiseConv2D"
    assert tflm_bundle.resolver_method("FULLY_CONNECTED") == "AddFullyConnected"
    assert tflm_bundle.resolver_method("CUSTOM:ethos-u") == "AddEthosU"  # the NPU custom op Vela emits
    with pytest.raises(tflm_bundle.UnsupportedOpError, match="CUSTOM:MyOp"):
        tflm_bundle.resolver_method("CUSTOM:MyOp")


def test_lower_bound_matches_a_hand_count(int8_model):
    from pipeline.tflite_model import live_tensor_lower_bound, macs, read_model

    path, _ = int8_model
    graph = read_model(path.read_bytes())
    # conv out and depthwise out (25 x 5 x 8 int8 each) coexist while the depthwise conv runs
    assert live_tensor_lower_bound(graph)["bytes"] == 2 * 25 * 5 * 8
    # conv 25*5*8 outputs x 10*4*1, depthwise 25*5*8 x 3*3, pointwise 25*5*8 x 8, dense 4 x 8
    assert macs(graph) == 1000 * 40 + 1000 * 9 + 1000 * 8 + 4 * 8


def test_profile_a_model_made_outside_the_pipeline(int8_model, tmp_path):
    import json

    from tests.conftest import run_cli

    path, _ = int8_model
    out = tmp_path / "bundle"
    done = run_cli("profile", str(path), "--board", "cortex-m7-512k", "--out", str(out), "--runs", "20", "--no-emulate")
    assert done.returncode == 0, done.stderr
    report = json.loads((out / "profile.json").read_text())
    assert report["arena"]["agrees_with_report"] and report["arena"]["lower_bound"] <= report["arena"]["head"]
    assert report["board"]["latency_method"].startswith("estimate") and "on_board" not in report
    assert tflm_bundle.verify_manifest(out) == []
    assert tflm_bundle.decode_c_array((out / "src" / "model_data.cpp").read_text()) == path.read_bytes()
    assert f"kTensorArenaSize = {report['arena']['bundle']};" in (out / "src" / "model_config.h").read_text()
    (out / "src" / "model_data.cpp").write_text((out / "src" / "model_data.cpp").read_text().replace("0x", "0X", 1))
    assert tflm_bundle.verify_manifest(out) == ["src/model_data.cpp"]
    again = run_cli("profile", str(path), "--out", str(out), "--runs", "10")  # an earlier bundle is replaced whole
    assert again.returncode == 0, again.stderr
    assert tflm_bundle.verify_manifest(out) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]


def test_profile_names_an_op_tflm_lacks(tmp_path):
    import tensorflow as tf

    from tests.conftest import run_cli

    inputs = tf.keras.Input((16,))
    outputs = tf.keras.layers.Lambda(lambda t: tf.math.top_k(t, k=3).values)(inputs)
    model = tmp_path / "topk.tflite"
    model.write_bytes(tf.lite.TFLiteConverter.from_keras_model(tf.keras.Model(inputs, outputs)).convert())
    done = run_cli("profile", str(model), "--out", str(tmp_path / "b"))
    assert done.returncode == 2
    assert "TFLite Micro has no kernel for operator TOPK_V2" in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["topk.tflite"]  # no half-written bundle, no temp folder


def test_profile_rejects_a_file_that_is_not_a_model(tmp_path):
    from tests.conftest import run_cli

    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"not a model at all")
    done = run_cli("profile", str(junk))
    assert done.returncode == 2 and "not a TFLite flatbuffer" in done.stderr
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "keep.txt").write_text("a firmware team's notes")
    done = run_cli("profile", str(junk), "--out", str(mine))
    assert done.returncode == 2 and "not an earlier profile bundle" in done.stderr
    assert (mine / "keep.txt").read_text() == "a firmware team's notes"
