"""
The table of Goodfellow, Shlens and Szegedy (2015) on MNIST at eps = 0.25, on their maxout network (``--architecture
maxout``: two dense maxout layers of 5 pieces with dropout, 240 units for the normal model and 1600 for the
adversarially trained one, as the paper enlarged it) or on LeNet-5 (``--architecture lenet5``): error under FGSM of a normally trained and of an FGSM-adversarially-trained model (their anchors: 89.4%
and 17.9%), the 2x2 transfer matrix (their text: 19.6% from the normal to the trained model, 40.9% the other way),
plus R+FGSM and the iterative least-likely class method.

    python benchmarks/fgsm_mnist.py --framework pytorch --data <data root> --architecture maxout
    python benchmarks/fgsm_mnist.py --framework pytorch --quick      # 10k training images, 2 epochs, 2k test images

Adversarial training follows the paper's objective: half of each batch replaced by FGSM examples crafted on the
current weights (ART's AdversarialTrainer, ratio 0.5). Attacks use the true labels, as in the paper. Writes
benchmarks/results/fgsm_mnist.json (resumable: trained weights and finished rows are kept).
"""

from __future__ import annotations

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import Run, parser, trained  # noqa: E402

PAPER = {
    "citation": "Goodfellow, Shlens and Szegedy, Explaining and Harnessing Adversarial Examples, ICLR 2015 "
    "(maxout network, MNIST, eps 0.25)",
    "fgsm_error": {"normal": 0.894, "FGSM-trained": 0.179},
    "transfer": {"normal -> FGSM-trained": 0.196, "FGSM-trained -> normal": 0.409},
    "scale": "a maxout network with dropout, full MNIST",
}


