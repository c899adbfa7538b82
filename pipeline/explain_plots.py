"""Pictures for the explain section: saliency side by side across models, drift per model, removed filters."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> str:
    import io

    from pipeline.store import write_atomic

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    write_atomic(path, buffer.getvalue())
    _pyplot().close(fig)
    return path.name


def plot_maps(out: Path, x: np.ndarray, y: np.ndarray, labels: list[str], maps: dict[str, np.ndarray],
              gradients: dict[str, np.ndarray], per_class: int) -> list[str]:  # fmt: skip
    """One PNG per class: rows are clips; columns the features, then each model's maps (IG, then occlusion)."""
    plt = _pyplot()
    files = []
    columns = [("features", None)] + [(f"IG {k}", v) for k, v in gradients.items()]
    columns += [(f"occl. {k}", v) for k, v in maps.items()]
    for c, label in enumerate(labels):
        clips = np.flatnonzero(y == c)[:per_class]
        if len(clips) == 0:
            continue
        fig, axes = plt.subplots(len(clips), len(columns), figsize=(1.25 * len(columns), 2.6 * len(clips)),
                                 squeeze=False)  # fmt: skip
        for row, i in enumerate(clips):
            for col, (title, values) in enumerate(columns):
                ax = axes[row, col]
                image = x[i] if values is None else values[i]
                scale = np.max(np.abs(image)) or 1.0
                cmap, lim = ("viridis", (None, None)) if values is None else ("RdBu_r", (-scale, scale))
                ax.imshow(image, aspect="auto", cmap=cmap, vmin=lim[0], vmax=lim[1], interpolation="nearest")
                ax.set_xticks([])
                ax.set_yticks([])
                if row == 0:
                    ax.set_title(title, fontsize=7, rotation=30, ha="left")
        fig.suptitle(f"class '{label}': features (frames × MFCC) and attribution maps (red: supports the class)",
                     fontsize=8, y=1.0 + 0.12 / len(clips))  # fmt: skip
        files.append(_save(fig, out / f"maps_{c:02d}_{label.strip('_')}.png"))
    return files


def plot_drift(out: Path, rows: list[dict[str, Any]]) -> str:
    """Agreement and mean occlusion-map correlation / IoU for every model, in chain order."""
    plt = _pyplot()
    names = [r["model"] for r in rows]
    series = {
        "top-1 agreement": [r["agreement"] for r in rows],
        "occlusion Spearman": [r["occlusion"]["spearman"] or np.nan for r in rows],
        "occlusion top-10% IoU": [r["occlusion"]["iou"] for r in rows],
    }
    fig, ax = plt.subplots(figsize=(max(6, 0.8 * len(names)), 3.5))
    for label, values in series.items():
        ax.plot(range(len(names)), values, marker="o", label=label)
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
    ax.set_ylim(0, 1.02)
    ax.set_ylabel(f"vs {names[0]}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    ax.set_title("Does compression keep the decisions and their reasons?", fontsize=9)
    return _save(fig, out / "drift.png")


def plot_removed(out: Path, filters: dict[str, Any]) -> str:
    """Importance of every filter per pruned layer, kept ones and removed ones in two colours."""
    plt = _pyplot()
    layers = [layer for layer in filters["layers"] if layer.get("importance")]
    fig, axes = plt.subplots(1, len(layers), figsize=(2.4 * len(layers), 2.8), squeeze=False)
    for ax, layer in zip(axes[0], layers, strict=True):
        scores = sorted(layer["importance"], key=lambda f: -f["score"])
        ax.bar(range(len(scores)), [f["score"] for f in scores],
               color=["tab:blue" if f["kept"] else "tab:red" for f in scores], width=1.0)  # fmt: skip
        ax.set_title(f"{layer['layer']}: {sum(f['kept'] for f in scores)}/{len(scores)} kept", fontsize=8)
        ax.set_xticks([])
        ax.tick_params(labelsize=7)
    fig.suptitle(f"filter {filters['importance']} importance (blue kept, red removed)", fontsize=9)
    return _save(fig, out / "removed_filters.png")
