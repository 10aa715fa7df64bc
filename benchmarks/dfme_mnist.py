"""
DFME on MNIST, side by side in one run, against the same LeNet-5 victim exposing probabilities, at the same query
budget. The thieves (``--thieves``, comma-separated; all of them by default):

- ``art_ext-pytorch``, ``art_ext-tensorflow``: art_ext's ``DataFreeModelExtraction`` (its defaults, no validation
  data), LeNet-5 student, ``generator_28x28`` generator.
- ``reference``: a minimal reference-style loop written below (the paper's algorithm in plain PyTorch, for comparison
  only).
- ``art_ext-pytorch+reverse_sigmoid``, ``art_ext-pytorch+rounded``: the ``art_ext-pytorch`` thief (same defaults,
  student, generator and seed) against the same victim carrying one of ART's postprocessing defences with ART's
  defaults, set as the classifier's ``postprocessing_defences``: ``ReverseSigmoid()`` (beta 1.0, gamma 0.1) or
  ``Rounded()`` (3 decimals).
- ``knockoff-noise``: ART's ``KnockoffNets`` (random sampling strategy, ``use_probability=True``, ``nb_stolen`` = the
  budget; ``--knockoff-epochs`` epochs, default 10, at batch ``--knockoff-batch``, default 256) with the same PyTorch
  LeNet-5 student, on ``budget`` images drawn uniformly in [0, 1] (a data-free baseline at the same budget; at most
  500,000 queries, the images are held in memory). It queries everything, then trains: one point, after training.

Every student is measured on the MNIST test set at the same query counts (a curve; one point for ``knockoff-noise``),
and the queries and seconds each needs to reach 0.90x and 0.97x the victim's accuracy are reported. The ratio is
always taken against the *undefended* victim's test accuracy (``victim_accuracy``); ``defended_victim_accuracy`` is
the test accuracy of the victim as the thief queries it (``Rounded`` keeps the argmax but for the ties it creates,
``ReverseSigmoid`` may move it). The measurement is outside the attack (a callback of the victim's ``predict``), so
no thief sees any data; its time is excluded from the wall times.

Run by hand (not by CI); needs the MNIST IDX files in ``$ART_EXT_DATA/mnist`` or ``--data``::

    python benchmarks/dfme_mnist.py --budget 200000                       # every thief
    python benchmarks/dfme_mnist.py --budget 200000 --thieves art_ext-pytorch,reference
    python benchmarks/dfme_mnist.py --budget 200000 --resume \
        --thieves art_ext-pytorch+reverse_sigmoid,art_ext-pytorch+rounded,knockoff-noise

The ablation of the paper's Sec. 5 (``benchmarks/dfme_ablation.py``: loss, zeroth-order directions m, the
generator's share of queries, the error of logit recovery against the victim's true logits), art_ext's PyTorch thief
for every ``--seeds`` x ``--loss`` x ``--directions``, into ``benchmarks/results/dfme_mnist_ablation_<budget>.json``::

    python benchmarks/dfme_mnist.py --ablation --budget 200000 --seeds 0,1,2 --resume
    python benchmarks/dfme_mnist.py --ablation --budget 200000 --loss l1,kl --directions 1,2,5,10 --resume
    python benchmarks/dfme_mnist.py --ablation --dataset digits28 --budget 200000 --seeds 0,1,2 --resume

``--dataset digits28`` runs it on the second 28x28 data set (scikit-learn's digits upsampled to 28x28, no data root
needed), into ``benchmarks/results/dfme_digits28_ablation_<budget>.json``.

Writes ``benchmarks/results/dfme_mnist_<budget>.json`` (numbers, command, versions, seed, wall time, machine) and
prints a markdown table. ``--resume`` skips thieves already finished in that file (each thief's result is written as
soon as it finishes).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import command_line, machine, versions  # noqa: E402

THIEVES = (
    "art_ext-pytorch",
    "art_ext-tensorflow",
    "reference",
    "art_ext-pytorch+reverse_sigmoid",
    "art_ext-pytorch+rounded",
    "knockoff-noise",
)
LEVELS = (0.90, 0.97)
#: Largest budget of ``knockoff-noise`` (its noise images are held in memory: 500k x 784 float32 is 1.6 GB).
KNOCKOFF_MAX_BUDGET = 500_000


class Meter:
    """Measures a student on the test set every `every` victim queries (outside the thief, time excluded)."""

    def __init__(self, evaluate, every: int, victim_accuracy: float) -> None:
        self.evaluate, self.every, self.victim_accuracy = evaluate, every, victim_accuracy
        self.queries, self.next_at, self.paused, self.start = 0, every, 0.0, time.perf_counter()
        self.curve: list[dict] = []

    def count(self, n: int) -> None:
        self.queries += n
        if self.queries >= self.next_at:
            self.next_at += self.every
            self.measure()

    def measure(self) -> None:
        t0 = time.perf_counter()
        acc = float(self.evaluate())
        self.paused += time.perf_counter() - t0
        seconds = time.perf_counter() - self.start - self.paused
        self.curve.append(
            {"queries": self.queries, "seconds": round(seconds, 2), "ratio": round(acc / self.victim_accuracy, 4)}
        )
        ratio = acc / self.victim_accuracy
        print(f"    {self.queries:>9,} queries {seconds:8.1f} s  student/victim {ratio:.3f}", flush=True)

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.start - self.paused


def reach(curve: list[dict], level: float) -> tuple:
    for point in curve:
        if point["ratio"] >= level:
            return point["queries"], point["seconds"]
    return None, None


def counting_victim(victim, meter: Meter):
    """An ART BlackBoxClassifier around the victim whose predict also drives the meter."""
    from art.estimators.classification import BlackBoxClassifier

    def predict(x):
        out = victim.predict(x, batch_size=max(len(x), 1))
        meter.count(len(x))
        return out

    clf = BlackBoxClassifier(
        predict, input_shape=victim.input_shape, nb_classes=victim.nb_classes, clip_values=victim.clip_values
    )
    return clf


def defend(victim, defence: str, x_test, y_test) -> tuple:
    """Attach ART's postprocessing defence `defence` (ART's defaults) to the victim, the ART way (its
    ``postprocessing_defences``); returns the defence's description and the defended victim's test accuracy."""
    from art.defences.postprocessor import ReverseSigmoid, Rounded

    post = {"reverse_sigmoid": ReverseSigmoid, "rounded": Rounded}[defence]()
    victim.set_params(postprocessing_defences=[post])
    described = f"{type(post).__name__}(" + ", ".join(f"{k}={getattr(post, k)}" for k in post.params) + ")"
    accuracy = float(np.mean(victim.predict(x_test, batch_size=512).argmax(1) == y_test))
    return described, accuracy


def mnist_victim(framework, data_dir, seed, victim_epochs) -> tuple:
    """The LeNet-5 victim exposing probabilities (``.test_accuracy`` set) and the MNIST test set."""
    from art_ext.cli.dfme import load_dataset, train_victim
    from art_ext.utils import set_seed

    set_seed(seed, framework)
    data = load_dataset("mnist", framework, data_dir)
    (_, _), (x_test, y_test), _, _ = data
    victim = train_victim(framework, "mnist", data, victim_epochs, seed=seed, probabilities=True)
    return victim, x_test, y_test


def run_art_ext(framework, data_dir, budget, seed, every, victim_epochs, defence=None) -> dict:
    victim, x_test, y_test = mnist_victim(framework, data_dir, seed, victim_epochs)
    return art_ext_thief(framework, victim, x_test, y_test, budget, seed, every, defence)


def art_ext_thief(framework, victim, x_test, y_test, budget, seed, every, defence=None) -> dict:
    """art_ext's DFME (its defaults) against `victim`, carrying ART's postprocessing `defence` when given."""
    from art_ext.attacks.extraction import DataFreeModelExtraction
    from art_ext.models import ARCHITECTURES, build_generator, build_model, make_classifier, make_generator

    described, defended_accuracy = "none", victim.test_accuracy
    if defence is not None:
        described, defended_accuracy = defend(victim, defence, x_test, y_test)
        print(f"    victim {victim.test_accuracy:.4f}, with {described} {defended_accuracy:.4f}")
    shape = ARCHITECTURES["lenet5"][0 if framework == "pytorch" else 1]
    student = make_classifier(build_model("lenet5", framework, seed=seed + 1), input_shape=shape)
    generator = make_generator(build_generator("generator_28x28", framework, seed=seed + 2))

    def evaluate():
        return np.mean(student.predict(x_test, batch_size=1024).argmax(1) == y_test)

    meter = Meter(evaluate, every, victim.test_accuracy)
    attack = DataFreeModelExtraction(counting_victim(victim, meter), generator, max_queries=budget, random_state=seed)
    attack.extract(thieved_classifier=student)
    seconds = meter.seconds
    meter.measure()
    name = f"art_ext {framework}" + ("" if defence is None else f", victim + {described.split('(')[0]}")
    return finish(name, victim.test_accuracy, meter, seconds, attack.queries_used, described, defended_accuracy)


def run_knockoff(data_dir, budget, seed, victim_epochs, epochs, batch_size) -> dict:
    victim, x_test, y_test = mnist_victim("pytorch", data_dir, seed, victim_epochs)
    return knockoff_thief(victim, x_test, y_test, budget, seed, epochs, batch_size)


def knockoff_thief(victim, x_test, y_test, budget, seed, epochs, batch_size) -> dict:
    """ART's KnockoffNets (random strategy, probabilities as soft labels) on `budget` uniform-noise images."""
    from art.attacks.extraction import KnockoffNets

    from art_ext.models import ARCHITECTURES, build_model, make_classifier

    student = make_classifier(build_model("lenet5", "pytorch", seed=seed + 1), input_shape=ARCHITECTURES["lenet5"][0])

    def evaluate():
        return np.mean(student.predict(x_test, batch_size=1024).argmax(1) == y_test)

    noise = np.random.default_rng(seed).random((budget, 1, 28, 28), dtype=np.float32)
    meter = Meter(evaluate, sys.maxsize, victim.test_accuracy)  # queries first, then trains: measured once, after
    attack = KnockoffNets(
        counting_victim(victim, meter),
        batch_size_fit=batch_size,
        batch_size_query=1024,
        nb_epochs=epochs,
        nb_stolen=budget,
        sampling_strategy="random",
        verbose=False,
        use_probability=True,
    )
    attack.extract(noise, thieved_classifier=student)
    seconds = meter.seconds
    meter.measure()
    name = f"ART KnockoffNets, uniform noise ({epochs} epochs, batch {batch_size})"
    return finish(name, victim.test_accuracy, meter, seconds, meter.queries, "none", victim.test_accuracy)


