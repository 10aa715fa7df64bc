"""``art-ext dfme``: train a victim, steal it data-free with DataFreeModelExtraction, print the result."""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np

from art_ext.cli.main import add_framework_argument

#: dataset -> (victim architecture, generator)
DATASETS = {"digits": ("digits_cnn", "generator_8x8"), "mnist": ("lenet5", "generator_28x28")}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("dfme", help="data-free model extraction of a victim trained on digits or MNIST")
    add_framework_argument(p)
    p.add_argument("--dataset", choices=sorted(DATASETS), default="digits")
    p.add_argument("--budget", type=int, default=300_000, help="victim queries (default 300000)")
    p.add_argument("--diversity-weight", type=float, default=None, help="class-diversity weight (0: the paper's)")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--victim-epochs", type=int, default=None, help="victim training epochs")
    p.add_argument("--logits", action="store_true", help="let the victim return logits instead of probabilities")
    p.add_argument("--data", default=None, help="data root for MNIST (default: $ART_EXT_DATA)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def load_dataset(name: str, framework: str, path: str | None = None) -> tuple:
    """``(x_train, y_train), (x_test, y_test), min, max`` of ``digits`` or ``mnist`` in the framework's layout."""
    from art_ext.data import load_digits, load_mnist

    channels_first = framework == "pytorch"
    if name == "digits":
        return load_digits(channels_first=channels_first)
    return load_mnist(None if path is None else f"{path}/mnist", channels_first=channels_first)


def train_victim(
    framework: str, dataset: str, data: tuple, epochs: int | None = None, seed: int = 0, probabilities: bool = True
) -> Any:
    """A reference victim trained on `data` (``digits_cnn`` for digits, LeNet-5 for MNIST); ``.test_accuracy`` set."""
    from art_ext.models import ARCHITECTURES, build_model, make_classifier, to_probability_classifier

    architecture = DATASETS[dataset][0]
    (x_train, y_train), (x_test, y_test), _, _ = data
    shape = ARCHITECTURES[architecture][0 if framework == "pytorch" else 1]
    victim = make_classifier(build_model(architecture, framework, seed=seed), input_shape=shape)
    victim.fit(x_train, y_train, nb_epochs=epochs or (30 if dataset == "digits" else 3), batch_size=64, verbose=False)
    if probabilities:
        victim = to_probability_classifier(victim)
    victim.test_accuracy = float(np.mean(victim.predict(x_test, batch_size=512).argmax(1) == y_test))
    return victim


def steal(
    victim: Any,
    framework: str,
    dataset: str,
    x_val: np.ndarray,
    y_val: np.ndarray,
    budget: int,
    seed: int = 0,
    verbose: bool = True,
    x_test: np.ndarray | None = None,
    y_test: np.ndarray | None = None,
    **attack_kwargs,
) -> dict:
    """
    Run DFME against `victim` with a fresh student of the victim's architecture and the dataset's generator.
    `x_val`/`y_val` track (and, with ``restore_best``, select) the student; the accuracy reported is measured on
    `x_test`/`y_test` when given, else on the validation data.

    :return: dict with ``student``, ``attack``, ``student_accuracy``, ``seconds`` and the ``curve`` of
             ``(queries, validation accuracy)``.
    """
    from art_ext.attacks.extraction import DataFreeModelExtraction
    from art_ext.models import ARCHITECTURES, build_generator, build_model, make_classifier, make_generator

    architecture, generator_name = DATASETS[dataset]
    shape = ARCHITECTURES[architecture][0 if framework == "pytorch" else 1]
    student = make_classifier(build_model(architecture, framework, seed=seed + 1), input_shape=shape)
    generator = make_generator(build_generator(generator_name, framework, seed=seed + 2))
    attack = DataFreeModelExtraction(
        victim, generator, max_queries=budget, random_state=seed, verbose=verbose, **attack_kwargs
    )
    start = time.perf_counter()
    attack.extract(thieved_classifier=student, x_val=x_val, y_val=y_val)
    seconds = time.perf_counter() - start
    x_eval, y_eval = (x_val, y_val) if x_test is None else (x_test, y_test)
    accuracy = float(np.mean(student.predict(x_eval, batch_size=512).argmax(1) == y_eval))
    curve = [(r["queries"], r["val_accuracy"]) for r in attack.history if r.get("val_accuracy") is not None]
    return {"student": student, "attack": attack, "student_accuracy": accuracy, "seconds": seconds, "curve": curve}


def run(args: argparse.Namespace) -> int:
    from art_ext.utils import markdown_table, set_seed

    set_seed(args.seed, args.framework)
    data = load_dataset(args.dataset, args.framework, args.data)
    (x_train, y_train), (x_test, y_test), _, _ = data
    victim = train_victim(
        args.framework, args.dataset, data, args.victim_epochs, seed=args.seed, probabilities=not args.logits
    )
    kwargs = {}
    if args.diversity_weight is not None:
        kwargs["diversity_weight"] = args.diversity_weight
    if args.batch_size is not None:
        kwargs["batch_size"] = args.batch_size
    n_val = 300 if args.dataset == "digits" else 2000  # held-out training images track the student
    result = steal(
        victim,
        args.framework,
        args.dataset,
        x_train[-n_val:],
        y_train[-n_val:],
        args.budget,
        args.seed,
        not args.quiet,
        x_test=x_test,
        y_test=y_test,
        **kwargs,
    )
    attack = result["attack"]
    row = [
        args.dataset,
        args.framework,
        attack.queries_used,
        victim.test_accuracy,
        result["student_accuracy"],
        result["student_accuracy"] / victim.test_accuracy,
        result["seconds"],
        attack.victim_query_seconds / max(result["seconds"], 1e-9),
    ]
    headers = ["dataset", "framework", "queries", "victim acc", "student acc", "ratio", "seconds", "victim share"]
    print(markdown_table(headers, [row], floatfmt=".3f"))
    return 0
