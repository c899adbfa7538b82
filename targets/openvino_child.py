"""Peak memory of OpenVINO alone: `python -m targets.openvino_child MODEL.xml DEVICE CONFIG_JSON RUNS`.

Run in a fresh process that imports only numpy and openvino, so the figure is what a deployment that loads,
compiles and runs this IR holds at its peak (VmHWM), not what the measuring pipeline (TensorFlow, NNCF) holds.
The RSS after `import openvino` alone is reported too, so the model's own share can be told apart.
Prints one JSON line.
"""

from __future__ import annotations

import json
import sys


def _status_bytes(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def main(argv: list[str]) -> int:
    xml, device, config, runs = argv[0], argv[1], json.loads(argv[2]), int(argv[3])
    import numpy as np
    import openvino as ov

    runtime_only = _status_bytes("VmRSS")
    core = ov.Core()
    compiled = core.compile_model(core.read_model(xml), device, config)
    request = compiled.create_infer_request()
    shape = list(compiled.input(0).shape)
    x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    for _ in range(runs):
        request.infer({0: x})
    peak = _status_bytes("VmHWM")
    print(json.dumps({"peak_rss_bytes": peak, "runtime_rss_bytes": runtime_only, "model_bytes": peak - runtime_only}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
