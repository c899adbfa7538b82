"""The building blocks every schema in the project is made of: recipe shell, stages, targets, inventories.

Kept apart from `pipeline.recipe` so a plugin's config schema (a stage's or a target's) can be written without
importing the recipe, which imports every plugin: data flows one way, recipe -> plugins, never back.
"""

from __future__ import annotations

import difflib
from collections import Counter
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict, model_validator
from pydantic_core import PydanticCustomError

if TYPE_CHECKING:
    from pipeline.recipe import Recipe


def suggest(word: str, known: Any) -> str:
    """'; did you mean X?' for a near miss, else the list of what is known."""
    known = sorted(known)
    close = difflib.get_close_matches(word, known, n=1)
    if close:
        return f"; did you mean '{close[0]}'?"
    return f"; expected one of: {', '.join(known)}" if known else ""


MAX_THREADS = 256  # thread and stream counts a target config may ask for


class Strict(BaseModel):
    """Frozen, and unknown keys are errors (reported with the closest known key, see `_unknown_key`)."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


Range = tuple[float, float]


def ordered(value: Range) -> Range:
    if value[0] > value[1]:
        raise ValueError(f"range must be [low, high], got {list(value)}")
    return value


def unique_items(value: list[Any]) -> list[Any]:
    dupes = sorted(v for v, n in Counter(value).items() if n > 1)
    if dupes:
        raise ValueError(f"listed twice: {', '.join(map(str, dupes))}")
    return value


def changed(model: BaseModel) -> set[str]:
    """Fields whose value differs from the default: what a recipe really sets (a dumped and reloaded copy sets
    every field, so `model_fields_set` would say all of them)."""
    return {name for name, field in type(model).model_fields.items()
            if getattr(model, name) != field.get_default(call_default_factory=True)}  # fmt: skip


def located(path: tuple[str | int, ...], message: str) -> PydanticCustomError:
    return PydanticCustomError("located", "{message}", {"message": message, "path": list(path)})


class NamedEntry(Strict):
    """A list item that is a one-key mapping from a name to its config, e.g. ``- train: {epochs: 20}``."""

    kind: ClassVar[str]
    example: ClassVar[str]

    @model_validator(mode="before")
    @classmethod
    def _one_key(cls, data: Any) -> Any:
        if not isinstance(data, dict) or len(data) != 1:
            raise PydanticCustomError(
                "single_key",
                f"each {cls.kind} is a mapping with exactly one key, the {cls.kind} name, e.g. '- {cls.example}: {{}}'",
            )
        (key, value) = next(iter(data.items()))
        return {key: {} if value is None else value}

    @property
    def name(self) -> str:
        return next(k for k in type(self).model_fields if getattr(self, k) is not None)

    @property
    def config(self) -> Any:
        return getattr(self, self.name)


class StageConfig(Strict):
    """A stage's recipe schema. `consumes`/`produces` name the artifact kinds (keras, tflite, export), so the
    chain is checked before any work."""

    consumes: ClassVar[str | None]
    produces: ClassVar[str]

    def check_recipe(self, recipe: Recipe) -> tuple[tuple[str | int, ...], str] | None:
        """A problem with this stage given the rest of the recipe: (key path below the stage, message), or None."""
        return None

    def outside_inputs(self, recipe: Recipe) -> Any:
        """What the stage reads from outside the chain (e.g. another run's model), as JSON for its cache key."""
        return None
