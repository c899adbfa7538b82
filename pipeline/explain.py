"""Does compression change *why* the model decides? Every compressed model against the trained float model.

For each model of a run (the float stages, the int8 export, every target's own model on its own runtime):

- **agreement**: share of test clips with the same top-1 as the trained model;
- **per-class drift**: per-class accuracy, and the classes that lost most by the deployed model;
- **attribution drift**: saliency maps over the features input, compared with the trained model's maps by
  Spearman rank correlation and the overlap (IoU) of their top 10% cells, per class and overall. Occlusion
  (a patch set to the training mean, the drop in the true class's score) works for any model through its own
  interpreter, so int8 models on TFLM are explained by what TFLM computes. Integrated gradients (baseline: the
  training mean) are added for float Keras models;
- **what was removed**: for filter pruning, the importance of each kept and removed filter per layer.

Models are reached through `Predictor`s: a callable from float features [n, frames, coefficients] to float
class scores [n, classes], with int8 quantization and dequantization inside, as the deployment does it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import spearmanr

from pipeline.recipe import ExplainConfig
from pipeline.runtimes import ModelRef, Predictor
from pipeline.runtimes.any import predictor

# --- saliency ------------------------------------------------------------------------------------------------------


def occlusion(predict: Predictor, x: np.ndarray, classes: np.ndarray, baseline: np.ndarray,
              patch: tuple[int, int]) -> np.ndarray:  # fmt: skip
    """[n, rows, cols] map of score drops of each clip's class when a patch is set to the baseline.

    All occluded copies go through `predict` in one batch, so a child-process runtime starts once."""
    n, frames, coefs = x.shape
    ph, pw = patch
    rows, cols = -(-frames // ph), -(-coefs // pw)
    batch = [x]
    for r in range(rows):
        for c in range(cols):
            occluded = x.copy()
            occluded[:, r * ph : (r + 1) * ph, c * pw : (c + 1) * pw] = baseline[
                r * ph : (r + 1) * ph, c * pw : (c + 1) * pw
            ]
            batch.append(occluded)
    scores = predict(np.concatenate(batch))
    picked = scores[np.arange(len(scores)), np.tile(classes, len(batch))].reshape(len(batch), n)
    return (picked[0][None] - picked[1:]).T.reshape(n, rows, cols)


def integrated_gradients(model_path: Path, x: np.ndarray, classes: np.ndarray, baseline: np.ndarray,
                         steps: int) -> np.ndarray:  # fmt: skip
    """[n, frames, coefs] integrated gradients of each clip's class score (Riemann midpoint rule)."""
    import tensorflow as tf

    model = tf.keras.models.load_model(model_path)
    alphas = (np.arange(steps, dtype=np.float32) + 0.5) / steps
    out = np.empty_like(x, dtype=np.float32)
    base = baseline.astype(np.float32)
    for i in range(len(x)):
        path = base[None] + alphas[:, None, None] * (x[i] - base)[None]
        inputs = tf.convert_to_tensor(path[..., None])
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            score = model(inputs, training=False)[:, int(classes[i])]
        grads = tape.gradient(score, inputs).numpy()[..., 0]
        out[i] = (x[i] - base) * grads.mean(axis=0)
    return out


def compare_maps(a: np.ndarray, b: np.ndarray, top: float) -> tuple[np.ndarray, np.ndarray]:
    """Per clip: Spearman rank correlation and IoU of the top `top` share of cells (by attribution)."""
    flat_a, flat_b = a.reshape(len(a), -1), b.reshape(len(b), -1)
    k = max(1, int(np.ceil(top * flat_a.shape[1])))
    rho, iou = np.full(len(a), np.nan), np.zeros(len(a))
    for i in range(len(a)):
        if np.ptp(flat_a[i]) > 0 and np.ptp(flat_b[i]) > 0:
            rho[i] = spearmanr(flat_a[i], flat_b[i]).statistic
        top_a, top_b = set(np.argsort(-flat_a[i])[:k]), set(np.argsort(-flat_b[i])[:k])
        iou[i] = len(top_a & top_b) / len(top_a | top_b)
    return rho, iou


def _summary(rho: np.ndarray, iou: np.ndarray, y: np.ndarray, labels: list[str]) -> dict[str, Any]:
    per_class = {
        labels[c]: {"spearman": _nanmean(rho[y == c]), "iou": float(iou[y == c].mean())}
        for c in range(len(labels))
        if np.any(y == c)
    }
    return {"spearman": _nanmean(rho), "iou": float(iou.mean()), "undefined": int(np.isnan(rho).sum()),
            "per_class": per_class}  # fmt: skip


def _nanmean(v: np.ndarray) -> float | None:
    return float(np.nanmean(v)) if np.any(~np.isnan(v)) else None


# --- the section -----------------------------------------------------------------------------------------------------


