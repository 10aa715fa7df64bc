"""
The DFME ablation of ``benchmarks/dfme_mnist.py --ablation`` (Truong et al. 2021, Sec. 5): art_ext's
``DataFreeModelExtraction`` (its defaults otherwise) against the LeNet-5 MNIST victim exposing probabilities, for each
``loss`` x ``n_directions`` x seed, recording per run:

- ``student_accuracy`` and ``student_victim_ratio`` on the MNIST test set (measured outside the thief);
- ``generator_queries`` / ``generator_share``: the queries the generator steps sent (the attack sends each generator
  step's ``batch_size * (n_directions + 1)`` inputs in one ``predict`` call and each student step's ``batch_size`` in
  another, so calls larger than ``batch_size`` are the generator's), over all queries;
- the error of logit recovery: the victim is ours, so on a sample of the generated queries (the first
  ``PROBE_ROWS`` inputs of every ``PROBE_EVERY``-th ``predict`` call) the logits the attack recovers from the
  probabilities (``log max(p, probability_floor)`` minus its per-sample mean, the attack's defaults) are compared
  with the victim's true logits minus their per-sample mean (the two agree up to the floor and float32 rounding,
  since softmax ignores a per-sample shift). ``logit_mae`` is the mean absolute difference per logit,
  ``logit_rel_error`` its sum over the sum of the centred true logits' absolute values, ``logit_max_error`` the
  largest difference seen and ``floored_share`` the share of probed inputs with a probability under the floor.

Rows are keyed ``<loss>-m<n_directions>-seed<seed>`` in ``benchmarks/results/dfme_<dataset>_ablation_<budget>.json``;
``--resume`` keeps the rows already there (runs differing only in ``--seeds``, ``--loss``, ``--directions`` add rows).

``--dataset digits28`` is the second 28x28 data set: scikit-learn's handwritten digits (UCI, 1,797 images of 8x8 from
other writers than MNIST's, 1,437 train / 360 test), upsampled bilinearly to 28x28, with a LeNet-5 victim trained on
them for 30 epochs by default; the attack, student and generator are those of the MNIST runs.
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import Run  # noqa: E402

#: every PROBE_EVERY-th predict call has its first PROBE_ROWS inputs compared with the victim's true logits
PROBE_EVERY, PROBE_ROWS = 5, 128
_VICTIMS: dict = {}
DATASET_NAMES = {"mnist": "MNIST", "digits28": "digits (8x8 upsampled to 28x28)"}
PAPER = {
    "citation": "Truong et al., Data-Free Model Extraction, CVPR 2021, Sec. 5 (l1 vs KL, logit recovery, m)",
    "loss": "l1 on recovered logits (the paper's choice; KL's gradients vanish as the student nears the victim)",
    "n_directions": 1,
}


class QueryProbe:
    """Counts the generator's and the student's queries and measures the logit recovery on a sample of them."""

    def __init__(self, logits_victim, batch_size: int, floor: float, correction: str) -> None:
        self.logits_victim, self.batch_size, self.floor, self.correction = logits_victim, batch_size, floor, correction
        self.calls = self.generator_queries = self.student_queries = self.probed = self.floored = 0
        self.abs_error = self.abs_true = self.max_error = 0.0
        self.values = 0
        self.seconds = 0.0

    def recovered(self, p: np.ndarray) -> np.ndarray:
        """The attack's recovery: ``log max(p, floor)`` minus its mean (or min) per sample, in float32."""
        logp = np.log(np.clip(p.astype(np.float32), self.floor, 1.0))
        if self.correction == "mean":
            logp = logp - logp.mean(axis=1, keepdims=True)
        elif self.correction == "min":
            logp = logp - logp.min(axis=1, keepdims=True)
        return logp

    def __call__(self, x: np.ndarray, p: np.ndarray) -> None:
        self.calls += 1
        if len(x) > self.batch_size:
            self.generator_queries += len(x)
        else:
            self.student_queries += len(x)
        if (self.calls - 1) % PROBE_EVERY:
            return
        start = time.perf_counter()
        z = self.logits_victim.predict(x[:PROBE_ROWS], batch_size=PROBE_ROWS).astype(np.float64)
        z -= z.mean(axis=1, keepdims=True)
        diff = np.abs(self.recovered(p[:PROBE_ROWS]).astype(np.float64) - z)
        self.abs_error += float(diff.sum())
        self.abs_true += float(np.abs(z).sum())
        self.max_error = max(self.max_error, float(diff.max()))
        self.values += diff.size
        self.probed += len(z)
        self.floored += int(np.sum((p[:PROBE_ROWS] < self.floor).any(axis=1)))
        self.seconds += time.perf_counter() - start

    def summary(self) -> dict:
        total = self.generator_queries + self.student_queries
        return {
            "generator_queries": self.generator_queries,
            "generator_share": round(self.generator_queries / max(total, 1), 4),
            "probed_queries": self.probed,
            "logit_mae": round(self.abs_error / max(self.values, 1), 5),
            "logit_rel_error": round(self.abs_error / max(self.abs_true, 1e-12), 5),
            "logit_max_error": round(self.max_error, 4),
            "floored_share": round(self.floored / max(self.probed, 1), 4),
        }


