"""``art-ext vat``: semi-supervised VAT on digits (or embedding-space AT/VAT on a tiny text corpus)."""

from __future__ import annotations

import argparse

from art_ext.cli.main import add_framework_argument


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("vat", help="virtual adversarial training: VAT vs supervised only on digits, or text AT/VAT")
    add_framework_argument(p)
    p.add_argument("--labels", type=int, default=50, help="number of labelled digits (default 50)")
    p.add_argument("--epochs", type=int, default=None, help="passes over the training data (default 40, text 8)")
    p.add_argument("--eps", type=float, default=None, help="perturbation norm (default: 0.25 x median input norm)")
    p.add_argument("--xi", type=float, default=None, help="power-iteration radius (default: 0.25 x median norm)")
    p.add_argument("--entmin", action="store_true", help="add entropy minimisation (VAT+EntMin)")
    p.add_argument("--text", action="store_true", help="run baseline/AT/VAT on the built-in synthetic text corpus")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from art_ext.utils.markdown import markdown_table
    from art_ext.utils.seed import set_seed

    set_seed(args.seed, args.framework)
    if args.text:
        rows = text_comparison(args.framework, nb_epochs=args.epochs or 8, seed=args.seed, eps=args.eps, xi=args.xi)
        print(markdown_table(["training", "clean acc.", "acc. under AT perturbation", "LDS"], rows, floatfmt=".3f"))
        return 0
    from art_ext.cli.sections.vat import compare_on_digits
    from art_ext.data import load_digits

    digits = load_digits(channels_first=args.framework == "pytorch")
    res = compare_on_digits(
        args.framework,
        digits,
        args.labels,
        nb_epochs=args.epochs or 40,
        seed=args.seed,
        entropy_minimization=args.entmin,
        eps=args.eps,
        xi=args.xi,
    )
    name = "VAT+EntMin" if args.entmin else "VAT"
    print(f"digits, {args.labels} labels, eps={res['eps']:.3f}, xi={res['xi']:.3f}, {args.framework}")
    print(
        markdown_table(
            ["training", "test accuracy"], [["supervised only", res["supervised"]], [name, res["vat"]]], floatfmt=".3f"
        )
    )
    return 0


def text_comparison(
    framework: str, nb_epochs: int = 8, seed: int = 0, eps: float | None = None, xi: float | None = None
) -> list[list]:
    """Baseline, AT and VAT on the synthetic corpus: clean accuracy, accuracy under AT perturbation, LDS."""
    import numpy as np

    from art_ext.data import make_synthetic_sentiment
    from art_ext.defences.trainer import VirtualAdversarialTrainer
    from art_ext.models import build_text_model, make_text_classifier

    (x_train, y_train), (x_test, y_test), vocab = make_synthetic_sentiment(seed=seed)
    settings = {"baseline": {"alpha": 0.0}, "AT": {"alpha": 0.0, "adversarial_weight": 1.0}, "VAT": {"alpha": 1.0}}
    rows, scale = [], None
    for name, kwargs in settings.items():
        model = build_text_model(
            "text_cnn", framework, len(vocab), vocab.counts, embedding_dim=16, seed=seed, filters=16
        )
        clf = make_text_classifier(model, max_len=x_train.shape[1], learning_rate=0.01)
        trainer = VirtualAdversarialTrainer(clf, eps=eps, xi=xi, random_state=seed, verbose=False, **kwargs)
        trainer.fit(x_train, y_train, nb_epochs=nb_epochs, batch_size=32)
        scale = scale or (trainer.eps_, trainer.xi_)
        adv = clf.adversarial_embeddings(x_test, scale[0], y=y_test)
        probe = VirtualAdversarialTrainer(clf, eps=scale[0], xi=scale[1], random_state=seed + 1, verbose=False)
        rows.append(
            [
                name,
                float(np.mean(clf.predict(x_test).argmax(1) == y_test)),
                float(np.mean(clf.predict_embeddings(adv, x_test).argmax(1) == y_test)),
                probe.virtual_adversarial_loss(x_test),
            ]
        )
    return rows
