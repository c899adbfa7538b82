"""The emulated board: firmware on `qemu-system-arm`'s model of an Arm MPS2/MPS3 board, its UART on a pty.

The host talks to it exactly as to a board on /dev/ttyACM0 (`targets.serial_dut.SerialDut` on the pty's path),
so `pipeline hil`, the nightly job and the TFLM target's own measurement share one code path with real boards.
`-icount shift=0` makes virtual time advance one nanosecond per executed instruction, independent of the host's
speed or load: counts read from the board's timer are instruction counts and repeat exactly.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from targets.tflm.boards import Board

QEMU = "qemu-system-arm"
PTY_LINE = re.compile(r"char device redirected to (/dev/pts/\d+)")


class QemuUnavailable(RuntimeError):
    """This machine cannot emulate the board."""


class FirmwareFailed(RuntimeError):
    """The firmware ran on the emulated board but did not come up."""


def qemu_version() -> str:
    binary = shutil.which(QEMU)
    if binary is None:
        raise QemuUnavailable(f"{QEMU} is not installed (scripts/setup.sh installs qemu-system-arm with apt)")
    first = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout.splitlines()
    return first[0].strip() if first else QEMU


def command(board: Board, elf: Path) -> list[str]:
    if board.qemu_machine is None:
        raise QemuUnavailable(f"board {board.name} ({board.core}) has no emulator here")
    return [
        QEMU, "-M", board.qemu_machine, "-icount", "shift=0,align=off", "-kernel", str(elf),
        "-display", "none", "-monitor", "none", "-nodefaults", "-serial", "pty",
    ]  # fmt: skip


class QemuBoard:
    """`with QemuBoard(board, elf) as port:` runs the firmware until the block ends; `port` is the UART's pty."""

    def __init__(self, board: Board, elf: Path, start_timeout: float = 20.0):
        qemu_version()
        self.args = command(board, Path(elf).resolve())
        self.start_timeout = start_timeout
        self.proc: subprocess.Popen | None = None
        self.boot: list[str] = []
        self.hold: Any = None  # our own open end of the pty, held while the board runs

    def __enter__(self) -> str:
        self.proc = subprocess.Popen(
            self.args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        deadline = time.monotonic() + self.start_timeout
        seen: list[str] = []
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            seen.append(line.strip())
            match = PTY_LINE.search(line)
            if match:
                self.boot = self._wait_for_boot(match.group(1), deadline)
                return match.group(1)
        self.__exit__()
        raise QemuUnavailable(f"{' '.join(self.args[:3])} did not start: {' | '.join(seen[-5:]) or 'no output'}")

    def _wait_for_boot(self, port: str, deadline: float) -> list[str]:
        """Read the firmware's boot lines up to its first `m-ready`, so that no later reply is mistaken for them;
        an `e-` line at boot (the arena did not allocate, say) is an error naming it. The link stays open until the
        board stops: QEMU drops what the firmware sends while nobody holds the pty, and notices a new holder only
        on its next poll, so closing it here lost replies to commands sent right after."""
        import serial

        lines: list[str] = []
        self.hold = link = serial.Serial(port, timeout=0.1)
        buffer = b""
        while time.monotonic() < deadline:
            buffer += link.read(link.in_waiting or 1)
            *done, buffer = buffer.split(b"\n")
            lines += [x.decode("ascii", "replace").strip() for x in done]
            if "m-ready" in lines:
                errors = [x for x in lines if x.startswith("e-")]
                if errors:
                    self.__exit__()
                    raise FirmwareFailed(f"the firmware failed at boot on {self.args[2]}: {'; '.join(errors)}")
                return lines
        self.__exit__()
        raise FirmwareFailed(f"the firmware did not boot on {self.args[2]} (it said: {lines[-3:] or 'nothing'})")

    def __exit__(self, *exc: Any) -> None:
        if self.hold is not None:
            self.hold.close()
            self.hold = None
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()
        self.proc = None
