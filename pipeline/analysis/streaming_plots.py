"""The DET picture of the streaming section: false rejects against false accepts per hour, per model and stream."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.analysis.explain_plots import _pyplot, _save


def plot_det(result: dict[str, Any], path: Path) -> str:
    """One panel per judged stream; a line per model (one threshold for every keyword, swept), its operating
    point (the chosen per-keyword thresholds) as a dot, and the target false-accept rate as a dashed line."""
    plt = _pyplot()
    streams = [s["name"] for s in result["streams"]]
    fig, axes = plt.subplots(1, len(streams), figsize=(5.2 * len(streams), 4.2), squeeze=False)
    floor = 0.01  # per hour: zero false accepts are drawn here on the log axis
    for ax, name in zip(axes[0], streams, strict=True):
        for i, row in enumerate(result["models"]):
            r = row["sets"][name]
            if r["miss_rate"] is None:
                continue
            color = f"C{i % 10}"
            fa = [max(p[1], floor) for p in r["det"]]
            ax.plot(fa, [100 * p[2] for p in r["det"]], color=color, label=row["model"], lw=1.4)
            ax.plot([max(r["fa_per_hour"], floor)], [100 * r["miss_rate"]], "o", color=color, ms=6)
        ax.axvline(result["settings"]["target_fa_per_hour"], color="0.5", ls="--", lw=1)
        ax.set_xscale("log")
        ax.set_xlabel("false accepts per hour")
        ax.set_ylabel("keywords missed (%)")
        ax.set_ylim(0, 100)
        ax.set_title(name)
        ax.grid(alpha=0.3, which="both")
    axes[0][0].legend(fontsize=8, loc="upper right")
    fig.suptitle("Detection error trade-off (dots: the chosen thresholds; dashed: the target)")
    return _save(fig, path)
