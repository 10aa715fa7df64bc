"""
Run the tests marked ``kernels`` (they assert an outcome of training) under every CPU kernel set a user's machine may
pick, fail if any variant fails, and report each check's value under every variant with its smallest margin.

PyTorch picks its CPU kernels by the processor (``ATEN_CPU_CAPABILITY``: default, avx2, avx512) and TensorFlow's
oneDNN is on or off (``TF_ENABLE_ONEDNN_OPTS``); the number of threads changes how reductions are split. A trained
model, a float32 softmax that rounds to 1.0 or not, and an attack's success all move with them, so a test that passes
on the machine CI runs on can fail on a user's.

Variants (each framework runs only the dimensions that change its kernels), every kernel x threads pair:

* PyTorch: ``ATEN_CPU_CAPABILITY`` default, avx2 and avx512 (avx512 only where ``/proc/cpuinfo`` lists ``avx512f``;
  skipped with a printed reason elsewhere, and avx2 likewise without ``avx2``), each with 1 and 2 threads
  (``OMP_NUM_THREADS``, which sets ``torch.get_num_threads()``, and BLAS).
* TensorFlow: ``TF_ENABLE_ONEDNN_OPTS`` 0 and 1, each with 1 and 2 threads (``TF_NUM_INTRAOP_THREADS``, which sizes
  TensorFlow's intra-op pool, oneDNN's included, and ``OMP_NUM_THREADS`` for BLAS).

Variants run side by side while their threads fit in the processor's cores (``--cores``, default: the cores this
process may use): on 2 cores each 2-thread variant runs alone and the 1-thread variants two at a time, so the four
variants of a framework take about three variants' time. Each variant has its own pytest temporary folder and no
cache; its output is printed when it ends.

Each check written with the ``outcome`` fixture (tests/_outcomes.py) is recorded per variant (``ART_EXT_OUTCOMES``);
at the end one row per check gives its threshold, its value under each variant and the smallest margin across them
(how far the value is from the threshold on the passing side, in the value's units, and relative to the threshold),
and ``--report FILE`` writes them as JSON (.ci/kernel_margins.json is such a file).

``--cover`` runs fewer variants: every value of every dimension at least once, not every pair (PyTorch default/1
thread, avx2/2, avx512/1, or default/2 and avx2/1 without AVX-512; TensorFlow oneDNN off/2 threads and on/1 thread).

Usage::

    python .ci/kernel_variants.py [--framework pytorch|tensorflow] [--cover|--full] [--threads 1|2] [--cores N]
                                  [--report FILE] [--outcomes-dir DIR] [--list] [-- pytest arguments]
    python .ci/kernel_variants.py --from-outcomes DIR [--from-outcomes DIR ...] --report FILE

``--outcomes-dir`` keeps each variant's log, its record (exit status, seconds) and its outcomes; ``--from-outcomes``
runs nothing and reports the variants kept by one or more such runs (a framework or a thread count run apart).

A selection that collects no test (pytest's exit status 5) counts as passed.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
THREADS = (1, 2)
NO_TESTS_COLLECTED = 5
KERNEL_KEYS = ("ATEN_CPU_CAPABILITY", "TF_ENABLE_ONEDNN_OPTS")


def cpu_flags() -> set[str]:
    """The processor's feature flags (empty where ``/proc/cpuinfo`` does not exist)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def variants(framework: str, cover: bool, flags: set[str], threads=THREADS) -> tuple[list[dict], list[str]]:
    """The environment of each variant of `framework` (thread counts among `threads`), and the reasons of those skipped."""
    skipped = []
    if framework == "pytorch":
        kernels = ["default"]
        for name, flag in (("avx2", "avx2"), ("avx512", "avx512f")):
            if flag in flags:
                kernels.append(name)
            else:
                skipped.append(f"ATEN_CPU_CAPABILITY={name}: this processor has no {flag} (/proc/cpuinfo)")
        settings = [{"ATEN_CPU_CAPABILITY": k} for k in kernels]
    else:
        settings = [{"TF_ENABLE_ONEDNN_OPTS": v} for v in ("0", "1")]
    if cover:
        # The last setting is what the processor picks by itself, with which the torch and tensorflow envs already
        # ran every test on all cores: it gets 1 thread here, and the thread counts alternate from it.
        pairs = [(setting, THREADS[(len(settings) - 1 - i) % len(THREADS)]) for i, setting in enumerate(settings)]
    else:
        pairs = [(setting, n) for setting in settings for n in THREADS]
    pairs = [(setting, n) for setting, n in pairs if n in threads]
    out = []
    for setting, threads in pairs:
        env = dict(setting, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
        if framework == "tensorflow":
            env.update(TF_NUM_INTRAOP_THREADS=str(threads), TF_NUM_INTEROP_THREADS=str(threads))
        out.append(env)
    return out, skipped


def pytest_command() -> list[str]:
    """The ``pytest`` script beside this Python (as tox runs it: the installed package, not the source tree)."""
    script = os.path.join(os.path.dirname(sys.executable), "pytest")
    return [script] if os.path.exists(script) else [sys.executable, "-m", "pytest"]


def describe(env: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in env.items() if k in KERNEL_KEYS) + f" threads={env['OMP_NUM_THREADS']}"


def short(framework: str, env: dict) -> str:
    """A variant's name in the report: ``pytorch/avx2/1``, ``tensorflow/onednn1/2``."""
    kernel = env.get("ATEN_CPU_CAPABILITY") or f"onednn{env['TF_ENABLE_ONEDNN_OPTS']}"
    return f"{framework}/{kernel}/{env['OMP_NUM_THREADS']}"


def schedule(plan: list[tuple[str, dict]], cores: int) -> list[list[int]]:
    """
    Waves of variants (indices into `plan`) that run side by side: a wave holds variants while their thread counts fit
    in `cores`, in plan order, the variants with more threads first (each alone on 2 cores), then the others packed.
    """
    order = sorted(range(len(plan)), key=lambda i: -int(plan[i][1]["OMP_NUM_THREADS"]))
    waves, current, used = [], [], 0
    for i in order:
        threads = int(plan[i][1]["OMP_NUM_THREADS"])
        if current and used + threads > max(cores, 1):
            waves.append(current)
            current, used = [], 0
        current.append(i)
        used += threads
    if current:
        waves.append(current)
    return waves


def read_outcomes(path: str) -> list[dict]:
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def margins(runs: list[dict]) -> list[dict]:
    """One row per check (test, label): its threshold(s), its value under each variant, the smallest margin."""
    rows: dict[tuple[str, str], dict] = {}
    for run in runs:
        for rec in run["outcomes"]:
            key = (rec["test"], rec["label"])
            row = rows.setdefault(
                key,
                {
                    "test": rec["test"],
                    "frameworks": [],
                    "label": rec["label"],
                    "op": rec["op"],
                    "thresholds": {},
                    "values": {},
                    "margins": {},
                },
            )
            row["values"][run["variant"]] = rec["value"]
            if rec["framework"] not in row["frameworks"]:
                row["frameworks"].append(rec["framework"])
            row["thresholds"][run["variant"]] = rec["threshold"]
            row["margins"][run["variant"]] = rec["margin"]
            row.setdefault("relative_margins", {})[run["variant"]] = rec["relative_margin"]
    out = []
    for row in rows.values():
        values, thresholds = list(row["values"].values()), sorted(set(row["thresholds"].values()))
        worst = min(row["margins"], key=row["margins"].get)
        relative = [r for r in row.pop("relative_margins").values() if r is not None]
        out.append(
            {
                **row,
                "threshold": thresholds[0] if len(thresholds) == 1 else None,
                "threshold_range": [thresholds[0], thresholds[-1]],
                "value_range": [min(values), max(values)],
                "smallest_margin": row["margins"][worst],
                "smallest_relative_margin": min(relative) if relative else None,
                "smallest_margin_variant": worst,
                "variants": len(values),
                "passed_everywhere": all(
                    m > 0 or (m == 0 and row["op"] in (">=", "<=")) for m in row["margins"].values()
                ),
            }
        )
    return sorted(out, key=lambda r: (r["test"], r["label"]))


def _num(x: float) -> str:
    return f"{x:.4g}"


def print_margins(rows: list[dict]) -> None:
    print(f"\nkernel variants: {len(rows)} checks (value range over the variants; smallest margin, relative, where)")
    for row in rows:
        lo, hi = row["threshold_range"]
        threshold = _num(lo) if lo == hi else f"{_num(lo)}..{_num(hi)}"
        vlo, vhi = row["value_range"]
        rel = row["smallest_relative_margin"]
        rel = f" ({rel:+.1%})" if rel is not None else ""
        flag = "" if row["passed_everywhere"] else "  FAILED"
        print(
            f"  {row['test']} | {row['label']}: {row['op']} {threshold}; measured {_num(vlo)}-{_num(vhi)} over "
            f"{row['variants']}; smallest margin {row['smallest_margin']:+.4g}{rel} at {row['smallest_margin_variant']}"
            f"{flag}"
        )


def run_plan(plan, pytest_args, cores, workdir) -> list[dict]:
    """Run every variant (waves side by side); one dict per variant: name, env, exit status, seconds, outcomes."""
    runs: list[dict] = [{} for _ in plan]
    workdir = os.path.abspath(workdir)  # pytest runs in the repository, not here
    for wave in schedule(plan, cores):
        procs = []
        for i in wave:
            framework, env = plan[i]
            name = short(framework, env)
            tag = name.replace("/", "-")
            outcomes = os.path.join(workdir, tag + ".jsonl")
            log = open(os.path.join(workdir, tag + ".log"), "w+", encoding="utf-8")
            cmd = pytest_command() + ["--framework", framework, "-m", "kernels", "-q", "-p", "no:cacheprovider"]
            cmd += [f"--basetemp={os.path.join(workdir, tag + '-tmp')}"]
            child_env = {**os.environ, **env, "ART_EXT_OUTCOMES": outcomes}
            print(f"===== kernel variant {framework}: {describe(env)} started", flush=True)
            proc = subprocess.Popen(cmd + pytest_args, cwd=ROOT, env=child_env, stdout=log, stderr=subprocess.STDOUT)
            procs.append((i, name, proc, log, outcomes, time.perf_counter()))
        for i, name, proc, log, outcomes, t0 in procs:
            rc = proc.wait()
            seconds = time.perf_counter() - t0
            framework, env = plan[i]
            label = f"{framework}: {describe(env)}"
            log.seek(0)
            print(f"\n===== kernel variant {label}", flush=True)
            sys.stdout.write(log.read())
            log.close()
            if rc == NO_TESTS_COLLECTED:
                print(f"kernel variant {label}: no test collected, counted as passed", flush=True)
                rc = 0
            print(f"===== kernel variant {label}: exit {rc} in {seconds:.0f}s", flush=True)
            runs[i] = {
                "variant": name,
                "label": label,
                "env": env,
                "exit": rc,
                "seconds": round(seconds, 1),
                "side_by_side_with": [
                    short(*plan[j]) for j in next(w for w in schedule(plan, cores) if i in w) if j != i
                ],
            }
            with open(outcomes[: -len(".jsonl")] + ".json", "w", encoding="utf-8") as f:
                json.dump(runs[i], f, indent=1)
            runs[i]["outcomes"] = read_outcomes(outcomes)
    return runs


def load_runs(folders: list[str]) -> list[dict]:
    """The variants an earlier run kept with ``--outcomes-dir`` (``<variant>.json`` and ``<variant>.jsonl`` each)."""
    runs = []
    for folder in folders:
        for name in sorted(os.listdir(folder)):
            if name.endswith(".json"):
                with open(os.path.join(folder, name), encoding="utf-8") as f:
                    run = json.load(f)
                run["outcomes"] = read_outcomes(os.path.join(folder, name[: -len(".json")] + ".jsonl"))
                runs.append(run)
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--framework", choices=("pytorch", "tensorflow"), action="append")
    plan_choice = parser.add_mutually_exclusive_group()
    plan_choice.add_argument("--cover", action="store_true", help="every value once, not every kernel x threads pair")
    plan_choice.add_argument("--full", action="store_false", dest="cover", help="every kernel x threads pair (default)")
    parser.add_argument("--threads", type=int, action="append", choices=THREADS, help="only these thread counts")
    parser.add_argument(
        "--cores", type=int, default=None, help="run variants side by side within N cores (1: one by one)"
    )
    parser.add_argument("--report", metavar="FILE", help="write every check's values and margins as JSON")
    parser.add_argument("--outcomes-dir", metavar="DIR", help="keep each variant's log, record and outcomes in DIR")
    parser.add_argument(
        "--from-outcomes", metavar="DIR", action="append", help="run nothing: report the variants kept in DIR(s)"
    )
    parser.add_argument("--list", action="store_true", help="print the variants and exit")
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    args = parser.parse_args(argv)
    frameworks = list(dict.fromkeys(args.framework or [])) or [
        f for f in ("pytorch", "tensorflow") if importlib.util.find_spec("torch" if f == "pytorch" else f)
    ]
    cores = args.cores or available_cores()
    flags = cpu_flags()
    plan = []
    for framework in frameworks:
        envs, skipped = variants(framework, args.cover, flags, tuple(args.threads or THREADS))
        for reason in skipped:
            print(f"kernel variants: {framework}: skipped {reason}", flush=True)
        plan += [(framework, env) for env in envs]
    waves = schedule(plan, cores)
    if args.list:
        for wave in waves:
            print(" | ".join(f"{plan[i][0]}: {describe(plan[i][1])}" for i in wave))
        return 0
    start = time.perf_counter()
    if args.from_outcomes:
        runs = load_runs(args.from_outcomes)
        plan = runs
    elif args.outcomes_dir:
        os.makedirs(args.outcomes_dir, exist_ok=True)
        runs = run_plan(plan, args.pytest_args, cores, args.outcomes_dir)
    else:
        with tempfile.TemporaryDirectory(prefix="kernel_variants_") as workdir:
            runs = run_plan(plan, args.pytest_args, cores, workdir)
    total = sum(run["seconds"] for run in runs) if args.from_outcomes else time.perf_counter() - start
    failed = [run["label"] for run in runs if run["exit"] != 0]
    rows = margins(runs)
    print_margins(rows)
    for run in runs:
        print(f"  {run['variant']}: exit {run['exit']} in {run['seconds']:.0f}s")
    print(f"\nkernel variants: {len(plan) - len(failed)}/{len(plan)} passed in {total:.0f}s on {cores} core(s)")
    for label in failed:
        print(f"  FAILED {label}")
    if args.report:
        report = {
            "generated_by": "python .ci/kernel_variants.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "processor": cpu_model(),
            "avx2": "avx2" in flags,
            "avx512f": "avx512f" in flags,
            "cores": cores,
            "seconds": round(total, 1),
            "variants": [{k: v for k, v in run.items() if k != "outcomes"} for run in runs],
            "checks": rows,
        }
        with open(args.report, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=1)
            f.write("\n")
        print(f"kernel variants: report written to {args.report}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
