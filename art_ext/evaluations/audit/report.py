"""
The report of :func:`art_ext.evaluations.audit`: sections made of blocks (text, tables, figures), rendered as
``report.md`` (PNG files beside it), a self-contained ``report.html`` (figures embedded as base64) and
``results.json`` (every number, stable keys).
"""

from __future__ import annotations

import base64
import html
import json
import os
import re
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from art_ext.utils.markdown import markdown_table

__all__ = ["SEVERITIES", "AuditReport", "Finding", "SectionResult"]

#: Severity levels of findings, worst last.
SEVERITIES = ("info", "low", "medium", "high")

#: Version of the ``results.json`` layout; bumped when a key changes meaning.
SCHEMA = "art_ext.audit/1"


@dataclass
class Finding:
    """One line of the summary: ``severity`` is an index into :data:`SEVERITIES`."""

    severity: int
    section: str
    text: str

    def to_dict(self) -> dict:
        return {"severity": SEVERITIES[self.severity], "section": self.section, "text": self.text}


@dataclass
class SectionResult:
    """
    One section of the audit: ``blocks`` are ``("text", str)``, ``("table", headers, rows)`` or
    ``("figure", png_bytes, filename, caption)``; ``results`` is its part of ``results.json``.
    """

    key: str
    title: str
    status: str = "done"
    reason: str = ""
    blocks: list[tuple] = field(default_factory=list)
    results: dict = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    estimated_seconds: float = 0.0
    seconds: float = 0.0
    shrunk: list[str] = field(default_factory=list)
    #: Inputs the section sent to the model (audits through queries only; ``None`` otherwise).
    queries: int | None = None

    def text(self, text: str) -> None:
        self.blocks.append(("text", text))

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        self.blocks.append(("table", list(headers), [list(r) for r in rows]))

    def figure(self, fig: Any, filename: str, caption: str) -> None:
        """Keep a matplotlib figure as PNG bytes (and close it)."""
        import io

        import matplotlib.pyplot as plt

        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
        plt.close(fig)
        self.blocks.append(("figure", buffer.getvalue(), filename, caption))

    def finding(self, severity: int, text: str) -> None:
        self.findings.append(Finding(severity, self.key, text))

    def to_dict(self) -> dict:
        return {
            "title": self.title,
            "status": self.status,
            "reason": self.reason,
            "estimated_seconds": round(float(self.estimated_seconds), 2),
            "seconds": round(float(self.seconds), 2),
            "shrunk": list(self.shrunk),
            "results": _jsonable(self.results),
            **({} if self.queries is None else {"queries": int(self.queries)}),
        }


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, (np.floating, float)):
        v = float(value)
        return v if np.isfinite(v) else None
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def _fmt(v: Any) -> str:
    if isinstance(v, (float, np.floating)):
        return format(float(v), ".3g")
    return str(v)


_INLINE = [
    (re.compile(r"\*\*(.+?)\*\*"), r"<strong>\1</strong>"),
    (re.compile(r"`([^`]+)`"), r"<code>\1</code>"),
    (re.compile(r"\[([^\]]+)\]\((#[\w-]+)\)"), r'<a href="\2">\1</a>'),
]


def _inline_html(text: str) -> str:
    out = html.escape(text, quote=False)
    for pattern, repl in _INLINE:
        out = pattern.sub(repl, out)
    return out


