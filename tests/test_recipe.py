"""Recipes are validated completely before any work, with errors that point at file, key and line."""

import json
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
    from pipeline.connect.hil import load_inventory

    recipe = load_recipe(ROOT / "recipes" / "kws_mcu.yaml")
    assert [s.name for s in recipe.stages] == ["train", "prune", "finetune", "quantize", "export"]
    assert recipe.stage("prune").target == 0.25 and recipe.data.features.shape == (49, 10)
    assert [t.name for t in recipe.targets] == ["tflm", "android", "openvino", "ethos_u"]
    assert load_recipe(ROOT / "recipes" / "kws_mcu_sparse.yaml").stage("prune").method == "magnitude"
    kinds = [d.kind for d in load_inventory(ROOT / "recipes" / "devices.yaml").devices]
    assert kinds == ["qemu", "soft-serial", "host", "serial", "adb"]


def test_distillation_teacher_must_be_an_earlier_keras_stage():
    chain = GOOD.replace("  - train: {epochs: 2}", "  - train: {epochs: 2}\n  - finetune: {distill: {teacher: %s}}")
    assert parse_recipe(chain % "train").stage("finetune").distill.temperature == 4.0
    assert problems(chain % "quantize") == [
        "r.yaml:7: stages[1].finetune.distill.teacher: teacher 'quantize' is not an earlier stage with a Keras "
        "model; expected one of: train"
    ]


