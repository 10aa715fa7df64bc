"""
Run the tests marked ``kernels`` (they assert an outcome of training) under every CPU kernel set a user's machine may
pick, and fail if any variant fails.

PyTorch picks its CPU kernels by the processor (``ATEN_CPU_CAPABILITY``: default, avx2, avx512) and TensorFlow's
oneDNN is on or off (``TF_ENABLE_ONEDNN_OPTS``); the number of threads changes how reductions are split. A trained
model, a float32 softmax that rounds to 1.0 or not, and an attack's success all move with them, so a test that passes
on the machine CI runs on can fail on a user's.

Variants (each framework runs only the dimensions that change its kernels):

* PyTorch: ``ATEN_CPU_CAPABILITY`` default, avx2 and avx512 (avx512 only where ``/proc/cpuinfo`` lists ``avx512f``;
  skipped with a printed reason elsewhere, and avx2 likewise without ``avx2``), each with 1 and 2 threads
  (``OMP_NUM_THREADS``, which sets ``torch.get_num_threads()``, and BLAS).
* TensorFlow: ``TF_ENABLE_ONEDNN_OPTS`` 0 and 1, each with 1 and 2 threads (``TF_NUM_INTRAOP_THREADS``, which sizes
  TensorFlow's intra-op pool, oneDNN's included, and ``OMP_NUM_THREADS`` for BLAS).

``--cover`` runs fewer variants: every value of every dimension at least once, not every pair. The setting the
processor picks by itself (avx512 where it has it, else avx2; oneDNN on) gets 1 thread, since the plain ``torch`` and
``tensorflow`` environments already ran it on all cores, and the thread counts alternate from there: PyTorch
default/1 thread, avx2/2, avx512/1 (default/2, avx2/1 without AVX-512); TensorFlow oneDNN off/2 threads only (on
with 2 threads is the plain ``tensorflow`` environment; TensorFlow with 1 thread runs under ``--full``).

Usage::

    python .ci/kernel_variants.py [--framework pytorch|tensorflow] [--cover|--full] [--list] [-- pytest arguments]

A selection that collects no test (pytest's exit status 5) counts as passed.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
THREADS = (1, 2)
NO_TESTS_COLLECTED = 5


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


def variants(framework: str, cover: bool, flags: set[str]) -> tuple[list[dict], list[str]]:
    """The environment of each variant of `framework`, and the reasons of those skipped."""
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
        if framework == "tensorflow":
            # oneDNN on with all cores is the tensorflow env itself; one TensorFlow variant of the marked tests takes
            # about 10 minutes on CI's 2 cores, so CI runs oneDNN off only (1 thread: `--full`).
            pairs = pairs[:1]
    else:
        pairs = [(setting, threads) for setting in settings for threads in THREADS]
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
    return " ".join(f"{k}={v}" for k, v in env.items() if k in ("ATEN_CPU_CAPABILITY", "TF_ENABLE_ONEDNN_OPTS")) + (
        f" threads={env['OMP_NUM_THREADS']}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--framework", choices=("pytorch", "tensorflow"), action="append")
    plan_choice = parser.add_mutually_exclusive_group()
    plan_choice.add_argument("--cover", action="store_true", help="every value once, not every kernel x threads pair")
    plan_choice.add_argument("--full", action="store_false", dest="cover", help="every kernel x threads pair (default)")
    parser.add_argument("--list", action="store_true", help="print the variants and exit")
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    args = parser.parse_args(argv)
    frameworks = list(dict.fromkeys(args.framework or [])) or [
        f for f in ("pytorch", "tensorflow") if importlib.util.find_spec("torch" if f == "pytorch" else f)
    ]
    flags = cpu_flags()
    plan = []
    for framework in frameworks:
        envs, skipped = variants(framework, args.cover, flags)
        for reason in skipped:
            print(f"kernel variants: {framework}: skipped {reason}", flush=True)
        plan += [(framework, env) for env in envs]
    if args.list:
        for framework, env in plan:
            print(f"{framework}: {describe(env)}")
        return 0
    failed, start = [], time.perf_counter()
    for framework, env in plan:
        label = f"{framework}: {describe(env)}"
        print(f"\n===== kernel variant {label}", flush=True)
        t0 = time.perf_counter()
        cmd = pytest_command() + ["--framework", framework, "-m", "kernels", "-q"]
        rc = subprocess.call(cmd + args.pytest_args, cwd=ROOT, env={**os.environ, **env})
        if rc == NO_TESTS_COLLECTED:
            print(f"kernel variant {label}: no test collected, counted as passed", flush=True)
            rc = 0
        print(f"===== kernel variant {label}: exit {rc} in {time.perf_counter() - t0:.0f}s", flush=True)
        if rc != 0:
            failed.append(label)
    print(f"\nkernel variants: {len(plan) - len(failed)}/{len(plan)} passed in {time.perf_counter() - start:.0f}s")
    for label in failed:
        print(f"  FAILED {label}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
