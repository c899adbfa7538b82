"""The pruning benchmark's baselines are the chains it says they are: same train, same budget, no teacher."""

import importlib.util

import yaml

from pipeline.recipe import load_recipe, parse_recipe
from tests.conftest import ROOT

spec = importlib.util.spec_from_file_location("bench_prune", ROOT / "scripts" / "bench_prune.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def chains(seed: int | None = None) -> tuple:
    recipe = load_recipe(ROOT / "recipes" / "kws_mcu.yaml")
    built = {label: build(recipe, seed) for label, build in bench.CHAINS.items()}
    return recipe, {label: parse_recipe(yaml.safe_dump(data, sort_keys=False)) for label, data in built.items()}


def test_baselines_share_train_and_budget_and_drop_the_teacher():
    recipe, parsed = chains()
    trained, same, pruned = parsed.values()
    assert [s.name for s in trained.stages] == ["train", "quantize", "export"]
    assert [s.name for s in same.stages] == ["train", "finetune", "quantize", "export"]
    assert pruned.fingerprint() == recipe.fingerprint()
    for baseline in (trained, same):
        assert baseline.stage("train") == recipe.stage("train") and baseline.seed == recipe.seed
        assert [t.name for t in baseline.targets] == ["tflm"] and not baseline.explain.enabled
        assert baseline.stage("quantize") == recipe.stage("quantize")
    finetune, ours = same.stage("finetune"), recipe.stage("finetune")
    assert finetune.epochs == recipe.stage("prune").epochs + ours.epochs
    assert finetune.distill is None and ours.distill is not None
    assert (finetune.lr, finetune.lr_schedule, finetune.patience) == (ours.lr, ours.lr_schedule, ours.patience)


def test_another_seed_reaches_every_chain_under_new_names():
    recipe, parsed = chains(seed=4321)
    assert recipe.seed != 4321 and {r.seed for r in parsed.values()} == {4321}
    base = f"{recipe.name}-seed4321"
    assert [r.name for r in parsed.values()] == [f"{base}-as-trained", f"{base}-unpruned", base]
