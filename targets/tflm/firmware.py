"""Cortex-M firmware from a TFLM bundle: the TFLite Micro library (with CMSIS-NN or reference kernels) built for the
board's core, the bundle's own sources and a small benchmark harness (`harness/`), linked for the board's memory.

The library is a pure function of (sources, core flags, kernels, kernel set, compiler, flags, BUILD_RULES), so it
is built once into the firmware cache (`targets.tflm.sources.cache_root()`, an artifact store shared by every
recipe and run folder) and reused. Only the kernels the model's operators need are compiled (found from the
`Register_*` functions its `MicroMutableOpResolver` calls), unless a link shows that more are needed; then every
kernel is. The firmware links with `--gc-sections` against the board's own flash and RAM sizes, so a firmware
that does not fit fails to link and says by how much.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pipeline.engine.store import Store, digest, sha256_file
from targets.tflm import sources
from targets.tflm.boards import Board
from targets.tflm.bundle import c_identifier

Kernels = Literal["cmsis_nn", "reference"]
HARNESS = Path(__file__).with_name("harness")
PREFIX = "arm-none-eabi-"
TFLM = "tflite-micro"
BUILD_RULES = 1  # bump when how the library is built changes beyond its files and flags (both are in its key)
ALWAYS_KERNELS = ("kernel_util.cc", "micro_tensor_utils.cc")  # helpers every kernel calls


class FirmwareError(RuntimeError):
    """The firmware could not be built (the message names the step and the compiler's or linker's words)."""


class FirmwareUnavailable(FirmwareError):
    """This machine cannot build or run the firmware (no cross-compiler, no sources, no emulator)."""


def toolchain() -> dict[str, str]:
    gcc = shutil.which(PREFIX + "gcc")
    if gcc is None:
        raise FirmwareUnavailable(
            "arm-none-eabi-gcc is not installed (scripts/setup.sh installs gcc-arm-none-eabi and "
            "libstdc++-arm-none-eabi-newlib with apt)"
        )
    version = subprocess.run([gcc, "-dumpversion"], capture_output=True, text=True).stdout.strip()
    return {"gcc": gcc, "version": f"arm-none-eabi-gcc {version}"}


def cpu_flags(board: Board) -> list[str]:
    flags = [f"-mcpu={board.cpu}", "-mthumb", f"-mfloat-abi={board.float_abi}"]
    return flags + ([f"-mfpu={board.fpu}"] if board.fpu else [])


def defines(board: Board, kernels: Kernels) -> list[str]:
    """TFLM's release flags for its cortex_m_generic target (tools/make/targets/cortex_m_generic_makefile.inc)."""
    out = [
        "-DTF_LITE_STATIC_MEMORY", "-DTF_LITE_DISABLE_X86_NEON", "-DNDEBUG", "-DTF_LITE_STRIP_ERROR_STRINGS",
        "-DKERNELS_OPTIMIZED_FOR_SPEED", "-DTF_LITE_MCU_DEBUG_LOG", f"-DCPU_{board.cmsis_core}=1",
        f'-DCMSIS_DEVICE_ARM_CORTEX_M_XX_HEADER_FILE="ARMC{board.cmsis_core}.h"', f"-DARMC{board.cmsis_core}",
        "-DARM_NN_ENABLE_F16=0", "-DARM_NN_ENABLE_F32=0",
    ]  # fmt: skip
    return out + (["-DCMSIS_NN"] if kernels == "cmsis_nn" else [])


CODEGEN = [
    "-O2", "-ffunction-sections", "-fdata-sections", "-fno-unwind-tables", "-fno-asynchronous-unwind-tables",
    "-fmessage-length=0", "-funsigned-char", "-fomit-frame-pointer", "-mlittle-endian",
]  # fmt: skip
CXX_ONLY = ["-std=c++17", "-fno-rtti", "-fno-exceptions", "-fno-threadsafe-statics", "-fno-use-cxa-atexit"]
C_ONLY = ["-std=c17"]


