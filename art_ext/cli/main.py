"""Entry point of the ``art-ext`` console script."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import traceback

from art_ext._version import __version__
from art_ext.cli.options import CommandError, quiet_tensorflow

#: Modules of :mod:`art_ext.cli` that provide a sub-command, in the order ``--help`` lists them.
COMMANDS = ["doctor", "demo", "audit", "serve", "dfme", "distillation", "lmt", "vat"]


class _HelpFormatter(argparse.HelpFormatter):
    """Wraps the description; keeps an epilog of examples as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if text.startswith("examples:"):
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


class ArgumentParser(argparse.ArgumentParser):
    """argparse with one-line errors (``art-ext lmt: error: ...``) and examples kept as written in ``--help``."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def default_framework() -> str:
    """The framework used when none is named: PyTorch if installed, else TensorFlow (neither is imported)."""
    import importlib.util

    if importlib.util.find_spec("torch") is not None:
        return "pytorch"
    if importlib.util.find_spec("tensorflow") is not None:
        return "tensorflow"
    raise CommandError("art-ext needs PyTorch or TensorFlow: pip install -e '.[torch]' or -e '.[tensorflow]'.")


def add_framework_argument(parser: argparse.ArgumentParser) -> None:
    """The ``--framework`` option shared by every command that trains or attacks."""
    parser.add_argument(
        "--framework",
        choices=["pytorch", "tensorflow"],
        default=None,
        help="backend to run on (default: PyTorch if installed, else TensorFlow)",
    )


def add_common_arguments(parser: argparse.ArgumentParser, out: bool = True, quick: bool = True) -> None:
    """``--seed``, ``--quick``, ``--out`` and ``--verbose``, the same on every command that runs an experiment."""
    from art_ext.cli.options import non_negative_int

    parser.add_argument("--seed", type=non_negative_int, default=0, help="seed of every random choice (default 0)")
    if quick:
        parser.add_argument("--quick", action="store_true", help="smaller budgets, for a smoke test")
    if out:
        parser.add_argument(
            "--out",
            default=None,
            metavar="DIR",
            help="write report.md and its figures to this folder (checked before anything is trained)",
        )
    add_verbose_argument(parser)


def add_verbose_argument(parser: argparse.ArgumentParser) -> None:
    """``-v/--verbose`` after the sub-command too (``art-ext lmt -v``)."""
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS,
        help="log at INFO level, show TensorFlow's messages, and print the traceback of an error",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="art-ext",
        description="art_ext: data-free extraction, Lipschitz certification, VAT and more for ART.",
        epilog="examples:\n  art-ext doctor\n  art-ext demo --quick\n  art-ext lmt --help",
    )
    parser.add_argument("--version", action="version", version=f"art-ext {__version__}")
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="log at INFO level, show TensorFlow's messages, and print the traceback of an error",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=ArgumentParser)
    for name in COMMANDS:
        importlib.import_module(f"art_ext.cli.{name}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    verbose = bool(getattr(args, "verbose", False))
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(message)s")
    if args.command is None:
        parser.print_help()
        return 0
    prog = f"art-ext {args.command}"
    os.environ.setdefault("MPLBACKEND", "Agg")  # the commands write PNG files; they never open a window
    try:
        if getattr(args, "framework", "unset") is None:
            args.framework = default_framework()
        if getattr(args, "framework", None) == "tensorflow" or args.command == "doctor":
            quiet_tensorflow(verbose)
        if getattr(args, "validate_args", None) is not None:  # checks before anything is trained
            args.validate_args(args)
        return int(args.run(args) or 0)
    except CommandError as error:
        if verbose:
            traceback.print_exc()
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 (one line for the user; --verbose prints the traceback)
        if verbose:
            traceback.print_exc()
        message = str(error).strip().splitlines()[0] if str(error).strip() else ""
        print(
            f"{prog}: error: {type(error).__name__}: {message} (run with --verbose for the traceback)", file=sys.stderr
        )
        return 1


if __name__ == "__main__":  # pragma: no cover
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())
