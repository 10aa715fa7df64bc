"""``art-ext demo``: the project's main job, a report on the built-in digits."""

from __future__ import annotations

import argparse
import importlib
import os
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from art_ext.cli.main import add_framework_argument
from art_ext.cli.sections import SECTIONS
from art_ext.utils.report import Report


@dataclass
class DemoContext:
    """What every demo section receives: framework, data, a trained baseline and the report being written."""

    framework: str
    out_dir: str
    report: Report
    seed: int = 0
    quick: bool = False
    verbose: bool = True
    _cache: dict = field(default_factory=dict)

    @property
    def channels_first(self) -> bool:
        return self.framework == "pytorch"

    @property
    def digits(self) -> tuple:
        """``(x_train, y_train), (x_test, y_test), min, max`` in this framework's channel order."""
        if "digits" not in self._cache:
            from art_ext.data import load_digits

            self._cache["digits"] = load_digits(channels_first=self.channels_first)
        return self._cache["digits"]

    def rng(self, offset: int = 0) -> np.random.Generator:
        return np.random.default_rng(self.seed + offset)

    def train_classifier(self, architecture: str = "digits_cnn", nb_epochs: int = 30, key: str | None = None) -> Any:
        """A digits classifier (logits) trained normally; cached per ``key``."""
        key = key or f"{architecture}:{nb_epochs}"
        if key not in self._cache:
            from art_ext.models import ARCHITECTURES, build_model, make_classifier

            (x_train, y_train), _, _, _ = self.digits
            shape = ARCHITECTURES[architecture][0 if self.channels_first else 1]
            clf = make_classifier(build_model(architecture, self.framework, seed=self.seed), input_shape=shape)
            clf.fit(x_train, y_train, nb_epochs=nb_epochs, batch_size=64, verbose=False)
            self._cache[key] = clf
        return self._cache[key]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="train on the built-in digits, attack, and write a report")
    add_framework_argument(p)
    p.add_argument("--out", default="art_ext_report", help="report folder (default: ./art_ext_report)")
    p.add_argument(
        "--sections",
        default=",".join(SECTIONS),
        help=f"comma-separated sections to run (default: all of {','.join(SECTIONS)})",
    )
    p.add_argument("--quick", action="store_true", help="smaller budgets, for a smoke test")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(run=run)


def run_demo(
    framework: str, out_dir: str, sections: list[str] | None = None, quick: bool = False, seed: int = 0
) -> str:
    """
    Run the demo and write ``report.md`` with its figures.

    :param framework: ``"pytorch"`` or ``"tensorflow"``.
    :param out_dir: Report folder.
    :param sections: Section names (default: all of :data:`art_ext.cli.sections.SECTIONS`).
    :param quick: Smaller budgets.
    :param seed: Seed of every random choice.
    :return: Path of ``report.md``.
    """
    from art_ext import __version__
    from art_ext.utils.seed import set_seed

    sections = list(SECTIONS if sections is None else sections)
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown:
        raise ValueError(f"Unknown demo section(s) {unknown}; choose from {SECTIONS}.")
    set_seed(seed, framework)
    report = Report(out_dir, f"art_ext demo report ({framework})")
    report.text(
        f"art_ext {__version__} on {framework}, seed {seed}{', quick mode' if quick else ''}. "
        "Data: scikit-learn's 8x8 digits (1,438 train / 359 test images)."
    )
    ctx = DemoContext(framework=framework, out_dir=out_dir, report=report, seed=seed, quick=quick)
    timings = []
    for name in sections:
        module = importlib.import_module(f"art_ext.cli.sections.{name}")
        print(f"[art-ext demo] {module.TITLE} ...", flush=True)
        start = time.perf_counter()
        report.heading(module.TITLE)
        module.run(ctx)
        timings.append((name, time.perf_counter() - start))
    from art_ext.cli.audit import export_demo_model

    export_demo_model(ctx)
    report.heading("Run times")
    report.table(["section", "seconds"], [(n, round(t, 1)) for n, t in timings])
    return report.write()


def run(args: argparse.Namespace) -> int:
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    path = run_demo(args.framework, args.out, sections=sections, quick=args.quick, seed=args.seed)
    print(f"[art-ext demo] report written to {os.path.abspath(path)}")
    return 0
