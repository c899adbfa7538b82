"""Capture what C/C++ code prints straight to file descriptors 1 and 2, bypassing sys.stdout.

TFLM's allocation report and the TFLite converter's MLIR dump are printed that way. Kept free of heavy imports:
the TFLM child process uses it.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def captured_c_output() -> Iterator[list[str]]:
    """Yields a list that holds the captured text once the block exits (also when it raises)."""
    sys.stdout.flush()
    sys.stderr.flush()
    text: list[str] = []
    saved = [os.dup(1), os.dup(2)]
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            yield text
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            sink.seek(0)
            text.append(sink.read().decode(errors="replace"))
