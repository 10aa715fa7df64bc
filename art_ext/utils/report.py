"""A markdown report with PNG figures, written to a folder."""

from __future__ import annotations

import os
from typing import Any, Sequence

from art_ext.utils.markdown import markdown_table


class Report:
    """
    Collects markdown and figures; :meth:`write` saves ``report.md`` next to the PNG files.

    :param out_dir: Folder to write into (created if missing).
    :param title: Top-level heading.
    """

    def __init__(self, out_dir: str, title: str) -> None:
        self.out_dir = out_dir
        os.makedirs(out_dir, exist_ok=True)
        self.parts: list[str] = [f"# {title}\n"]
        self.figures: list[str] = []

    def heading(self, text: str, level: int = 2) -> None:
        self.parts.append(f"{'#' * level} {text}\n")

    def text(self, text: str) -> None:
        self.parts.append(text.rstrip() + "\n")

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[Any]], floatfmt: str = ".4g") -> None:
        self.parts.append(markdown_table(headers, rows, floatfmt))

    def figure(self, fig: Any, filename: str, caption: str) -> str:
        """Save a matplotlib figure as PNG, close it, and reference it in the report."""
        import matplotlib.pyplot as plt

        if not filename.endswith(".png"):
            filename += ".png"
        path = os.path.join(self.out_dir, filename)
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        self.figures.append(path)
        self.parts.append(f"![{caption}]({filename})\n\n*{caption}*\n")
        return path

    def markdown(self) -> str:
        return "\n".join(self.parts)

    def write(self, filename: str = "report.md") -> str:
        path = os.path.join(self.out_dir, filename)
        with open(path, "w", encoding="utf-8") as f:
            f.write(self.markdown())
        return path
