"""The bundle's C front end, both arithmetics, on recordings: feature error against training's features and the
int8 model's top-1 agreement on TFLM (C features vs Python features), plus what each costs on a Cortex-M4F.

    .venv/bin/python scripts/bench_frontend.py RUN_DIR [--data DIR] [--limit N]

RUN_DIR is a run whose recipe has a `tflm` target; DIR a folder in the Speech Commands layout (default:
../shared/data/real_speech_dev, real recordings nobody tuned the front end on).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.analysis.evaluation import quantize_input  # noqa: E402
from pipeline.data.features import mfcc  # noqa: E402
from pipeline.data.field import load_field_clips  # noqa: E402
from pipeline.recipe import load_recipe  # noqa: E402
from pipeline.runtimes.tflm import tflm_outputs  # noqa: E402
from targets.tflm.frontend import check_harness, to_pcm16  # noqa: E402


def cortex_m4f_sizes(src: Path, fixed: int, tmp: Path) -> dict[str, int] | None:
    """text/data/bss of frontend.c compiled for a Cortex-M4F, or None without arm-none-eabi-gcc."""
    gcc = shutil.which("arm-none-eabi-gcc")
    if gcc is None:
        return None
    obj = tmp / f"frontend{fixed}.o"
    flags = ["-mcpu=cortex-m4", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard", "-mthumb", "-Os", "-std=c99"]
    subprocess.run([gcc, *flags, f"-D{_prefix(src)}_FIXED_POINT={fixed}", "-I", str(src), "-c",
                    str(src / "frontend.c"), "-o", str(obj)], check=True)  # fmt: skip
    out = subprocess.run(["arm-none-eabi-size", "-A", str(obj)], capture_output=True, text=True, check=True).stdout
    sections = {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\.\w+)\s+(\d+)", out, re.M)}
    return {"code": sections.get(".text", 0), "tables": sections.get(".rodata", 0), "ram": sections.get(".bss", 0)}


def _prefix(src: Path) -> str:
    return re.search(r"#define (\w+)_CLIP_SAMPLES", (src / "frontend.h").read_text()).group(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "real_speech_dev")
    parser.add_argument("--limit", type=int, default=0, help="use only the first N clips")
    args = parser.parse_args()
    recipe = load_recipe(args.run_dir / "recipe.yaml")
    cfg = recipe.data.features
    bundle = args.run_dir / "export" / "tflm"
    src = bundle / "src"
    prefix = _prefix(src)
    info = json.loads((args.run_dir / "export" / "model_info.json").read_text())
    labels = info["labels"]
    clips = load_field_clips(args.data.resolve(), labels, cfg.sample_rate, cfg.clip_samples)
    audio = clips.audio[: args.limit] if args.limit else clips.audio
    pcm = to_pcm16(audio)
    audio = pcm.astype(np.float32) / 32768
    python = mfcc(audio, cfg)
    manifest = json.loads((bundle / "manifest.json").read_text())
    inp = info["input"]
    model = bundle / "model.tflite"
    arena = manifest["arena_bytes"]
    python_q = quantize_input(python, inp["scale"], inp["zero_point"], np.int8)
    from_python = np.argmax(tflm_outputs(model, arena, python_q[..., None]).reshape(len(audio), -1), axis=1)
    print(f"{len(audio)} clips from {args.data} (unreadable {len(clips.unreadable)}); model {manifest['bundle']}")
    print(
        "| front end | max feature error | 99.9th pct | int8 equal | int8 max step | top-1 agreement "
        "| Cortex-M4F code | tables | static RAM |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        pcm.tofile(tmp / "clips.raw")
        (tmp / "main.c").write_text(check_harness(recipe.name))
        for fixed in (0, 1):
            exe = tmp / f"fe{fixed}"
            subprocess.run(["cc", "-std=c99", "-O2", "-I", str(src), f"-D{prefix}_FIXED_POINT={fixed}", "-o", str(exe),
                            str(tmp / "main.c"), str(src / "frontend.c"), "-lm"], check=True)  # fmt: skip
            subprocess.run([str(exe), str(tmp / "clips.raw"), str(tmp / "f32"), str(tmp / "i8")], check=True)
            c_float = np.fromfile(tmp / "f32", np.float32).reshape(python.shape)
            c_int8 = np.fromfile(tmp / "i8", np.int8).reshape(python.shape)
            error = np.abs(c_float - python)
            steps = np.abs(c_int8.astype(int) - python_q.astype(int))
            from_c = np.argmax(tflm_outputs(model, arena, c_int8[..., None]).reshape(len(audio), -1), axis=1)
            sizes = cortex_m4f_sizes(src, fixed, tmp)
            cost = (
                f"{sizes['code']:,} B | {sizes['tables']:,} B | {sizes['ram']:,} B"
                if sizes
                else "n/a | n/a | n/a (no arm-none-eabi-gcc)"
            )
            print(f"| {'fixed point' if fixed else 'floating point'} | {error.max():.2e} | "
                  f"{np.quantile(error, 0.999):.2e} | {np.mean(steps == 0):.4%} | {steps.max()} | "
                  f"{np.mean(from_c == from_python):.2%} | {cost} |")  # fmt: skip


if __name__ == "__main__":
    main()