def includes(root: Path, board: Board) -> list[str]:
    return [
        f"-I{p}"
        for p in (
            root / TFLM, root / "flatbuffers" / "include", root / "gemmlowp", root / "ruy", root / "cmsis",
            root / "cmsis" / "CMSIS" / "Core" / "Include", root / "cortex_dfp" / "Device" / f"ARMC{board.cmsis_core}"
            / "Include", root / "cmsis_nn", root / "cmsis_nn" / "Include",
        )
    ]  # fmt: skip


# --- which sources the library compiles ------------------------------------------------------------------------


def core_sources(root: Path) -> list[Path]:
    """TFLM's interpreter, allocator, planners and the TFLite helpers it shares, as its Makefile lists them."""
    micro = root / TFLM / "tensorflow" / "lite" / "micro"
    found = [p for p in micro.glob("*.cc") if not p.name.endswith("_test.cc")]
    for sub in ("arena_allocator", "memory_planner", "tflite_bridge"):
        found += [p for p in (micro / sub).glob("*.cc") if not p.name.endswith("_test.cc")]
    specialised = {p.name: p for p in (micro / "cortex_m_generic").glob("*.cc")}  # debug_log, micro_time
    found = [specialised.get(p.name, p) for p in found]
    lite = root / TFLM / "tensorflow" / "lite"
    found += [lite / f for f in (
        "kernels/kernel_util.cc", "kernels/internal/runtime_shape.cc", "kernels/internal/portable_tensor_utils.cc",
        "kernels/internal/tensor_ctypes.cc", "kernels/internal/reference/portable_tensor_utils.cc",
        "kernels/internal/common.cc", "kernels/internal/quantization_util.cc", "kernels/internal/tensor_utils.cc",
        "core/api/flatbuffer_conversions.cc", "core/api/tensor_utils.cc", "core/c/common.cc",
    )]  # fmt: skip
    mlir = root / TFLM / "tensorflow" / "compiler" / "mlir" / "lite"
    return sorted(found + [mlir / "schema" / "schema_utils.cc", mlir / "core" / "api" / "error_reporter.cc"])


def kernel_sources(root: Path, kernels: Kernels) -> list[Path]:
    """Every operator kernel; with CMSIS-NN, its TFLM wrappers replace the reference files of the same name."""
    folder = root / TFLM / "tensorflow" / "lite" / "micro" / "kernels"
    skip = ("_test.cc", "_generated_data.cc", "_test_common.cc")
    found = {p.name: p for p in folder.glob("*.cc") if not p.name.endswith(skip)}
    if kernels == "cmsis_nn":
        found |= {p.name: p for p in (folder / "cmsis_nn").glob("*.cc")}
    return sorted(found.values())


def cmsis_nn_sources(root: Path) -> list[Path]:
    """CMSIS-NN's int8/int16 functions (float ones off, as TFLM builds it)."""
    return sorted(
        p
        for p in (root / "cmsis_nn" / "Source").rglob("*.c")
        if not p.name.endswith(("_f16.c", "_f32.c")) and p.name != "arm_nntables_flt.c"
    )


def kernels_for(root: Path, kernels: Kernels, methods: list[str]) -> list[Path] | None:
    """The kernel files the resolver's `Add*` methods reach (each op's file and its `_common.cc`), or None when
    an op's kernel cannot be found this way (then every kernel is built)."""
    header = (root / TFLM / "tensorflow/lite/micro/micro_mutable_op_resolver.h").read_text()
    candidates = kernel_sources(root, kernels)
    texts = {p: p.read_text(errors="replace") for p in candidates}
    by_name = {p.name: p for p in candidates}
    chosen = {by_name[n] for n in ALWAYS_KERNELS if n in by_name}
    for method in methods:
        body = re.search(rf"TfLiteStatus {method}\((.*?)\n  }}", header, re.S)
        registers = set(re.findall(r"Register_\w+", body.group(0))) if body else set()
        if not registers:
            return None
        for register in registers:
            defining = [p for p, t in texts.items() if re.search(rf"\b{register}\s*\(\s*\)\s*\{{", t)]
            if not defining:
                return None
            for p in defining:
                chosen.add(p)
                common = by_name.get(p.name.replace(".cc", "_common.cc"))
                if common is not None:
                    chosen.add(common)
    return sorted(chosen)


