"""prune: NNCF compression (filter pruning or magnitude sparsity) trained under its scheduler, then made physical.
The work is in `pruning.py`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, model_validator

from pipeline.analysis.markdown import integer, pct, ratio, table
from pipeline.schema import StageConfig, suggest

if TYPE_CHECKING:
    from pipeline.recipe import Recipe
    from pipeline.stages import StageContext

FILTERS = "filters.json"  # every filter's importance and whether it was kept (filter pruning)


FILTER_SCHEDULES = ("exponential", "exponential_with_bias", "baseline")
SPARSITY_SCHEDULES = ("polynomial", "exponential", "multistep")


class PruneConfig(StageConfig):
    """NNCF compression trained under its scheduler; keys map onto NNCF's `filter_pruning`/`magnitude_sparsity`.

    `filter` removes whole filters (the model is rebuilt narrower afterwards); `magnitude` zeroes single weights
    (the shapes stay: TFLM and LiteRT run dense kernels, so only compressed storage shrinks).
    """

    consumes: ClassVar[str | None] = "keras"
    produces: ClassVar[str] = "keras"
    method: Literal["filter", "magnitude"] = Field(
        "filter", description="filter: remove whole filters (rebuilt narrower); magnitude: zero single weights"
    )
    target: float = Field(0.5, gt=0, lt=1, description="share of filters (filter) or weights (magnitude) removed")
    init: float = Field(0.0, ge=0, lt=1, description="level applied when pruning starts")
    schedule: str | None = Field(
        None,
        description="filter: exponential|exponential_with_bias|baseline; magnitude: polynomial|exponential|multistep",
    )
    steps: int = Field(3, ge=1, le=10_000, description="epochs over which the level rises from init to target")
    warmup_epochs: int = Field(
        0, ge=0, le=10_000, description="epochs trained before any pruning (NNCF num_init_steps)"
    )
    importance: Literal["L1", "L2", "geometric_median"] = Field(
        "L2", description="filter: how filters are ranked for removal: L1 or L2 norm, or geometric_median"
    )
    prune_first_conv: bool = Field(True, description="filter: the model's first conv may be pruned too")
    prune_downsample_convs: bool = Field(True, description="filter: convs with a stride above 1 may be pruned too")
    ignore: list[str] = Field(default_factory=list, description="layer names NNCF must leave whole")
    epochs: int = Field(6, ge=1, le=10_000, description="epochs trained under the compression scheduler")
    batch_size: int = Field(100, ge=1, le=100_000, description="clips per training step")
    lr: float = Field(5e-4, gt=0, le=10, description="Adam learning rate while pruning")

    @model_validator(mode="after")
    def _consistent(self) -> PruneConfig:
        schedules = FILTER_SCHEDULES if self.method == "filter" else SPARSITY_SCHEDULES
        if self.schedule is not None and self.schedule not in schedules:
            raise ValueError(
                f"schedule '{self.schedule}' is not one of {self.method} pruning's{suggest(self.schedule, schedules)}"
            )
        if self.init > self.target:
            raise ValueError(f"init ({self.init}) is above target ({self.target})")
        if self.epochs < self.warmup_epochs + self.steps:
            raise ValueError(
                f"epochs ({self.epochs}) < warmup_epochs + steps ({self.warmup_epochs + self.steps}): "
                "the level would never reach its target"
            )
        if self.method == "magnitude":
            filter_only = {"importance", "prune_first_conv", "prune_downsample_convs"} & self.model_fields_set
            if filter_only:
                raise ValueError(f"{', '.join(sorted(filter_only))}: only for method 'filter'")
        return self

    def check_recipe(self, recipe: Recipe) -> tuple[tuple[str | int, ...], str] | None:
        from pipeline.models.zoo import layer_names

        names = layer_names(recipe.model)
        for j, name in enumerate(self.ignore):
            if name not in names:
                return ("ignore", j), f"no layer '{name}' in the model{suggest(name, names)}"
        return None

    @property
    def scheduler(self) -> str:
        return self.schedule or ("exponential" if self.method == "filter" else "polynomial")


Config = PruneConfig


def run(cfg: PruneConfig, ctx: StageContext) -> dict[str, Any]:
    from pipeline.stages.prune.pruning import prune

    return prune(cfg, ctx)


def report(report: dict[str, Any]) -> list[str]:
    """The report's pruning section: per-layer filters kept, params and MACs before and after, accuracy steps."""
    stages = report["stages"]
    index = next((i for i, s in enumerate(stages) if s["name"] == "prune"), None)
    if index is None:
        return []
    prune = stages[index]
    cfg = prune["nncf_config"]["compression"]
    before, export = prune["before"], next((s for s in stages if s["name"] == "export"), None)
    accuracy_steps = [
        f"{s['name']} {pct(s.get('accuracy'))}" for s in stages[max(0, index - 1) :] if s["name"] != "export"
    ]
    lines = ["## Pruning", ""]
    if prune["method"] == "filter":
        params = cfg["params"]
        lines += [
            f"NNCF `{cfg['algorithm']}`: {params['filter_importance']} importance, {params['schedule']} schedule from "
            f"{cfg['pruning_init']:.0%} to {params['pruning_target']:.0%} over {params['pruning_steps']} epochs "
            f"({prune['epochs_run']} epochs trained under NNCF); {prune['level']:.0%} of the filters removed. The masked model "
            f"was rebuilt with only the kept filters: largest output difference on the test split "
            f"{prune['rebuilt_max_abs_diff']:.1e}.",
            "",
            table(
                ["layer", "filters before", "filters after", "kept"],
                [
                    [
                        row["layer"] + (" (ignored)" if row["ignored"] else ""),
                        row["filters_before"],
                        row["filters_after"],
                        ratio(row["filters_after"], row["filters_before"]),
                    ]
                    for row in prune["layers"]
                ],
            ),  # fmt: skip
            "",
        ]
    else:
        lines += [
            f"NNCF `{cfg['algorithm']}` to {cfg['params']['sparsity_target']:.0%}: {pct(prune['zero_weights'])} of "
            "the kernel weights are zero. Shapes do not change: TFLite Micro and LiteRT run dense kernels, so arena "
            "and latency stay what they were; only compressed storage shrinks"
            + (
                f" (.tflite {export['bytes']:,} B, deflated {export['deflated_bytes']:,} B)."
                if export and "deflated_bytes" in export
                else "."
            ),
            "",
        ]
    after = stages[-1]
    lines += [
        table(
            ["", "before pruning", "after", "ratio"],
            [
                [
                    "params",
                    integer(before["params"]),
                    integer(after.get("params")),
                    ratio(after.get("params", 0), before["params"]),
                ],
                [
                    "MACs",
                    integer(before["macs"]),
                    integer(after.get("macs")),
                    ratio(after.get("macs", 0), before["macs"]),
                ],
            ],
        ),  # fmt: skip
        "",
        f"Test accuracy: {' → '.join(accuracy_steps)} (after pruning, before fine-tuning: {pct(prune['accuracy'])}; "
        f"NNCF's masked model: {pct(prune['masked_accuracy'])}).",
        "",
    ]
    return lines