def run_reference(data_dir, budget, seed, every, victim_epochs) -> dict:
    """The paper's loop (Truong et al. 2021, Alg. 1) in plain PyTorch with the paper's generator shape (a projection,
    two upsampling convolution blocks, a final affine-free batch normalisation, tanh): l1 on mean-corrected
    log-probabilities, forward differences of the whole loss (m=1, eps=1e-3), 1 generator + 5 student steps,
    SGD 0.1 / Adam 5e-4."""
    import torch

    from art_ext.cli.dfme import load_dataset, train_victim
    from art_ext.models import build_model
    from art_ext.models.pytorch import dfme_generator
    from art_ext.utils import set_seed

    set_seed(seed, "pytorch")
    data = load_dataset("mnist", "pytorch", data_dir)
    (_, _), (x_test, y_test), _, _ = data
    victim = train_victim("pytorch", "mnist", data, victim_epochs, seed=seed, probabilities=True)
    net = build_model("lenet5", "pytorch", seed=seed + 1)  # the same student as art_ext's
    set_seed(seed + 2, "pytorch")
    gen = dfme_generator(img_size=28, channels=1, ngf=64)  # the paper's generator: final affine-free BN, then tanh
    opt_s = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    opt_g = torch.optim.Adam(gen.parameters(), lr=5e-4)
    x_test_t = torch.as_tensor(x_test)

    def evaluate():
        net.eval()
        with torch.no_grad():
            pred = torch.cat([net(x_test_t[i : i + 1024]).argmax(1) for i in range(0, len(x_test_t), 1024)])
        net.train()
        return np.mean(pred.numpy() == y_test)

    meter = Meter(evaluate, every, victim.test_accuracy)

    def victim_logits(x):  # the victim is queried as a black box (numpy predict), as any thief must
        p = torch.as_tensor(victim.predict(x.detach().numpy(), batch_size=len(x)))
        meter.count(len(x))
        logp = torch.log(p.clamp_min(1e-30))
        return logp - logp.mean(1, keepdim=True)

    b, nz, eps, dim, used = 256, 100, 1e-3, 28 * 28, 0
    squash = lambda pre: (torch.tanh(pre) + 1) / 2  # noqa: E731
    while used + 7 * b <= budget:
        gen.train()
        pre = gen(torch.randn(b, nz))
        with torch.no_grad():
            u = torch.randn(b, dim)
            u = (u / u.norm(dim=1, keepdim=True)).view(b, 1, 28, 28)
            x = squash(torch.cat([pre, pre + eps * u]))
            net.eval()
            loss = (net(x) - victim_logits(x)).abs().mean(1)
            net.train()
            grad = ((loss[b:] - loss[:b]).view(b, 1, 1, 1) * u) * dim / eps / b
        opt_g.zero_grad()
        pre.backward(-grad)
        opt_g.step()
        for _ in range(5):
            with torch.no_grad():
                x = squash(gen(torch.randn(b, nz)))
            v = victim_logits(x)
            opt_s.zero_grad()
            (net(x) - v).abs().mean().backward()
            opt_s.step()
        used += 7 * b
    seconds = meter.seconds
    meter.measure()
    return finish("reference loop (pytorch)", victim.test_accuracy, meter, seconds, used, "none", victim.test_accuracy)


