"""edge-pipeline: recipe-driven train -> prune -> fine-tune -> quantize -> export, measured on real runtimes."""

import sys

__version__ = "0.1.0"

# OpenVINO's converter and NNCF send usage data through `openvino_telemetry`, from a thread that forks. This
# machine has no network, so it can only fail, and once its fork raced TensorFlow's import in the OpenVINO child
# and deadlocked it until the 900 s timeout (py-spy: the main thread waiting on logging's lock, the telemetry
# thread in GA4Backend.send -> fork). Both tools fall back to their own stub when the package cannot be imported.
sys.modules.setdefault("openvino_telemetry", None)
