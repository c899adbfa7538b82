"""Pruning: NNCF's masks become a physically narrower model that computes the same function."""

from functools import partial
from pathlib import Path

import numpy as np
import pytest

from pipeline.models.zoo import ModelConfig
from pipeline.recipe import RecipeError, parse_recipe
from tests.conftest import run_cli

PRUNED = """\
name: demo
data:
  keywords: [yes, no]
model: {filters: 16, blocks: 2}
stages:
  - train: {epochs: 1}
  - prune:
      target: 0.5
      epochs: 4
  - finetune: {epochs: 1}
  - quantize: {}
  - export: {}
"""


def problems(text: str) -> list[str]:
    with pytest.raises(RecipeError) as info:
        parse_recipe(text, "r.yaml")
    return str(info.value).splitlines()


def test_prune_chain_is_valid_and_maps_onto_nncf():
    from pipeline.stages.prune.pruning import nncf_config

    recipe = parse_recipe(PRUNED)
    cfg = recipe.stage("prune")
    config = nncf_config(cfg, (49, 10, 1), 100)
    assert config["compression"]["algorithm"] == "filter_pruning"
    assert config["compression"]["params"] | {"pruning_target": 0.5, "schedule": "exponential",
                                              "filter_importance": "L2", "prune_first_conv": True} == \
        config["compression"]["params"]  # fmt: skip
    sparse = parse_recipe(PRUNED.replace("target: 0.5", "target: 0.7\n      method: magnitude"))
    config = nncf_config(sparse.stage("prune"), (49, 10, 1), 100)
    assert config["compression"]["algorithm"] == "magnitude_sparsity"
    assert config["compression"]["params"]["sparsity_target"] == 0.7


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("target: 1.2", "r.yaml:8: stages[1].prune.target: Input should be less than 1 (got 1.2)"),
        ("targte: 0.5", "r.yaml:8: stages[1].prune.targte: unknown key 'targte'; did you mean 'target'?"),
        ("target: 0.5\n      schedule: polynomial", "schedule 'polynomial' is not one of filter pruning's"),
        ("target: 0.5\n      importance: L3", "stages[1].prune.importance: Input should be 'L1', 'L2' or"),
        ("target: 0.5\n      steps: 5", "epochs (4) < warmup_epochs + steps (5)"),
        ("target: 0.5\n      init: 0.6", "init (0.6) is above target (0.5)"),
        ("target: 0.5\n      ignore: [pw1, pw9]", "r.yaml:9: stages[1].prune.ignore[1]: no layer 'pw9' in the model"),
        ("target: 0.5\n      method: magnitude\n      importance: L1", "importance: only for method 'filter'"),
    ],
)
def test_bad_prune_settings_are_rejected(change: str, message: str):
    found = problems(PRUNED.replace("target: 0.5", change))
    assert any(message in line for line in found), found


def test_bad_prune_level_stops_the_run_before_training(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(PRUNED.replace("target: 0.5", "target: 1.2"))
    done = run_cli("run", str(bad), "--runs-dir", str(tmp_path / "runs"))
    assert done.returncode == 2 and "stages[1].prune.target" in done.stderr
    assert not (tmp_path / "runs").exists()


def half_masked(model, input_shape: tuple[int, ...]):
    """(NNCF's model with 50 % filter masks applied, 64 random inputs): BatchNorm statistics made random first, far
    from the defaults, so a wrongly copied channel shows in the outputs."""
    import tensorflow as tf
    from nncf import NNCFConfig
    from nncf.tensorflow import create_compressed_model, register_default_init_args

    from pipeline.stages.prune import PruneConfig
    from pipeline.stages.prune.pruning import nncf_config

    rng = np.random.default_rng(3)
    for layer in model.layers:
        if isinstance(layer, tf.keras.layers.BatchNormalization):
            n = layer.get_weights()[0].shape
            layer.set_weights(
                [rng.uniform(0.5, 2, n), rng.normal(0, 1, n), rng.normal(0, 1, n), rng.uniform(0.5, 2, n)]
            )
    x = rng.normal(size=(64, *input_shape)).astype(np.float32)
    data = tf.data.Dataset.from_tensor_slices((x, np.zeros(64, np.int64))).batch(32)
    prune = PruneConfig(target=0.5, schedule="baseline", steps=1, epochs=1)
    nncf = register_default_init_args(NNCFConfig.from_dict(nncf_config(prune, input_shape, 32)), data, batch_size=32)
    ctrl, compressed = create_compressed_model(model, nncf)
    ctrl.scheduler.epoch_step()  # applies the 50% masks, as NNCF's callback does at the start of an epoch
    return compressed, x


@pytest.mark.parametrize("normalize", ["none", "cepstral_mean", "cepstral_mean_variance"])
def test_rebuilt_model_computes_what_the_masked_model_computes(normalize: str):
    """Random weights and BatchNorm statistics, NNCF masks at 50%: the narrow rebuild must match exactly (without and
    with each input normalisation in front of the first conv)."""
    import tensorflow as tf

    from pipeline.models import build_model
    from pipeline.stages.prune.pruning import Weights, rebuild_narrow

    tf.keras.utils.set_random_seed(3)
    cfg = ModelConfig(filters=16, blocks=2, normalize=normalize)
    model = build_model((49, 10, 1), 5, cfg)
    compressed, x = half_masked(model, (49, 10, 1))
    narrow = rebuild_narrow(model, Weights(compressed), 5, cfg, partial(build_model, (49, 10, 1)))

    widths = [layer.filters for layer in narrow.layers if type(layer) is tf.keras.layers.Conv2D]
    assert widths == [8, 8, 8]
    masked, rebuilt = compressed.predict(x, verbose=0), narrow.predict(x, verbose=0)
    assert np.max(np.abs(masked - rebuilt)) < 1e-5
    # The masks matter: the unpruned model computes something else, so the comparison above can fail.
    assert np.max(np.abs(model.predict(x, verbose=0) - rebuilt)) > 1e-3


def test_a_pruned_embedding_head_with_positions_rebuilds_exactly():
    """The speech_embedding head with 3-step convs keeps 5 positions into `flatten`: the classifier's rows are
    selected per position (position x width + kept channel), not once, or the rebuilt head computes another function."""
    import tensorflow as tf

    from pipeline.stages.prune.pruning import Weights, build_head, rebuild_narrow

    cfg = ModelConfig(arch="speech_embedding", head={"units": 16, "layers": 2, "kernel": 3})
    tf.keras.utils.set_random_seed(3)
    model = build_head((9, 1, 96), 5, cfg, [16, 16])
    compressed, x = half_masked(model, (9, 1, 96))
    narrow = rebuild_narrow(model, Weights(compressed), 5, cfg, partial(build_head, (9, 1, 96)))
    assert [layer.filters for layer in narrow.layers if type(layer) is tf.keras.layers.Conv2D] == [8, 8]
    assert narrow.get_layer("flatten").output_shape == (None, 5 * 8)
    assert np.max(np.abs(compressed.predict(x, verbose=0) - narrow.predict(x, verbose=0))) < 1e-5
