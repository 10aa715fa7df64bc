"""
``art-ext dfme``: train a victim, or point at a deployed one (``--victim URL``), steal it data-free with
DataFreeModelExtraction, print the result.
"""

from __future__ import annotations

import argparse

from art_ext.cli.experiments.dfme import DATASETS, VICTIM_EPOCHS, load_dataset, steal, train_victim
from art_ext.cli.main import add_common_arguments, add_framework_argument
from art_ext.cli.options import (
    add_endpoint_options,
    check_out_dir,
    non_negative_float,
    positive_int,
    status,
)

__all__ = ["DATASETS", "add_parser", "load_dataset", "run", "steal", "train_victim"]

EXAMPLES = """examples:
  art-ext dfme --quick
  art-ext dfme --budget 100000 --out art_ext_report/dfme
  art-ext dfme --dataset mnist --data /path/to/data --victim-epochs 3
  art-ext dfme --victim http://127.0.0.1:8080/v2/models/NAME --budget 200000 --ledger dfme_ledger --out stolen
"""

#: Query budget of ``--quick``.
QUICK_BUDGET = 20_000


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "dfme",
        help="data-free model extraction of a victim trained on digits or MNIST, or deployed at a URL",
        description="Train a victim classifier (or use the deployed one at --victim URL), then steal it with "
        "DataFreeModelExtraction: a generator synthesises the queries, the student never sees a training image. "
        "Prints victim and student accuracy and saves the student.",
        epilog=EXAMPLES,
    )
    add_framework_argument(p)
    p.add_argument(
        "--dataset", choices=sorted(DATASETS), default="digits", help="victim's training data (default digits)"
    )
    p.add_argument(
        "--budget", type=positive_int, default=300_000, help=f"victim queries (default 300000; --quick {QUICK_BUDGET})"
    )
    p.add_argument(
        "--diversity-weight",
        type=non_negative_float,
        default=None,
        help="weight of the class-diversity term of the generator loss (default: the attack's; 0: the paper's loss)",
    )
    p.add_argument(
        "--batch-size", type=positive_int, default=None, help="queries per generator step (default: the attack's)"
    )
    p.add_argument(
        "--victim-epochs",
        type=positive_int,
        default=None,
        help="victim training epochs, at least 1 (default: "
        + ", ".join(f"{k} {v}" for k, v in VICTIM_EPOCHS.items())
        + ")",
    )
    p.add_argument("--logits", action="store_true", help="let the victim return logits instead of probabilities")
    remote = p.add_argument_group("a deployed victim")
    remote.add_argument(
        "--victim",
        metavar="URL",
        default=None,
        help="steal this endpoint instead of training a victim: http://host:port/v2/models/NAME (Open Inference "
        "Protocol: Triton, KServe, MLServer), http://host:port/v1/models/NAME (TF Serving) or http://host:port "
        "(art-ext serve); its input shape must be --dataset's (digits 8x8, mnist 28x28, either layout)",
    )
    remote.add_argument(
        "--ledger",
        metavar="DIR",
        default=None,
        help="write-ahead query ledger folder: a crashed or interrupted run started again with the same options "
        "replays the answers already paid for instead of asking (and paying) again",
    )
    add_endpoint_options(remote)
    remote.add_argument(
        "--clip-values",
        default=None,
        metavar="MIN,MAX",
        help="the victim's input range when its metadata does not give it (default 0,1, the range of --dataset)",
    )
    remote.add_argument(
        "--save-student",
        default=None,
        metavar="PATH",
        help="where the student is saved (TorchScript .pt on PyTorch, .keras on TensorFlow; default: student.pt or "
        "student.keras in --out, else in the current folder)",
    )
    p.add_argument("--data", default=None, help="data root holding mnist/ (default: $ART_EXT_DATA)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_common_arguments(p)
    p.set_defaults(run=run, validate_args=check)


def check(args: argparse.Namespace) -> None:
    """Everything that can be checked before training or querying."""
    from art_ext.cli.options import CommandError

    if args.out:
        check_out_dir(args.out)
    remote_only = {"--ledger": args.ledger, "--rate-limit": args.rate_limit, "--header": args.header or None}
    remote_only["--clip-values"] = args.clip_values
    if args.victim is None:
        given = [k for k, v in remote_only.items() if v is not None]
        if given:
            raise CommandError(f"{', '.join(given)} only apply to a deployed victim: add --victim URL.")
        return
    if args.victim_epochs is not None or args.logits:
        raise CommandError("--victim-epochs and --logits describe a trained victim: drop them with --victim URL.")
    from art_ext.cli.experiments.dfme import parse_clip_values, parse_headers

    parse_headers(args.header)
    parse_clip_values(args.clip_values)
    if not args.victim.startswith(("http://", "https://")):
        raise CommandError(f"--victim must be an http:// or https:// URL, got {args.victim!r}.")


def run(args: argparse.Namespace) -> int:
    from art_ext.utils import markdown_table, set_seed

    set_seed(args.seed, args.framework)
    if args.victim is not None:
        from art_ext.cli.experiments.dfme import steal_endpoint

        return steal_endpoint(args, QUICK_BUDGET)
    data = load_dataset(args.dataset, args.framework, args.data)
    (x_train, y_train), (x_test, y_test), _, _ = data
    epochs = args.victim_epochs
    if args.quick and epochs is None:
        epochs = max(1, VICTIM_EPOCHS[args.dataset] // 2)
    if args.quiet:
        status(f"training the victim ({epochs or VICTIM_EPOCHS[args.dataset]} epochs)")
    victim = train_victim(
        args.framework,
        args.dataset,
        data,
        epochs,
        seed=args.seed,
        probabilities=not args.logits,
        verbose=not args.quiet,
    )
    kwargs = {}
    if args.diversity_weight is not None:
        kwargs["diversity_weight"] = args.diversity_weight
    if args.batch_size is not None:
        kwargs["batch_size"] = args.batch_size
    budget = min(args.budget, QUICK_BUDGET) if args.quick else args.budget
    n_val = 300 if args.dataset == "digits" else 2000  # held-out training images track the student
    status(f"stealing the victim with DFME ({budget:,} queries)")
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
    headers = [
        "dataset",
        "framework",
        "queries",
        "victim acc",
        "student acc",
        "ratio",
        "seconds",
        "share of time in victim queries",
    ]
    print(markdown_table(headers, [row], floatfmt=".3f"))
    if args.out:
        from art_ext.utils.report import Report

        report = Report(args.out, f"art-ext dfme ({args.dataset}, {args.framework})")
        report.table(headers, [row], ".3f")
        print(f"report written to {report.write()}")
    return 0
