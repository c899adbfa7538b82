"""Recipes are validated completely before any work, with errors that point at file, key and line."""

from pathlib import Path

import pytest

from pipeline.recipe import RecipeError, load_recipe, parse_recipe
from tests.conftest import ROOT, run_cli

GOOD = """\
name: demo
seed: 3
data:
  keywords: [yes, no, on, off]
stages:
  - train: {epochs: 2}
  - quantize: {}
  - export:
targets:
  - tflm: {board: cortex-m7-512k}
"""


def problems(text: str) -> list[str]:
    with pytest.raises(RecipeError) as info:
        parse_recipe(text, "r.yaml")
    return str(info.value).splitlines()


def test_shipped_recipes_and_inventory_are_valid():
    from pipeline.hil import load_inventory

    recipe = load_recipe(ROOT / "recipes" / "kws_mcu.yaml")
    assert [s.name for s in recipe.stages] == ["train", "prune", "finetune", "quantize", "export"]
    assert recipe.stage("prune").target == 0.5 and recipe.data.features.shape == (49, 10)
    assert [t.name for t in recipe.targets] == ["tflm", "android", "openvino"]
    assert load_recipe(ROOT / "recipes" / "kws_mcu_sparse.yaml").stage("prune").method == "magnitude"
    kinds = [d.kind for d in load_inventory(ROOT / "recipes" / "devices.yaml").devices]
    assert kinds == ["soft-serial", "host", "serial", "adb"]


def test_distillation_teacher_must_be_an_earlier_keras_stage():
    chain = GOOD.replace("  - train: {epochs: 2}", "  - train: {epochs: 2}\n  - finetune: {distill: {teacher: %s}}")
    assert parse_recipe(chain % "train").stage("finetune").distill.temperature == 4.0
    assert problems(chain % "quantize") == [
        "r.yaml:7: stages[1].finetune.distill.teacher: teacher 'quantize' is not an earlier stage with a Keras "
        "model; expected one of: train"
    ]


def test_yes_no_on_off_stay_words():
    recipe = parse_recipe(GOOD)
    assert recipe.data.keywords == ["yes", "no", "on", "off"]
    assert recipe.data.labels[:2] == ["_silence_", "_unknown_"]


def test_unknown_key_names_file_line_path_and_suggests():
    text = GOOD.replace("  - train: {epochs: 2}", "  - train: {epohcs: 2}")
    assert problems(text) == ["r.yaml:6: stages[0].train.epohcs: unknown key 'epohcs'; did you mean 'epochs'?"]


def test_unknown_stage_and_top_level_key():
    text = GOOD.replace("  - quantize: {}", "  - quantise: {}") + "budget: {ram_kb: 3}\n"
    out = problems(text)
    assert "r.yaml:7: stages[1].quantise: unknown key 'quantise'; did you mean 'quantize'?" in out
    assert any(line.startswith("r.yaml:11: budget: unknown key 'budget'") for line in out)


def test_every_problem_is_reported_at_once():
    text = GOOD.replace("seed: 3", "seed: three").replace("{epochs: 2}", "{epochs: 0}")
    out = problems(text)
    assert out[0].startswith("r.yaml:2: seed: ")
    assert out[1].startswith("r.yaml:6: stages[0].train.epochs: Input should be greater than or equal to 1")


def test_missing_required_key_points_at_parent():
    out = problems(GOOD.replace("  keywords: [yes, no, on, off]\n", "  path: x\n"))
    assert out == ["r.yaml:3: data.keywords: Field required"]


def test_stage_order_is_checked():
    text = GOOD.replace("  - train: {epochs: 2}\n", "")
    assert problems(text) == [
        "r.yaml:6: stages[0].quantize: stage 'quantize' needs a keras model, but gets no model yet"
    ]


def test_targets_need_an_export_stage():
    text = GOOD.replace("  - export:\n", "")
    assert problems(text) == ["r.yaml:8: targets: targets need the chain to end with an 'export' stage"]


def test_an_entry_names_one_stage_or_target():
    text = GOOD.replace("  - quantize: {}", "  - quantize: {}\n    export: {}").replace(
        "  - tflm: {board: cortex-m7-512k}", "  - tflm: {board: cortex-m7-512k}\n    android: {}"
    )
    assert problems(text) == [
        "r.yaml:7: stages[1]: each stage is a mapping with exactly one key, the stage name, e.g. '- train: {}'",
        "r.yaml:11: targets[0]: each target is a mapping with exactly one key, the target name, e.g. '- tflm: {}'",
    ]


def test_duplicate_keys_are_errors():
    assert problems(GOOD + "seed: 4\n") == ["r.yaml:11: seed: duplicate key (first at line 2)"]


def test_yaml_syntax_error_has_a_line():
    out = problems("name: x\nstages: [\n")
    assert out[0].startswith("r.yaml:3: YAML syntax:")


def test_unknown_board_and_bad_range():
    text = GOOD.replace("cortex-m7-512k", "cortex-m7").replace("seed: 3", "seed: 3\nbudgets: {min_accuracy: 1.5}")
    out = problems(text)
    assert "r.yaml:3: budgets.min_accuracy: Input should be less than or equal to 1 (got 1.5)" in out
    assert "r.yaml:11: targets[0].tflm.board: unknown board 'cortex-m7'; did you mean 'cortex-m7-512k'?" in out


def test_duplicate_keywords_rejected():
    out = problems(GOOD.replace("[yes, no, on, off]", "[yes, no, yes]"))
    assert out == ["r.yaml:4: data.keywords: duplicate keywords: yes"]


def test_fingerprint_ignores_comments_and_key_order():
    a = parse_recipe(GOOD)
    b = parse_recipe("# comment\n" + GOOD.replace("name: demo\nseed: 3", "seed: 3\nname: demo"))
    c = parse_recipe(GOOD.replace("seed: 3", "seed: 4"))
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()


def test_cli_rejects_bad_recipe_and_writes_nothing(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(GOOD.replace("epochs: 2", "epochs: -1"))
    runs = tmp_path / "runs"
    done = run_cli("run", str(bad), "--runs-dir", str(runs))
    assert done.returncode == 2
    assert f"{bad}:6: stages[0].train.epochs: Input should be greater than or equal to 1 (got -1)" in done.stderr
    assert not runs.exists()


def test_cli_validate(tmp_path: Path):
    good = tmp_path / "good.yaml"
    good.write_text(GOOD)
    done = run_cli("validate", str(good))
    assert done.returncode == 0 and "ok (demo: train → quantize → export)" in done.stdout
    assert run_cli("validate", str(tmp_path / "missing.yaml")).returncode == 2
