"""
rt-polarity sentence classification with baseline, embedding-space AT and VAT (Miyato, Dai & Goodfellow 2017),
on the fixed, seeded 90/10 split of :func:`art_ext.data.load_rt_polarity` (split seed 0, vocabulary built on the
training split), over several model seeds. VAT uses the test sentences' text as unlabelled data only with
``--transductive``. ``--eps`` takes several values (``auto``: the trainer's default) to sweep the perturbation norm.

    python benchmarks/vat_text.py --framework pytorch --data <data root> --seeds 0,1,2
    python benchmarks/vat_text.py --quick

Writes benchmarks/results/vat_text.json (resumable: finished (method, eps, seed) rows are kept).
"""

from __future__ import annotations

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import Run, parser  # noqa: E402

PAPER = {
    "citation": "Miyato, Dai and Goodfellow, Adversarial Training Methods for Semi-Supervised Text "
    "Classification, ICLR 2017 (Rotten Tomatoes, LSTM with a pretrained language model)",
    "claim": "adversarial training on word embeddings beats the baseline on sentence polarity",
    "eps": "5.0 on the normalised embeddings",
    "scale": "a 1024-unit LSTM on 256-d embeddings, initialised from a language model pretrained on unlabelled reviews",
}


def _eps(value: str) -> float | None:
    return None if value == "auto" else float(value)


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__)
    p.add_argument("--architecture", choices=["text_lstm", "text_cnn"], default="text_lstm")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--max-len", type=int, default=40)
    p.add_argument("--vocab-size", type=int, default=10000)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--seeds", default=None, help="comma-separated model seeds (default: --seed)")
    p.add_argument("--eps", default="auto", help="comma-separated eps values of AT and VAT ('auto': trainer default)")
    p.add_argument("--methods", default="baseline,AT,VAT")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--transductive", action="store_true", help="use the test sentences as unlabelled data")
    args = p.parse_args(argv)
    if args.quick:
        args.epochs, args.dim = 2, 64

    from art_ext.data import load_rt_polarity
    from art_ext.defences.trainer import VirtualAdversarialTrainer
    from art_ext.models import build_text_model, make_text_classifier
    from art_ext.utils.markdown import markdown_table

    seeds = [int(s) for s in (args.seeds or str(args.seed)).split(",")]
    eps_values = [_eps(e) for e in args.eps.split(",")]
    run = Run(
        "vat_text" + ("" if args.framework == "pytorch" else "_tensorflow"),
        args,
        PAPER,
        notes="Models trained from scratch (no pretrained language model, no unlabelled corpus), so absolute "
        "accuracies are below the paper's; the target is the ordering: AT and VAT above the baseline in mean "
        "accuracy over the seeds. eps 0.5 (the trainer's text default) was fixed before the three-seed run; the "
        "other eps rows are a one-seed sweep (seed 0) plus the paper's 5.0, which leaves AT at chance here.",
        selectors=("seed", "seeds", "eps", "methods"),
    )
    run.data["seeds"] = seeds
    (x_train, y_train), (x_test, y_test), vocab = load_rt_polarity(
        max_len=args.max_len, vocab_size=args.vocab_size, seed=0
    )
    if args.quick:
        keep = np.random.default_rng(0).permutation(len(x_train))[:3000]  # the split is sorted by label
        x_train, y_train = x_train[keep], y_train[keep]
    settings = {"baseline": {"alpha": 0.0}, "AT": {"alpha": 0.0, "adversarial_weight": 1.0}, "VAT": {"alpha": 1.0}}

    def train(name: str, eps: float | None, seed: int) -> dict:
        kwargs = settings[name]
        model = build_text_model(
            args.architecture, args.framework, len(vocab), vocab.counts, embedding_dim=args.dim, seed=seed
        )
        clf = make_text_classifier(model, max_len=args.max_len, learning_rate=1e-3)
        trainer = VirtualAdversarialTrainer(clf, eps=eps, random_state=seed, **kwargs)
        x_unl = np.concatenate([x_train, x_test]) if (args.transductive and kwargs["alpha"]) else None
        trainer.fit(x_train, y_train, x_unlabeled=x_unl, nb_epochs=args.epochs, batch_size=args.batch_size)
        acc = float(np.mean(clf.predict(x_test).argmax(1) == y_test))
        return {
            "method": name,
            "eps": "auto" if eps is None else eps,
            "seed": seed,
            "accuracy": acc,
            "eps_used": None if name == "baseline" else trainer.eps_,
            "median_norm": trainer.median_norm(x_train),
        }

    for seed in seeds:
        for name in args.methods.split(","):
            for eps in [None] if name == "baseline" else eps_values:
                key = f"{name}/eps={'auto' if eps is None else eps}/seed={seed}"
                run.row(key, lambda n=name, e=eps, s=seed: train(n, e, s))

    run.data["seeds"] = sorted({r["seed"] for r in run.rows})
    summary = {}
    for r in run.rows:
        summary.setdefault((r["method"], str(r["eps"])), []).append(r["accuracy"])
    table = [
        {"method": m, "eps": e, "seeds": len(a), "mean_accuracy": float(np.mean(a)), "std": float(np.std(a))}
        for (m, e), a in summary.items()
    ]
    run.finish(
        setting=f"rt-polarity, fixed seeded split ({len(x_train)} train / {len(x_test)} test), {args.architecture}, "
        f"dim {args.dim}, max_len {args.max_len}, {args.epochs} epochs, {args.framework}",
        tables={"summary": table},
    )
    print(markdown_table(list(table[0]), [list(r.values()) for r in table], floatfmt=".4g"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
