"""
Rewrites the comment above every ``outcome.check(...)`` of the tests from a kernel-variants report
(``.ci/kernel_variants.py --report``): the values measured per framework, the number of variants, and the smallest
margin with the variant where it was seen. One comment serves every case of a parametrized test and every label an
f-string builds; a check the report does not hold keeps its comment (and is listed).

Usage::

    python .ci/kernel_comments.py .ci/kernel_margins.json          # rewrite the comments in tests/
    python .ci/kernel_comments.py .ci/kernel_margins.json --check  # exit 1 where a comment is not up to date
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WIDTH = 120
NAMES = {"pytorch": "PyTorch", "tensorflow": "TensorFlow"}
_STRING = re.compile(r'(f?)"((?:[^"\\]|\\.)*)"')
_DEF = re.compile(r"^(\s*)def (test_\w+)")


def _num(x: float) -> str:
    """3 significant digits from 10 up, 3 decimals below (2 significant digits under 0.01)."""
    if abs(x) >= 10:
        return f"{float(f'{x:.3g}'):g}"
    return f"{round(x, 3):g}" if x == 0 or abs(x) >= 0.01 else f"{x:.2g}"


def _label_pattern(is_f: str, text: str) -> re.Pattern:
    """The labels a string literal of the check can produce (an f-string's fields match anything)."""
    if not is_f:
        return re.compile(re.escape(text))
    parts = re.split(r"\{[^{}]*\}", text)
    return re.compile(".+?".join(re.escape(p) for p in parts))


def comment(rows: list[dict]) -> str:
    """The comment text (without ``#``) for the report rows of one check."""
    variants: dict[str, float] = {}
    per_framework: dict[str, list[float]] = {}
    for row in rows:
        for variant, value in row["values"].items():
            variants[variant] = value
            per_framework.setdefault(variant.split("/")[0], []).append(value)
    ranges = []
    for framework in ("pytorch", "tensorflow"):
        values = per_framework.get(framework)
        if values:
            lo, hi = _num(min(values)), _num(max(values))
            ranges.append(f"{NAMES[framework]} {lo if lo == hi else f'{lo}-{hi}'}")
    cases = len({row["test"] for row in rows})
    count = f"{len(variants)} kernel variant{'s' if len(variants) != 1 else ''}"
    count += f" x {cases} cases" if cases > 1 else ""
    # the smallest margin over every case and variant; ties go to the first variant by name
    margin, variant, index = min((m, v, i) for i, r in enumerate(rows) for v, m in r["margins"].items())
    worst = rows[index]
    thresholds = {t for row in rows for t in row["thresholds"].values()}
    op = worst["op"]
    if len(thresholds) == 1:
        detail = f"{op} {_num(thresholds.pop())} needed"
    else:
        detail = f"{_num(worst['values'][variant])} {op} {_num(worst['thresholds'][variant])} there"
    return f"measured {', '.join(ranges)} over {count}; smallest margin {_num(margin)} ({detail}, {variant})"


def _checks(lines: list[str]):
    """``(line index of the call, indentation, test function, label pattern)`` for each outcome.check call."""
    for i, line in enumerate(lines):
        if "outcome.check(" not in line:
            continue
        rest = line.split("outcome.check(", 1)[1] + (lines[i + 1] if i + 1 < len(lines) else "")
        match = _STRING.search(rest)
        indent = len(line) - len(line.lstrip())
        func = next(
            (m.group(2) for j in range(i, -1, -1) if (m := _DEF.match(lines[j])) and len(m.group(1)) < indent), None
        )
        if match and func:
            yield i, indent, func, _label_pattern(*match.groups())


def rewrite(path: str, rows: list[dict]) -> tuple[list[str], list[str]]:
    """New lines of a test file and the checks of it the report does not hold."""
    rel = os.path.relpath(path, ROOT).replace(os.sep, "/")
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    replacements, missing = [], []
    for i, indent, func, pattern in _checks(lines):
        mine = [
            r
            for r in rows
            if r["test"].split("::")[0] == rel
            and r["test"].split("::")[1].split("[")[0] == func
            and pattern.fullmatch(r["label"])
        ]
        if not mine:
            missing.append(f"{rel}:{i + 1} {func} {pattern.pattern}")
            continue
        start = i
        while start > 0 and lines[start - 1].strip().startswith("#"):
            start -= 1
        block = lines[start:i]
        first = next((k for k, line in enumerate(block) if line.strip().startswith("# measured ")), None)
        text = textwrap.wrap(comment(mine), width=WIDTH - indent - 2)
        new = [" " * indent + "# " + t for t in text]
        if first is None:
            replacements.append((i, i, new))
        else:
            replacements.append((start + first, i, new))
    for begin, end, new in reversed(replacements):
        lines[begin:end] = new
    return lines, missing


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("report", help="a report written by .ci/kernel_variants.py --report")
    parser.add_argument("--check", action="store_true", help="change nothing: exit 1 where a comment is out of date")
    args = parser.parse_args(argv)
    if not os.path.isfile(args.report):
        parser.error(f"report: no such file {args.report!r} (write one with .ci/kernel_variants.py --report FILE)")
    with open(args.report, encoding="utf-8") as f:
        rows = json.load(f)["checks"]
    stale = []
    for folder, _, files in os.walk(os.path.join(ROOT, "tests")):
        for name in sorted(files):
            if not (name.startswith("test_") and name.endswith(".py")) or name == "test_kernel_variants.py":
                continue
            path = os.path.join(folder, name)
            lines, missing = rewrite(path, rows)
            for m in missing:
                print(f"kernel comments: not in the report: {m}")
            with open(path, encoding="utf-8") as f:
                old = f.read()
            if "\n".join(lines) != old:
                stale.append(os.path.relpath(path, ROOT))
                if not args.check:
                    with open(path, "w", encoding="utf-8") as f:
                        f.write("\n".join(lines))
    verb = "out of date" if args.check else "rewritten"
    print(f"kernel comments: {len(stale)} file(s) {verb}" + "".join(f"\n  {p}" for p in stale))
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
