"""A software device under test: the serial protocol of `targets.serial_dut`, answered on a pseudo-terminal by
the real TFLite Micro interpreter. For machines with no board attached (this one, CI).

    python -m targets.soft_dut MODEL.tflite --arena BYTES [--name NAME]

It opens a pty, prints the port's path as its first stdout line, then serves until the host side closes or
the process is terminated. The runner opens that path like any serial port and cannot tell it from a board
except by the name it reports (default ``soft-tflm``). Timings are host `invoke()` times.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
import tty

import numpy as np


class SoftDut:
    def __init__(self, model: bytes, arena: int, name: str):
        from tflite_micro.python.tflite_micro import runtime

        self.interp = runtime.Interpreter.from_bytes(model, arena_size=arena)
        self.name, self.arena = name, arena
        self.model_sha = hashlib.sha256(model).hexdigest()[:16]
        detail = self.interp.get_input_details(0)
        self.input_shape, self.input_dtype = tuple(detail["shape"]), np.dtype(detail["dtype"])
        self.expected = 0
        self.buffer = bytearray()
        self.outputs: np.ndarray | None = None

    def handle(self, command: str) -> list[str]:
        words = command.split()
        if command == "name":
            return [f"m-name-dut-{self.name}"]
        if command == "profile":
            return ["m-profile-[edge-pipeline soft-dut 1]", f"m-model-[{self.model_sha}]", f"m-arena-[{self.arena}]"]
        if words[:2] == ["db", "load"] and len(words) == 3 and words[2].isdigit():
            self.expected, self.buffer = int(words[2]), bytearray()
            return [f"m-[Expecting {self.expected} bytes]"]
        if words[:1] == ["db"] and len(words) == 2:
            try:
                self.buffer += bytes.fromhex(words[1])
            except ValueError:
                return [f"e-[bad hex: {words[1][:16]}]"]
            if len(self.buffer) > self.expected:
                return [f"e-[got {len(self.buffer)} bytes, expected {self.expected}]"]
            return ["m-load-done"] if len(self.buffer) == self.expected else []
        if words[:1] == ["infer"] and len(words) == 3 and all(w.isdigit() for w in words[1:]):
            return self.infer(int(words[1]), int(words[2]))
        if command == "results":
            return [self._results()] if self.outputs is not None else ["e-[no inference yet]"]
        return [f"e-[unknown command: {command}]"]

    def infer(self, runs: int, warmup: int) -> list[str]:
        size = int(np.prod(self.input_shape)) * self.input_dtype.itemsize
        if len(self.buffer) != size:
            return [f"e-[input needs {size} bytes, {len(self.buffer)} loaded]"]
        x = np.frombuffer(bytes(self.buffer), self.input_dtype).reshape(self.input_shape)
        # The input is copied in before every invoke, as firmware must: TFLM's memory planner may reuse the input
        # tensor's bytes for later activations, so a second invoke on the same buffer reads clobbered input.
        for _ in range(warmup):
            self.interp.set_input(x, 0)
            self.interp.invoke()
        lines = [f"m-warmup-start-{warmup}", "m-warmup-done", f"m-infer-start-{runs}"]
        start = time.perf_counter_ns()
        timings = []
        for _ in range(runs):
            self.interp.set_input(x, 0)
            t0 = time.perf_counter_ns()
            self.interp.invoke()
            timings.append((time.perf_counter_ns() - t0) // 1000)
        end = time.perf_counter_ns()
        self.outputs = self.interp.get_output(0).reshape(-1)
        return lines + [
            f"m-lap-us-{start // 1000}",
            f"m-lap-us-{end // 1000}",
            f"m-timings-us-[{','.join(map(str, timings))}]",
            "m-infer-done",
            self._results(),
        ]

    def _results(self) -> str:
        return f"m-results-[{','.join(str(v) for v in self.outputs.tolist())}]"


def serve(dut: SoftDut, fd: int) -> None:
    pending = b""
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # the other side closed
            return
        if not chunk:
            return
        pending += chunk
        while b"%" in pending:
            raw, pending = pending.split(b"%", 1)
            command = raw.decode("ascii", errors="replace").strip()
            reply = dut.handle(command) + ["m-ready"]
            os.write(fd, "".join(f"{line}\r\n" for line in reply).encode())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m targets.soft_dut")
    parser.add_argument("model")
    parser.add_argument("--arena", type=int, required=True)
    parser.add_argument("--name", default="soft-tflm")
    args = parser.parse_args(argv)
    with open(args.model, "rb") as f:
        dut = SoftDut(f.read(), args.arena, args.name)
    master, slave = os.openpty()
    tty.setraw(slave)  # no echo, no line editing: bytes pass as a UART would pass them
    print(os.ttyname(slave), flush=True)
    serve(dut, master)
    return 0


if __name__ == "__main__":
    sys.exit(main())
