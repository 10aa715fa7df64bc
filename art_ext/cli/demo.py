"""``art-ext demo``: the project's main job, a report on the built-in digits."""

from __future__ import annotations

import argparse
import importlib
import os
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from art_ext.cli.main import add_common_arguments, add_framework_argument
from art_ext.cli.options import DEFAULT_OUT, CommandError, check_out_dir
from art_ext.cli.options import status as print_status
from art_ext.cli.sections import SECTION_ALIASES, SECTIONS
from art_ext.utils.report import Report

EXAMPLES = f"""examples:
  art-ext demo --quick
  art-ext demo --sections baseline,lmt --out {DEFAULT_OUT}
  art-ext demo --framework tensorflow --seed 1

The report (report.md and its PNG figures) goes to --out, by default ./{DEFAULT_OUT}.
"""


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

    def status(self, message: str) -> None:
        """A one-line status message (when :attr:`verbose`) before a phase of more than a few seconds."""
        if self.verbose:
            print_status(message)

    def rng(self, offset: int = 0) -> np.random.Generator:
        return np.random.default_rng(self.seed + offset)

    def train_classifier(self, architecture: str = "digits_cnn", nb_epochs: int = 30, key: str | None = None) -> Any:
        """A digits classifier (logits) trained normally; cached per ``key``."""
        key = key or f"{architecture}:{nb_epochs}"
        if key not in self._cache:
            from art_ext.models import build_model, input_shape_of, make_classifier

            (x_train, y_train), _, _, _ = self.digits
            shape = input_shape_of(architecture, self.framework)
            clf = make_classifier(build_model(architecture, self.framework, seed=self.seed), input_shape=shape)
            clf.fit(x_train, y_train, nb_epochs=nb_epochs, batch_size=64, verbose=False)
            self._cache[key] = clf
        return self._cache[key]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="train on the built-in digits, attack, and write a report",
        description="Run every method of art_ext on scikit-learn's 8x8 digits (no download) and write a markdown "
        "report with figures: a baseline under FGSM/PGD, DFME, defensive distillation and gradient masking, the "
        "FGSM family, LMT certificates and VAT.",
        epilog=EXAMPLES,
    )
    add_framework_argument(p)
    p.add_argument(
        "--sections",
        default=",".join(SECTIONS),
        help=f"comma-separated sections to run (default: all of {','.join(SECTIONS)})",
    )
    add_common_arguments(p)
    p.set_defaults(run=run, validate_args=check)


def _sections(text: str) -> list[str]:
    names = [SECTION_ALIASES.get(s.strip(), s.strip()) for s in text.split(",") if s.strip()]
    unknown = [s for s in names if s not in SECTIONS]
    if unknown or not names:
        raise CommandError(
            f"--sections: unknown section(s) {', '.join(unknown) or '(none)'}; choose from {','.join(SECTIONS)}."
        )
    return names


def check(args: argparse.Namespace) -> None:
    """Everything that can be checked before training."""
    args.section_list = _sections(args.sections)
    args.out = args.out or DEFAULT_OUT
    check_out_dir(args.out)


def run_demo(
    framework: str,
    out_dir: str,
    sections: list[str] | None = None,
    quick: bool = False,
    seed: int = 0,
    verbose: bool = True,
) -> str:
    """
    Run the demo and write ``report.md`` with its figures.

    :param framework: ``"pytorch"`` or ``"tensorflow"``.
    :param out_dir: Report folder.
    :param sections: Section names (default: all of :data:`art_ext.cli.sections.SECTIONS`).
    :param quick: Smaller budgets.
    :param seed: Seed of every random choice.
    :param verbose: Progress bars and status lines.
    :return: Path of ``report.md``.
    """
    from art_ext import __version__
    from art_ext.utils.seed import set_seed

    sections = [SECTION_ALIASES.get(s, s) for s in (SECTIONS if sections is None else sections)]
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown:
        raise ValueError(f"Unknown demo section(s) {unknown}; choose from {SECTIONS}.")
    set_seed(seed, framework)
    report = Report(out_dir, f"art_ext demo report ({framework})")
    report.text(
        f"art_ext {__version__} on {framework}, seed {seed}{', quick mode' if quick else ''}. "
        "Data: scikit-learn's 8x8 digits (1,438 train / 359 test images)."
    )
    ctx = DemoContext(framework=framework, out_dir=out_dir, report=report, seed=seed, quick=quick, verbose=verbose)
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
    if not hasattr(args, "section_list"):
        check(args)
    sections = args.section_list
    path = run_demo(args.framework, args.out, sections=sections, quick=args.quick, seed=args.seed)
    print(f"[art-ext demo] report written to {os.path.abspath(path)}")
    return 0
