"""The speech embedding's models (#44, item 1): pinned by SHA-256, fetched by setup, refused when tampered."""

import shutil

import numpy as np
import pytest

from pipeline.models import speech_embedding_assets as assets


def test_missing_and_tampered_models_are_named_with_the_setup_command(installed, tmp_path):
    with pytest.raises(assets.AssetError, match="missing; run scripts/setup.sh"):
        assets.model_path("embedding_model.onnx", tmp_path)
    copy = tmp_path / "embedding_model.onnx"
    shutil.copyfile(installed["embedding_model.onnx"], copy)
    assert assets.model_path("embedding_model.onnx", tmp_path) == copy
    data = bytearray(copy.read_bytes())
    data[len(data) // 2] ^= 1
    copy.write_bytes(bytes(data))
    with pytest.raises(assets.AssetError, match=r"\(tampered or corrupt\); run scripts/setup.sh"):
        assets.model_path("embedding_model.onnx", tmp_path)
    with pytest.raises(assets.AssetError, match="not one of the pinned"):
        assets.model_path("alexa_v0.1.onnx", tmp_path)  # the package's non-commercial wake words are never taken


def test_the_models_turn_a_second_of_audio_into_embeddings(installed):
    """The frozen graphs as shipped: 1 s of 16 kHz audio -> 97 log-mel frames of 32 -> one 96-number embedding
    per 76 frames, and different audio gives a different embedding."""
    import onnxruntime as ort

    mel = ort.InferenceSession(str(installed["melspectrogram.onnx"]))
    embed = ort.InferenceSession(str(installed["embedding_model.onnx"]))
    rng = np.random.default_rng(0)
    out = []
    for audio in (rng.standard_normal((1, 16000)), np.sin(np.arange(16000) * 0.1)[None]):
        frames = mel.run(None, {"input": (1000 * audio).astype(np.float32)})[0]
        assert frames.shape == (1, 1, 97, 32)
        window = (frames[0, 0, :76] / 10 + 2)[None, :, :, None].astype(np.float32)  # openWakeWord's scaling
        out.append(embed.run(None, {"input_1": window})[0].reshape(-1))
    assert out[0].shape == (96,) and not np.allclose(out[0], out[1])
