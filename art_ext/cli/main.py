"""Entry point of the ``art-ext`` console script."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from art_ext._version import __version__

#: Modules of :mod:`art_ext.cli` that provide a sub-command, in the order ``--help`` lists them.
COMMANDS = ["doctor", "demo", "audit", "serve", "dfme", "distill", "lmt", "vat"]


def default_framework() -> str:
    """The framework used when none is named: PyTorch if installed, else TensorFlow (neither is imported)."""
    import importlib.util

    if importlib.util.find_spec("torch") is not None:
        return "pytorch"
    if importlib.util.find_spec("tensorflow") is not None:
        return "tensorflow"
    raise SystemExit("art-ext needs PyTorch or TensorFlow: pip install 'art-ext[torch]' or 'art-ext[tensorflow]'.")


def add_framework_argument(parser: argparse.ArgumentParser) -> None:
    """The ``--framework`` option shared by every command that trains or attacks."""
    parser.add_argument(
        "--framework",
        choices=["pytorch", "tensorflow"],
        default=None,
        help="backend to run on (default: PyTorch if installed, else TensorFlow)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="art-ext", description="art_ext: data-free extraction, Lipschitz certification, VAT and more for ART."
    )
    parser.add_argument("--version", action="version", version=f"art-ext {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"art_ext.cli.{name}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    if args.command is None:
        parser.print_help()
        return 0
    if getattr(args, "framework", "unset") is None:
        args.framework = default_framework()
    return int(args.run(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
