"""Hardware in the loop: measure a finished run's exports on every reachable device of an inventory.

    pipeline hil RUN_DIR --inventory devices.yaml

Devices (YAML, validated like recipes)::

    devices:
      - {name: nucleo-f446, kind: serial, port: /dev/ttyACM0, baud: 115200, board: cortex-m4f-256k}
      - {name: pixel-7, kind: adb, serial: 28031FDH2000, benchmark_model: /opt/tflite/benchmark_model}
      - {name: soft-board, kind: soft-serial}   # the software device on a pty (targets.soft_dut)
      - {name: m4-qemu, kind: qemu, board: cortex-m4f-256k}   # the bundle's firmware on QEMU's Cortex-M4 board
      - {name: this-host, kind: host}

A serial board (or the software device) must run the run's TFLM model: its `profile` must report the model's
SHA-256 prefix. Each of the bundle's test vectors is loaded and inferred once; the outputs must equal the TFLM
interpreter's outputs for the same input on this host, bit for bit; then the first vector is timed. A phone runs
the Android variants through `benchmark_model`. A device that is not reachable is *skipped*, with the reason,
never failed and never given numbers. Results go to `hil.json` and a JUnit XML file for CI dashboards.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field, field_validator

from pipeline.engine.store import write_atomic, write_json
from pipeline.measurement import latency_summary
from pipeline.recipe import parse_document, read_text
from pipeline.schema import Strict

TFLM_BUNDLE = Path("export") / "tflm"


class SerialDevice(Strict):
    kind: Literal["serial"] = Field(description="serial: a board running the benchmark firmware on a serial port")
    name: str = Field(description="the device's name in hil.json and the JUnit report")
    port: str = Field(description="the serial port, e.g. /dev/ttyACM0; a missing port skips the device")
    baud: int = Field(115200, gt=0, description="serial line speed, bits per second")
    board: str | None = Field(
        None,
        description="the board whose clock and CPI turn counted instructions into ms (null: cortex-m4f-256k)",
    )
    timeout: float = Field(
        5.0, gt=0, description="seconds to wait for each reply (an infer reply gets 0.5 s more per invoke asked for)"
    )


class SoftSerialDevice(Strict):
    kind: Literal["soft-serial"] = Field(
        description="soft-serial: the TFLM interpreter on a pty, speaking the board protocol"
    )
    name: str = Field(description="the device's name in hil.json and the JUnit report")
    board: str | None = Field(None, description="not used: the software device reports timings, not instruction counts")
    timeout: float = Field(
        5.0, gt=0, description="seconds to wait for each reply (an infer reply gets 0.5 s more per invoke asked for)"
    )


class QemuDevice(Strict):
    """The run's bundle built as firmware for `board` and run on QEMU's model of it, its UART on a pty: the same
    protocol and code path as a board on a serial port, with instruction counts instead of a stopwatch."""

    kind: Literal["qemu"] = Field(description="qemu: the run's bundle as firmware on QEMU's model of the board")
    name: str = Field(description="the device's name in hil.json and the JUnit report")
    board: str = Field(
        "cortex-m4f-256k", description="an emulated board of targets/tflm/boards.py the firmware is built for"
    )
    kernels: Literal["cmsis_nn", "reference"] = Field(
        "cmsis_nn", description="the firmware's TFLM kernels: cmsis_nn or reference"
    )
    timeout: float = Field(
        30.0, gt=0, description="seconds to wait for each reply (an infer reply gets 0.5 s more per invoke asked for)"
    )

    @field_validator("board")
    @classmethod
    def _emulated(cls, value: str) -> str:
        from targets.tflm.boards import BOARDS

        emulated = [b.name for b in BOARDS.values() if b.qemu_machine]
        if value not in emulated:
            raise ValueError(f"no emulator for board '{value}'; emulated boards: {', '.join(emulated)}")
        return value


class AdbDevice(Strict):
    kind: Literal["adb"] = Field(description="adb: a phone over adb, running the run's Android variants")
    name: str = Field(description="the device's name in hil.json and the JUnit report")
    serial: str = Field(description="the phone's adb serial (`adb devices`); not attached: the device is skipped")
    benchmark_model: Path = Field(
        description="TFLite's benchmark_model binary for the phone's ABI, relative to the inventory's folder"
    )
    threads: int = Field(1, ge=1, description="threads benchmark_model runs each variant with")


class HostDevice(Strict):
    kind: Literal["host"] = Field(description="host: the TFLM interpreter on this machine, no serial link")
    name: str = Field(description="the device's name in hil.json and the JUnit report")


Device = Annotated[SerialDevice | SoftSerialDevice | QemuDevice | AdbDevice | HostDevice, Field(discriminator="kind")]


class Inventory(Strict):
    devices: list[Device] = Field(
        min_length=1, description="devices to measure on; an unreachable one is skipped, with the reason"
    )


def load_inventory(path: str | Path) -> Inventory:
    """The inventory file, validated; a relative `benchmark_model` is taken from the inventory's folder (as a
    recipe's paths are from the recipe's), not from wherever the nightly job happens to run."""
    shape = "an inventory is a YAML mapping with a 'devices' list"
    inventory = parse_document(read_text(path, "inventory"), path, Inventory, shape)
    base = Path(path).expanduser().resolve().parent
    devices = [
        d.model_copy(update={"benchmark_model": base / d.benchmark_model.expanduser()})
        if isinstance(d, AdbDevice) and not d.benchmark_model.expanduser().is_absolute()
        else d
        for d in inventory.devices
    ]
    return inventory.model_copy(update={"devices": devices})


class Skip(Exception):
    """The device is not reachable: skipped, not failed."""


def run_hil(run_dir: Path, inventory: Inventory, runs: int, warmup: int, log=lambda msg: None) -> dict[str, Any]:
    results = []
    for device in inventory.devices:
        started = time.time()
        log(f"{device.name} ({device.kind})")
        try:
            figures = MEASURE[device.kind](device, run_dir, runs, warmup)
            status = "failed" if figures.get("problems") else "measured"
            entry = {"status": status, **figures}
        except Skip as exc:
            entry = {"status": "skipped", "reason": str(exc)}
        except Exception as exc:  # noqa: BLE001 - a failing device must not hide the others' results
            entry = {"status": "failed", "problems": [f"{type(exc).__name__}: {exc}"]}
        entry = {"device": device.name, "kind": device.kind, **entry, "seconds": round(time.time() - started, 2)}
        log(f"  {entry['status']}" + (f": {entry.get('reason') or '; '.join(entry.get('problems', []))}"
                                       if entry["status"] != "measured" else ""))  # fmt: skip
        results.append(entry)
    report = json.loads((run_dir / "report.json").read_text())
    return {"run": str(run_dir), "run_id": report["run_id"], "recipe": report["recipe"], "devices": results}


# --- TFLM boards over serial (real or software) ---------------------------------------------------------------


def _bundle(run_dir: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The run's TFLM bundle manifest and test vectors (inputs a board must answer like the interpreter)."""
    bundle = run_dir / TFLM_BUNDLE
    if not (bundle / "manifest.json").exists():
        raise Skip(f"the run has no TFLM bundle ({bundle})")
    manifest = json.loads((bundle / "manifest.json").read_text())
    vectors = dict(np.load(bundle / "test_vectors.npz"))
    return manifest, vectors


