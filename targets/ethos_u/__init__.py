"""Arm Ethos-U NPUs (U55, U65, U85) through Vela, Arm's compiler for them (PyPI `ethos-u-vela`, runs offline).

`compile` runs Vela on the exported int8 model for the configured accelerator, system configuration and memory
mode, and writes the firmware bundle: the Vela-compiled model as a C array, an op resolver that registers the
Ethos-U custom operator (and any operator left to the CPU), `model_config.h` and a manifest. `measure` reads back
what Vela reported.

What is exact and what is estimated: SRAM, DRAM and flash are Vela's own allocation for the configuration (the
compiler places every tensor, so these are the figures the firmware gets). Cycles and inference time are Vela's
performance model at the system configuration's clock, an estimate. Accuracy is not measured: no NPU (and no
Corstone FVP) runs here, and TFLM's host interpreter has no kernel for the `ethos-u` operator.
"""

from __future__ import annotations

import configparser
import csv
import hashlib
import json
import re
import shutil
import tempfile
from importlib.util import find_spec
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from pipeline.analysis.markdown import integer, size_text, table
from pipeline.budgets import BudgetsConfig
from pipeline.engine.child import run_module
from pipeline.engine.store import write_json
from pipeline.measurement import Measurement, figures
from pipeline.plugins import TargetContext
from pipeline.runtimes.tflm import align
from pipeline.schema import Strict, suggest
from pipeline.tflite_model import live_tensor_lower_bound, read_model
from targets.tflm.bundle import (
    c_comment,
    c_identifier,
    write_c_array,
    write_manifest,
    write_model_config,
    write_op_resolver,
)

ACCELERATORS = (
    "ethos-u55-32", "ethos-u55-64", "ethos-u55-128", "ethos-u55-256", "ethos-u65-256", "ethos-u65-512",
    "ethos-u85-128", "ethos-u85-256", "ethos-u85-512", "ethos-u85-1024", "ethos-u85-2048",
)  # fmt: skip
# Per family, the system configuration and memory mode of Vela's Arm/vela.ini that fit it when the recipe names none.
DEFAULTS = {
    "ethos-u55": ("Ethos_U55_High_End_Embedded", "Shared_Sram"),
    "ethos-u65": ("Ethos_U65_High_End", "Dedicated_Sram"),
    "ethos-u85": ("Ethos_U85_SYS_DRAM_High", "Dedicated_Sram"),
}
ARM_CONFIG = "Arm/vela.ini"  # shipped inside the ethos-u-vela wheel
MODEL = "model_vela.tflite"
RESULT = "vela.json"
VELA_TIMEOUT_S = 600


class VelaError(RuntimeError):
    """Vela refused the model or the configuration; the message is Vela's, with the configuration named."""


def builtin_config_file() -> Path:
    spec = find_spec("ethosu")  # located, not imported: validating a recipe must not load the compiler
    if spec is None or not spec.submodule_search_locations:
        raise VelaError("ethos-u-vela is not installed (pip install ethos-u-vela)")
    return Path(next(iter(spec.submodule_search_locations))) / "config_files" / ARM_CONFIG


def config_sections(path: Path) -> tuple[list[str], list[str]]:
    """(system configurations, memory modes) a Vela .ini file defines."""
    parser = configparser.ConfigParser()
    parser.read(path)
    systems = [s.removeprefix("System_Config.") for s in parser.sections() if s.startswith("System_Config.")]
    modes = [s.removeprefix("Memory_Mode.") for s in parser.sections() if s.startswith("Memory_Mode.")]
    return systems, modes


