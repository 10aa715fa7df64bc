"""
Throughput of ``LipschitzCertifier.certify`` next to the classifier's plain ``predict`` on the same inputs, in one
run: certify adds the parameter fingerprint, the run of the rebuilt graph on the inputs and its comparison with the
model's outputs. The digits models (the reference digits CNN and a small residual network) certify the built-in
digits (no download); the MNIST-shaped networks of ``benchmarks/lmt_mnist.py`` (``maxmin_mlp``, ``gloro_small``)
certify uniform random 28x28 inputs (``--inputs``).

Timings are medians over interleaved repeats (a busy machine slows both alike): ``predict``, ``certify`` with the
same certifier, and the *first* ``certify`` of a fresh certifier, which pays what is done once per model read (on
TensorFlow, tracing the compiled check); the first model of a process also pays what is done once per process.

Usage::

    python benchmarks/certify_throughput.py --framework pytorch
    python benchmarks/certify_throughput.py --framework tensorflow --models maxmin_mlp,gloro_small --inputs 2000
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def residual(framework: str):
    """conv -> ResidualBlock(conv, relu, conv) -> relu -> max-pool -> dense -> dense."""
    from art_ext.models import ResidualBlock

    if framework == "pytorch":
        from torch import nn

        body = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1))
        return nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            nn.ReLU(),
            ResidualBlock(body),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(256, 64),
            nn.ReLU(),
            nn.Linear(64, 10),
        )
    import keras
    from keras import layers

    body = keras.Sequential(
        [layers.Conv2D(16, 3, padding="same", activation="relu"), layers.Conv2D(16, 3, padding="same")]
    )
    return keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            layers.Conv2D(16, 3, padding="same", activation="relu"),
            ResidualBlock(body),
            layers.ReLU(),
            layers.MaxPooling2D(2),
            layers.Flatten(),
            layers.Dense(64, activation="relu"),
            layers.Dense(10),
        ]
    )


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


MODELS = ("digits_cnn", "residual", "maxmin_mlp", "gloro_small")


def build(name: str, framework: str):
    """The model `name` of :data:`MODELS` and its input shape."""
    from art_ext.models import ARCHITECTURES, build_model

    digits_shape = ARCHITECTURES["digits_cnn"][0 if framework == "pytorch" else 1]
    if name == "digits_cnn":
        return build_model("digits_cnn", framework, seed=0), digits_shape
    if name == "residual":
        return residual(framework), digits_shape
    from lmt_mnist import gloro_small, maxmin_mlp

    shape = (1, 28, 28) if framework == "pytorch" else (28, 28, 1)
    return {"maxmin_mlp": maxmin_mlp, "gloro_small": gloro_small}[name](framework, 0), shape


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--framework", choices=("pytorch", "tensorflow"), default="pytorch")
    parser.add_argument("--repeats", type=int, default=10, help="timed repeats; the median is reported")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--copies", type=int, default=10, help="copies of the 359 digits test images certified")
    parser.add_argument("--models", default="digits_cnn,residual", help=f"comma-separated, of {', '.join(MODELS)}")
    parser.add_argument("--inputs", type=int, default=2000, help="random inputs for the 28x28 networks")
    args = parser.parse_args(argv)
    names = args.models.split(",")
    if not set(names) <= set(MODELS) or args.repeats < 1 or args.inputs < 1:
        parser.error(f"--models must name some of {', '.join(MODELS)}; --repeats and --inputs must be positive")

    from art_ext.data import load_digits
    from art_ext.estimators.certification import LipschitzCertifier
    from art_ext.models import make_classifier
    from art_ext.utils.markdown import markdown_table

    (_, _), (x_test, _), _, _ = load_digits(channels_first=args.framework == "pytorch")
    digits = np.concatenate([x_test] * args.copies)
    rng = np.random.default_rng(0)
    rows = []
    for name in names:
        model, shape = build(name, args.framework)
        x = digits if name in ("digits_cnn", "residual") else rng.uniform(0, 1, (args.inputs, *shape))
        x = x.astype(np.float32)
        clf = make_classifier(model, input_shape=shape)
        clf.predict(x, batch_size=args.batch_size)  # every batch shape of this run seen once
        cert = LipschitzCertifier(clf)
        first = timed(lambda cert=cert, x=x: cert.certify(x, batch_size=args.batch_size))
        predict, certify = [], []
        for _ in range(args.repeats):  # interleaved, so that a busy machine slows both alike
            predict.append(timed(lambda clf=clf, x=x: clf.predict(x, batch_size=args.batch_size)))
            certify.append(timed(lambda cert=cert, x=x: cert.certify(x, batch_size=args.batch_size)))
        p, c = float(np.median(predict)), float(np.median(certify))
        rows.append([name, len(x), len(x) / p, len(x) / c, c / p, first / p])
    print(f"framework {args.framework}, batch size {args.batch_size}, medians of {args.repeats} interleaved runs")
    columns = ["model", "inputs", "predict (inputs/s)", "certify (inputs/s)", "certify / predict time"]
    print(markdown_table(columns + ["first certify / predict time"], rows, ".3g"))


if __name__ == "__main__":
    main()