def measure_serial_dut(
    port: str, run_dir: Path, runs: int, warmup: int, timeout: float, baud: int = 115200, board: str | None = None
) -> dict:
    from pipeline.runtimes.tflm import tflm_outputs
    from targets.serial_dut import DutError, SerialDut

    manifest, vectors = _bundle(run_dir)
    try:
        dut = SerialDut(port, baud, timeout=timeout)
        dut.open()
    except DutError as exc:
        raise Skip(str(exc)) from None
    with dut:
        name, profile = dut.name(), dut.profile()
        if profile.get("model") and not manifest["model_sha256"].startswith(profile["model"]):
            return {"reported_name": name, "profile": profile, "problems": [
                f"the board runs model {profile['model']}, the run exported {manifest['model_sha256'][:16]}: "
                "flash the run's bundle first"]}  # fmt: skip
        expected = tflm_outputs(run_dir / TFLM_BUNDLE / "model.tflite", manifest["arena_bytes"], vectors["x"])
        got, timing = [], None
        for i, x in enumerate(vectors["x"]):
            dut.load(x.tobytes())
            result = dut.infer(runs, warmup) if i == 0 else dut.infer(1, 0)
            timing = timing or result
            got.append(result.outputs)
    got_arr = np.array(got)
    match = np.all(got_arr == expected, axis=1)
    problems = [] if match.all() else [f"outputs differ from the TFLM interpreter on {int((~match).sum())} of "
                                       f"{len(match)} test vectors"]  # fmt: skip
    lat = timing.timings_us / 1000
    counted = {}
    if timing.counts is not None:  # firmware that counts instructions (an emulated core): latency is an estimate
        from targets.tflm.boards import BOARDS

        spec = BOARDS[board or "cortex-m4f-256k"]
        counted = {"instructions": float(np.median(timing.counts)), "counter": profile.get("counter")}
        lat = spec.latency_ms(timing.counts)
        runtime = f"{name}: instructions x CPI {spec.cpi} (assumed) / {spec.clock_mhz} MHz, an estimate"
    else:
        runtime = f"device {name} over serial ({port})"
    return {
        "reported_name": name,
        "profile": profile,
        **counted,
        "latency_ms": latency_summary(lat, runtime),
        "vectors": len(match),
        "outputs_match": int(match.sum()),
        "max_abs_diff": float(np.max(np.abs(got_arr - expected))),
        "top1_agreement": float(np.mean(np.argmax(got_arr, 1) == vectors["tflm_pred"])),
        "garbled_lines": dut.garbled,
        "problems": problems,
    }


