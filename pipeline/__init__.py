"""edge-pipeline: recipe-driven train -> prune -> fine-tune -> quantize -> export, measured on real runtimes."""

__version__ = "0.1.0"
