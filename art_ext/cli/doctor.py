"""``art-ext doctor``: versions, CUDA visibility and data folders."""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "doctor",
        help="print versions, CUDA visibility and the data folders found",
        description="Print the versions of Python, art_ext, ART, numpy, PyTorch and TensorFlow, whether each "
        "framework sees a GPU, and which data folders (MNIST, rt-polarity) are found.",
        epilog="examples:\n  art-ext doctor\n  art-ext doctor --data /path/to/data\n",
    )
    p.add_argument("--data", default=None, help="data root to check (default: $ART_EXT_DATA)")
    from art_ext.cli.main import add_verbose_argument

    add_verbose_argument(p)
    p.set_defaults(run=run)


def collect(data: str | None = None) -> dict:
    """The facts ``doctor`` prints, as a dict (used by tests)."""
    import art
    import numpy

    from art_ext import __version__
    from art_ext.data import DATA_ENV
    from art_ext.data.mnist import MNIST_FILES
    from art_ext.data.rt_polarity import RT_FILES

    info = {
        "python": platform.python_version(),
        "art_ext": __version__,
        "adversarial-robustness-toolbox": art.__version__,
        "numpy": numpy.__version__,
    }
    if importlib.util.find_spec("torch") is not None:
        import torch

        info["torch"] = torch.__version__
        info["torch CUDA"] = torch.cuda.is_available() and torch.cuda.get_device_name(0) or False
    else:
        info["torch"] = "not installed"
    if importlib.util.find_spec("tensorflow") is not None:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import tensorflow as tf

        info["tensorflow"] = tf.__version__
        gpus = tf.config.list_physical_devices("GPU")
        info["tensorflow CUDA"] = bool(gpus) and ", ".join(g.name for g in gpus) or False
    else:
        info["tensorflow"] = "not installed"
    root = data or os.environ.get(DATA_ENV)
    info["data root"] = root or f"not set (${DATA_ENV})"
    for name, files in (("mnist", list(MNIST_FILES.values())), ("rt-polarity", RT_FILES)):
        folder = os.path.join(root, name) if root else None
        found = bool(folder) and all(os.path.isfile(os.path.join(folder, f)) for f in files)
        info[f"data: {name}"] = folder if found else "not found"
    return info


def run(args: argparse.Namespace) -> int:
    info = collect(args.data)
    width = max(len(k) for k in info)
    for key, value in info.items():
        print(f"{key:<{width}}  {value}")
    return 0
