"""Markdown helpers for reports."""

from __future__ import annotations

from typing import Any, Sequence


def _fmt(v: Any, floatfmt: str) -> str:
    if isinstance(v, float):
        return format(v, floatfmt)
    return str(v)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], floatfmt: str = ".4g") -> str:
    """
    A GitHub-flavoured markdown table.

    :param headers: Column names.
    :param rows: One sequence of cells per row; floats are formatted with `floatfmt`.
    :return: The table, ending with a newline.
    """
    lines = ["| " + " | ".join(str(h) for h in headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    for row in rows:
        if len(row) != len(headers):
            raise ValueError(f"A row has {len(row)} cells, the header {len(headers)}.")
        lines.append("| " + " | ".join(_fmt(v, floatfmt) for v in row) + " |")
    return "\n".join(lines) + "\n"