@dataclass
class AuditReport:
    """
    What :func:`~art_ext.evaluations.audit` found: a header (model, data, budget), the sections in order and the
    findings. :meth:`write` saves ``report.md``, ``report.html`` and ``results.json``.
    """

    title: str
    header: dict
    sections: list[SectionResult]
    seconds: float = 0.0
    files: dict = field(default_factory=dict)
    #: Audits through queries only: ``{"sent": inputs sent to the model, "budget": max_queries or None}``.
    queries: dict | None = None

    @property
    def findings(self) -> list[Finding]:
        """Every finding, worst first (then in section order)."""
        order = {s.key: i for i, s in enumerate(self.sections)}
        items = [f for s in self.sections for f in s.findings]
        return sorted(items, key=lambda f: (-f.severity, order.get(f.section, 0)))

    def section(self, key: str) -> SectionResult:
        for s in self.sections:
            if s.key == key:
                return s
        raise KeyError(f"No section {key!r} in this report (sections: {[s.key for s in self.sections]}).")

    def to_dict(self) -> dict:
        """
        ``results.json``: ``schema``, ``header``, ``seconds``, ``queries`` (audits through queries only: inputs sent
        and the budget), ``summary`` (worst first), ``sections`` by key (each with its ``queries`` there).
        """
        return {
            "schema": SCHEMA,
            "title": self.title,
            "header": _jsonable(self.header),
            "seconds": round(float(self.seconds), 2),
            **({} if self.queries is None else {"queries": dict(self.queries)}),
            "summary": [f.to_dict() for f in self.findings],
            "sections": {s.key: s.to_dict() for s in self.sections},
        }

    # ---------------------------------------------------------------------------------------------- markdown
    def _summary_lines(self) -> list[str]:
        titles = {s.key: s.title for s in self.sections}
        lines = []
        for f in self.findings:
            lines.append(f"**{SEVERITIES[f.severity]}**: {f.text} ([{titles.get(f.section, f.section)}](#{f.section}))")
        return lines or ["No findings (every section was skipped)."]

    def _status_line(self, s: SectionResult) -> str:
        """The line under a section's heading (plain text: the renderers emphasise it)."""
        if s.status != "done":
            return f"Section {s.status}: {s.reason}"
        line = f"Estimated {s.estimated_seconds:.0f} s before it started; took {s.seconds:.0f} s."
        if s.queries is not None:
            line = line[:-1] + f" and {s.queries:,} queries."
        if s.shrunk:
            budgets = "time budget" if s.queries is None else "time and query budgets"
            line += f" Shrunk to fit the {budgets}: " + "; ".join(s.shrunk) + "."
        return line

    def to_markdown(self, figure_paths: dict | None = None) -> str:
        """The report as markdown; figures are linked as ``figure_paths[filename]`` (default: the filename)."""
        parts = [f"# {self.title}\n"]
        parts += [f"- {k}: {v}" for k, v in self.header.items()]
        parts.append("\n## Summary\n")
        parts += [f"{i + 1}. {line}" for i, line in enumerate(self._summary_lines())]
        parts.append("")
        for s in self.sections:
            parts.append(f'<a id="{s.key}"></a>\n\n## {s.title}\n')
            parts.append(f"*{self._status_line(s)}*\n")
            for block in s.blocks:
                if block[0] == "text":
                    parts.append(block[1].rstrip() + "\n")
                elif block[0] == "table":
                    parts.append(markdown_table(block[1], [[_fmt(v) for v in r] for r in block[2]]))
                else:
                    _, _, filename, caption = block
                    path = (figure_paths or {}).get(filename, filename)
                    parts.append(f"![{caption}]({path})\n\n*{caption}*\n")
        return "\n".join(parts)

    # ---------------------------------------------------------------------------------------------- html
    def to_html(self) -> str:
        """A self-contained HTML page (figures embedded as base64 PNG)."""
        out = [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>{html.escape(self.title)}</title>",
            "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em;line-height:1.4}"
            "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #bbb;padding:.2em .5em;"
            "text-align:right}th{background:#eee}img{max-width:100%}code{background:#f4f4f4}"
            ".high{color:#b00}.medium{color:#b60}</style>",
            "</head><body>",
            f"<h1>{html.escape(self.title)}</h1><ul>",
        ]
        out += [f"<li>{html.escape(str(k))}: {_inline_html(str(v))}</li>" for k, v in self.header.items()]
        out.append('</ul><h2 id="summary">Summary</h2><ol>')
        titles = {s.key: s.title for s in self.sections}
        for f in self.findings:
            sev = SEVERITIES[f.severity]
            out.append(
                f'<li><strong class="{sev}">{sev}</strong>: {_inline_html(f.text)} '
                f'(<a href="#{f.section}">{html.escape(titles.get(f.section, f.section))}</a>)</li>'
            )
        out.append("</ol>")
        for s in self.sections:
            out.append(f'<h2 id="{s.key}">{html.escape(s.title)}</h2>')
            out.append(f"<p><em>{_inline_html(self._status_line(s))}</em></p>")
            for block in s.blocks:
                if block[0] == "text":
                    for para in block[1].strip().split("\n\n"):
                        if para.startswith("- "):
                            items = [_inline_html(li[2:]) for li in para.split("\n") if li.startswith("- ")]
                            out.append("<ul>" + "".join(f"<li>{i}</li>" for i in items) + "</ul>")
                        else:
                            out.append(f"<p>{_inline_html(para)}</p>")
                elif block[0] == "table":
                    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in block[1])
                    rows = "".join(
                        "<tr>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in r) + "</tr>" for r in block[2]
                    )
                    out.append(f"<table><tr>{head}</tr>{rows}</table>")
                else:
                    _, png, _, caption = block
                    data = base64.b64encode(png).decode("ascii")
                    out.append(
                        f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
                        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
                    )
        out.append("</body></html>")
        return "\n".join(out)

    # ---------------------------------------------------------------------------------------------- files
    def write(self, out_dir: str, formats: Sequence[str] = ("md", "html", "json")) -> dict:
        """
        Write the report into `out_dir` (created if missing).

        :param out_dir: Folder.
        :param formats: Any of ``"md"`` (``report.md`` and its PNG figures), ``"html"`` and ``"json"``.
        :return: Format -> path written.
        """
        unknown = [f for f in formats if f not in ("md", "html", "json")]
        if unknown:
            raise ValueError(f"`formats` must be a subset of ['md', 'html', 'json'], got {list(formats)}.")
        os.makedirs(out_dir, exist_ok=True)
        paths = {}
        if "md" in formats:
            for s in self.sections:
                for block in s.blocks:
                    if block[0] == "figure":
                        with open(os.path.join(out_dir, block[2]), "wb") as f:
                            f.write(block[1])
            paths["md"] = os.path.join(out_dir, "report.md")
            with open(paths["md"], "w", encoding="utf-8") as f:
                f.write(self.to_markdown())
        if "html" in formats:
            paths["html"] = os.path.join(out_dir, "report.html")
            with open(paths["html"], "w", encoding="utf-8") as f:
                f.write(self.to_html())
        if "json" in formats:
            paths["json"] = os.path.join(out_dir, "results.json")
            with open(paths["json"], "w", encoding="utf-8") as f:
                json.dump(self.to_dict(), f, indent=2, sort_keys=True, allow_nan=False)
        self.files = paths
        return paths