def whole_batch_victim(victim, meter, probe: QueryProbe):
    """An ART BlackBoxClassifier around the victim handing each ``predict`` call to the victim whole (ART's
    ``BlackBoxClassifier`` would cut it into ``batch_size`` chunks, hiding which step sent it); drives the meter
    and the probe (their time excluded from the thief's)."""
    from art.estimators.classification import BlackBoxClassifier

    class WholeBatch(BlackBoxClassifier):
        def predict(self, x, batch_size=128, **kwargs):
            return super().predict(x, batch_size=max(len(x), 1), **kwargs)

    def predict(x):
        out = victim.predict(x, batch_size=max(len(x), 1))
        start = time.perf_counter()
        probe(x, out)
        meter.paused += time.perf_counter() - start
        meter.count(len(x))
        return out

    return WholeBatch(
        predict, input_shape=victim.input_shape, nb_classes=victim.nb_classes, clip_values=victim.clip_values
    )


def load_digits28() -> tuple:
    """scikit-learn's 8x8 digits upsampled bilinearly to ``(1, 28, 28)`` in [0, 1]: ``(train), (test), 0, 1``."""
    import torch

    from art_ext.data import load_digits

    (x_train, y_train), (x_test, y_test), _, _ = load_digits(channels_first=True)

    def up(x):
        out = torch.nn.functional.interpolate(torch.as_tensor(x), size=(28, 28), mode="bilinear", align_corners=False)
        return out.clamp(0.0, 1.0).numpy().astype(np.float32)

    return (up(x_train), y_train), (up(x_test), y_test), 0.0, 1.0


def ablation_row(data_dir, budget, seed, every, victim_epochs, loss, directions, dataset="mnist") -> dict:
    """One DFME run (PyTorch, LeNet-5 student, ``generator_28x28``) with `loss` and `directions` against the LeNet-5
    victim of `dataset` (``mnist`` or ``digits28``); see the module."""
    from dfme_mnist import Meter, finish

    from art_ext.attacks.extraction import DataFreeModelExtraction
    from art_ext.cli.dfme import load_dataset, train_victim
    from art_ext.estimators.classification.utils import to_probability_classifier
    from art_ext.models import ARCHITECTURES, build_generator, build_model, make_classifier, make_generator
    from art_ext.utils import set_seed

    if (dataset, seed, victim_epochs) not in _VICTIMS:  # the rows of one process share their seed's victim
        set_seed(seed, "pytorch")
        data = load_digits28() if dataset == "digits28" else load_dataset("mnist", "pytorch", data_dir)
        # "mnist" names the victim's architecture (LeNet-5 on 28x28), the data are `dataset`'s
        victim = train_victim("pytorch", "mnist", data, victim_epochs, seed=seed, probabilities=False)
        _VICTIMS[(dataset, seed, victim_epochs)] = victim, data[1]
    logits_victim, (x_test, y_test) = _VICTIMS[(dataset, seed, victim_epochs)]
    victim = to_probability_classifier(logits_victim)  # shares the weights: the true logits stay at hand
    victim_accuracy = float(np.mean(victim.predict(x_test, batch_size=512).argmax(1) == y_test))
    student = make_classifier(build_model("lenet5", "pytorch", seed=seed + 1), input_shape=ARCHITECTURES["lenet5"][0])
    generator = make_generator(build_generator("generator_28x28", "pytorch", seed=seed + 2))

    def evaluate():
        return np.mean(student.predict(x_test, batch_size=1024).argmax(1) == y_test)

    meter = Meter(evaluate, every, victim_accuracy)
    defaults = attack_defaults()
    probe = QueryProbe(
        logits_victim, defaults["batch_size"], defaults["probability_floor"], defaults["logit_correction"]
    )
    attack = DataFreeModelExtraction(
        whole_batch_victim(victim, meter, probe),
        generator,
        max_queries=budget,
        n_directions=directions,
        loss=loss,
        random_state=seed,
        verbose=False,
    )
    attack.extract(thieved_classifier=student)
    seconds = meter.seconds
    meter.measure()
    name = f"art_ext pytorch, loss {loss}, m={directions}"
    row = finish(name, victim_accuracy, meter, seconds, attack.queries_used, "none", victim_accuracy)
    del row["defence"], row["defended_victim_accuracy"]
    student_accuracy = float(evaluate())
    return dict(
        row,
        dataset=dataset,
        seed=seed,
        loss=loss,
        n_directions=directions,
        budget=budget,
        student_accuracy=round(student_accuracy, 4),
        **probe.summary(),
    )


