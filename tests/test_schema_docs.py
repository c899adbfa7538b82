"""Recipe schema for editors, the generated reference, `pipeline init` (issue #46): generated from the same models
that validate recipes, kept in step with them, complete, and agreeing with the loader on shipped and bad recipes."""

from __future__ import annotations

import json
import typing
from pathlib import Path

import jsonschema
import pytest
import yaml
from pydantic import BaseModel

from pipeline.json_schema import KINDS, dumps, json_schema, key_paths, reference
from pipeline.recipe import Recipe, RecipeError, RecipeLoader, load_recipe, parse_recipe
from pipeline.schema import NamedEntry
from tests.conftest import ROOT, TINY, run_cli

DOCS = ROOT / "docs"
RECIPES = sorted((ROOT / "recipes").glob("*.yaml")) + sorted((ROOT / "tests" / "recipes").glob("*.yaml"))


def _kind(path: Path) -> str:
    data = yaml.load(path.read_text(), Loader=RecipeLoader)
    return "devices" if "devices" in data else "sweep" if "space" in data else "recipe"


@pytest.mark.parametrize("kind", KINDS)
def test_the_shipped_schemas_are_the_generated_ones(kind):
    shipped = DOCS / f"{kind}.schema.json"
    assert shipped.read_text() == dumps(json_schema(kind)), f"out of date: run `pipeline schema {kind} -o {shipped}`"


def test_the_reference_is_generated_and_covers_every_key_with_a_meaning():
    text = reference()
    assert (DOCS / "recipe-reference.md").read_text() == text, (
        "out of date: run `pipeline schema --reference -o docs/recipe-reference.md`"
    )
    paths = list(_model_paths(Recipe))  # walked from the pydantic models, not from the schema the reference reads
    assert sorted(paths) == sorted(key_paths(json_schema("recipe")))
    sections: dict[str, set[str]] = {}
    for line in text.splitlines():
        if line.startswith("## "):
            heading = sections.setdefault(line[3:].strip("`").replace("Top level", ""), set())
        elif line.startswith("| `"):
            heading.add(line.split("|")[1].strip(" `"))
    for path in paths:
        parent, _, key = path.rpartition(".")
        assert key in sections.get(parent, ()), path
    # Every key has a one-line meaning (the last cell of its row is not empty).
    empty = [line for line in text.splitlines() if line.startswith("| `") and line.rstrip().endswith("|  |")]
    assert not empty, empty
    # Plugins are in: every stage and target of the flagship and each target's keys.
    for path in ("stages[].prune.target", "targets[].tflm.board", "targets[].openvino.int8.preset", "tracking.mlflow",
                 "streaming.target_fa_per_hour", "data.synthetic.train_voices"):  # fmt: skip
        assert path in paths


def _model_paths(model: type[BaseModel], prefix: str = ""):
    """Every key path of a pydantic model, e.g. `stages[].train.epochs`, from its fields' annotations."""
    for name, field in model.model_fields.items():
        path = f"{prefix}.{name}" if prefix else name
        yield path
        for inner, inner_path in _models_in(field.annotation, path):
            yield from _model_paths(inner, inner_path)


def _models_in(annotation, path: str):
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if isinstance(annotation, type) and issubclass(annotation, NamedEntry):  # one key per plugin, each its schema
        for name, field in annotation.model_fields.items():
            yield from _models_in(field.annotation, f"{path}.{name}")
    elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation, path
    elif origin is list:
        yield from _models_in(args[0], f"{path}[]")
    elif origin is dict:
        yield from _models_in(args[1], f"{path}.<name>")
    else:
        for arg in args:  # unions, Annotated
            yield from _models_in(arg, path)


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_every_shipped_file_validates_against_its_schema(path):
    kind = _kind(path)
    data = yaml.load(path.read_text(), Loader=RecipeLoader)
    errors = [e.message for e in jsonschema.Draft202012Validator(json_schema(kind)).iter_errors(data)]
    assert not errors, errors
    if path.parent.name == "recipes" and path.parent.parent == ROOT:  # the repository's: editors find the schema
        first = path.read_text().splitlines()[0]
        assert first == f"# yaml-language-server: $schema=../docs/{kind}.schema.json"


