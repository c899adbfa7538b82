"""Progress for long steps: a live bar in a terminal, a line per tenth in a log (CI, nightly jobs)."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


class Reporter:
    def __init__(self, console: Console | None = None, quiet: bool = False):
        self.console = console or Console(stderr=True, highlight=False)
        self.quiet = quiet
        self.scope = ""
        self._bar: Progress | None = None
        self._tasks: dict[str, int] = {}
        self._last_tenth: dict[str, int] = {}

    def log(self, message: str) -> None:
        if not self.quiet:
            prefix = f"[dim]{self.scope}[/dim] " if self.scope else ""
            self.console.print(f"{prefix}{message}")

    def progress(self, task: str, done: int, total: int) -> None:
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