def maxout(framework: str, units: int, seed: int, pieces: int = 5, nb_classes: int = 10):
    """Goodfellow's permutation-invariant MNIST maxout network: dropout 0.2 on the input, two maxout layers of
    ``units`` x ``pieces`` with dropout 0.5, a softmax layer (logits here)."""
    from art_ext.utils.seed import set_seed

    set_seed(seed, framework)
    if framework == "pytorch":
        import torch
        from torch import nn

        class Maxout(nn.Module):
            def __init__(self, n_in: int) -> None:
                super().__init__()
                self.linear = nn.Linear(n_in, units * pieces)

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return self.linear(x).view(-1, units, pieces).amax(dim=-1)

        return nn.Sequential(
            nn.Flatten(), nn.Dropout(0.2), Maxout(784), nn.Dropout(0.5), Maxout(units), nn.Dropout(0.5),
            nn.Linear(units, nb_classes),
        )  # fmt: skip
    import keras

    def block(t):
        t = keras.layers.Dense(units * pieces)(t)
        return keras.layers.Lambda(lambda v: keras.ops.max(keras.ops.reshape(v, (-1, units, pieces)), axis=-1))(t)

    inp = keras.Input((28, 28, 1))
    t = keras.layers.Dropout(0.2)(keras.layers.Flatten()(inp))
    t = keras.layers.Dropout(0.5)(block(t))
    t = keras.layers.Dropout(0.5)(block(t))
    return keras.Model(inp, keras.layers.Dense(nb_classes)(t))


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__)
    p.add_argument("--eps", type=float, default=0.25)
    p.add_argument("--architecture", choices=["lenet5", "maxout"], default="maxout")
    p.add_argument("--units", type=int, default=240, help="maxout units per layer of the normal model")
    p.add_argument("--adv-units", type=int, default=1600, help="maxout units per layer of the FGSM-trained model")
    p.add_argument("--epochs", type=int, default=10, help="epochs of each model")
    p.add_argument(
        "--adv-epochs", type=int, default=None, help="epochs of the adversarially trained model (default: --epochs)"
    )
    p.add_argument("--n-train", type=int, default=None, help="training images (default: all 60k)")
    p.add_argument("--n-test", type=int, default=None, help="test images (default: all 10k)")
    p.add_argument("--plot", default=None, help="save the FGSM transfer heatmap there (PNG)")
    args = p.parse_args(argv)
    if args.quick:
        args.epochs, args.n_train, args.n_test = 2, args.n_train or 10000, args.n_test or 2000
    adv_epochs = args.adv_epochs or args.epochs

    from art.attacks.evasion import FastGradientMethod
    from art.defences.trainer import AdversarialTrainer

    from art_ext.attacks.evasion import LeastLikelyClassMethod, RandomFGSM
    from art_ext.data import load_mnist
    from art_ext.evaluations import transferability_matrix
    from art_ext.models import ARCHITECTURES, build_model, make_classifier
    from art_ext.utils import markdown_table

    run = Run(
        "fgsm_mnist" + ("" if args.framework == "pytorch" else "_tensorflow"),
        args,
        PAPER,
        notes="Adam instead of the paper's SGD schedule and early stopping (--architecture lenet5: LeNet-5 instead of "
        "the maxout network); adversarial training with ART's AdversarialTrainer (ratio 0.5, the paper's alpha), "
        "for --adv-epochs epochs. Where the FGSM-trained model's FGSM error lies far "
        "below its R+FGSM error, single-step adversarial training has masked the gradient (Tramer et al. 2018) "
        "rather than made the model robust, and its FGSM error is lower than the paper's for that reason.",
        selectors=("adv_epochs",),
    )
    (x_train, y_train), (x_test, y_test), _, _ = load_mnist(channels_first=args.framework == "pytorch")
    rng = np.random.default_rng(args.seed)
    if args.n_train:
        idx = rng.permutation(len(x_train))[: args.n_train]
        x_train, y_train = x_train[idx], y_train[idx]
    if args.n_test:
        x_test, y_test = x_test[: args.n_test], y_test[: args.n_test]
    shape = ARCHITECTURES["lenet5"][0 if args.framework == "pytorch" else 1]
    eps = args.eps

    def build(units: int, seed: int):
        if args.architecture == "lenet5":
            return build_model("lenet5", args.framework, seed=seed)
        return maxout(args.framework, units, seed)

    normal = make_classifier(build(args.units, args.seed), input_shape=shape)
    test_only = ("n_test", "plot")
    trained(
        run, "normal", normal, lambda: normal.fit(x_train, y_train, nb_epochs=args.epochs, batch_size=128), test_only
    )
    robust = make_classifier(build(args.adv_units, args.seed + 1), input_shape=shape)
    trained(
        run,
        f"fgsm_trained-{adv_epochs}",
        robust,
        lambda: AdversarialTrainer(robust, FastGradientMethod(robust, eps=eps, batch_size=256), ratio=0.5).fit(
            x_train, y_train, nb_epochs=adv_epochs, batch_size=128
        ),
        test_only,
    )
    models = {"normal": normal, "FGSM-trained": robust}

    def error(clf, x):
        return float(
            np.mean(np.concatenate([clf.predict(x[i : i + 1000]).argmax(1) for i in range(0, len(x), 1000)]) != y_test)
        )

    def model_row(name, clf):
        fgsm = FastGradientMethod(clf, eps=eps, batch_size=256).generate(x_test, y=y_test)
        rfgsm = RandomFGSM(clf, eps=eps, alpha=eps / 2, batch_size=256, random_state=args.seed, verbose=False)
        ll = LeastLikelyClassMethod(clf, eps=eps, batch_size=256, verbose=False)
        x_ll = ll.generate(x_test)
        return {
            "model": name,
            "clean_error": error(clf, x_test),
            "fgsm_error": error(clf, fgsm),
            "paper_fgsm_error": PAPER["fgsm_error"][name],
            "rfgsm_error": error(clf, rfgsm.generate(x_test, y_test)),
            "least_likely_error": error(clf, x_ll),
            "least_likely_reached": float(np.mean(clf.predict(x_ll).argmax(1) == ll.least_likely_class(x_test))),
        }

    rows = [
        run.row(f"model/{name}" + (f"-{adv_epochs}" if name != "normal" else ""), lambda n=name, c=clf: model_row(n, c))
        for name, clf in models.items()
    ]

    def transfer_rows():
        result = transferability_matrix(
            models, lambda clf: FastGradientMethod(clf, eps=eps, batch_size=256), x_test, y_test, verbose=False
        )
        return {"matrix": {s: {t: float(result.error_rates[i, j]) for j, t in enumerate(result.names)}
                           for i, s in enumerate(result.names)}}  # fmt: skip

    matrix = run.row(f"transfer-{adv_epochs}", transfer_rows)["matrix"]
    transfer = [
        {"crafted on": s, "evaluated on": t, "error": matrix[s][t], "paper_error": PAPER["transfer"].get(f"{s} -> {t}")}
        for s in matrix
        for t in matrix[s]
        if s != t
    ]
    network = "LeNet-5" if args.architecture == "lenet5" else f"maxout {args.units} / {args.adv_units} units x 5"
    run.finish(
        setting=f"MNIST, {network}, {args.framework}, {len(x_train)} training / {len(x_test)} test images, "
        f"{args.epochs} epochs (normal) and {adv_epochs} (FGSM-trained), FGSM eps {eps} (l-inf)",
        tables={"transfer": transfer},
    )
    print(markdown_table(list(rows[0])[1:], [list(r.values())[1:] for r in rows], floatfmt=".3f"))
    print(markdown_table(list(transfer[0]), [list(r.values()) for r in transfer], floatfmt=".3f"))
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        from art_ext.evaluations.transferability import TransferabilityResult

        names = list(matrix)
        TransferabilityResult(
            names, np.array([[matrix[s][t] for t in names] for s in names]), np.zeros(len(names)), len(x_test)
        ).plot(args.plot, title=f"FGSM eps {eps}, MNIST: error rate")
    return 0


if __name__ == "__main__":
    sys.exit(main())
