"""
What every ``art-ext`` command shares: option types that validate up front (before any training), the ``--out``
folder check, one-line status messages, and quiet TensorFlow.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
import tempfile
from typing import Callable

#: Default report folder of every command that writes one (``<DEFAULT_OUT>/<command>``; the demo writes the root).
DEFAULT_OUT = "art_ext_report"


class CommandError(Exception):
    """A user error: ``art-ext`` prints its message on one line of stderr and exits with status 2."""


def _number(kind: type, low: float | None, allow_equal: bool, what: str) -> Callable[[str], float]:
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if kind is float and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        if low is not None and (value < low or (value == low and not allow_equal)):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    parse.__name__ = what
    return parse


#: ``type=`` of an option taking an int >= 1.
positive_int = _number(int, 0, False, "a positive integer")
#: ``type=`` of an option taking an int >= 0.
non_negative_int = _number(int, 0, True, "a non-negative integer")
#: ``type=`` of an option taking a float > 0.
positive_float = _number(float, 0.0, False, "a positive number")
#: ``type=`` of an option taking a float >= 0.
non_negative_float = _number(float, 0.0, True, "a non-negative number")


def at_least(low: int) -> Callable[[str], int]:
    """``type=`` of an option taking an int >= `low`."""
    return _number(int, low, True, f"an integer >= {low}")


def add_endpoint_options(group: argparse._ActionGroup, where: str = "") -> None:
    """``--concurrency``, ``--rate-limit`` and ``--header`` of a command that queries an endpoint (`where` ends the help)."""
    group.add_argument("--concurrency", type=positive_int, default=4, help=f"requests in flight{where} (default 4)")
    group.add_argument(
        "--rate-limit", type=positive_float, default=None, help=f"most requests started per second{where}"
    )
    group.add_argument(
        "--header",
        action="append",
        default=[],
        metavar="'NAME: VALUE'",
        help=f"HTTP header sent with every request{where}, e.g. 'Authorization: Bearer TOKEN' (repeatable)",
    )


def float_list(text: str) -> list[float]:
    """``type=`` of a comma-separated list of positive numbers, e.g. ``0.1,0.2``."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive numbers, got {text!r}")
    return [positive_float(p) for p in parts]


def check_out_dir(path: str, option: str = "--out") -> str:
    """
    Create the report folder if needed and check that a file can be written in it, before anything is trained.

    :raises CommandError: When `path` is an existing file, cannot be created, or is not writable.
    """
    if os.path.exists(path) and not os.path.isdir(path):
        raise CommandError(f"{option} {path}: exists and is not a folder; choose another path.")
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".art_ext_write_test_"):
            pass
    except OSError as error:
        raise CommandError(f"{option} {path}: cannot write there ({error.strerror or error}).") from None
    return path


def status(message: str) -> None:
    """A one-line status message on stderr (phases that take more than a few seconds announce themselves)."""
    print(f"[art-ext] {message} ...", file=sys.stderr, flush=True)


def quiet_tensorflow(verbose: bool = False) -> None:
    """
    Import TensorFlow without its start-up noise on CPU (oneDNN and absl INFO lines, ``cuInit`` errors) and silence
    its Python-side warnings (retracing), unless `verbose`. Does nothing when TensorFlow is not installed.
    """
    import importlib.util
    import logging

    if importlib.util.find_spec("tensorflow") is None or "tensorflow" in sys.modules:
        return
    if verbose:
        import tensorflow  # noqa: F401

        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with _stderr_to_devnull():
        import tensorflow as tf
    tf.get_logger().setLevel(logging.ERROR)
    try:
        import absl.logging

        absl.logging.set_verbosity(absl.logging.ERROR)
    except ImportError:  # pragma: no cover
        pass


@contextlib.contextmanager
def _stderr_to_devnull():
    """Point file descriptor 2 at /dev/null (C++ libraries write there directly, past ``sys.stderr``)."""
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no real stderr (e.g. some notebook kernels): nothing to silence
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(devnull)
        os.close(saved)
