"""
Time of ``art_ext.evaluations.audit`` on an MNIST LeNet-5, section by section: each section's time estimate (printed
before it starts, from the cost model timed on the model) against the time it took. Not a timed test: the numbers
depend on the machine and its load, which the result file records.

The audited sample is 500 test images (as ``art-ext audit --sample-size 500``); the spare data (the transfer
surrogate's training set) is the rest of the training split. ``--budget-minutes`` defaults to none: the audit's
default sizes; ``--budget-minutes 5`` is the README's command.

Usage::

    python benchmarks/audit_mnist.py --framework pytorch --data <data root>
    python benchmarks/audit_mnist.py --framework pytorch --data <data root> --budget-minutes 5
    python benchmarks/audit_mnist.py --quick

Writes benchmarks/results/audit_mnist[_budget<N>][_tensorflow].json.
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import Run, parser  # noqa: E402

PAPER = {
    "citation": "art_ext issue 24: each section's estimated time within 30% of its actual time",
    "estimate_tolerance": 0.3,
}


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__.split("\n\n")[0])
    p.add_argument("--budget-minutes", type=float, default=None, help="the audit's cap (default: none)")
    p.add_argument("--sample-size", type=int, default=500)
    p.add_argument("--train-size", type=int, default=20000)
    p.add_argument("--epochs", type=int, default=3)
    args = p.parse_args(argv)
    if args.quick:
        args.sample_size, args.train_size, args.epochs = 100, 5000, 1
        args.budget_minutes = args.budget_minutes or 2.0

    from art_ext.data import load_mnist
    from art_ext.evaluations import audit
    from art_ext.models import ARCHITECTURES, build_model, make_classifier
    from art_ext.utils.seed import set_seed

    fw = args.framework
    name = "audit_mnist"
    if args.budget_minutes is not None and not args.quick:
        name += f"_budget{args.budget_minutes:g}"
    run = Run(
        name + ("" if fw == "pytorch" else "_tensorflow"),
        args,
        PAPER,
        notes="Estimated: the time the audit printed before the section started (its cost model, timed on the model, "
        "times the slowdown measured on the sections before it); actual: the time the section took. The machine's "
        "load (other jobs) is not controlled: `machine` records the CPU count, and the load average at the start is "
        "in the total row.",
    )
    set_seed(args.seed, fw)
    (x_train, y_train), (x_test, y_test), _, _ = load_mnist(channels_first=fw == "pytorch")
    rng = np.random.default_rng(args.seed)
    idx = rng.permutation(len(x_train))
    x_fit, y_fit = x_train[idx[: args.train_size]], y_train[idx[: args.train_size]]
    x_spare, y_spare = x_train[idx[args.train_size :]], y_train[idx[args.train_size :]]
    sample = rng.choice(len(x_test), args.sample_size, replace=False)
    clf = make_classifier(
        build_model("lenet5", fw, seed=args.seed), ARCHITECTURES["lenet5"][0 if fw == "pytorch" else 1]
    )
    start = time.perf_counter()
    clf.fit(x_fit, y_fit, nb_epochs=args.epochs, batch_size=128, verbose=False)
    accuracy = float(np.mean(clf.predict(x_test, batch_size=512).argmax(1) == y_test))
    print(f"[{name}] LeNet-5: {accuracy:.1%} test accuracy after {time.perf_counter() - start:.0f} s", flush=True)
    load = _load_average()
    start = time.perf_counter()
    report = audit(
        clf,
        x_test[sample],
        y_test[sample],
        x_spare=x_spare,
        y_spare=y_spare,
        budget_minutes=args.budget_minutes,
        seed=args.seed,
        verbose=True,
    )
    total = time.perf_counter() - start
    for s in report.sections:
        actual, estimated = float(s.seconds), float(s.estimated_seconds)
        ratio = actual / estimated if estimated > 0 else None
        run.row(
            s.key,
            lambda s=s, a=actual, e=estimated, r=ratio: {
                "section": s.title,
                "status": s.status,
                "estimated_s": round(e, 1),
                "actual_s": round(a, 1),
                "actual_over_estimated": None if r is None else round(r, 3),
                "within_30pct": None if r is None else bool(abs(r - 1.0) <= PAPER["estimate_tolerance"]),
                "shrunk": "; ".join(s.shrunk),
                "seconds": round(a, 1),
            },
        )
        for attack, t in (s.results.get("seconds_by_attack") or {}).items():  # the robustness section, per attack
            ratio = t["actual_s"] / t["estimated_s"] if t["estimated_s"] > 0 else None
            run.row(
                f"{s.key}/{attack}",
                lambda s=s, a=attack, t=t, r=ratio: {
                    "section": f"{s.title}: {a} (part of the row above)",
                    "status": s.status,
                    "estimated_s": round(t["estimated_s"], 1),
                    "actual_s": round(t["actual_s"], 1),
                    "actual_over_estimated": None if r is None else round(r, 3),
                    "within_30pct": None if r is None else bool(abs(r - 1.0) <= PAPER["estimate_tolerance"]),
                    "shrunk": "",
                    "seconds": round(t["actual_s"], 1),
                },
            )
    run.row(
        "total",
        lambda: {
            "section": "whole audit",
            "model_test_accuracy": accuracy,
            "audited_inputs": args.sample_size,
            "budget_minutes": args.budget_minutes,
            "estimated_s": round(sum(float(s.estimated_seconds) for s in report.sections), 1),
            "actual_s": round(total, 1),
            "load_average_at_start": load,
            "seconds": round(total, 1),
        },
    )
    run.finish()
    return 0


def _load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):
        return None


if __name__ == "__main__":
    sys.exit(main())