def resolver_methods(op_resolver_h: Path) -> list[str]:
    return re.findall(r"resolver\.(Add\w+)\(", op_resolver_h.read_text())


# --- building ----------------------------------------------------------------------------------------------------


def firmware_store() -> Store:
    return Store(sources.cache_root() / "store")


def unpacked_sources(store: Store, configured: str | Path | None, log: Callable[[str], None]) -> Path:
    """The pinned sources, verified and unpacked once into the firmware cache."""
    folder = sources.sources_dir(configured)
    key = digest({"sources": [(u.repo, u.commit, u.files_sha256) for u in sources.UPSTREAM]})
    found = store.get("tflm-sources", key)
    if found is not None:
        return found.path

    def build(tmp: Path, meta: dict) -> None:
        log(f"unpacking the pinned TFLM / CMSIS-NN sources from {folder} (verified by their files' digests)")
        sources.unpack(folder, tmp)
        meta["from"] = str(folder)

    if sources.missing(folder):
        raise FirmwareUnavailable(
            f"the TFLM firmware sources are not in {folder} ({', '.join(sources.missing(folder))}); {sources.SETUP_HINT}"
        )
    return store.get_or_build("tflm-sources", key, build).path


def object_name(relative: Path) -> str:
    return "-".join(relative.with_suffix(".o").parts)


