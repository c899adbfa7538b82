"""Does compression change *why* the model decides? Every compressed model against the trained float model.

For each model of a run (the float stages, the int8 export, every target's own model on its own runtime):

- **agreement**: share of test clips with the same top-1 as the trained model;
- **per-class drift**: per-class accuracy, and the classes that lost most by the deployed model;
- **attribution drift**: saliency maps over the features input, compared with the trained model's maps by
  Spearman rank correlation and the overlap (IoU) of their top 10% cells, per class and overall. Occlusion
  (a patch set to the training mean, the drop in the true class's score) works for any model through its own
  interpreter, so int8 models on TFLM are explained by what TFLM computes. Integrated gradients (baseline: the
  training mean) are added for float Keras models;
- **what was removed**: for filter pruning, the importance of each kept and removed filter per layer;
- **a control** (`explain.control`): an unpruned twin trained with another seed on the same data and schedule is
  compared with the trained model the same way. Any retraining moves decisions and maps a little; what a
  compressed model moves *beyond* the twin is what compression did ("drift beyond retrain noise"), each figure
  with a bootstrap 95 % interval over clips (paired: the same resampled clips for model and twin);
- **global view**: per-class mean occlusion maps of the trained and the deployed model and their difference: which
  frames and coefficients the deployed model stopped or started using;
- **pruning-identified exemplars** (Hooker et al., 2019): clips a compressed model gets differently from the trained
  model while the twin agrees with it, counted per class on the test split and on every field test set.

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


def bootstrap_ci(values: np.ndarray, resamples: int, seed: int) -> list[float] | None:
    """95 % percentile interval of the mean of `values` (NaNs dropped), resampling clips with replacement."""
    v = np.asarray(values, dtype=np.float64)
    v = v[~np.isnan(v)]
    if len(v) < 2:
        return None
    rng = np.random.default_rng([seed, 21])
    means = np.empty(resamples)
    for start in range(0, resamples, 100):  # in blocks: bounded memory on large test splits
        idx = rng.integers(0, len(v), (min(100, resamples - start), len(v)))
        means[start : start + len(idx)] = v[idx].mean(axis=1)
    return [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]


def beyond_noise(model: np.ndarray, twin: np.ndarray, resamples: int, seed: int) -> dict[str, Any]:
    """Per-clip (twin - model) of a similarity to the trained model: how much more the model drifts than a retrain.
    Positive: the model moved further from the trained model than the twin did."""
    diff = np.asarray(twin, np.float64) - np.asarray(model, np.float64)
    ci = bootstrap_ci(diff, resamples, seed)
    value = _nanmean(diff)
    verdict = (
        "undefined" if ci is None or value is None
        else "beyond retrain noise" if ci[0] > 0
        else "less than a retrain" if ci[1] < 0
        else "within retrain noise"
    )  # fmt: skip
    return {"value": value, "ci": ci, "verdict": verdict}


def class_mean_maps(maps: np.ndarray, y: np.ndarray, classes: int) -> np.ndarray:
    """[classes, rows, cols]: the mean occlusion map of each class's explained clips (zeros for a class with none)."""
    out = np.zeros((classes, *maps.shape[1:]), np.float32)
    for c in range(classes):
        if np.any(y == c):
            out[c] = maps[y == c].mean(axis=0)
    return out


def global_shift(reference: np.ndarray, deployed: np.ndarray, patch: tuple[int, int], top: int = 3) -> list[dict]:
    """The cells whose mean attribution (over classes) changed most, relative to the reference's largest cell."""
    ref, dep = reference.mean(axis=0), deployed.mean(axis=0)
    scale = float(np.abs(ref).max()) or 1.0
    diff = (dep - ref) / scale
    order = np.argsort(-np.abs(diff).ravel())[:top]
    out = []
    for cell in order:
        r, c = divmod(int(cell), diff.shape[1])
        out.append({
            "frames": [r * patch[0], (r + 1) * patch[0] - 1], "coefficients": [c * patch[1], (c + 1) * patch[1] - 1],
            "change": float(diff[r, c]), "direction": "uses more" if diff[r, c] > 0 else "uses less",
        })  # fmt: skip
    return out


def exemplars(pred: np.ndarray, reference: np.ndarray, twin: np.ndarray, y: np.ndarray, labels: list[str]) -> dict:
    """Pruning-identified exemplars: the model disagrees with the trained model where the twin agrees with it."""
    pie = (pred != reference) & (twin == reference)
    return {
        "count": int(pie.sum()),
        "share": float(pie.mean()) if len(pie) else 0.0,
        "per_class": {labels[c]: int(pie[y == c].sum()) for c in range(len(labels)) if np.any(y == c)},
        "clips": np.flatnonzero(pie).tolist(),
    }


# --- the section -----------------------------------------------------------------------------------------------------


