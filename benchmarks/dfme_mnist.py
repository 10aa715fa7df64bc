"""
DFME on MNIST: a LeNet-5 victim exposing probabilities, stolen data-free at a fixed query budget (paper: 2M), with
and without ART's postprocessing defences, against ART's KnockoffNets fed random-noise queries at the same budget.

Run by hand (not by CI); needs the MNIST IDX files in ``$ART_EXT_DATA/mnist`` or ``--data``::

    python benchmarks/dfme_mnist.py --framework pytorch                 # 2M queries per row (hours on a CPU)
    python benchmarks/dfme_mnist.py --framework pytorch --quick         # 100k queries, two defences, minutes

Prints a markdown table: victim accuracy, student accuracy, their ratio, wall time and the share of it spent inside
victim queries.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

DEFENCES = {
    "ReverseSigmoid": {"beta": 1.0, "gamma": 0.1},
    "Rounded": {"decimals": 2},
    "HighConfidence": {"cutoff": 0.1},
    "GaussianNoise": {"scale": 0.05},
}


def knockoff_random_noise(victim, framework, shape, x_test, y_test, budget, seed, chunk=50_000):
    """ART's KnockoffNets (random sampling) on uniform-noise queries, fed in chunks so memory stays bounded."""
    from art.attacks.extraction import KnockoffNets

    from art_ext.models import build_model, make_classifier

    student = make_classifier(build_model("lenet5", framework, seed=seed + 1), input_shape=shape)
    rng = np.random.default_rng(seed)
    start, used = time.perf_counter(), 0
    while used < budget:
        n = min(chunk, budget - used)
        x = rng.uniform(0.0, 1.0, size=(n,) + tuple(shape)).astype(np.float32)
        attack = KnockoffNets(
            victim,
            batch_size_fit=256,
            batch_size_query=1024,
            nb_epochs=1,
            nb_stolen=n,
            sampling_strategy="random",
            use_probability=True,
            verbose=False,
        )
        attack.extract(x, thieved_classifier=student)
        used += n
    seconds = time.perf_counter() - start
    acc = float(np.mean(student.predict(x_test, batch_size=1024).argmax(1) == y_test))
    return acc, seconds, used


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--framework", choices=["pytorch", "tensorflow"], default="pytorch")
    parser.add_argument("--budget", type=int, default=None, help="queries per row (default 2M, 100k with --quick)")
    parser.add_argument("--quick", action="store_true", help="100k queries, ReverseSigmoid and Rounded only")
    parser.add_argument("--defences", default=None, help=f"comma-separated subset of {','.join(DEFENCES)} or 'none'")
    parser.add_argument("--no-knockoff", action="store_true", help="skip the KnockoffNets baseline")
    parser.add_argument("--diversity-weight", type=float, default=None)
    parser.add_argument("--data", default=None, help="data root holding mnist/ (default: $ART_EXT_DATA)")
    parser.add_argument("--victim-epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import art.defences.postprocessor as post

    from art_ext.cli.dfme import load_dataset, steal, train_victim
    from art_ext.models import ARCHITECTURES, to_probability_classifier
    from art_ext.utils import markdown_table, set_seed

    budget = args.budget or (100_000 if args.quick else 2_000_000)
    if args.defences == "none":
        defences = []
    elif args.defences:
        defences = [d.strip() for d in args.defences.split(",") if d.strip()]
    else:
        defences = ["ReverseSigmoid", "Rounded"] if args.quick else list(DEFENCES)
    set_seed(args.seed, args.framework)
    data = load_dataset("mnist", args.framework, args.data)
    (x_train, y_train), (x_test, y_test), _, _ = data
    x_val, y_val = x_train[-2000:], y_train[-2000:]  # tracks and selects the student; the test set only measures
    victim = train_victim(args.framework, "mnist", data, args.victim_epochs, seed=args.seed, probabilities=True)
    kwargs = {} if args.diversity_weight is None else {"diversity_weight": args.diversity_weight}
    rows = []
    for name in ["none"] + defences:
        target = victim
        if name != "none":
            target = to_probability_classifier(victim)
            target.set_params(postprocessing_defences=[getattr(post, name)(**DEFENCES[name])])
        target_acc = float(np.mean(target.predict(x_test, batch_size=1024).argmax(1) == y_test))
        result = steal(
            target,
            args.framework,
            "mnist",
            x_val,
            y_val,
            budget,
            seed=args.seed,
            x_test=x_test,
            y_test=y_test,
            **kwargs,
        )
        attack = result["attack"]
        rows.append(
            [
                f"DFME, defence: {name}",
                attack.queries_used,
                target_acc,
                result["student_accuracy"],
                result["student_accuracy"] / target_acc,
                result["seconds"],
                attack.victim_query_seconds / max(result["seconds"], 1e-9),
            ]
        )
        print(markdown_table(HEADERS, rows[-1:], floatfmt=".3f"), flush=True)
    if not args.no_knockoff:
        shape = ARCHITECTURES["lenet5"][0 if args.framework == "pytorch" else 1]
        acc, seconds, used = knockoff_random_noise(victim, args.framework, shape, x_test, y_test, budget, args.seed)
        rows.append(
            [
                "KnockoffNets, random noise",
                used,
                victim.test_accuracy,
                acc,
                acc / victim.test_accuracy,
                seconds,
                float("nan"),
            ]
        )
    print(f"\nDFME on MNIST, LeNet-5 victim, {args.framework}, budget {budget:,} queries per row, seed {args.seed}\n")
    print(markdown_table(HEADERS, rows, floatfmt=".3f"))
    return 0


HEADERS = ["attack", "queries", "victim acc", "student acc", "ratio", "seconds", "victim share"]

if __name__ == "__main__":
    sys.exit(main())