def test_several_teachers_retrain_the_first_stage_so_it_must_be_the_teacher():
    chain = GOOD.replace(
        "  - train: {epochs: 2}",
        "  - train: {epochs: 2}\n  - prune: {}\n  - finetune: {distill: {teacher: %s, teachers: 3}}",
    )
    assert parse_recipe(chain % "train").stage("finetune").distill.teachers == 3
    assert problems(chain % "prune") == [
        "r.yaml:8: stages[2].finetune.distill.teachers: 3 teachers retrain the chain's first stage ('train') at "
        "other seeds, so the teacher must be 'train', not 'prune'"
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


# ---------------------------------------------------------------------------------------------------------
# Hardening: every malformed recipe is a located RecipeError (the CLI's exit 2), never a traceback or a hang.


def file_problems(tmp_path: Path, content: bytes) -> list[str]:
    path = tmp_path / "r.yaml"
    path.write_bytes(content)
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    return [line.replace(str(path), "r.yaml") for line in str(info.value).splitlines()]


def alias_bomb(levels: int = 9, width: int = 9) -> str:
    """'Billion laughs': each line repeats the previous anchor `width` times, width**levels nodes in all."""
    lines = [f"l0: &l0 [{', '.join(['lol'] * width)}]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]" for i in range(1, levels)]
    return GOOD.replace("seed: 3\n", "seed: 3\n" + "\n".join(lines) + "\n")


def test_empty_file(tmp_path: Path):
    assert file_problems(tmp_path, b"") == [
        "r.yaml:1: a recipe is a YAML mapping (name, seed, data, model, stages, ...)"
    ]


def test_binary_file(tmp_path: Path):
    assert file_problems(tmp_path, bytes(range(256))) == [
        "r.yaml:1: NUL byte at line 1, column 1: a recipe is text, not binary"
    ]


def test_nul_byte_is_located(tmp_path: Path):
    content = GOOD.encode().replace(b"  - quantize: {}", b"  - quantize: {}\x00")
    assert file_problems(tmp_path, content) == ["r.yaml:7: NUL byte at line 7, column 17: a recipe is text, not binary"]


def test_invalid_utf8_is_located(tmp_path: Path):
    content = GOOD.encode().replace(b"[yes, no, on, off]", "[yés, no, \xff]".encode("latin-1"))
    # line 4 is '  keywords: [y\xe9s, no, \xff]': the first bad byte is the latin-1 e-acute, the 15th character
    assert file_problems(tmp_path, content) == [
        f"r.yaml:4: invalid UTF-8 at line 4, column 15 (byte offset {GOOD.index('[yes') + 2}): a recipe is UTF-8 text"
    ]
    # valid UTF-8 before the bad byte counts as characters, not bytes
    content = GOOD.encode().replace(b"name: demo", "name: démo".encode() + b"\xff")
    assert file_problems(tmp_path, content) == [
        "r.yaml:1: invalid UTF-8 at line 1, column 11 (byte offset 11): a recipe is UTF-8 text"
    ]


def test_utf8_bom_is_fine(tmp_path: Path):
    path = tmp_path / "r.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + GOOD.encode())
    assert load_recipe(path).name == "demo"


def test_control_characters_are_located():
    # yaml.reader.ReaderError has a position, not a mark: the line is computed
    assert problems(GOOD.replace("  - export:", "  - export:\x01")) == [
        "r.yaml:8: YAML syntax: character U+0001 at column 12: special characters are not allowed"
    ]
    assert problems(GOOD.replace("seed: 3", "seed: 3\x00")) == [
        "r.yaml:2: YAML syntax: character U+0000 at column 8: special characters are not allowed"
    ]


def test_tab_indentation_is_located():
    assert problems(GOOD.replace("  keywords:", "\tkeywords:")) == [
        "r.yaml:4: YAML syntax: found character '\\t' that cannot start any token (a tab: YAML indents with spaces "
        "only)"
    ]


def test_duplicate_nested_keys_are_errors():
    text = GOOD.replace("{epochs: 2}", "{epochs: 2, batch_size: 10, epochs: 3}")
    assert problems(text) == ["r.yaml:6: stages[0].train.epochs: duplicate key (first at line 6)"]


def test_python_tags_are_refused():
    out = problems(GOOD.replace("seed: 3", "seed: !!python/object/apply:os.system [echo pwned]"))
    assert out == [
        "r.yaml:2: YAML: tag '!!python/object/apply:os.system' is not allowed: a recipe holds plain data "
        "(mappings, lists, strings, numbers)"
    ]


def test_unreadable_values_are_located():
    assert problems(GOOD.replace("seed: 3", "seed: !!timestamp soon")) == [
        "r.yaml:2: YAML: cannot read 'soon' as !!timestamp"
    ]
    # Python refuses int() of more than 4300 digits with a ValueError from deep inside the constructor
    out = problems(GOOD.replace("epochs: 2", "epochs: " + "9" * 5000))
    assert out == [f"r.yaml:6: YAML: cannot read '{'9' * 40}'... (5000 characters) as !!int"]


def test_alias_bomb_is_refused_before_it_expands():
    import time

    start = time.monotonic()
    out = problems(alias_bomb())  # 9**9 = 387 million nodes if expanded
    assert out == ["r.yaml:8: l5: aliases expand to more than 100,000 nodes (an alias bomb?)"]
    assert time.monotonic() - start < 5


def test_recursive_alias_and_deep_nesting_are_refused():
    assert problems(GOOD.replace("seed: 3", "seed: &s [*s]")) == [
        "r.yaml:2: seed[0]: an alias refers to a node that contains it (recursive data)"
    ]
    deep = GOOD.replace("seed: 3", "seed: " + "[" * 2000 + "]" * 2000)  # composing would overflow the stack
    assert problems(deep) == ["r.yaml:2: YAML: nested more than 64 levels deep"]
    # each alias nests one level deeper than the last: shallow to compose, 100 deep once expanded
    chain = ["c0: &c0 x"] + [f"c{i}: &c{i} [*c{i - 1}]" for i in range(1, 100)]
    assert problems(GOOD.replace("seed: 3\n", "seed: 3\n" + "\n".join(chain) + "\n")) == [
        "r.yaml:67: c64: aliases nest more than 64 levels deep"
    ]


def test_sensible_aliases_and_merge_keys_still_work():
    text = GOOD.replace("  - tflm: {board: cortex-m7-512k}", "  - tflm: {board: cortex-m7-512k, budgets: *b}")
    text = text.replace("seed: 3", "seed: 3\nbudgets: &b {min_accuracy: 0.5, ram_kb: 64}")
    recipe = parse_recipe(text)
    assert recipe.targets[0].config.budgets == recipe.budgets and recipe.budgets.ram_kb == 64
    merged = parse_recipe(
        GOOD.replace("{epochs: 2}", "&t {epochs: 2, batch_size: 8}\n  - finetune: {<<: *t, lr: 0.01}")
    )
    assert (merged.stage("finetune").epochs, merged.stage("finetune").batch_size) == (2, 8)


@pytest.mark.parametrize("word", ["../../x", "a/b", '"', "\\", "two words", "", "Yes", "x" * 33, "yes\n", "1up"])
def test_keywords_must_be_safe_words(word: str):
    text = GOOD.replace("[yes, no, on, off]", f"[no, {json.dumps(word)}]")
    assert problems(text) == [
        f"r.yaml:4: data.keywords[1]: {word!r} is not a usable word: 1 to 32 lowercase letters, digits, _, ' or -, "
        "starting with a letter (words become folder names and C strings)"
    ]


def test_keyword_rules_keep_reserved_and_duplicates():
    assert parse_recipe(GOOD.replace("[yes, no, on, off]", '["don\'t", left-turn, go_2, ' + "x" * 32 + "]"))
    assert problems(GOOD.replace("[yes, no, on, off]", "[yes, _silence_]")) == [
        "r.yaml:4: data.keywords[1]: '_silence_' starts with '_' (reserved for _silence_/_unknown_)"
    ]
    assert problems(GOOD.replace("[yes, no, on, off]", "[yes, no, yes]")) == [
        "r.yaml:4: data.keywords: duplicate keywords: yes"
    ]


def test_unknown_words_are_safe_and_unique():
    text = GOOD.replace("  keywords:", "  synthetic: {unknown_words: [cat, ../etc, cat]}\n  keywords:")
    out = problems(text)
    assert out == [
        "r.yaml:4: data.synthetic.unknown_words[1]: '../etc' is not a usable word: 1 to 32 lowercase letters, "
        "digits, _, ' or -, starting with a letter (words become folder names and C strings)"
    ]
    text = GOOD.replace("  keywords:", "  synthetic: {unknown_words: [cat, dog, cat]}\n  keywords:")
    assert problems(text) == ["r.yaml:4: data.synthetic.unknown_words: listed twice: cat"]


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("epochs: 2", "epochs: 10000000000000000000000",
         "r.yaml:6: stages[0].train.epochs: Input should be less than or equal to 10000 (got 10000000000000000000000)"),
        ("epochs: 2", "epochs: 2, batch_size: 1000000", "stages[0].train.batch_size: Input should be less than or equal"),
        ("seed: 3", "seed: 4294967296", "r.yaml:2: seed: Input should be less than 4294967296"),
        ("seed: 3", "seed: -1", "r.yaml:2: seed: Input should be greater than or equal to 0"),
        ("epochs: 2", "lr: .inf", "stages[0].train.lr: Input should be a finite number"),
        ("  keywords:", "  synthetic: {train_voices: 1000000}\n  keywords:",
         "data.synthetic.train_voices: Input should be less than or equal to 100000"),
        ("  keywords:", "  synthetic: {unknown_per_voice: 101}\n  keywords:",
         "data.synthetic.unknown_per_voice: Input should be less than or equal to 100"),
        ("  keywords:", "  features: {stride_ms: 0.01}\n  keywords:", "data.features: window_ms and stride_ms must"),
        ("{board: cortex-m7-512k}", "{latency_runs: 100001}", "targets[0].tflm.latency_runs: Input should be less"),
        ("quantize: {}", "quantize: {calibration_samples: 100001}", "stages[1].quantize.calibration_samples: Input"),
        ("  - tflm: {board: cortex-m7-512k}", "  - openvino: {threads: 257, throughput_seconds: 3601}",
         "targets[0].openvino.threads: Input should be less than or equal to 256"),
        ("  - tflm: {board: cortex-m7-512k}", "  - openvino: {throughput_seconds: 3601}",
         "targets[0].openvino.throughput_seconds: Input should be less than or equal to 3600"),
        ("  - tflm: {board: cortex-m7-512k}", "  - android: {threads: [1, 1000]}",
         "targets[0].android.threads: thread counts must be at most 256"),
        ("seed: 3", "seed: 3\nexplain: {ig_steps: 100000, samples: 1000000, pictures_per_class: 101}",
         "r.yaml:3: explain.ig_steps: Input should be less than or equal to 1024"),
    ],
)  # fmt: skip
def test_counts_have_upper_bounds(old: str, new: str, message: str):
    assert message in "\n".join(problems(GOOD.replace(old, new)))