def pick_samples(y: np.ndarray, classes: int, budget: int, seed: int) -> np.ndarray:
    """Up to budget/classes test clips per class, chosen at random with the recipe's seed."""
    rng = np.random.default_rng([seed, 8])
    per = max(1, budget // classes)
    picks = [rng.permutation(np.flatnonzero(y == c))[:per] for c in range(classes)]
    return np.sort(np.concatenate(picks))


def explain(models: list[ModelRef], data: Any, cfg: ExplainConfig, seed: int, out: Path,
            removed: dict[str, Any] | None = None, log=lambda msg: None, twin: ModelRef | None = None,
            field_sets: list[Any] = ()) -> dict[str, Any]:  # fmt: skip
    """Compute the section; writes maps.npz and the pictures into `out`, returns the JSON-able result. `twin`, the
    control (role "control"), is explained like any model and every other model is also judged against it."""
    from pipeline.analysis.explain_plots import plot_drift, plot_global, plot_maps, plot_pies, plot_removed

    models = [*models, twin] if twin is not None else list(models)

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
    # Per clip, each model's maps against the trained model's: (Spearman, top-cells IoU); kept for the control.
    occlusion_similarity = {m.name: compare_maps(maps[reference.name], maps[m.name], cfg.top_fraction) for m in models}
    gradient_similarity = {
        name: compare_maps(gradients[reference.name], g, cfg.top_fraction) for name, g in gradients.items()
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
            "occlusion": _summary(*occlusion_similarity[ref.name], y, labels),
        }
        if ref.name in gradient_similarity:
            row["gradient"] = _summary(*gradient_similarity[ref.name], y, labels)
        rows.append(row)
    compared = [r for r in rows if r["role"] != "control"]
    deployed = next((r for r in compared if r.get("role") == "target"), compared[-1])
    lost = sorted(
        ({"class": c, "reference": rows[0]["per_class_accuracy"][c], "deployed": deployed["per_class_accuracy"][c]}
         for c in rows[0]["per_class_accuracy"]),
        key=lambda r: r["deployed"] - r["reference"],
    )  # fmt: skip
    np.savez_compressed(out / "maps.npz", clips=picks, **{f"occlusion.{k}": v for k, v in maps.items()},
                        **{f"gradient.{k}": v for k, v in gradients.items()})  # fmt: skip
    pictures = plot_maps(out, x, y, labels, maps, gradients, cfg.pictures_per_class)
    reference_maps = class_mean_maps(maps[reference.name], y, len(labels))
    deployed_maps = class_mean_maps(maps[deployed["model"]], y, len(labels))
    global_view = {
        "model": deployed["model"],
        "biggest_changes": global_shift(reference_maps, deployed_maps, tuple(cfg.patch)),
        "plot": plot_global(out, labels, reference.name, reference_maps, deployed["model"], deployed_maps),
    }
    control = None
    if twin is not None:
        control = _control(rows, models, twin, reference, predictions, occlusion_similarity, gradient_similarity,
                           test, labels, cfg, seed, field_sets, log)  # fmt: skip
        explained = set(picks.tolist())
        pie_clips = [i for i in control["exemplars"][deployed["model"]]["synthetic"]["clips"] if i in explained]
        for found in control["exemplars"].values():
            found["synthetic"].pop("clips")
        control["exemplar_clips"] = pie_clips[:4]
        control["exemplar_plot"] = plot_pies(
            out, test.x, test.y, labels, pie_clips[:4], picks, maps, reference.name, deployed["model"], twin.name,
            predictions,
        )  # fmt: skip
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
        "control": control,
        "global": global_view,
        "lost_most": lost[:3],
        "pictures": pictures,
        "plot": plot_drift(out, rows),
    }
    if removed and any(layer.get("importance") for layer in removed["layers"]):  # filter pruning only
        result["removed"] = summarize_removed(removed)
        result["removed_plot"] = plot_removed(out, removed)
    return result


def _control(rows, models, twin, reference, predictions, occlusion_similarity, gradient_similarity, test, labels,
             cfg, seed, field_sets, log) -> dict[str, Any]:  # fmt: skip
    """Every compressed model against the twin: drift beyond retrain noise with intervals, and the exemplars."""
    b = cfg.bootstrap
    ref_pred, twin_pred = predictions[reference.name], predictions[twin.name]
    twin_agree = (twin_pred == ref_pred).astype(float)
    twin_rho, twin_iou = occlusion_similarity[twin.name]
    twin_grad = gradient_similarity[twin.name][0] if twin.name in gradient_similarity else None
    field_predictions: dict[str, dict[str, np.ndarray]] = {}
    for fs in field_sets:
        log(f"control: {fs.name}, {len(fs.y)} clips, for pruning-identified exemplars")
        field_predictions[fs.name] = {m.name: np.argmax(predictor(m)(fs.x), axis=-1) for m in models}
    out: dict[str, Any] = {"twin": twin.name, "models": {}, "exemplars": {}}
    for row in rows:
        name = row["model"]
        agree = (predictions[name] == ref_pred).astype(float)
        rho, iou = occlusion_similarity[name]
        row["agreement_ci"] = bootstrap_ci(agree, b, seed)
        row["occlusion"]["spearman_ci"] = bootstrap_ci(rho, b, seed)
        if name in (reference.name, twin.name):
            continue
        entry = {
            "agreement": beyond_noise(agree, twin_agree, b, seed),
            "occlusion_spearman": beyond_noise(rho, twin_rho, b, seed),
            "occlusion_iou": beyond_noise(iou, twin_iou, b, seed),
            "per_class_agreement": {
                labels[c]: beyond_noise(agree[test.y == c], twin_agree[test.y == c], b, seed)
                for c in range(len(labels)) if np.any(test.y == c)
            },
        }  # fmt: skip
        if twin_grad is not None and name in gradient_similarity:
            entry["gradient_spearman"] = beyond_noise(gradient_similarity[name][0], twin_grad, b, seed)
        out["models"][name] = entry
        found = {"synthetic": exemplars(predictions[name], ref_pred, twin_pred, test.y, labels)}
        for fs in field_sets:
            p = field_predictions[fs.name]
            found[fs.name] = exemplars(p[name], p[reference.name], p[twin.name], fs.y, labels)
            found[fs.name].pop("clips")
            field_agree = (p[name] == p[reference.name]).astype(float)
            field_twin = (p[twin.name] == p[reference.name]).astype(float)
            entry.setdefault("field_agreement", {})[fs.name] = beyond_noise(field_agree, field_twin, b, seed) | {
                "model": float(field_agree.mean()), "twin": float(field_twin.mean()),
            }  # fmt: skip
        out["exemplars"][name] = found
    return out


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
