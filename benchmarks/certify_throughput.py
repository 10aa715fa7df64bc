"""
Throughput of ``LipschitzCertifier.certify`` next to the classifier's plain ``predict`` on the same inputs, in one
run: certify adds the parameter fingerprint, the run of the rebuilt graph on the inputs and its comparison with the
model's outputs. Built-in digits (no download); the models are the reference digits CNN and a small residual network.

Usage::

    python benchmarks/certify_throughput.py --framework pytorch
    python benchmarks/certify_throughput.py --framework tensorflow --repeats 5
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


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


def best_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--framework", choices=("pytorch", "tensorflow"), default="pytorch")
    parser.add_argument("--repeats", type=int, default=10, help="timed repeats; the best is reported")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--copies", type=int, default=10, help="copies of the 359 digits test images certified")
    args = parser.parse_args(argv)

    from art_ext.data import load_digits
    from art_ext.estimators.certification import LipschitzCertifier
    from art_ext.models import ARCHITECTURES, build_model, make_classifier
    from art_ext.utils.markdown import markdown_table

    (_, _), (x_test, _), _, _ = load_digits(channels_first=args.framework == "pytorch")
    x = np.concatenate([x_test] * args.copies)
    shape = ARCHITECTURES["digits_cnn"][0 if args.framework == "pytorch" else 1]
    rows = []
    for name, model in (
        ("digits_cnn", build_model("digits_cnn", args.framework, seed=0)),
        ("residual", residual(args.framework)),
    ):
        clf = make_classifier(model, input_shape=shape)
        cert = LipschitzCertifier(clf)
        clf.predict(x[:8])
        cert.certify(x[:8])
        predict, certify = np.inf, np.inf
        for _ in range(args.repeats):  # interleaved, so that a busy machine slows both alike
            predict = min(predict, best_time(lambda clf=clf: clf.predict(x, batch_size=args.batch_size), 1))
            certify = min(certify, best_time(lambda cert=cert: cert.certify(x, batch_size=args.batch_size), 1))
        rows.append([name, len(x), len(x) / predict, len(x) / certify, certify / predict])
    print(f"framework {args.framework}, batch size {args.batch_size}, best of {args.repeats} interleaved runs")
    print(
        markdown_table(
            ["model", "inputs", "predict (inputs/s)", "certify (inputs/s)", "certify / predict time"], rows, ".3g"
        )
    )


if __name__ == "__main__":
    main()
