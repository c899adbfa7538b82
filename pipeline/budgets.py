"""Budgets: limits a recipe states, checked against measured numbers; any violation fails the run."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from pydantic import Field

from pipeline.measurement import figure
from pipeline.schema import Strict

if TYPE_CHECKING:
    from pipeline.recipe import Recipe


class BudgetsConfig(Strict):
    min_accuracy: float | None = Field(
        None, ge=0, le=1, description="lowest test accuracy allowed, share 0-1 (null: no floor)"
    )
    flash_kb: float | None = Field(None, gt=0, description="most flash allowed, KB (null: no limit)")
    ram_kb: float | None = Field(None, gt=0, description="most RAM allowed, KB (null: no limit)")
    latency_ms: float | None = Field(
        None, gt=0, description="longest median time of one inference, ms (null: no limit)"
    )
    allow_estimates: bool = Field(
        False, description="gate on estimated figures too (e.g. a host time standing in for the device's)"
    )


# budget key -> (how to read the measured value, unit, whether the limit is a floor, the typed figure it reads)
MEASURES = {
    "min_accuracy": (lambda m: m.get("accuracy"), "", True, None),
    "flash_kb": (lambda m: m["flash_bytes"] / 1024 if m.get("flash_bytes") is not None else None, "KB", False, "flash"),
    "ram_kb": (lambda m: m["ram_bytes"] / 1024 if m.get("ram_bytes") is not None else None, "KB", False, "ram"),
    "latency_ms": (lambda m: (m.get("latency_ms") or {}).get("median"), "ms", False, "latency"),
}


@dataclass
class BudgetResult:
    name: str
    limit: float
    actual: float
    unit: str
    floor: bool
    ok: bool
    estimate: str | None = None  # how the figure was estimated, when it was not measured: the budget refused it

    def describe(self) -> str:
        unit = f" {self.unit}" if self.unit else ""
        if self.estimate is not None and not self.ok:
            return (
                f"{self.name}: {self.actual:.4g}{unit} is an estimate ({self.estimate}); a budget does not gate on an "
                "estimate unless the recipe says `allow_estimates: true` in that budgets block"
            )
        over = self.actual - self.limit
        if self.ok:
            return f"{self.name}: {self.actual:.4g}{unit} within {self.limit:.4g}{unit}"
        word = "below the minimum" if self.floor else "over the limit"
        return (
            f"{self.name}: {self.actual:.4g}{unit} is {word} {self.limit:.4g}{unit} "
            f"by {abs(over):.4g}{unit} ({abs(over) / self.limit:.1%})"
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"message": self.describe()}


def _merged(top: BudgetsConfig, own: BudgetsConfig) -> dict[str, Any]:
    merged = {k: v for k, v in top.model_dump(exclude_defaults=True).items() if v is not None}
    merged.update({k: v for k, v in own.model_dump(exclude_defaults=True).items() if v is not None})
    return merged


def check(recipe: Recipe, final_stage: dict[str, Any], targets: dict[str, dict[str, Any]]) -> list[BudgetResult]:
    """Top-level budgets apply to every target (a target's own budgets override them); with no targets,
    min_accuracy applies to the last stage."""
    results = []
    scopes = [(t.name, _merged(recipe.budgets, t.config.budgets), targets[t.name]) for t in recipe.targets]
    if not scopes:
        scopes = [(f"stage {recipe.stages[-1].name}", _merged(recipe.budgets, BudgetsConfig()), final_stage)]
    for scope, limits, metrics in scopes:
        allow_estimates = limits.pop("allow_estimates", False)
        for key, limit in limits.items():
            read, unit, floor, figure_name = MEASURES[key]
            actual = read(metrics)
            if actual is None:
                continue  # the scope does not measure it (e.g. flash for a stage)
            ok = actual >= limit if floor else actual <= limit
            fig = figure(metrics, figure_name) if figure_name else None
            estimate = fig.method if fig is not None and not fig.measured else None
            if estimate is not None and not allow_estimates:
                ok = False
            results.append(BudgetResult(f"{scope}.{key}", float(limit), float(actual), unit, floor, ok, estimate))
        results += _capacity(scope, metrics)
    return results


def _capacity(scope: str, metrics: dict[str, Any]) -> list[BudgetResult]:
    """A target's hard limits (a board's flash and RAM, `metrics["capacity"]`): checked like budgets, always,
    against measured figures only (an estimate proves nothing about fitting)."""
    capacity = metrics.get("capacity") or {}
    results = []
    for key in ("flash_kb", "ram_kb"):
        read, unit, _, figure_name = MEASURES[key]
        actual, fig = read(metrics), figure(metrics, figure_name)
        if capacity.get(key) is None or actual is None or (fig is not None and not fig.measured):
            continue
        name = f"{scope}.{capacity['name']}.{key}"
        results.append(BudgetResult(name, float(capacity[key]), float(actual), unit, False, actual <= capacity[key]))
    return results


def check_explain(recipe: Recipe, explain: dict[str, Any]) -> list[BudgetResult]:
    """The explain section's floors, on what is deployed: every target's models (the chain's last model when the
    recipe has no targets). Intermediate stages are reported, not gated: nobody ships a model before fine-tuning."""
    floors = recipe.explain.budgets
    rows = [r for r in explain["models"][1:] if r.get("role") != "control"]
    gated = [r for r in rows if r.get("role") == "target"] or rows[-1:]
    control = (explain.get("control") or {}).get("models", {})
    results = []
    for row in gated:
        measured = {"min_agreement": row["agreement"], "min_attribution_correlation": row["occlusion"]["spearman"]}
        for key, actual in measured.items():
            limit = getattr(floors, key)
            if limit is not None:
                actual = actual if actual is not None else -1.0  # undefined correlation cannot pass a floor
                results.append(BudgetResult(f"explain.{row['model']}.{key}", limit, actual, "", True, actual >= limit))
        beyond = control.get(row["model"], {})
        ceilings = {"max_agreement_drop_beyond_noise": beyond.get("agreement"),
                    "max_attribution_drop_beyond_noise": beyond.get("occlusion_spearman")}  # fmt: skip
        for key, drop in ceilings.items():
            limit = getattr(floors, key)
            if limit is not None:
                actual = drop["value"] if drop and drop["value"] is not None else 2.0  # not measured: worst case
                results.append(BudgetResult(f"explain.{row['model']}.{key}", limit, actual, "", False, actual <= limit))
    return results