class Config(Strict):
    """The `ethos_u` target's recipe entry."""

    accelerator: Literal[ACCELERATORS] = Field(  # type: ignore[valid-type]
        "ethos-u55-128", description="the NPU and its MACs per cycle, e.g. ethos-u55-128 (Vela's --accelerator-config)"
    )
    system_config: str | None = Field(None, description="a System_Config section of the Vela .ini (default per family)")
    memory_mode: str | None = Field(
        None, description="a Memory_Mode section: Shared_Sram, Sram_Only, Dedicated_Sram, ..."
    )
    config_file: Path | None = Field(
        None, description="your own Vela .ini, relative to the recipe's folder (default: Vela's Arm/vela.ini)"
    )
    optimise: Literal["Performance", "Size"] = Field(
        "Performance", description="what Vela optimises for: Performance (speed) or Size (memory)"
    )
    cpu_arena_allowance: int = Field(
        2048, ge=0, le=1 << 20,
        description="bytes added to the compiled graph's live tensors for TFLM's own structures in the CPU arena",
    )  # fmt: skip
    budgets: BudgetsConfig = Field(
        BudgetsConfig(), description="this target's budgets; each key set here overrides the recipe's top-level one"
    )

    @model_validator(mode="after")
    def _known_sections(self) -> Config:
        if self.config_file is not None:
            return self  # checked when Vela reads it: the path resolves against the recipe's folder, known later
        systems, modes = config_sections(builtin_config_file())
        if self.system_config is not None and self.system_config not in systems:
            raise ValueError(f"unknown system_config '{self.system_config}'{suggest(self.system_config, systems)}")
        if self.memory_mode is not None and self.memory_mode not in modes:
            raise ValueError(f"unknown memory_mode '{self.memory_mode}'{suggest(self.memory_mode, modes)}")
        return self

    @property
    def family(self) -> str:
        return self.accelerator.rsplit("-", 1)[0]

    @property
    def system(self) -> str:
        return self.system_config or DEFAULTS[self.family][0]

    @property
    def mode(self) -> str:
        return self.memory_mode or DEFAULTS[self.family][1]


# --- Vela ---------------------------------------------------------------------------------------------------------


def run_vela(model: Path, cfg: Config, config_file: Path, out: Path) -> dict[str, Any]:
    """Compile `model` with Vela in a child process; returns its summary, per-layer table and operator placement."""
    args = [
        model, "--config", config_file, "--accelerator-config", cfg.accelerator,
        "--system-config", cfg.system, "--memory-mode", cfg.mode, "--optimise", cfg.optimise,
        "--output-dir", out, "--verbose-performance", "--show-cpu-operations",
    ]  # fmt: skip
    done = run_module("ethosu.vela", *args, timeout=VELA_TIMEOUT_S)
    what = f"{cfg.accelerator} ({cfg.system}, {cfg.mode})"
    if done.returncode != 0:
        errors = re.findall(r"Error: (.+)", done.stderr + done.stdout)
        said = errors[-1] if errors else (done.stderr.strip().splitlines() or ["(it printed nothing)"])[-1]
        raise VelaError(f"Vela could not compile {model.name} for {what}: {said}")
    summaries = sorted(out.glob("*_summary_*.csv"))
    compiled = out / f"{model.stem}_vela.tflite"
    if not summaries or not compiled.exists():
        raise VelaError(f"Vela wrote no summary or compiled model for {what}; it said:\n{done.stdout[-2000:]}")
    with open(summaries[0], newline="") as f:
        summary = next(csv.DictReader(f))
    return {
        "summary": summary,
        "layers": parse_layers(done.stdout),
        "placement": parse_placement(done.stdout + done.stderr),
        "log": done.stdout + done.stderr,
        "compiled": compiled,
    }


def parse_layers(stdout: str) -> list[dict[str, str]]:
    """Vela's per-layer performance table (`--verbose-performance`): fixed-width columns, read by the dash row."""
    lines = stdout.splitlines()
    rows: list[dict[str, str]] = []
    for i, line in enumerate(lines):
        if not line.startswith("Original Operator") or i + 1 >= len(lines):
            continue
        spans = [m.span() for m in re.finditer(r"-+", lines[i + 1])]
        header = [line[a:b].strip() for a, b in spans]
        for row in lines[i + 2 :]:
            if not row.strip():
                break
            cells = [row[a:b].strip() for a, b in spans[:-1]] + [row[spans[-1][0] :].strip()]
            rows.append(dict(zip(header, cells, strict=True)))
    return rows


