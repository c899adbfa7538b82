"""`pipeline init`: a new recipe to start from, shaped like the flagship, commented, and valid before it is written."""

from __future__ import annotations

import json
import re
from pathlib import Path

TARGETS = ("tflm", "android", "openvino", "ethos_u")

HEADER = """\
# yaml-language-server: $schema={schema}
# {name}: keyword spotting for {keywords_text}, written by `pipeline init`. Run it with `pipeline run {file}`.
# Every key, its default and bounds: docs/recipe-reference.md in the edge-pipeline repository, or your editor
# (the line above points YAML language servers at the recipe schema beside this file).
name: {name}
seed: 0                             # every random choice (voices, splits, training) follows from it

data:
  source: speech_commands
  path: data/speech_commands_v2     # Speech Commands layout, relative to this file; used when it exists ...
  fallback: synthetic               # ... else offline synthetic voices (espeak-ng), disjoint between the splits
  keywords: [{keywords}]   # + _silence_ and _unknown_
  synthetic: {{train_voices: 1500, val_voices: 150, test_voices: 250}}   # voice draws; each says every keyword
  features: {{kind: mfcc, window_ms: 30, stride_ms: 20, coefficients: 10}}   # 49 frames x 10 coefficients
  # Recordings of real people to judge every model on (never trained on); a folder per word, like Speech Commands.
  # field_tests:
  #   - {{name: my_recordings, path: recordings, optional: true}}

model: {{arch: ds_cnn, filters: 64, blocks: 4, normalize: cepstral_mean}}   # depthwise-separable CNN

stages:
  - train:    {{epochs: 20, batch_size: 100, lr: 0.001, lr_schedule: cosine, patience: 0, label_smoothing: 0.1,
               weight_average: 0.999, augment: {{time_shift_frames: 5, time_masks: 2, coefficient_masks: 1}}}}
  # NNCF filter pruning: a quarter of every conv's filters, ranked by L2 norm; the model is then rebuilt narrower.
  - prune:    {{method: filter, target: 0.25, steps: 4, epochs: 6, lr: 0.0005}}
  # The narrower model relearns with the unpruned one as its teacher.
  - finetune: {{epochs: 20, lr: 0.001, lr_schedule: cosine, patience: 0, distill: {{teacher: train}}}}
  - quantize: {{mode: int8, calibration_samples: 500}}   # full-integer, calibrated on training clips
  - export:   {{}}

targets:
"""

TARGET_LINES = {
    "tflm": """\
  # Firmware bundle for {board} ({core}): {how}
  - tflm: {{board: {board}}}
""",
    "android": """\
  # Phones: .tflite variants measured on host LiteRT (add adb_serial + benchmark_model to measure on a phone).
  - android: {{variants: [fp32, int8], threads: [1, 2]}}
""",
    "openvino": """\
  # OpenVINO CPU: IR in FP32 and NNCF post-training INT8.
  - openvino: {{precisions: [fp32, int8]}}
""",
    "ethos_u": """\
  # Arm Ethos-U55 NPU through Vela: its allocation and performance estimate.
  - ethos_u: {{accelerator: ethos-u55-128}}
""",
}

FOOTER = """
budgets:
  min_accuracy: 0.85                # every target; a target's own `budgets:` add flash_kb, ram_kb, latency_ms
"""


NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"  # the recipe's own rule for `name`, checked before it is written in


def _flow_scalar(word: str) -> str:
    """A keyword as YAML: bare when it reads back as itself (yes, no, on, off do under YAML 1.2), else quoted."""
    bare = re.fullmatch(r"[A-Za-z][A-Za-z0-9_'-]*", word) and word.lower() not in ("null", "true", "false")
    return word if bare else json.dumps(word)


class StarterError(ValueError):
    """An option `pipeline init` cannot turn into a valid recipe."""


def starter_recipe(name: str, keywords: list[str], board: str, targets: list[str], schema: str) -> str:
    """The recipe's text; refused (StarterError naming the option) unless it validates."""
    from pipeline.recipe import RecipeError, parse_recipe
    from targets.tflm.boards import BOARDS

    unknown = [t for t in targets if t not in TARGETS]
    if unknown:
        raise StarterError(f"--targets: unknown target {', '.join(unknown)}; expected some of {', '.join(TARGETS)}")
    if not targets:
        raise StarterError("--targets: name at least one target")
    if "tflm" in targets and board not in BOARDS:
        raise StarterError(f"--board: unknown board '{board}'; expected one of: {', '.join(sorted(BOARDS))}")
    if not re.fullmatch(NAME, name):
        raise StarterError(f"NAME: '{name}' must be letters, digits, '.', '_' or '-', starting with a letter or digit")
    text = HEADER.format(
        name=name, schema=schema, file=f"{name}.yaml", keywords=", ".join(map(_flow_scalar, keywords)),
        keywords_text=", ".join(f"'{k}'" for k in keywords),
    )  # fmt: skip
    emulated = "tflm" in targets and BOARDS[board].buildable and BOARDS[board].qemu_machine
    how = ("TFLM + CMSIS-NN built as firmware, measured on QEMU's model of the core." if emulated
           else "TFLM on the host; flash and RAM shown against the board's.")  # fmt: skip
    core = BOARDS[board].core if "tflm" in targets else ""
    text += "".join(TARGET_LINES[t].format(board=board, core=core, how=how) for t in TARGETS if t in targets)
    text += FOOTER
    try:
        parse_recipe(text, f"{name}.yaml")
    except RecipeError as exc:
        raise StarterError("; ".join(_said_as_option(p.path, p.message) for p in exc.problems)) from None
    return text


def _said_as_option(path: tuple, message: str) -> str:
    """A problem in the written recipe, named by the option that caused it."""
    if path[:1] == ("name",):
        return f"NAME: {message}"
    if path[:2] == ("data", "keywords"):
        return f"--keywords: {message}"
    return f"{'.'.join(map(str, path))}: {message}"


def write_starter(out: Path, text: str, schema_text: str, force: bool) -> tuple[Path, Path]:
    """Write the recipe and, beside it, the schema its first line names; refuses to replace a recipe."""
    from pipeline.engine.store import write_atomic

    if out.exists() and not force:
        raise FileExistsError(f"{out} exists; pass --force to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    schema_file = out.parent / "recipe.schema.json"
    write_atomic(schema_file, schema_text)
    write_atomic(out, text)
    return out, schema_file