def finish(name, victim_accuracy, meter, seconds, queries, defence, defended_accuracy) -> dict:
    row = {
        "thief": name,
        "defence": defence,
        "queries": int(queries),
        "victim_accuracy": round(float(victim_accuracy), 4),
        "defended_victim_accuracy": round(float(defended_accuracy), 4),
        "student_victim_ratio": meter.curve[-1]["ratio"],
        "seconds": round(seconds, 1),
        "queries_per_second": round(queries / max(seconds, 1e-9), 1),
        "curve": meter.curve,
    }
    for level in LEVELS:
        q, s = reach(meter.curve, level)
        row[f"queries_to_{level:.2f}x"], row[f"seconds_to_{level:.2f}x"] = q, s
    return row


def table(rows) -> str:
    from art_ext.utils import markdown_table

    headers = ["thief", "queries", "victim acc", "victim (defended) acc", "student/victim", "seconds", "queries/s"]
    headers += [f"queries to {lv:.2f}x" for lv in LEVELS] + [f"seconds to {lv:.2f}x" for lv in LEVELS]
    body = [
        [
            r["thief"],
            r["queries"],
            r["victim_accuracy"],
            r.get("defended_victim_accuracy", r["victim_accuracy"]),
            r["student_victim_ratio"],
            r["seconds"],
            r["queries_per_second"],
        ]
        + [r[f"queries_to_{lv:.2f}x"] or "-" for lv in LEVELS]
        + [r[f"seconds_to_{lv:.2f}x"] or "-" for lv in LEVELS]
        for r in rows
    ]
    return markdown_table(headers, body, floatfmt=".3f")


