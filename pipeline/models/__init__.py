"""Model zoo: architectures by name, and their cost (parameters, multiply-accumulates)."""

from pipeline.models.zoo import build_model, model_cost

__all__ = ["build_model", "model_cost"]
