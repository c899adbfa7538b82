"""JSON Schemas of the files users write (recipes, sweeps, device inventories) and the recipe reference, both
generated from the same pydantic models that validate them, installed plugins included: an editor's completion,
the docs and the loader cannot disagree.

The schemas check shape, types, bounds and unknown keys; checks across keys (a stage's chain, a teacher that must
come earlier) stay with `pipeline validate`.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, NoDefault

DIALECT = "https://json-schema.org/draft/2020-12/schema"
KINDS = ("recipe", "sweep", "devices")


def _model(kind: str) -> tuple[type[BaseModel], str]:
    if kind == "recipe":
        from pipeline.recipe import Recipe

        return Recipe, "edge-pipeline recipe: stages, targets and their settings (`pipeline run RECIPE`)"
    if kind == "sweep":
        from pipeline.engine.sweep import SweepConfig

        return SweepConfig, "edge-pipeline sweep: a base recipe, a search space and objectives (`pipeline sweep`)"
    if kind == "devices":
        from pipeline.connect.hil import Inventory

        return Inventory, "edge-pipeline device inventory for hardware in the loop (`pipeline hil --inventory`)"
    raise ValueError(f"unknown schema kind {kind!r}; expected one of: {', '.join(KINDS)}")


def json_schema(kind: str = "recipe") -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a `kind` file."""
    model, description = _model(kind)
    schema = model.model_json_schema(mode="validation", schema_generator=_WithFactoryDefaults)
    for name, definition in schema.get("$defs", {}).items():
        if name in ("StageEntry", "TargetEntry"):
            schema["$defs"][name] = _one_key_entry(definition)
    return {"$schema": DIALECT, "title": f"edge-pipeline {kind}", **schema, "description": description}


class _WithFactoryDefaults(GenerateJsonSchema):
    """Defaults made by a factory (`default_factory=list`) are shown too: an editor's hover then says `[]`."""

    def get_default_value(self, schema: Any) -> Any:
        factory = schema.get("default_factory")
        if factory is not None and not schema.get("default_factory_takes_data"):
            return factory()
        return schema.get("default", NoDefault)


def _one_key_entry(definition: dict[str, Any]) -> dict[str, Any]:
    """A stage or target is a one-key mapping (`- train: {epochs: 20}`, `- export:` with no settings); pydantic
    sees an object with every plugin as an optional key, which would let two names share one list item."""
    options = [
        {"type": "object", "title": key, "properties": {key: value}, "required": [key], "additionalProperties": False}
        for key, value in definition["properties"].items()
    ]
    kind = "stage" if definition.get("title") == "StageEntry" else "target"
    return {"title": definition.get("title"), "description": f"one {kind}: its name, mapped to its settings",
            "oneOf": options}  # fmt: skip


def dumps(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=False, ensure_ascii=False) + "\n"


# ---------------------------------------------------------------------------------------------------------
# The reference: one table per mapping, one row per key.

REFERENCE_HEAD = """# Recipe reference

Generated from the recipe schema by `pipeline schema --reference -o docs/recipe-reference.md`; do not edit (a test
fails when it is out of date). Every key a recipe may hold, with its type, default and bounds; how the pieces fit
together is in [recipes.md](recipes.md). Editors complete and check keys with the JSON Schema
[recipe.schema.json](recipe.schema.json) (`pipeline schema`).

`stages` and `targets` are lists of one-key mappings: `- train: {epochs: 20}`. A key without a default is required.
"""


def reference(schema: dict[str, Any] | None = None) -> str:
    """The recipe reference in Markdown: a section per mapping, in the order a recipe is written."""
    schema = schema or json_schema("recipe")
    defs = schema.get("$defs", {})
    sections: list[str] = [REFERENCE_HEAD]
    for path, node in _tables(schema, defs):
        sections.append(_table(path, node, defs))
    return "\n".join(sections)


def key_paths(schema: dict[str, Any]) -> list[str]:
    """Every key path the reference must list (`data.synthetic.train_voices`, `stages[].train.epochs`)."""
    defs = schema.get("$defs", {})
    return [f"{path}.{key}" if path else key for path, node in _tables(schema, defs) for key in node["properties"]]


