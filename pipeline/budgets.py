"""Budgets: limits a recipe states, checked against measured numbers; any violation fails the run."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from pipeline.recipe import BudgetsConfig, Recipe

# budget key -> (how to read the measured value, unit, whether the limit is a floor)
MEASURES = {
    "min_accuracy": (lambda m: m.get("accuracy"), "", True),
    "flash_kb": (lambda m: m["flash_bytes"] / 1024 if m.get("flash_bytes") is not None else None, "KB", False),
    "ram_kb": (lambda m: m["ram_bytes"] / 1024 if m.get("ram_bytes") is not None else None, "KB", False),
    "latency_ms": (lambda m: (m.get("latency_ms") or {}).get("median"), "ms", False),
}


@dataclass
class BudgetResult:
    name: str
    limit: float
    actual: float
    unit: str
    floor: bool
    ok: bool

    def describe(self) -> str:
        unit = f" {self.unit}" if self.unit else ""
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


def _merged(top: BudgetsConfig, own: BudgetsConfig) -> dict[str, float]:
    merged = {k: v for k, v in top.model_dump().items() if v is not None}
    merged.update({k: v for k, v in own.model_dump().items() if v is not None})
    return merged


def check(recipe: Recipe, final_stage: dict[str, Any], targets: dict[str, dict[str, Any]]) -> list[BudgetResult]:
    """Top-level budgets apply to every target (a target's own budgets override them); with no targets,
    min_accuracy applies to the last stage."""
    results = []
    scopes = [(t.name, _merged(recipe.budgets, t.config.budgets), targets[t.name]) for t in recipe.targets]
    if not scopes:
        scopes = [(f"stage {recipe.stages[-1].name}", _merged(recipe.budgets, BudgetsConfig()), final_stage)]
    for scope, limits, metrics in scopes:
        for key, limit in limits.items():
            read, unit, floor = MEASURES[key]
            actual = read(metrics)
            if actual is None:
                continue  # the scope does not measure it (e.g. flash for a stage)
            ok = actual >= limit if floor else actual <= limit
            results.append(BudgetResult(f"{scope}.{key}", float(limit), float(actual), unit, floor, ok))
    return results


def check_explain(recipe: Recipe, explain: dict[str, Any]) -> list[BudgetResult]:
    """The explain section's floors, on what is deployed: every target's models (the chain's last model when the
    recipe has no targets). Intermediate stages are reported, not gated: nobody ships a model before fine-tuning."""
    floors = recipe.explain.budgets
    rows = explain["models"][1:]
    gated = [r for r in rows if r.get("role") == "target"] or rows[-1:]
    results = []
    for row in gated:
        measured = {"min_agreement": row["agreement"], "min_attribution_correlation": row["occlusion"]["spearman"]}
        for key, actual in measured.items():
            limit = getattr(floors, key)
            if limit is not None:
                actual = actual if actual is not None else -1.0  # undefined correlation cannot pass a floor
                results.append(BudgetResult(f"explain.{row['model']}.{key}", limit, actual, "", True, actual >= limit))
    return results