def attack_defaults() -> dict:
    """The defaults of ``DataFreeModelExtraction``'s parameters."""
    import inspect

    from art_ext.attacks.extraction import DataFreeModelExtraction

    params = inspect.signature(DataFreeModelExtraction.__init__).parameters.values()
    return {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}


def check_loss(loss: str) -> str | None:
    """None when the attack accepts `loss`, else its message (asked before any training: untrained tiny models)."""
    from art_ext.attacks.extraction import DataFreeModelExtraction
    from art_ext.models import ARCHITECTURES, build_generator, build_model, make_classifier, make_generator

    victim = make_classifier(build_model("lenet5", "pytorch", seed=0), input_shape=ARCHITECTURES["lenet5"][0])
    generator = make_generator(build_generator("generator_28x28", "pytorch", seed=0))
    try:
        DataFreeModelExtraction(victim, generator, loss=loss, verbose=False)
    except ValueError as error:
        return str(error)
    return None


def run_ablation(args, command_argv) -> int:
    """Every ``--seeds`` x ``--loss`` x ``--directions`` run, resumable; prints the table."""
    import argparse

    seeds = [int(s) for s in args.seeds.split(",")]
    losses = [s.strip() for s in args.loss.split(",")]
    directions = [int(m) for m in args.directions.split(",")]
    every = args.every or max(7 * 256, args.budget // 20)
    here = os.path.dirname(os.path.abspath(__file__))
    name = f"dfme_{args.dataset}_ablation_{args.budget}"
    out = args.out or os.path.join(here, "results", f"{name}.json")
    config = argparse.Namespace(
        out=out,
        fresh=not args.resume,
        data=args.data,
        quick=False,
        budget=args.budget,
        every=every,
        victim_epochs=args.victim_epochs,
        **({"dataset": args.dataset} if args.dataset != "mnist" else {}),
        seeds=args.seeds,
        loss=args.loss,
        directions=args.directions,
    )
    notes = (
        "art_ext's DataFreeModelExtraction with its defaults but loss and n_directions, PyTorch, no validation data; "
        f"student measured on the {DATASET_NAMES[args.dataset]} test set outside the thief. Logit-recovery error on a sample of the generated "
        f"queries (the first {PROBE_ROWS} inputs of every {PROBE_EVERY}th victim call) against the victim's true "
        "logits, both centred per sample."
    )
    argv, sys.argv = sys.argv, command_argv  # the command the result file records
    try:
        run = Run(name, config, PAPER, notes, selectors=("seeds", "loss", "directions"))
    finally:
        sys.argv = argv
    run.data["budget"] = args.budget
    for seed in seeds:
        for loss in losses:
            for m in directions:
                run.row(
                    f"{loss}-m{m}-seed{seed}",
                    lambda seed=seed, loss=loss, m=m: ablation_row(
                        args.data, args.budget, seed, every, args.victim_epochs, loss, m, args.dataset
                    ),
                )
    run.finish()
    for r in run.rows:
        print(
            f"{r['key']:>16}  acc {r['student_accuracy']:.4f} ({r['student_victim_ratio']:.3f}x)  "
            f"generator {r['generator_share']:.3f}  logit MAE {r['logit_mae']:.4f}  {r['seconds']:.0f} s"
        )
    return 0