def _compile(src: Path, obj: Path, flags: list[str]) -> None:
    obj.parent.mkdir(parents=True, exist_ok=True)
    cxx = src.suffix in (".cc", ".cpp")
    cmd = [PREFIX + ("g++" if cxx else "gcc"), *flags, *(CXX_ONLY if cxx else C_ONLY), "-c", str(src), "-o", str(obj)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        raise FirmwareError(f"compiling {src.name} failed:\n{done.stderr[-3000:]}")


def compile_all(jobs: list[tuple[Path, Path, list[str]]], log: Callable[[str], None], what: str) -> None:
    """Compile in parallel on every core, logging progress every tenth of the way."""
    step = max(len(jobs) // 10, 1)
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        for i, _ in enumerate(pool.map(lambda job: _compile(*job), jobs), 1):
            if i % step == 0 or i == len(jobs):
                log(f"{what}: {i}/{len(jobs)} sources compiled")


@dataclass(frozen=True)
class Library:
    path: Path  # libtflm.a
    root: Path  # the unpacked sources (for include paths)
    kernels: Kernels
    key: str
    cached: bool
    seconds: float
    files: int
    minimal: bool
    compiler: str


def library(
    board: Board, kernels: Kernels, methods: list[str] | None, configured_sources: str | Path | None = None,
    log: Callable[[str], None] = lambda msg: None,
) -> Library:  # fmt: skip
    """libtflm.a for `board`'s core: TFLM's core, the kernels `methods` need (all when None) and, with CMSIS-NN,
    all of CMSIS-NN's int8/int16 functions. Built once per key into the firmware cache."""
    tools = toolchain()
    store = firmware_store()
    root = unpacked_sources(store, configured_sources, log)
    chosen = kernels_for(root, kernels, methods) if methods is not None else None
    files = core_sources(root) + (chosen if chosen is not None else kernel_sources(root, kernels))
    if kernels == "cmsis_nn":
        files += cmsis_nn_sources(root)
    flags = [*CODEGEN, *cpu_flags(board), *defines(board, kernels), *includes(root, board)]
    key = digest(
        {
            "sources": root.name,
            "files": [str(p.relative_to(root)) for p in files],
            "flags": [f for f in flags if not f.startswith("-I")],
            "compiler": tools["version"],
            "rules": BUILD_RULES,
        }
    )

    def build(tmp: Path, meta: dict) -> None:
        what = f"TFLM library for {board.cpu} ({kernels}, {len(files)} sources)"
        log(f"building the {what} once; it is cached for every later firmware")
        # Objects are named by their whole path: TFLM has two kernel_util.cc, and `ar` keys members by name.
        jobs = [(src, tmp / "obj" / object_name(src.relative_to(root)), flags) for src in files]
        compile_all(jobs, log, what)
        objects = [str(obj) for _, obj, _ in jobs]
        done = subprocess.run([PREFIX + "ar", "rcs", str(tmp / "libtflm.a"), *objects], capture_output=True, text=True)
        if done.returncode:
            raise FirmwareError(f"archiving libtflm.a failed: {done.stderr[-2000:]}")
        shutil.rmtree(tmp / "obj")
        meta |= {"files": len(files), "compiler": tools["version"], "kernels": kernels, "cpu": board.cpu}

    art = store.get_or_build("tflm-lib", key, build)
    return Library(art.file("libtflm.a"), root, kernels, key, art.cached, float(art.meta.get("seconds", 0.0)),
                   len(files), chosen is not None, tools["version"])  # fmt: skip


def linker_script(board: Board, stack_bytes: int = 8192, emulator_memory: bool = False) -> str:
    """Sections for a Cortex-M image in the board's own flash and RAM: code and constants (the model) in flash,
    data copied to RAM at reset, then .bss (the arena) and a reserved stack; more than fits fails the link.
    `emulator_memory`: the emulated board's larger memories instead, to measure a firmware the board cannot hold."""
    flash_kb, ram_kb = board.emulator_kb if emulator_memory else (board.flash_kb, board.ram_kb)
    return f"""/* Generated by edge-pipeline for {board.name}: {flash_kb} KB flash, {ram_kb} KB RAM. */
MEMORY
{{
  FLASH (rx)  : ORIGIN = {board.flash_origin:#010x}, LENGTH = {flash_kb}K
  RAM   (rwx) : ORIGIN = {board.ram_origin:#010x}, LENGTH = {ram_kb}K
}}
ENTRY(Reset_Handler)
_estack = ORIGIN(RAM) + LENGTH(RAM);
SECTIONS
{{
  .isr_vector : {{ KEEP(*(.isr_vector)) }} > FLASH
  .text : {{
    *(.text*) *(.rodata*)
    KEEP(*(.init)) KEEP(*(.fini))
    . = ALIGN(4);
    __preinit_array_start = .; KEEP(*(.preinit_array)) __preinit_array_end = .;
    __init_array_start = .; KEEP(*(SORT(.init_array.*))) KEEP(*(.init_array)) __init_array_end = .;
    __fini_array_start = .; KEEP(*(.fini_array)) __fini_array_end = .;
  }} > FLASH
  .ARM.exidx : {{ *(.ARM.exidx* .gnu.linkonce.armexidx.*) }} > FLASH
  . = ALIGN(4);
  _sidata = LOADADDR(.data);
  .data : {{ . = ALIGN(4); _sdata = .; *(.data*) . = ALIGN(4); _edata = .; }} > RAM AT> FLASH
  .bss (NOLOAD) : {{ . = ALIGN(4); _sbss = .; *(.bss*) *(COMMON) . = ALIGN(4); _ebss = .; end = .; }} > RAM
  .stack (NOLOAD) : {{ . = ALIGN(8); . = . + {stack_bytes}; }} > RAM
}}
"""


@dataclass(frozen=True)
class Firmware:
    elf: Path
    map: Path
    board: str
    kernels: Kernels
    library: Library
    sizes: dict[str, Any]
    fits: str | None = None  # None: linked for the board; else why it was linked for the emulator's memory instead


def build_firmware(
    bundle: Path, name: str, board: Board, kernels: Kernels, out: Path, configured_sources: str | Path | None = None,
    log: Callable[[str], None] = lambda msg: None, frontend: bool = True, every_kernel: bool = False,
) -> Firmware:  # fmt: skip
    """The benchmark firmware for the bundle in `bundle` (its `src/`), written to `out` (ELF, map, sizes)."""
    src = bundle / "src"
    methods = None if every_kernel else resolver_methods(src / "op_resolver.h")
    lib = library(board, kernels, methods, configured_sources, log)
    out.mkdir(parents=True, exist_ok=True)
    ns = c_identifier(name)
    model_sha = sha256_file(bundle / "model.tflite")[:16]
    has_frontend = frontend and (src / "frontend.c").is_file()
    has_detector = has_frontend and (src / "detector.c").is_file()
    firmware_id = f"edge-pipeline firmware {board.name} {kernels} {model_sha[:8]}"
    counter = board.counter
    harness_defs = [
        f"-DEDGE_NS={ns}", f"-DEDGE_MODEL_DATA=g_{ns}_model_data", f'-DEDGE_MODEL_SHA="{model_sha}"',
        f'-DEDGE_DUT_NAME="{board.qemu_machine or board.name}"', f'-DEDGE_FIRMWARE="{firmware_id}"',
        f"-DEDGE_UART_BASE={board.uart_base:#x}u", f"-DEDGE_TIMER_BASE={board.timer_base:#x}u",
        f"-DEDGE_COUNTER_DWT={int(counter['dwt'])}", f"-DEDGE_COUNTER_SYSTICK={int(counter['systick'])}",
        f"-DEDGE_COUNTER_NUM={counter['num']}ull",
        f"-DEDGE_COUNTER_DEN={counter['den']}ull",
        f"-DEDGE_COUNTER_PER_US={counter['per_us']}ull", f'-DEDGE_COUNTER_UNIT="{counter["unit"]}"',
        f"-DEDGE_HAS_FRONTEND={int(has_frontend)}", f"-DEDGE_HAS_DETECTOR={int(has_detector)}",
    ]  # fmt: skip
    if has_frontend:
        prefix = f"{ns.upper()}_FRONTEND"
        harness_defs += [
            f"-DEDGE_FRONTEND_CLIP_SAMPLES={prefix}_CLIP_SAMPLES",
            f"-DEDGE_FRONTEND_INT8={ns}_frontend_int8",
        ]
    if has_detector:
        harness_defs += (
            [f"-DEDGE_DETECTOR_T={ns}_detector_t"]
            + [f"-DEDGE_DETECTOR_{verb.upper()}={ns}_detector_{verb}" for verb in ("init", "feed", "ready", "input")]
            + [f"-DEDGE_DETECTOR_PUSH={ns}_detector_push_scores"]
        )
    flags = [*CODEGEN, *cpu_flags(board), *defines(board, kernels), *includes(lib.root, board), f"-I{src}",
             f"-I{HARNESS}"]  # fmt: skip
    units = [src / "model_data.cpp", HARNESS / "main.cc", HARNESS / "board.c", HARNESS / "startup.c"]
    if has_frontend:
        units += [src / "frontend.c"]
    if has_detector:
        units += [src / "detector.c"]
    jobs = [(u, out / "obj" / f"{u.parent.name}_{u.stem}.o", flags + harness_defs) for u in units]
    compile_all(jobs, lambda msg: None, "firmware")
    elf, map_file = out / "firmware.elf", out / "firmware.map"
    fits = None
    for emulator_memory in (False, True):
        (out / "firmware.ld").write_text(linker_script(board, emulator_memory=emulator_memory))
        cmd = [
            PREFIX + "g++", *cpu_flags(board), "-T", str(out / "firmware.ld"), "-Wl,--gc-sections",
            f"-Wl,-Map={map_file}", "--specs=nano.specs", "--specs=nosys.specs", "-nostartfiles",
            *[str(j[1]) for j in jobs], str(lib.path), "-lm", "-o", str(elf),
        ]  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, text=True)
        if not done.returncode:
            break
        if lib.minimal and re.search(r"undefined reference to `[^']*(tflite|Register_|arm_)", done.stderr):
            log("the model's kernels needed more than their own files; building with every kernel")
            return build_firmware(bundle, name, board, kernels, out, configured_sources, log, frontend, True)
        overflow = re.findall(r"region `(\w+)' overflowed by (\d+) bytes", done.stderr)
        if not overflow or emulator_memory:
            raise FirmwareError(f"linking the firmware failed:\n{done.stderr[-3000:]}")
        fits = (
            f"the firmware does not fit board {board.name} ({board.flash_kb} KB flash, {board.ram_kb} KB RAM): "
            + "; ".join(f"{region} over by {int(n):,} B" for region, n in overflow)
        )
        log(fits + "; linked for the emulator's memory to measure it")
    sizes = section_split(map_file, {"model": ["model_data.o"], "front end": ["frontend.o"], "detector": ["detector.o"],
                                     "harness": ["main.o", "board.o", "startup.o"]})  # fmt: skip
    (out / "sizes.json").write_text(json.dumps(sizes, indent=2))
    shutil.rmtree(out / "obj", ignore_errors=True)
    write_build_notes(out, board, kernels, lib, flags + harness_defs, cmd)
    return Firmware(elf, map_file, board.name, kernels, lib, sizes, fits)


def write_build_notes(
    out: Path, board: Board, kernels: Kernels, lib: Library, flags: list[str], link: list[str]
) -> None:
    """The harness sources, the exact compile and link flags and a README beside the ELF: what a firmware team
    needs to build the same benchmark firmware for a real board and flash it."""
    shutil.copytree(HARNESS, out / "harness", dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
    root = str(lib.root)
    relative = [f.replace(root, "$TFLM_SOURCES") for f in flags]
    link_flags = [f for f in link[1:] if not f.startswith(("/", "-Wl,-Map")) and not f.endswith((".o", ".a", ".elf"))]
    (out / "build.json").write_text(json.dumps({
        "board": board.name, "cpu": board.cpu, "kernels": kernels, "compile_flags": relative,
        "link_flags": [f for f in link_flags if f not in ("-T", "-o")], "linker_script": "firmware.ld",
        "tflm_library_sources": lib.files,
    }, indent=2))  # fmt: skip
    (out / "README.md").write_text(f"""# Benchmark firmware for {board.name} ({board.core})

`firmware.elf` is this bundle's model on TFLite Micro with {kernels} kernels, built by edge-pipeline for
`-mcpu={board.cpu}` and linked for the board's {board.flash_kb} KB flash and {board.ram_kb} KB RAM (`firmware.ld`;
`firmware.map` and `sizes.json` say what each part costs). It answers the serial protocol of
`targets/serial_dut.py` (`name%`, `profile%`, `db load N%`, `db <hex>%`, `infer N W%`, `results%`, `frontend%`, `listen%`),
so `pipeline hil` measures it on a board exactly as it measures it on the emulated one.

## Run it on the emulated board

    qemu-system-arm -M {board.qemu_machine} -icount shift=0 -kernel firmware.elf -display none -serial pty

then name the printed `/dev/pts/N` as a `kind: serial` device, or use `kind: qemu` in the HIL inventory.

## Build it for your own board and flash it

The ELF targets QEMU's {board.qemu_machine} memory map (flash at {board.flash_origin:#x}, RAM at
{board.ram_origin:#x}), its CMSDK UART and its {"SysTick" if board.systick else "CMSDK timer"}. For a real board:
1. Replace `harness/board.c` with your board's UART (115200 8N1) and counter; `-DEDGE_COUNTER_DWT=1` counts
   cycles with the DWT (Cortex-M3 and up) instead of instructions.
2. Set the two `ORIGIN`s in `firmware.ld` to your part's (STM32: flash 0x08000000, RAM 0x20000000).
3. Build TFLM from the pinned sources (`python -m targets.tflm.sources fetch`) with `compile_flags` of
   `build.json` ($TFLM_SOURCES is the unpacked folder), compile `harness/*.c*` and the bundle's `src/` with the
   same flags, and link with `link_flags` and `firmware.ld`.
4. Flash it, with pyOCD or OpenOCD (name your part):

       pyocd flash --target stm32l4r5zitx firmware.elf
       openocd -f interface/stlink.cfg -f target/stm32l4x.cfg -c "program firmware.elf verify reset exit"

5. Add the board to the HIL inventory: `{{name: my-board, kind: serial, port: /dev/ttyACM0, board: {board.name}}}`.
""")


# --- what the linked image holds ---------------------------------------------------------------------------------

FLASH_SECTIONS = (".isr_vector", ".text", ".ARM.exidx", ".data")  # .data's initial values are stored in flash
RAM_SECTIONS = (".data", ".bss", ".stack")
SECTION_LINE = re.compile(r"^\s*(\.[\w.$]+|COMMON)?\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)\s+(\S+)$")


def component(obj: str, groups: dict[str, list[str]]) -> str:
    """Which part of the firmware an input section comes from: the bundle's groups, TFLM (core / kernels /
    CMSIS-NN), or the C and C++ runtime."""
    base = Path(obj.split("(")[0]).name
    member = obj[obj.find("(") + 1 : -1] if "(" in obj else base
    for group, names in groups.items():
        if base in names or any(base.endswith("_" + n) for n in names):
            return group
    if base == "libtflm.a":
        if member.startswith("cmsis_nn-"):
            return "CMSIS-NN"
        return "TFLM kernels" if "-micro-kernels-" in member else "TFLM runtime"
    return "C/C++ runtime (newlib, libgcc, libstdc++)"


def section_split(map_file: Path, groups: dict[str, list[str]]) -> dict[str, Any]:
    """Flash and RAM of the linked ELF from its map file, by output section and by component."""
    text = map_file.read_text(errors="replace")
    body = text.split("Linker script and memory map", 1)[-1]
    output: str | None = None
    by: dict[str, dict[str, int]] = {}
    totals = {"flash": 0, "ram": 0}
    for line in body.splitlines():
        head = re.match(r"^(\.[\w.]+)\s", line)
        if head and not line.startswith(" "):
            output = head.group(1)
            continue
        match = SECTION_LINE.match(line)  # a long input section name wraps: its figures are on the next line
        if not match or output is None:
            continue
        size, obj = int(match.group(3), 16), match.group(4)
        if size == 0 or not obj.endswith((".o", ")", ".a")):
            continue
        part = component(obj, groups)
        for memory, sections in (("flash", FLASH_SECTIONS), ("ram", RAM_SECTIONS)):
            if output in sections:
                by.setdefault(part, {"flash": 0, "ram": 0})[memory] += size
    for section, memory in ((s, "flash") for s in FLASH_SECTIONS):
        totals[memory] += _output_size(body, section)
    for section in RAM_SECTIONS:
        totals["ram"] += _output_size(body, section)
    return {"flash_bytes": totals["flash"], "ram_bytes": totals["ram"], "by_component": by}


def _output_size(body: str, section: str) -> int:
    match = re.search(rf"^{re.escape(section)}\s+0x[0-9a-f]+\s+0x([0-9a-f]+)", body, re.M)
    return int(match.group(1), 16) if match else 0