def parse_placement(output: str) -> dict[str, Any]:
    """Which operators run on the NPU and which fall back to the CPU (`--show-cpu-operations`), with the operator
    type and Vela's reason for each fallback (its "supported operators" warnings)."""
    warnings = {
        name: {"op": op, "reason": reason.strip()}
        for op, name, reason in re.findall(
            r"Warning \(supported operators\) operator: (\w+), ofm: '(.+?)'\s*\nReason: (.+)", output
        )
    }
    cpu_names = re.findall(r"^\s*CPU: \w+ = (.+?)(?: \(outputs \[.*\]\))?$", output, re.M)
    cpu = [{"name": name, **warnings.get(name, {"op": "?", "reason": None})} for name in cpu_names]
    counts = {kind: re.search(rf"^{kind} operators = (\d+)", output, re.M) for kind in ("NPU", "CPU")}
    npu_ops, cpu_ops = (int(m.group(1)) if m else 0 for m in counts.values())  # Vela's count of the model's ops
    return {"npu_ops": npu_ops, "cpu_ops": cpu_ops, "cpu": cpu}


def kib_bytes(value: str) -> int:
    """Vela reports memory in KiB with exact binary fractions (4.328125): back to bytes."""
    return int(round(float(value) * 1024))


# --- the target interface -----------------------------------------------------------------------------------------


def compile(cfg: Config, ctx: TargetContext) -> None:  # noqa: A001 - the interface's verb
    info = json.loads(ctx.export.file("model_info.json").read_text())
    if info["input"]["dtype"] not in ("int8", "int16"):
        raise VelaError(f"Ethos-U runs integer models only; the export has {info['input']['dtype']} input")
    config_file = ctx.recipe.resolve_path(cfg.config_file) if cfg.config_file else builtin_config_file()
    if not config_file.is_file():
        raise VelaError(f"config_file {config_file}: no such file")
    ctx.log(f"Vela: {cfg.accelerator}, {cfg.system}, {cfg.mode}, optimise for {cfg.optimise.lower()}")
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "model.tflite"
        shutil.copyfile(ctx.export.file("model.tflite"), source)
        vela = run_vela(source, cfg, config_file, Path(tmp) / "out")
        shutil.copyfile(vela["compiled"], ctx.out / MODEL)
    (ctx.out / "vela.log").write_text(vela["log"], encoding="utf-8")
    model = (ctx.out / MODEL).read_bytes()
    graph = read_model(model)
    s = vela["summary"]
    live = live_tensor_lower_bound(graph)
    arena = align(live["bytes"] + cfg.cpu_arena_allowance)
    result = {
        "accelerator": cfg.accelerator,
        "system_config": cfg.system,
        "memory_mode": cfg.mode,
        "optimise": cfg.optimise,
        "config_file": str(config_file) if cfg.config_file else ARM_CONFIG,
        "clock_mhz": float(s["core_clock"]) / 1e6,
        "memory": {
            area: kib_bytes(s[f"{area}_memory_used"]) for area in ("sram", "dram", "on_chip_flash", "off_chip_flash")
        },
        "cycles": {k.removeprefix("cycles_"): int(float(v)) for k, v in s.items() if k.startswith("cycles_")},
        "inference_ms": float(s["inference_time"]) * 1e3,
        "inferences_per_second": float(s["inferences_per_second"]),
        "macs": int(float(s["nn_macs"])),
        "weights": {
            "original": int(float(s["total_original_weights"])),
            "npu_encoded": int(float(s["total_npu_encoded_weights"])),
        },
        "placement": vela["placement"],
        "layers": vela["layers"],
        "ops": graph.op_names,
        "model_bytes": len(model),
        "cpu_arena": {"live_tensors": live["bytes"], "allowance": cfg.cpu_arena_allowance, "bundle": arena},
    }
    write_json(ctx.out / RESULT, result)
    write_bundle(ctx, graph, model, result)