def _serial(device: SerialDevice, run_dir: Path, runs: int, warmup: int) -> dict:
    if not Path(device.port).exists():
        raise Skip(f"{device.port} does not exist: board not attached")
    return measure_serial_dut(device.port, run_dir, runs, warmup, device.timeout, device.baud, device.board)


class SoftDevice:
    """The software device as a child process serving the run's model on a pty; the context gives its port."""

    def __init__(self, model_path: Path, arena: int, name: str):
        model = str(Path(model_path).resolve())  # the child runs in our working directory, through the package
        self.args = [sys.executable, "-m", "targets.soft_dut", model, "--arena", str(arena), "--name", name]

    def __enter__(self) -> str:
        self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        port = self.proc.stdout.readline().strip()
        if not port:
            self.proc.kill()
            raise RuntimeError(f"the software device did not start: {self.proc.stderr.read()[-1000:]}")
        return port

    def __exit__(self, *exc: Any) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def _soft_serial(device: SoftSerialDevice, run_dir: Path, runs: int, warmup: int) -> dict:
    manifest, _ = _bundle(run_dir)
    with SoftDevice(run_dir / TFLM_BUNDLE / "model.tflite", manifest["arena_bytes"], device.name) as port:
        return measure_serial_dut(port, run_dir, runs, warmup, device.timeout)


def _qemu(device: QemuDevice, run_dir: Path, runs: int, warmup: int) -> dict:
    import tempfile

    from targets.tflm.boards import BOARDS
    from targets.tflm.firmware import build_firmware
    from targets.tflm.on_board import unavailable_reason
    from targets.tflm.qemu import QemuBoard

    board = BOARDS[device.board]
    reason = unavailable_reason(board)
    if reason:
        raise Skip(reason)
    _bundle(run_dir)
    report = json.loads((run_dir / "report.json").read_text())
    with tempfile.TemporaryDirectory() as tmp:
        firmware = build_firmware(run_dir / TFLM_BUNDLE, report["recipe"], board, device.kernels, Path(tmp))
        with QemuBoard(board, firmware.elf) as port:
            figures = measure_serial_dut(port, run_dir, runs, warmup, device.timeout, board=device.board)
    return figures | {"firmware": {"board": board.name, "machine": board.qemu_machine, "kernels": device.kernels}}


# --- phones and the host -------------------------------------------------------------------------------------------


def _adb(device: AdbDevice, run_dir: Path, runs: int, warmup: int) -> dict:
    from targets.android.adb import Adb, benchmark_on_phone

    phone = Adb(device.serial)
    if not phone.attached():
        raise Skip(f"adb serial {device.serial} not attached")
    models = sorted((run_dir / "export" / "android").glob("model_*.tflite"))
    if not models:
        raise Skip("the run has no Android variants")
    variants = {}
    for model in models:
        figures = benchmark_on_phone(phone, device.benchmark_model, model, device.threads, runs, warmup, True)
        median = figures.get("median_us", figures["inference_avg_us"])
        variants[model.stem.removeprefix("model_")] = {"latency_ms": {"median": median / 1000, "runs": figures.get(
            "runs", runs), "runtime": f"benchmark_model on {phone.model_name()}"}, "benchmark_model": figures}  # fmt: skip
    return {"reported_name": phone.model_name(), "variants": variants, "problems": []}


def _host(device: HostDevice, run_dir: Path, runs: int, warmup: int) -> dict:
    from pipeline.runtimes.tflm import time_invokes

    manifest, _ = _bundle(run_dir)
    lat = np.array(time_invokes(run_dir / TFLM_BUNDLE / "model.tflite", manifest["arena_bytes"], runs, warmup))
    return {
        "reported_name": device.name,
        "latency_ms": latency_summary(lat, "tflite-micro on this host (reference kernels)"),
        "problems": [],
    }


MEASURE = {"serial": _serial, "soft-serial": _soft_serial, "qemu": _qemu, "adb": _adb, "host": _host}


# --- outputs --------------------------------------------------------------------------------------------------------


def write_results(result: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    write_json(out_dir / "hil.json", result)
    suite = ET.Element("testsuite", name=f"hil.{result['recipe']}", tests=str(len(result["devices"])),
                       failures=str(sum(d["status"] == "failed" for d in result["devices"])),
                       skipped=str(sum(d["status"] == "skipped" for d in result["devices"])))  # fmt: skip
    for d in result["devices"]:
        case = ET.SubElement(suite, "testcase", classname=f"hil.{d['kind']}", name=d["device"], time=str(d["seconds"]))
        if d["status"] == "skipped":
            ET.SubElement(case, "skipped", message=d["reason"])
        elif d["status"] == "failed":
            ET.SubElement(case, "failure", message="; ".join(d["problems"]))
        elif "latency_ms" in d:
            ET.SubElement(case, "system-out").text = f"latency median {d['latency_ms']['median']:.4f} ms"
    write_atomic(out_dir / "hil.xml", ET.tostring(suite, encoding="unicode", xml_declaration=True))
    return out_dir / "hil.json", out_dir / "hil.xml"
