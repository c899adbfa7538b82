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

    from pipeline.engine.store import write_atomic

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
    """Agreement and mean occlusion-map correlation / IoU for every model, in chain order, with 95 % intervals when
    the control ran; the retrained twin's values drawn as dashed lines: the drift any retraining has."""
    plt = _pyplot()
    twin = next((r for r in rows if r.get("role") == "control"), None)
    rows = [r for r in rows if r.get("role") != "control"]
    names = [r["model"] for r in rows]
    series = {
        "top-1 agreement": ([r["agreement"] for r in rows], [r.get("agreement_ci") for r in rows],
                            twin["agreement"] if twin else None),
        "occlusion Spearman": ([r["occlusion"]["spearman"] or np.nan for r in rows],
                               [r["occlusion"].get("spearman_ci") for r in rows],
                               twin["occlusion"]["spearman"] if twin else None),
        "occlusion top-10% IoU": ([r["occlusion"]["iou"] for r in rows], [None] * len(rows),
                                  twin["occlusion"]["iou"] if twin else None),
    }  # fmt: skip
    fig, ax = plt.subplots(figsize=(max(6, 0.8 * len(names)), 3.5))
    for label, (values, cis, noise) in series.items():
        errors = np.array([[v - ci[0], ci[1] - v] if ci else [0, 0] for v, ci in zip(values, cis, strict=True)]).T
        line = ax.errorbar(range(len(names)), values, yerr=errors, marker="o", capsize=3, label=label)
        if noise is not None:
            ax.axhline(noise, color=line[0].get_color(), linestyle="--", alpha=0.6)
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
    lowest = np.nanmin([v for values, _, noise in series.values() for v in [*values, noise] if v is not None])
    ax.set_ylim(min(0.0, lowest - 0.05), 1.02)
    ax.set_ylabel(f"vs {names[0]}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    title = "Does compression keep the decisions and their reasons?"
    if twin:
        title += f" (dashed: the retrained twin '{twin['model']}', 95 % bars)"
    ax.set_title(title, fontsize=9)
    return _save(fig, out / "drift.png")


def plot_global(out: Path, labels: list[str], ref_name: str, ref_maps: np.ndarray, dep_name: str,
                dep_maps: np.ndarray) -> str:  # fmt: skip
    """Per class: the mean occlusion map of the trained model, of the deployed model, and their difference."""
    plt = _pyplot()
    fig, axes = plt.subplots(len(labels), 3, figsize=(5.4, 1.9 * len(labels)), squeeze=False)
    for c, label in enumerate(labels):
        diff = dep_maps[c] - ref_maps[c]
        scale = max(np.abs(ref_maps[c]).max(), np.abs(dep_maps[c]).max()) or 1.0
        for col, (title, image) in enumerate(((ref_name, ref_maps[c]), (dep_name, dep_maps[c]), ("difference", diff))):
            ax = axes[c, col]
            ax.imshow(image.T, aspect="auto", origin="lower", cmap="RdBu_r", vmin=-scale, vmax=scale,
                      interpolation="nearest")  # fmt: skip
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_title(title, fontsize=8)
            if col == 0:
                ax.set_ylabel(label, fontsize=8)
    fig.suptitle("mean occlusion map per class (time →, MFCC ↑; red supports the class); difference = deployed "
                 "− trained", fontsize=8)  # fmt: skip
    return _save(fig, out / "global_maps.png")


def plot_pies(out: Path, test_x: np.ndarray, test_y: np.ndarray, labels: list[str], clips: list[int],
              picks: np.ndarray, maps: dict[str, np.ndarray], ref_name: str, dep_name: str, twin_name: str,
              predictions: dict[str, np.ndarray]) -> str | None:  # fmt: skip
    """Pruning-identified exemplars: the features, then the trained model's, the twin's and the deployed model's
    occlusion maps, with what each predicted."""
    if not clips:
        return None
    plt = _pyplot()
    position = {int(clip): i for i, clip in enumerate(picks)}
    fig, axes = plt.subplots(len(clips), 4, figsize=(7.2, 2.2 * len(clips)), squeeze=False)
    for row, clip in enumerate(clips):
        columns = [("features", test_x[clip], None)] + [
            (name, maps[name][position[clip]], labels[predictions[name][clip]])
            for name in (ref_name, twin_name, dep_name)
        ]
        for col, (title, image, said) in enumerate(columns):
            ax = axes[row, col]
            scale = np.max(np.abs(image)) or 1.0
            cmap, lim = ("viridis", (None, None)) if said is None else ("RdBu_r", (-scale, scale))
            ax.imshow(image.T, aspect="auto", origin="lower", cmap=cmap, vmin=lim[0], vmax=lim[1],
                      interpolation="nearest")  # fmt: skip
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_xlabel("time (frames) →", fontsize=6)
            ax.set_ylabel("coefficient →", fontsize=6)
            ax.set_title(f"{title}" + (f": '{said}'" if said else f" ('{labels[test_y[clip]]}')"), fontsize=7)
    fig.suptitle(f"clips {dep_name} hears differently from {ref_name}, where the retrained control "
                 f"'{twin_name}' answers as {ref_name} does", fontsize=8)  # fmt: skip
    return _save(fig, out / "exemplars.png")


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
