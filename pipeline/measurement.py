"""Typed figures: what a number is, how it was obtained, and whether it was measured on the thing it describes.

A target reports flash, RAM and latency as `Measurement`s. ``measured`` is true only when the figure comes from
the device class it describes (or is exact by construction, like a model's byte count); a host time standing in
for a board's, or a compiler's cycle estimate, is an estimate. The report renders "measured" or "estimate" from
this flag, and budgets refuse to gate on an estimate unless the recipe says `allow_estimates: true`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

FIGURES = ("flash", "ram", "latency")  # what every target reports, in `metrics["figures"]`


@dataclass(frozen=True)
class Measurement:
    value: float
    unit: str  # "B" or "ms"
    method: str  # how it was obtained, for people
    measured: bool  # False: an estimate (a model, a proxy device, a compiler's prediction)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Measurement:
        return cls(float(data["value"]), data["unit"], data["method"], bool(data["measured"]))

    @property
    def label(self) -> str:
        return "measured" if self.measured else "estimate"


def figures(flash: Measurement, ram: Measurement, latency: Measurement) -> dict[str, Any]:
    """The typed figures of a target's metrics, plus the flat fields tables and nightly comparisons read."""
    return {
        "figures": {"flash": flash.as_dict(), "ram": ram.as_dict(), "latency": latency.as_dict()},
        "flash_bytes": int(flash.value),
        "ram_bytes": int(ram.value),
    }


def figure(metrics: dict[str, Any], name: str) -> Measurement | None:
    """A target's typed figure, or None when the metrics (e.g. a stage's, or an old report's) have none."""
    data = (metrics.get("figures") or {}).get(name)
    return Measurement.from_dict(data) if data else None


def latency_summary(times_ms: Any, runtime: str) -> dict[str, Any]:
    """The report's latency fields from raw per-run times; `runtime` says what measured them and how."""
    import numpy as np

    times = np.asarray(times_ms, dtype=float)
    return {"median": float(np.median(times)), "p90": float(np.percentile(times, 90)), "runs": int(len(times)),
            "runtime": runtime}  # fmt: skip