BAD = {
    "an unknown key": ("stages", 0, "train", "epochz", 3),
    "a wrong type": ("stages", 0, "train", "epochs", "many"),
    "out of bounds": ("seed", None, None, None, -1),
    "a bad choice": ("data", "features", "kind", None, "spectrogram"),
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_a_bad_recipe_fails_the_schema_and_the_loader_alike(case):
    data = yaml.load(TINY.read_text(), Loader=RecipeLoader)
    *where, value = BAD[case]
    where = [w for w in where if w is not None]
    node = data
    for key in where[:-1]:
        node = node[key] if isinstance(node, list) else node.setdefault(key, {})
    node[where[-1]] = value
    errors = list(jsonschema.Draft202012Validator(json_schema("recipe")).iter_errors(data))
    assert errors, case
    with pytest.raises(RecipeError):
        parse_recipe(yaml.safe_dump(data), "bad.yaml")


def test_two_names_in_one_stage_item_fail_the_schema():
    data = yaml.load(TINY.read_text(), Loader=RecipeLoader)
    data["stages"][0] = {"train": {}, "prune": {}}
    assert list(jsonschema.Draft202012Validator(json_schema("recipe")).iter_errors(data))
    data["stages"][0] = {"train": None}  # `- train:` with nothing after it is a stage with its defaults
    assert not list(jsonschema.Draft202012Validator(json_schema("recipe")).iter_errors(data))


def test_pipeline_schema_writes_the_schema_from_anywhere(tmp_path):
    done = run_cli("schema", "-o", "recipe.schema.json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    schema = json.loads((tmp_path / "recipe.schema.json").read_text())
    assert schema["$schema"].endswith("2020-12/schema") and "tflm" in json.dumps(schema["$defs"]["TargetEntry"])
    refused = run_cli("schema", "devices", "--reference", cwd=tmp_path)
    assert refused.returncode == 2 and "--reference" in refused.stderr


def test_init_writes_a_valid_commented_recipe_and_its_schema(tmp_path):
    done = run_cli("init", "doorbell", "--keywords", "open,close", "--board", "cortex-m33-256k",
                   "--targets", "tflm,openvino", "--out", "recipes", cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    written = tmp_path / "recipes" / "doorbell.yaml"
    recipe = load_recipe(written)
    assert recipe.data.keywords == ["open", "close"] and [t.name for t in recipe.targets] == ["tflm", "openvino"]
    assert recipe.targets[0].config.board == "cortex-m33-256k"
    text = written.read_text()
    assert (
        text.startswith("# yaml-language-server: $schema=recipe.schema.json\n")
        and sum("# " in line for line in text.splitlines()) > 10
    )
    schema = json.loads((written.parent / "recipe.schema.json").read_text())
    assert not list(jsonschema.Draft202012Validator(schema).iter_errors(yaml.load(text, Loader=RecipeLoader)))
    again = run_cli("init", "doorbell", "--keywords", "open", "--out", "recipes", cwd=tmp_path)
    assert again.returncode == 2 and "--force" in again.stderr and written.read_text() == text  # nothing replaced


@pytest.mark.parametrize(
    ("args", "named"),
    [(["--keywords", "yes,_x"], "--keywords"), (["--keywords", "yes", "--board", "nope"], "--board"),
     (["--keywords", "yes", "--targets", "gpu"], "--targets")],
)  # fmt: skip
def test_init_names_the_option_that_is_wrong_and_writes_nothing(args, named, tmp_path):
    done = run_cli("init", "x", *args, cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.startswith(f"error: {named}:"), done.stderr
    assert not list(tmp_path.iterdir())
