"""Versions of the tools and runtimes a run used, for reports and manifests (kept apart from the report's
rendering so that the steps which record versions do not depend on how reports look)."""

from __future__ import annotations

import platform
from importlib import metadata

VERSIONED = [
    "tensorflow",
    "keras",
    "tflite-micro",
    "ai-edge-litert",
    "nncf",
    "openvino",
    "ethos-u-vela",
    "numpy",
    "espeakng-loader",
]


def versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "edge-pipeline": _version("edge-pipeline")}
    out.update({name: _version(name) for name in VERSIONED})
    return out


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"
