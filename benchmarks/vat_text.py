"""
rt-polarity sentence classification with baseline, embedding-space AT and VAT (Miyato, Dai & Goodfellow 2017),
on the fixed, seeded 90/10 split of :func:`art_ext.data.load_rt_polarity` (seed 0, vocabulary built on the
training split). VAT here uses the test sentences' text as unlabelled data only with ``--transductive``.

    ART_EXT_DATA=<data root> python benchmarks/vat_text.py --framework pytorch [--quick]
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--framework", choices=["pytorch", "tensorflow"], default="pytorch")
    p.add_argument("--architecture", choices=["text_lstm", "text_cnn"], default="text_lstm")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--max-len", type=int, default=40)
    p.add_argument("--vocab-size", type=int, default=10000)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--eps", type=float, default=None, help="default: 0.25 x median embedding-sequence norm")
    p.add_argument("--transductive", action="store_true", help="use the test sentences as unlabelled data")
    p.add_argument("--quick", action="store_true", help="2 epochs, 64-d embeddings, 3k training sentences")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    from art_ext.data import load_rt_polarity
    from art_ext.defences.trainer import VirtualAdversarialTrainer
    from art_ext.models import build_text_model, make_text_classifier
    from art_ext.utils.markdown import markdown_table

    (x_train, y_train), (x_test, y_test), vocab = load_rt_polarity(
        max_len=args.max_len, vocab_size=args.vocab_size, seed=0
    )
    if args.quick:
        args.epochs, args.dim = 2, 64
        keep = np.random.default_rng(0).permutation(len(x_train))[:3000]  # the split is sorted by label
        x_train, y_train = x_train[keep], y_train[keep]
    rows = []
    settings = {"baseline": {"alpha": 0.0}, "AT": {"alpha": 0.0, "adversarial_weight": 1.0}, "VAT": {"alpha": 1.0}}
    for name, kwargs in settings.items():
        model = build_text_model(
            args.architecture, args.framework, len(vocab), vocab.counts, embedding_dim=args.dim, seed=args.seed
        )
        clf = make_text_classifier(model, max_len=args.max_len, learning_rate=1e-3)
        trainer = VirtualAdversarialTrainer(clf, eps=args.eps, random_state=args.seed, **kwargs)
        start = time.perf_counter()
        x_unl = np.concatenate([x_train, x_test]) if (args.transductive and kwargs["alpha"]) else None
        trainer.fit(x_train, y_train, x_unlabeled=x_unl, nb_epochs=args.epochs, batch_size=64)
        acc = float(np.mean(clf.predict(x_test).argmax(1) == y_test))
        rows.append([name, acc, trainer.eps_, time.perf_counter() - start])
        print(f"{name}: accuracy {acc:.4f}", flush=True)
    print(
        f"\nrt-polarity, fixed seeded split ({len(x_train)} train / {len(x_test)} test), {args.architecture}, "
        f"dim {args.dim}, max_len {args.max_len}, {args.epochs} epochs, {args.framework}"
    )
    print(markdown_table(["training", "test accuracy", "eps", "seconds"], rows, floatfmt=".4g"))


if __name__ == "__main__":
    main()