def ablation(parser, args, command_argv) -> int:
    """Check the ablation's options (before anything is trained or queried), then run it."""
    from dfme_ablation import check_loss, run_ablation

    args.seeds = args.seeds if args.seeds is not None else str(args.seed)
    try:
        seeds = [int(s) for s in args.seeds.split(",")]
        directions = [int(m) for m in args.directions.split(",")]
    except ValueError:
        parser.error("--seeds and --directions take comma-separated integers, e.g. --directions 1,2,5,10")
    if min(directions) < 1 or min(seeds) < 0 or args.budget < 256 * (max(directions) + 6):
        parser.error("--directions must be positive, --seeds non-negative, --budget at least one round, 256 * (m + 6)")
    for loss in args.loss.split(","):
        refused = check_loss(loss.strip())
        if refused:
            parser.error(f"--loss {loss}: the attack refuses it: {refused}")
    if args.thieves != ",".join(THIEVES):
        parser.error("--ablation runs art_ext's PyTorch thief only: drop --thieves")
    return run_ablation(args, command_argv)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=int, default=200_000, help="victim queries per thief (paper: 2M)")
    parser.add_argument("--thieves", default=",".join(THIEVES), help=f"comma-separated subset of {','.join(THIEVES)}")
    parser.add_argument("--every", type=int, default=None, help="queries between test measurements (default budget/20)")
    parser.add_argument("--data", default=os.environ.get("ART_EXT_DATA"), help="data root holding mnist/")
    parser.add_argument(
        "--victim-epochs", type=int, default=None, help="victim training epochs (default 3; 30 on --dataset digits28)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--knockoff-epochs", type=int, default=10, help="training epochs of knockoff-noise")
    parser.add_argument("--knockoff-batch", type=int, default=256, help="training batch size of knockoff-noise")
    parser.add_argument("--out", default=None, help="result file (default benchmarks/results/dfme_mnist_<budget>.json)")
    parser.add_argument("--resume", action="store_true", help="keep the thieves (ablation runs) already in the file")
    parser.add_argument("--ablation", action="store_true", help="the loss / directions ablation (dfme_ablation.py)")
    parser.add_argument("--loss", default="l1", help="with --ablation: comma-separated losses of the attack (l1, kl)")
    parser.add_argument("--directions", default="1", help="with --ablation: comma-separated zeroth-order directions m")
    parser.add_argument("--seeds", default=None, help="with --ablation: comma-separated seeds (default --seed)")
    parser.add_argument(
        "--dataset",
        default="mnist",
        choices=("mnist", "digits28"),
        help="with --ablation: the victim's data, MNIST or scikit-learn's digits upsampled to 28x28",
    )
    args = parser.parse_args(argv)
    if args.victim_epochs is None:
        args.victim_epochs = 30 if args.dataset == "digits28" else 3
    if args.ablation:
        return ablation(parser, args, sys.argv if argv is None else ["benchmarks/dfme_mnist.py", *argv])
    if args.loss != "l1" or args.directions != "1" or args.seeds is not None or args.dataset != "mnist":
        parser.error("--loss, --directions, --seeds and --dataset go with --ablation")
    thieves = [t.strip() for t in args.thieves.split(",") if t.strip()]
    unknown = sorted(set(thieves) - set(THIEVES))
    if unknown or args.budget < 7 * 256:
        parser.error(f"unknown thieves {unknown}" if unknown else "--budget must be at least 1792 (one round)")
    if "knockoff-noise" in thieves and args.budget > KNOCKOFF_MAX_BUDGET:
        parser.error(
            f"knockoff-noise holds its {args.budget:,} noise images in memory: at most {KNOCKOFF_MAX_BUDGET:,}; "
            "drop it from --thieves or lower --budget"
        )
    if args.knockoff_epochs < 1 or args.knockoff_batch < 1:
        parser.error("--knockoff-epochs and --knockoff-batch must be positive")
    every = args.every or max(7 * 256, args.budget // 20)
    here = os.path.dirname(os.path.abspath(__file__))
    out = args.out or os.path.join(here, "results", f"dfme_mnist_{args.budget}.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    rows = []
    if args.resume and os.path.isfile(out):
        with open(out) as f:
            rows = [r for r in json.load(f)["rows"] if r["thief_key"] in thieves]
    start = time.perf_counter()
    for key in thieves:
        if any(r["thief_key"] == key for r in rows):
            continue
        print(f"{key}: {args.budget:,} queries", flush=True)
        if key == "reference":
            row = run_reference(args.data, args.budget, args.seed, every, args.victim_epochs)
        elif key == "knockoff-noise":
            row = run_knockoff(
                args.data, args.budget, args.seed, args.victim_epochs, args.knockoff_epochs, args.knockoff_batch
            )
        else:
            framework, _, defence = key.split("-")[1].partition("+")
            row = run_art_ext(framework, args.data, args.budget, args.seed, every, args.victim_epochs, defence or None)
        rows.append(dict(row, thief_key=key))
        rows.sort(key=lambda r: thieves.index(r["thief_key"]))  # the order of --thieves, resumed rows included
        result = {
            "benchmark": "dfme_mnist",
            "command": command_line(sys.argv if argv is None else ["benchmarks/dfme_mnist.py", *argv]),
            "versions": versions(),
            "seed": args.seed,
            "budget": args.budget,
            "wall_s": round(time.perf_counter() - start, 1),
            "machine": machine(),
            "notes": "No validation data: students measured on the MNIST test set by the benchmark, outside the "
            "thief. student/victim is against the undefended victim's test accuracy; knockoff-noise is ART's "
            "KnockoffNets (random strategy, soft labels) on uniform-noise queries, measured once after training.",
            "rows": rows,
        }
        with open(out, "w") as f:
            json.dump(result, f, indent=1)
    setting = f"LeNet-5 victim exposing probabilities, {args.budget:,} queries, seed {args.seed}"
    print(f"\nModel extraction on MNIST, {setting}\n")
    print(table(rows))
    print(f"\nwritten to {os.path.relpath(out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