def write_bundle(ctx: TargetContext, graph: Any, model: bytes, result: dict[str, Any]) -> None:
    from pipeline.engine.versions import versions

    name = ctx.recipe.name
    write_c_array(model, ctx.out, name)
    write_op_resolver(graph, ctx.out, name)
    feats = ctx.recipe.data.features
    features = feats.model_dump(mode="json") | {
        "clip_samples": feats.clip_samples, "window_samples": feats.window_samples,
        "stride_samples": feats.stride_samples, "frames": feats.frames,
    }  # fmt: skip
    arena = result["cpu_arena"]
    inp, out = graph.tensors[graph.inputs[0]], graph.tensors[graph.outputs[0]]
    comment = [
        f"// CPU-side tensor arena: the compiled graph's live tensors ({arena['live_tensors']} bytes: input, output",
        f"// and Vela's scratch areas) plus {arena['allowance']} bytes for TFLM's own structures, rounded to 16 bytes.",
        "// An estimate: no Ethos-U runs here to measure it. Vela's SRAM figure for this configuration:",
        f"// {result['memory']['sram']} bytes ({c_comment(result['accelerator'])}, {c_comment(result['memory_mode'])}).",
    ]
    write_model_config(ctx.out, name, arena["bundle"], inp, out, ctx.data.labels, features, comment)
    sha = hashlib.sha256(model).hexdigest()
    write_readme(ctx.out, name, f"{name}-{sha[:8]}", result)
    write_manifest(
        ctx.out,
        {
            "bundle": f"{name}-{sha[:8]}",
            "model_sha256": sha,
            "arena_bytes": arena["bundle"],
            "ops": result["ops"],
            "accelerator": result["accelerator"],
            "system_config": result["system_config"],
            "memory_mode": result["memory_mode"],
            "recipe": name,
            "recipe_fingerprint": ctx.recipe.fingerprint(),
            "versions": versions(),
        },
    )


def write_readme(out: Path, name: str, bundle: str, result: dict[str, Any]) -> None:
    ns = c_identifier(name)
    cpu = [f"{op['op']} (`{op['name']}`)" for op in result["placement"]["cpu"]]
    text = f"""# {bundle}: Ethos-U bundle ({result["accelerator"]})

Generated by edge-pipeline with Vela for {result["accelerator"]}, system configuration {result["system_config"]},
memory mode {result["memory_mode"]}. `manifest.json` lists every file with its SHA-256.

| file | what |
|---|---|
| `model_data.cpp`, `model_data.h` | the Vela-compiled model as a 16-byte aligned `const` array (`g_{ns}_model_data`) |
| `op_resolver.h` | `{ns}::OpResolver` and `{ns}::RegisterOps()`: {", ".join(result["ops"])} |
| `model_config.h` | `kTensorArenaSize` ({result["cpu_arena"]["bundle"]} bytes, an estimate), input/output shapes and quantization, labels, feature parameters |
| `model_vela.tflite` | the same model as a file; `vela.log` is what Vela printed |

## Use

Build TFLite Micro for your Corstone/Ethos-U platform with the NPU kernel (for example
`make -f tensorflow/lite/micro/tools/make/Makefile TARGET=cortex_m_corstone_300 CO_PROCESSOR=ethos_u`), so that
`AddEthosU()` links against the Ethos-U driver, and initialise the driver (`ethosu_init`) before the interpreter.
Then use the bundle exactly like the TFLM one: `RegisterOps(resolver)`, a `MicroInterpreter` over
`g_{ns}_model_data` and a `kTensorArenaSize` arena{" in SRAM" if result["memory_mode"] == "Shared_Sram" else ""}.

Operators left to the CPU: {", ".join(cpu) if cpu else "none (everything runs on the NPU)"}.

Vela's figures for this configuration: SRAM {result["memory"]["sram"]} B, off-chip flash
{result["memory"]["off_chip_flash"]} B, DRAM {result["memory"]["dram"]} B; {result["inference_ms"]:.3f} ms per inference
at {result["clock_mhz"]:g} MHz (Vela's performance model, not a measurement).
"""
    (out / "README.md").write_text(text, encoding="utf-8")


