"""Data-free model extraction experiments shared by ``art-ext dfme`` and the demo's DFME section."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from art_ext.models import build_generator, build_model, input_shape_of, make_classifier, make_generator

__all__ = [
    "DATASETS",
    "load_dataset",
    "parse_clip_values",
    "parse_headers",
    "save_student",
    "steal",
    "steal_endpoint",
    "train_victim",
]

#: dataset -> (victim architecture, generator)
DATASETS = {"digits": ("digits_cnn", "generator_8x8"), "mnist": ("lenet5", "generator_28x28")}


def load_dataset(name: str, framework: str, path: str | None = None) -> tuple:
    """``(x_train, y_train), (x_test, y_test), min, max`` of ``digits`` or ``mnist`` in the framework's layout."""
    from art_ext.data import load_digits, load_mnist

    channels_first = framework == "pytorch"
    if name == "digits":
        return load_digits(channels_first=channels_first)
    return load_mnist(None if path is None else f"{path}/mnist", channels_first=channels_first)


#: Default victim training epochs per dataset.
VICTIM_EPOCHS = {"digits": 30, "mnist": 3}


def train_victim(
    framework: str,
    dataset: str,
    data: tuple,
    epochs: int | None = None,
    seed: int = 0,
    probabilities: bool = True,
    verbose: bool = False,
) -> Any:
    """
    A reference victim trained on `data` (``digits_cnn`` for digits, LeNet-5 for MNIST); ``.test_accuracy`` set.

    :param epochs: Training epochs, at least 1 (``None``: :data:`VICTIM_EPOCHS` of the dataset).
    :param verbose: A progress bar over the epochs.
    """
    from tqdm.auto import trange

    from art_ext.estimators.classification.utils import to_probability_classifier

    if epochs is None:
        epochs = VICTIM_EPOCHS[dataset]
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"`epochs` must be a positive int, got {epochs!r}.")
    architecture = DATASETS[dataset][0]
    (x_train, y_train), (x_test, y_test), _, _ = data
    shape = input_shape_of(architecture, framework)
    victim = make_classifier(build_model(architecture, framework, seed=seed), input_shape=shape)
    for _ in trange(epochs, desc=f"training the victim ({architecture})", disable=not verbose):
        victim.fit(x_train, y_train, nb_epochs=1, batch_size=64, verbose=False)
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

    architecture, generator_name = DATASETS[dataset]
    shape = input_shape_of(architecture, framework)
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


def parse_headers(values: list[str] | None) -> dict[str, str]:
    """``--header 'Name: value'`` options as a dict; :class:`CommandError` on one without a colon."""
    from art_ext.cli.options import CommandError

    headers = {}
    for value in values or []:
        name, sep, content = value.partition(":")
        if not sep or not name.strip() or any(c in value for c in "\r\n"):
            raise CommandError(f"--header must be 'Name: value' on one line, got {value!r}.")
        headers[name.strip()] = content.strip()
    return headers


def parse_clip_values(text: str | None) -> tuple[float, float] | None:
    """``--clip-values MIN,MAX`` as a pair with ``MIN < MAX``; :class:`CommandError` otherwise."""
    from art_ext.cli.options import CommandError

    if text is None:
        return None
    try:
        low, high = (float(t) for t in text.split(","))
    except ValueError:
        raise CommandError(f"--clip-values must be MIN,MAX, got {text!r}.") from None
    if not (np.isfinite(low) and np.isfinite(high) and low < high):
        raise CommandError(f"--clip-values must be two finite numbers MIN < MAX, got {text!r}.")
    return low, high


def steal_endpoint(args: Any, quick_budget: int) -> int:
    """
    ``art-ext dfme --victim URL``: DFME against a deployed endpoint within ``--budget`` queries (through a
    write-ahead ledger with ``--ledger``), the student evaluated on ``--dataset``'s test labels and saved.
    """
    import inspect

    from art_ext.attacks.extraction import DataFreeModelExtraction
    from art_ext.cli.options import CommandError, status
    from art_ext.estimators.classification import RemoteClassifier, RemoteQueryError
    from art_ext.utils import markdown_table

    budget = min(args.budget, quick_budget) if args.quick else args.budget
    batch = args.batch_size or inspect.signature(DataFreeModelExtraction).parameters["batch_size"].default
    headers, clip = parse_headers(args.header), parse_clip_values(args.clip_values)
    options = {
        "concurrency": args.concurrency,
        "rate_limit": args.rate_limit,
        "batch_size": -(-batch // args.concurrency),
    }
    if clip is not None:
        options["clip_values"] = clip
    try:
        victim = RemoteClassifier.from_url(args.victim, headers=headers, **options)
    except (RemoteQueryError, ValueError, OSError) as error:
        raise CommandError(f"--victim {args.victim}: {error}") from None
    if victim.clip_values is None:
        victim.set_params(clip_values=(0.0, 1.0))
        status("the victim's metadata gives no input range: using 0,1 (set it with --clip-values)")
    architecture = DATASETS[args.dataset][0]
    shape = tuple(input_shape_of(architecture, args.framework))
    layouts = {shape, (shape[-1], *shape[:-1]), (*shape[1:], shape[0])}
    if tuple(victim.input_shape) not in layouts:
        raise CommandError(
            f"--victim takes inputs of shape {tuple(victim.input_shape)}, but --dataset {args.dataset} steals "
            f"{shape} images (or their other layout): choose the --dataset whose images the victim classifies."
        )
    data = load_dataset(args.dataset, args.framework, args.data)
    (x_train, y_train), (x_test, y_test), _, _ = data
    n_val = 300 if args.dataset == "digits" else 2000
    kwargs = {"batch_size": batch}
    if args.diversity_weight is not None:
        kwargs["diversity_weight"] = args.diversity_weight
    if args.ledger is not None:
        kwargs.update(ledger_dir=args.ledger, resume=True)
    status(f"stealing {args.victim} with DFME ({budget:,} queries, {victim.protocol} protocol)")
    result = steal(
        victim,
        args.framework,
        args.dataset,
        x_train[-n_val:],
        y_train[-n_val:],
        budget,
        args.seed,
        not args.quiet,
        x_test=x_test,
        y_test=y_test,
        **kwargs,
    )
    path = save_student(result["student"], args)
    attack = result["attack"]
    row = [args.victim, args.framework, attack.queries_used, victim.queries_answered, victim.retries]
    row += [result["student_accuracy"], result["seconds"], path]
    headers_ = ["victim", "framework", "queries", "answered this run", "retries", "student acc", "seconds", "student"]
    print(markdown_table(headers_, [row], floatfmt=".3f"))
    if args.out:
        from art_ext.utils.report import Report

        report = Report(args.out, f"art-ext dfme --victim ({args.dataset}, {args.framework})")
        report.table(headers_, [row], ".3f")
        print(f"report written to {report.write()}")
    return 0


def save_student(student: Any, args: Any) -> str:
    """Save the student as TorchScript (PyTorch) or ``.keras`` (TensorFlow): ``--save-student`` or ``--out``."""
    import os

    suffix = ".pt" if args.framework == "pytorch" else ".keras"
    path = args.save_student or os.path.join(args.out or ".", "student" + suffix)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if args.framework == "pytorch":
        import torch

        torch.jit.save(torch.jit.script(student.model.eval()), path)
    else:
        student.model.save(path)
    return path
