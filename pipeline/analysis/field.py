"""Field tests: every model of a run judged on real recordings, through its own runtime, beside the synthetic test.

The synthetic test split says how well a model learnt the training voices' world; a field set says whether it
hears people. Both are reported side by side for every stage (Keras, LiteRT) and every target (TFLM, LiteRT
variants, OpenVINO precisions), with per-class accuracy and where the misses go.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from pipeline.data import FieldSet
from pipeline.runtimes import ModelRef
from pipeline.runtimes.any import predictor


def score(pred: np.ndarray, y: np.ndarray, labels: list[str]) -> dict[str, Any]:
    """Accuracy, per-class accuracy, and the confusion matrix (rows: true label, columns: predicted)."""
    confusion = np.zeros((len(labels), len(labels)), np.int64)
    np.add.at(confusion, (y, pred), 1)
    per_class = {labels[c]: float(np.mean(pred[y == c] == c)) for c in range(len(labels)) if np.any(y == c)}
    return {
        "n": int(len(y)),
        "accuracy": float(np.mean(pred == y)),
        "balanced_accuracy": float(np.mean(list(per_class.values()))),
        "per_class": per_class,
        "confusion": confusion.tolist(),
    }


def evaluate(
    models: list[ModelRef], sets: list[FieldSet], labels: list[str], log: Callable[[str], None] = lambda m: None
) -> dict[str, Any]:
    rows = []
    for ref in models:
        run = predictor(ref)
        row: dict[str, Any] = {"model": ref.name, "runtime": ref.runtime, "role": ref.role, "sets": {}}
        for fs in sets:
            pred = np.argmax(run(fs.x), axis=-1)
            row["sets"][fs.name] = score(pred, fs.y, labels)
        log(f"{ref.name}: " + ", ".join(f"{n} {s['accuracy']:.4f}" for n, s in row["sets"].items()))
        rows.append(row)
    return {"labels": labels, "sets": [fs.summary() for fs in sets], "models": rows}


def worst_confusions(result: dict[str, Any], model: str, set_name: str, top: int = 3) -> list[tuple[str, str, float]]:
    """(true label, predicted label, share of that label's clips) for the largest off-diagonal cells."""
    labels = result["labels"]
    row = next(r for r in result["models"] if r["model"] == model)
    confusion = np.array(row["sets"][set_name]["confusion"], dtype=float)
    totals = confusion.sum(axis=1, keepdims=True)
    shares = np.divide(confusion, totals, out=np.zeros_like(confusion), where=totals > 0)
    np.fill_diagonal(shares, 0)
    order = np.argsort(shares, axis=None)[::-1][:top]
    rows, cols = np.unravel_index(order, shares.shape)
    return [(labels[i], labels[j], float(shares[i, j])) for i, j in zip(rows, cols, strict=True)]
