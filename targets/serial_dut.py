"""Talk to a device under test over a serial line: the host side of a small benchmark firmware's protocol.

The protocol follows the MLPerf Tiny / EEMBC EnergyRunner style: ASCII commands terminated by ``%``; the device
answers with lines that start with ``m-`` (message) or ``e-`` (error) and ends every reply with ``m-ready``.

==========================  =========================================================================
host sends                  device replies (each line ends with ``\\r\\n``; every reply ends ``m-ready``)
==========================  =========================================================================
``name%``                   ``m-name-dut-<name>``
``profile%``                ``m-profile-[<firmware>]``, ``m-model-[<sha256 prefix>]``, ``m-arena-[<bytes>]``;
                            firmware that counts also ``m-arena-used-[<bytes>]`` (TFLM's arena_used_bytes()),
                            ``m-stack-used-[<bytes>]`` (high-water mark) and
                            ``m-counter-[<unit>]`` (what its counts are: instructions or cycles)
``db load <N>%``            ``m-[Expecting <N> bytes]``: the input buffer is reset to take N bytes
``db <hex bytes>%``         nothing until N bytes have arrived, then ``m-load-done``
``infer <N> <W>%``          ``m-warmup-start-<W>``, ``m-warmup-done``, ``m-infer-start-<N>``,
                            ``m-lap-us-<t>`` (start), ``m-lap-us-<t>`` (end), ``m-timings-us-[t1,...,tN]``,
                            ``m-counts-[c1,...,cN]`` (optional: per-run instructions or cycles),
                            ``m-infer-done``, ``m-results-[o1,...,oK]`` (the raw output tensor of the last run)
``frontend%``               (optional) the loaded bytes are 16-bit PCM: ``m-frontend-counts-[c]``, ``m-features-[...]``
``listen reset%``           (optional) the device's streaming detector starts a new stream: ``m-listen-reset``
``listen%``                 (optional) the loaded bytes are the stream's next 16-bit PCM: the detector takes them and
                            the model runs whenever an input is ready: ``m-listen-counts-[c1,...]`` (per run: new
                            frames, invoke and decision), ``m-detections-[run,class,...]`` (runs counted from reset)
``results%``                ``m-results-[o1,...,oK]`` of the last inference
anything else               ``e-[unknown command: <text>]``
==========================  =========================================================================

Hex payloads are split into ``db`` commands of at most `CHUNK` bytes, as EEMBC's runner does, because small
UART receive buffers overflow on long lines. Every read has a timeout: a device that stops answering raises
`DutTimeout` after `retries` attempts, garbled lines (not ``m-``/``e-``, or undecodable) are skipped and
counted, an ``e-`` reply raises `DutError`. Nothing waits forever.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

CHUNK = 64  # input bytes per `db` command
AUDIO_CHUNK = 512  # ... for a stream's audio (`listen`): this project's firmware reads lines of 1,100 characters
READY = "m-ready"


class DutError(RuntimeError):
    """The device answered, but with an error or something the protocol does not allow."""


class DutTimeout(DutError):
    """The device did not finish a reply in time, after every retry."""


@dataclass
class InferResult:
    outputs: np.ndarray
    timings_us: np.ndarray
    lap_us: float  # end - start, as the device's timer saw the N timed runs
    counts: np.ndarray | None = None  # per-run instructions or cycles, from firmware that counts them


@dataclass
class SerialDut:
    """A device under test on a serial port (a board's UART, or the software device's pty)."""

    port: str
    baudrate: int = 115200
    timeout: float = 5.0  # seconds for one reply (an `infer` reply gets `infer_timeout` per run on top)
    retries: int = 2
    infer_timeout: float = 0.5
    garbled: int = 0
    _serial: Any = field(default=None, repr=False)

    def __enter__(self) -> SerialDut:
        self.open()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def open(self) -> None:
        import serial

        try:
            self._serial = serial.Serial(self.port, self.baudrate, timeout=0.1, write_timeout=self.timeout)
        except (serial.SerialException, OSError) as exc:
            raise DutError(f"cannot open {self.port}: {exc}") from None
        self._serial.reset_input_buffer()

    def close(self) -> None:
        if self._serial is not None:
            self._serial.close()
            self._serial = None

    # -- protocol -------------------------------------------------------------------------------------------

    def name(self) -> str:
        line = self._expect(self.command("name"), "m-name-dut-")
        return line[len("m-name-dut-") :]

    def profile(self) -> dict[str, str]:
        reply = self.command("profile")
        out = {}
        for line in reply:
            match = re.fullmatch(r"m-(profile|model|arena|arena-used|stack-used|counter)-\[(.*)\]", line)
            if match:
                out[match.group(1)] = match.group(2)
        return out

    def load(self, data: bytes, chunk: int = CHUNK) -> None:
        """Send one input tensor's bytes: `db load N`, then hex chunks until the device says load-done.
        A chunk is not idempotent, so a lost reply restarts the whole load (`db load` resets the buffer).
        `chunk`: bytes per `db` line; audio goes in `AUDIO_CHUNK`s to firmware that reads such lines."""
        for attempt in range(self.retries + 1):
            try:
                self._expect(self.command(f"db load {len(data)}"), f"m-[Expecting {len(data)} bytes]")
                reply: list[str] = []
                for start in range(0, len(data), chunk):
                    reply = self.command("db " + data[start : start + chunk].hex(), retry=False)
                self._expect(reply, "m-load-done")
                return
            except DutTimeout:
                if attempt == self.retries:
                    raise

    def infer(self, runs: int, warmup: int) -> InferResult:
        reply = self.command(f"infer {runs} {warmup}", timeout=self.timeout + self.infer_timeout * (runs + warmup))
        self._expect(reply, "m-infer-done")
        laps = [float(line[len("m-lap-us-") :]) for line in reply if line.startswith("m-lap-us-")]
        if len(laps) != 2:
            raise DutError(f"infer: expected a start and an end lap, got {laps}")
        timings = _list(self._expect(reply, "m-timings-us-["), "m-timings-us-")
        if len(timings) != runs:
            raise DutError(f"infer: {runs} runs asked, {len(timings)} timings reported")
        counts = next((_list(x, "m-counts-") for x in reply if x.startswith("m-counts-[")), None)
        if counts is not None and len(counts) != runs:
            raise DutError(f"infer: {runs} runs asked, {len(counts)} counts reported")
        outputs = _list(self._expect(reply, "m-results-["), "m-results-")
        return InferResult(outputs, timings, laps[1] - laps[0], counts)

    def frontend(self, pcm: bytes) -> tuple[np.ndarray, float]:
        """The device's own audio front end on one clip of 16-bit PCM: its int8 features and its count."""
        self.load(pcm)
        reply = self.command("frontend", timeout=self.timeout + self.infer_timeout)
        count = _list(self._expect(reply, "m-frontend-counts-["), "m-frontend-counts-")
        return _list(self._expect(reply, "m-features-["), "m-features-"), float(count[0])

    def listen(self, pcm: np.ndarray, chunk_samples: int) -> tuple[np.ndarray, np.ndarray]:
        """A stream through the device's own detector, `chunk_samples` at a time: the count of every model run
        and the detections [n, 2] (run, class)."""
        self._expect(self.command("listen reset"), "m-listen-reset")
        counts, detections = [], []
        pcm = np.asarray(pcm, "<i2")
        for start in range(0, len(pcm), chunk_samples):
            self.load(pcm[start : start + chunk_samples].tobytes(), AUDIO_CHUNK)
            reply = self.command("listen", timeout=self.timeout + self.infer_timeout * 20)
            counts.append(_list(self._expect(reply, "m-listen-counts-["), "m-listen-counts-"))
            detections.append(_list(self._expect(reply, "m-detections-["), "m-detections-"))
        return np.concatenate(counts), np.concatenate(detections).astype(np.int64).reshape(-1, 2)

    def results(self) -> np.ndarray:
        return _list(self._expect(self.command("results"), "m-results-["), "m-results-")

    # -- transport ------------------------------------------------------------------------------------------

    def command(self, text: str, timeout: float | None = None, retry: bool = True) -> list[str]:
        """Send `text%` and return the reply's lines (without m-ready), retrying when the device goes quiet."""
        if self._serial is None:
            raise DutError("the port is not open")
        last: DutTimeout | None = None
        for _ in range(self.retries + 1 if retry else 1):
            self._serial.reset_input_buffer()
            self._serial.write(f"{text}%".encode())
            self._serial.flush()
            try:
                return self._read_reply(text, timeout or self.timeout)
            except DutTimeout as exc:
                last = exc
        raise DutTimeout(f"{self.port}: no complete reply to '{text}%' after {self.retries + 1} tries: {last}")

    def _read_reply(self, text: str, timeout: float) -> list[str]:
        deadline = time.monotonic() + timeout
        lines: list[str] = []
        buffer = b""
        while time.monotonic() < deadline:
            buffer += self._serial.read(self._serial.in_waiting or 1)
            while b"\n" in buffer:
                raw, buffer = buffer.split(b"\n", 1)
                try:
                    line = raw.decode("ascii").strip()
                except UnicodeDecodeError:
                    self.garbled += 1
                    continue
                if line == READY:
                    errors = [x for x in lines if x.startswith("e-")]
                    if errors:
                        raise DutError(f"{self.port}: '{text}%' -> {'; '.join(errors)}")
                    return lines
                if line.startswith(("m-", "e-")):
                    lines.append(line)
                elif line:
                    self.garbled += 1
        raise DutTimeout(f"no '{READY}' within {timeout:.1f} s (got {lines[-3:] or 'nothing'})")

    @staticmethod
    def _expect(reply: list[str], prefix: str) -> str:
        for line in reply:
            if line.startswith(prefix):
                return line
        raise DutError(f"expected a line starting '{prefix}', got {reply}")


def _list(line: str, prefix: str) -> np.ndarray:
    body = line[len(prefix) :].strip("[]")
    return np.array([float(v) for v in body.split(",") if v.strip()])