def pick_samples(y: np.ndarray, classes: int, budget: int, seed: int) -> np.ndarray:
    """Up to budget/classes test clips per class, chosen at random with the recipe's seed."""
    rng = np.random.default_rng([seed, 8])
    per = max(1, budget // classes)
    picks = [rng.permutation(np.flatnonzero(y == c))[:per] for c in range(classes)]
    return np.sort(np.concatenate(picks))


def explain(models: list[ModelRef], data: Any, cfg: ExplainConfig, seed: int, out: Path,
            removed: dict[str, Any] | None = None, log=lambda msg: None) -> dict[str, Any]:  # fmt: skip
    """Compute the section; writes maps.npz and the pictures into `out`, returns the JSON-able result."""
    from pipeline.explain_plots import plot_drift, plot_maps, plot_removed

    test, labels = data.test, data.labels
    baseline = np.broadcast_to(data.train.x.mean(axis=(0, 1)), test.x.shape[1:]).astype(np.float32)
    picks = pick_samples(test.y, len(labels), cfg.samples, seed)
    x, y = test.x[picks].astype(np.float32), test.y[picks]
    reference = models[0]
    rows, maps, predictions = [], {}, {}
    for ref in models:
        log(f"{ref.name}: {len(test.y)} clips for agreement, occlusion on {len(picks)}")
        predict = predictor(ref)
        predictions[ref.name] = np.argmax(predict(test.x), axis=-1)
        maps[ref.name] = occlusion(predict, x, y, baseline, tuple(cfg.patch))
    gradients = {
        ref.name: integrated_gradients(ref.path, x, y, baseline, cfg.ig_steps) for ref in models if ref.kind == "keras"
    }
    for ref in models:
        pred = predictions[ref.name]
        row: dict[str, Any] = {
            "model": ref.name,
            "role": ref.role,
            "runtime": ref.runtime,
            "agreement": float(np.mean(pred == predictions[reference.name])),
            "accuracy": float(np.mean(pred == test.y)),
            "per_class_accuracy": {
                labels[c]: float(np.mean(pred[test.y == c] == c)) for c in range(len(labels)) if np.any(test.y == c)
            },  # fmt: skip
            "occlusion": _summary(*compare_maps(maps[reference.name], maps[ref.name], cfg.top_fraction), y, labels),
        }
        if ref.name in gradients:
            rho, iou = compare_maps(gradients[reference.name], gradients[ref.name], cfg.top_fraction)
            row["gradient"] = _summary(rho, iou, y, labels)
        rows.append(row)
    deployed = next((r for r in rows if r.get("role") == "target"), rows[-1])
    lost = sorted(
        ({"class": c, "reference": rows[0]["per_class_accuracy"][c], "deployed": deployed["per_class_accuracy"][c]}
         for c in rows[0]["per_class_accuracy"]),
        key=lambda r: r["deployed"] - r["reference"],
    )  # fmt: skip
    np.savez_compressed(out / "maps.npz", clips=picks, **{f"occlusion.{k}": v for k, v in maps.items()},
                        **{f"gradient.{k}": v for k, v in gradients.items()})  # fmt: skip
    pictures = plot_maps(out, x, y, labels, maps, gradients, cfg.pictures_per_class)
    result = {
        "reference": reference.name,
        "deployed": deployed["model"],
        "samples": len(picks),
        "test_clips": len(test.y),
        "method": {
            "occlusion": f"{cfg.patch[0]}x{cfg.patch[1]} patches set to the training mean per coefficient; "
            "map = drop of the true class's score",
            "gradient": f"integrated gradients, {cfg.ig_steps} steps from the training mean (float Keras models only)",
            "compare": f"Spearman rank correlation and IoU of the top {cfg.top_fraction:.0%} cells, with the "
            f"{reference.name} model's map of the same clip",
        },
        "models": rows,
        "lost_most": lost[:3],
        "pictures": pictures,
        "plot": plot_drift(out, rows),
    }
    if removed and any(layer.get("importance") for layer in removed["layers"]):  # filter pruning only
        result["removed"] = summarize_removed(removed)
        result["removed_plot"] = plot_removed(out, removed)
    return result


def summarize_removed(filters: dict[str, Any]) -> list[dict[str, Any]]:
    """Per pruned layer: how important the kept and the removed filters were (NNCF's criterion)."""
    rows = []
    for layer in filters["layers"]:
        scores = layer.get("importance") or []
        kept = [f["score"] for f in scores if f["kept"]]
        gone = [f["score"] for f in scores if not f["kept"]]
        if not gone:
            continue
        rows.append({
            "layer": layer["layer"], "kept": len(kept), "removed": len(gone),
            "kept_mean": float(np.mean(kept)), "removed_mean": float(np.mean(gone)),
            "removed_max": float(np.max(gone)), "kept_min": float(np.min(kept)),
            "criterion": filters["importance"],
        })  # fmt: skip
    return rows