def measure(cfg: Config, ctx: TargetContext) -> dict[str, Any]:
    """Vela's figures for the compiled model, typed: its memory allocation is exact, its timing an estimate."""
    result = json.loads((ctx.out / RESULT).read_text())
    memory = result["memory"]
    where = f"Vela {vela_version()} for {result['accelerator']}, {result['system_config']}, {result['memory_mode']}"
    flash = memory["off_chip_flash"] + memory["on_chip_flash"]
    manifest = json.loads((ctx.out / "manifest.json").read_text())
    return {
        **figures(
            flash=Measurement(flash, "B", f"flash Vela allocates (command stream and encoded weights): {where}", True),
            ram=Measurement(memory["sram"], "B", f"SRAM Vela allocates for the tensor arena: {where}", True),
            latency=Measurement(
                result["inference_ms"],
                "ms",
                f"Vela's performance estimate, {result['cycles'].get('total', 0):,} cycles at {result['clock_mhz']:g} "
                f"MHz ({where})",
                False,
            ),
        ),  # fmt: skip
        "latency_ms": {
            "median": result["inference_ms"],
            "p90": result["inference_ms"],
            "runs": 0,
            "runtime": f"Vela {vela_version()} performance estimate (no NPU here)",
        },  # fmt: skip
        "accuracy": None,
        "bundle": manifest["bundle"],
        "ops": result["ops"],
        "vela": {k: v for k, v in result.items() if k not in ("layers", "ops")},
        "layers": result["layers"],
    }


def vela_version() -> str:
    from importlib.metadata import version

    return version("ethos-u-vela")


# --- the report section -------------------------------------------------------------------------------------------


def report(t: dict[str, Any]) -> list[str]:
    v = t["vela"]
    memory, placement = v["memory"], v["placement"]
    lines = [
        f"- {v['accelerator']} in system configuration {v['system_config']}, memory mode {v['memory_mode']} "
        f"(from {v['config_file']}), clock {v['clock_mhz']:g} MHz, optimised for {v['optimise'].lower()}.",
        f"- Vela's allocation: SRAM {integer(memory['sram'])} B, DRAM {integer(memory['dram'])} B, on-chip flash "
        f"{integer(memory['on_chip_flash'])} B, off-chip flash {integer(memory['off_chip_flash'])} B; the compiled "
        f"model file is {size_text(v['model_bytes'])}.",
        f"- Operators: {placement['npu_ops']} on the NPU, {placement['cpu_ops']} on the CPU"
        + (":" if placement["cpu"] else "."),
    ]
    for op in placement["cpu"]:
        lines.append(f"  - CPU: {op['op']} `{op['name']}`" + (f": {op['reason']}" if op.get("reason") else ""))
    lines += [
        f"- Estimate (Vela's performance model, not measured): {v['inference_ms']:.3f} ms per inference, "
        f"{v['inferences_per_second']:,.0f}/s, {v['cycles'].get('total', 0):,} cycles; {v['macs']:,} MACs.",
        f"- CPU-side arena in the bundle: {integer(v['cpu_arena']['bundle'])} B (estimate: live tensors "
        f"{integer(v['cpu_arena']['live_tensors'])} B + {integer(v['cpu_arena']['allowance'])} B for TFLM).",
        "- Accuracy: not measured (no Ethos-U or Corstone FVP here; TFLM's host build has no `ethos-u` kernel).",
    ]
    layers = t.get("layers") or []
    if layers:
        keys = ["Original Operator", "NNG Operator", "Target", "Op Cycles", "Network% (cycles)", "MAC Count", "Name"]
        rows = [[row.get(k, "") for k in keys] for row in layers]
        lines += ["", "Per layer (Vela `--verbose-performance`):", "", table(keys, rows)]
    return lines
