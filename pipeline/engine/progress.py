"""Progress for long steps: a live bar in a terminal, a line per tenth in a log (CI, nightly jobs).

What libraries print for their developers (TensorFlow's retracing notices, absl and NNCF warnings, deprecation
warnings) is nothing a user can act on: with a log file, it goes there, beside every line the console shows.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from datetime import datetime
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

LIBRARY_LOGGERS = ("tensorflow", "absl", "nncf", "openvino", "h5py", "matplotlib", "py.warnings")


class Reporter:
    def __init__(self, console: Console | None = None, quiet: bool = False, log_file: Path | None = None):
        self.console = console or Console(stderr=True, highlight=False)
        self.quiet = quiet
        self.scope = ""
        self.log_file = log_file
        self.warnings: list[str] = []  # the report repeats them
        self._bar: Progress | None = None
        self._tasks: dict[str, int] = {}
        self._last_tenth: dict[str, int] = {}
        self._handler: logging.Handler | None = None
        self._nncf_routed = False
        if log_file is not None:
            self._route_libraries(log_file)

    def _route_libraries(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._handler = logging.FileHandler(path, encoding="utf-8")
        self._handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s: %(message)s"))
        logging.captureWarnings(True)
        warnings.simplefilter("default")  # each distinct warning once, into the log
        root = logging.getLogger()
        root.addHandler(self._handler)  # TensorFlow adds its own console handler only when the root has none
        root.setLevel(logging.INFO)
        self.route_library_loggers()

    def route_library_loggers(self) -> None:
        """Send the libraries' loggers to the log file only. NNCF installs its own console handler when it is
        imported, so this runs again (cheaply) on every log line until NNCF has been seen."""
        if self._handler is None:
            return
        self._nncf_routed = "nncf" in sys.modules
        for name in LIBRARY_LOGGERS:
            logger = logging.getLogger(name)
            logger.handlers = [self._handler]
            logger.propagate = False

    def _to_file(self, level: int, message: str) -> None:
        if self._handler is not None:
            if not self._nncf_routed:
                self.route_library_loggers()
            record = logging.LogRecord("pipeline", level, "", 0, f"{self.scope or '-'}: {message}", None, None)
            self._handler.emit(record)

    def log(self, message: str) -> None:
        self._to_file(logging.INFO, message)
        if not self.quiet:
            prefix = f"[dim]{self.scope}[/dim] " if self.scope else ""
            self.console.print(f"{prefix}{message}")

    def warn(self, message: str) -> None:
        """Shown even with --quiet: something the user must know before trusting the result."""
        self._to_file(logging.WARNING, message)
        self.warnings.append(message)
        self.console.print(f"[bold yellow]warning:[/bold yellow] {message}")

    def progress(self, task: str, done: int, total: int) -> None:
        if self._handler is not None and not self._nncf_routed:
            self.route_library_loggers()
        if self.quiet:
            return
        if self.console.is_terminal:
            if self._bar is None:
                self._bar = Progress(
                    TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=self.console, transient=True,
                )  # fmt: skip
                self._bar.start()
            if task not in self._tasks:
                self._tasks[task] = self._bar.add_task(task, total=total)
            self._bar.update(self._tasks[task], completed=done, total=total)
            if done >= total:
                self._bar.remove_task(self._tasks.pop(task))
                if not self._tasks:
                    self._bar.stop()
                    self._bar = None
            return
        tenth = 10 * done // max(total, 1)
        if tenth != self._last_tenth.get(task) and (tenth % 2 == 0 or done >= total):
            self._last_tenth[task] = tenth
            self.log(f"{task}: {done}/{total}")
        if done >= total:
            self._last_tenth.pop(task, None)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
        if self._handler is not None:
            self._handler.flush()


def new_log_file(folder: Path) -> Path:
    return folder / f"{datetime.now():%Y%m%d-%H%M%S}-{os.getpid()}.log"