def _tables(schema: dict[str, Any], defs: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(key path, object schema) of every mapping reachable from the root, depth first in declaration order."""
    out: list[tuple[str, dict[str, Any]]] = []
    seen: set[str] = set()

    def visit(path: str, node: dict[str, Any]) -> None:
        if path in seen:
            return
        seen.add(path)
        out.append((path, node))
        for key, prop in node["properties"].items():
            for sub_path, sub in _objects(f"{path}.{key}" if path else key, prop, defs):
                visit(sub_path, sub)

    visit("", schema)
    return out


def _objects(path: str, prop: dict[str, Any], defs: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The mappings a property may hold, with their key paths (a list's items get `[]`, a stage its name)."""
    prop = _resolve(prop, defs)
    if "properties" in prop:
        return [(path, prop)]
    found: list[tuple[str, dict[str, Any]]] = []
    for option in prop.get("anyOf", []) + prop.get("oneOf", []):
        option = _resolve(option, defs)
        if option.get("title") and option.get("required") == [option.get("title")] and "properties" in option:
            found += _objects(f"{path}.{option['title']}", option["properties"][option["title"]], defs)
        else:
            found += _objects(path, option, defs)
    if prop.get("type") == "array" and "items" in prop:
        found += _objects(f"{path}[]", prop["items"], defs)
    if isinstance(prop.get("additionalProperties"), dict):
        found += _objects(f"{path}.<name>", prop["additionalProperties"], defs)
    return found


def _resolve(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = {**defs[node["$ref"].split("/")[-1]], **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def _table(path: str, node: dict[str, Any], defs: dict[str, Any]) -> str:
    title = f"`{path}`" if path else "Top level"
    lines = [f"## {title}", ""]
    if node.get("description") and path:
        lines += [" ".join(node["description"].strip().split("\n\n")[0].split()), ""]
    lines += ["| key | type | default | bounds | meaning |", "|---|---|---|---|---|"]
    required = set(node.get("required", []))
    for key, prop in node["properties"].items():
        sub = f"{path}.{key}" if path else key
        if key in required:
            default = "required"
        elif isinstance(prop.get("default"), dict) and "properties" in _resolve(prop, defs):
            default = f"see [`{sub}`](#{_anchor(sub)})"
        else:
            default = _code(json.dumps(prop.get("default"), ensure_ascii=False))
        meaning = " ".join(prop.get("description", "").split())
        lines.append(f"| `{key}` | {_type(prop, defs)} | {default} | {_bounds(prop, defs)} | {_cell(meaning)} |")
    return "\n".join(lines) + "\n"


def _anchor(path: str) -> str:
    """GitHub's anchor for a `## `path`` heading: lower case, punctuation other than - and _ dropped."""
    return "".join(c for c in path.lower() if c.isalnum() or c in "-_")


def _type(prop: dict[str, Any], defs: dict[str, Any]) -> str:
    if "$ref" in prop:
        target = _resolve(prop, defs)
        if "properties" in target:
            return "mapping"
        if "oneOf" in target:
            return "one-key mapping"
        return _type(target, defs)
    if "enum" in prop:
        return " \\| ".join(_code(json.dumps(v)) for v in prop["enum"])
    if "const" in prop:
        return _code(json.dumps(prop["const"]))
    options = prop.get("anyOf") or prop.get("oneOf")
    if options:
        return " or ".join(dict.fromkeys(_type(o, defs) for o in options))
    kind = prop.get("type")
    if kind == "array":
        if "prefixItems" in prop:
            return "[" + ", ".join(_type(p, defs) for p in prop["prefixItems"]) + "]"
        return f"list of {_type(prop.get('items', {}), defs)}"
    if kind == "object":
        inner = prop.get("additionalProperties")
        return f"mapping of name to {_type(inner, defs)}" if isinstance(inner, dict) and inner else "mapping"
    if kind == "string" and prop.get("format") == "path":
        return "path"
    if kind == "null":
        return "null"
    return {"integer": "int", "number": "float", "boolean": "bool", "string": "string"}.get(kind, "any")


BOUNDS = (("minimum", "≥ {}"), ("exclusiveMinimum", "> {}"), ("maximum", "≤ {}"), ("exclusiveMaximum", "< {}"),
          ("minLength", "≥ {} characters"), ("maxLength", "≤ {} characters"), ("minItems", "≥ {} items"),
          ("maxItems", "≤ {} items"), ("pattern", "matches `{}`"))  # fmt: skip


def _bounds(prop: dict[str, Any], defs: dict[str, Any]) -> str:
    found: list[str] = []
    for node in [prop, *(prop.get("anyOf") or []), *([prop["items"]] if isinstance(prop.get("items"), dict) else [])]:
        node = _resolve(node, defs)
        if "properties" in node:  # a mapping: its own keys' bounds are in its own table
            continue
        found += [fmt.format(_number(node[key])) for key, fmt in BOUNDS if key in node]
    return _cell(", ".join(dict.fromkeys(found)))


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _code(text: str) -> str:
    return f"`{text}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")