def test_prune_counts_have_upper_bounds():
    text = GOOD.replace(
        "  - quantize:", "  - prune: {steps: 100000, warmup_epochs: 100000, epochs: 100000}\n  - quantize:"
    )
    out = "\n".join(problems(text))
    for key in ("epochs", "steps", "warmup_epochs"):
        assert f"stages[1].prune.{key}: Input should be less than or equal to 10000" in out


def test_fallback_none_means_a_missing_path_is_an_error():
    synthetic = parse_recipe(GOOD).data
    assert synthetic.fallback == "synthetic" and synthetic.fallback_allowed
    for word in ("none", "error"):
        data = parse_recipe(GOOD.replace("  keywords:", f"  path: sc\n  fallback: {word}\n  keywords:")).data
        assert data.fallback == word and not data.fallback_allowed
        assert problems(GOOD.replace("  keywords:", f"  fallback: {word}\n  keywords:")) == [
            f"r.yaml:3: data: fallback '{word}' needs a path: the real Speech Commands v2 folder"
        ]
    assert problems(GOOD.replace("  keywords:", "  fallback: nothing\n  keywords:"))[0].startswith(
        "r.yaml:4: data.fallback: Input should be 'synthetic', 'none' or 'error'"
    )


def test_relative_paths_resolve_against_the_recipe_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    folder = tmp_path / "recipes"
    folder.mkdir()
    (folder / "r.yaml").write_text(
        GOOD.replace("  keywords:", "  path: ../data/sc\n  keywords:").replace(
            "  - tflm: {board: cortex-m7-512k}", "  - android: {benchmark_model: bin/benchmark_model}"
        )
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    recipe = load_recipe(Path("..") / "recipes" / "r.yaml")
    assert recipe.base_dir == folder.resolve()
    assert recipe.resolve_path(recipe.data.path) == folder.resolve() / "../data/sc"
    android = recipe.targets[0].config
    assert recipe.resolve_path(android.benchmark_model) == folder.resolve() / "bin/benchmark_model"
    assert recipe.resolve_path("/abs/x") == Path("/abs/x")
    assert recipe.resolve_path("~/x") == Path.home() / "x"
    # text without a file: the current directory
    assert parse_recipe(GOOD).resolve_path("d") == elsewhere / "d"
    # re-read from a run folder, it keeps pointing at the original folder
    moved = recipe.with_base_dir(tmp_path)
    assert moved.resolve_path("d") == tmp_path.resolve() / "d" and recipe.base_dir == folder.resolve()
    # command-line overrides keep the folder; a path given on the command line is from the current directory
    phone = recipe.with_target_options("android", adb_serial="R58M", benchmark_model=Path("bm"))
    assert phone.base_dir == folder.resolve()
    assert phone.resolve_path(phone.targets[0].config.benchmark_model) == elsewhere / "bm"
    # the folder is not content
    assert moved.fingerprint() == recipe.fingerprint() == parse_recipe((folder / "r.yaml").read_text()).fingerprint()


def test_cli_refuses_malformed_files_and_writes_nothing(tmp_path: Path):
    bomb, nul = tmp_path / "bomb.yaml", tmp_path / "nul.yaml"
    bomb.write_text(alias_bomb())
    nul.write_bytes(GOOD.encode().replace(b"seed: 3", b"seed: \x003"))
    bad_utf8 = tmp_path / "latin1.yaml"
    bad_utf8.write_bytes(GOOD.replace("demo", "démo").encode("latin-1"))
    expected = {
        bomb: f"{bomb}:8: l5: aliases expand to more than 100,000 nodes (an alias bomb?)",
        nul: f"{nul}:2: NUL byte at line 2, column 7: a recipe is text, not binary",
        bad_utf8: f"{bad_utf8}:1: invalid UTF-8 at line 1, column 8 (byte offset 7): a recipe is UTF-8 text",
    }
    for path, message in expected.items():
        done = run_cli("validate", str(path))
        assert (done.returncode, done.stderr.strip()) == (2, message)
    for path in (bomb, nul, bad_utf8):
        runs = tmp_path / "runs"
        done = run_cli("run", str(path), "--runs-dir", str(runs), "--adb-serial", "R58M")
        assert done.returncode == 2 and done.stderr.strip() == expected[path], done.stderr
        assert "Traceback" not in done.stderr and "--adb-serial" not in done.stderr
        assert not runs.exists()
