"""Markdown building blocks shared by the report and the plugins' own report sections."""

from __future__ import annotations

from typing import Any


def size_text(n: float | None) -> str:
    """Bytes for people: KB for models and arenas, MB once a runtime's RSS makes KB unreadable."""
    if n is None:
        return "–"
    return f"{n / 2**20:.1f} MB" if n >= 10 * 2**20 else f"{n / 1024:.1f} KB"


def pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.2f} %"


def integer(n: int | None) -> str:
    return "–" if n is None else f"{n:,}"


def table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def mb(n: float | None) -> str:
    return "–" if n is None else f"{n / 2**20:.1f} MB"


def ratio(after: float, before: float) -> str:
    return f"{after / before:.2f}×" if before else "–"
