"""Run a module in a fresh interpreter (`python -m MODULE ...`): the project's own, or a tool's (`ethosu.vela`).

Children run where the caller runs (the user's working directory), so every path handed to them is made absolute
here: a relative path means the same file in both processes. The module is found through the installed package, never
through the checkout. Modules started this way are part of the calling step's fingerprint
(`pipeline.engine.fingerprint` looks for `run_module("...")` calls): a project module's source, a third-party tool's
installed version.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_module(
    module: str, *args: str | Path | int, timeout: float, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """`python -m module args`; Path arguments are passed absolute. Returns the finished process (not checked)."""
    argv = [str(Path(a).resolve()) if isinstance(a, Path) else str(a) for a in args]
    return subprocess.run(
        [sys.executable, "-m", module, *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        env=os.environ | (env or {}),
    )


def describe_exit(returncode: int) -> str:
    """'exit code 3' or 'killed by SIGSEGV': how a child ended, for error messages."""
    if returncode < 0:
        import signal

        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit code {returncode}"
