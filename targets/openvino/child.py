"""OpenVINO work that must not share a process with the pipeline.

    python -m targets.openvino.child memory MODEL.xml DEVICE CONFIG_JSON RUNS
    python -m targets.openvino.child convert MODEL.keras OUT_DIR CALIBRATION.npy SETTINGS_JSON

`memory` imports only numpy and openvino (the `targets` package itself imports nothing heavy), so the peak RSS (VmHWM) is what a deployment that loads, compiles and
runs this IR holds, not what the measuring pipeline (TensorFlow, NNCF) holds; the RSS after `import openvino`
alone is reported too, so the model's own share can be told apart. Prints one JSON line.

`convert` writes the IR for each precision. It runs apart because NNCF's INT8 calibration went wrong in a
process where the TFLite converter had run before (measured: INT8 accuracy 8.3% = chance, the same IR built in
a fresh process 91%); a fresh process makes the result independent of what ran earlier.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _status_bytes(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def convert(keras_path: str, out_dir: str, calibration_path: str, settings: dict) -> None:
    import numpy as np
    import openvino as ov

    from targets.openvino import canonical_names, quantize_int8
    from targets.openvino import convert as to_openvino

    model = to_openvino(keras_path, tuple(settings["input_shape"]))
    for precision in settings["precisions"]:
        xml = Path(out_dir) / precision / "model.xml"
        xml.parent.mkdir(parents=True, exist_ok=True)
        if precision == "int8":
            quantized = quantize_int8(model, np.load(calibration_path), **settings["int8"])
            ov.save_model(canonical_names(quantized), xml, compress_to_fp16=False)
        else:
            ov.save_model(canonical_names(model), xml, compress_to_fp16=precision == "fp16")


def main(argv: list[str]) -> int:
    if argv[0] == "convert":
        convert(argv[1], argv[2], argv[3], json.loads(argv[4]))
        return 0
    xml, device, config, runs = argv[1], argv[2], json.loads(argv[3]), int(argv[4])
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
