"""
Shared harness of the benchmarks: common arguments, resumable rows and the JSON result file.

Every benchmark writes ``benchmarks/results/<name>.json`` (``<name>_quick.json`` with ``--quick``) holding
``benchmark``, ``command``, ``versions``, ``seed``/``seeds``, ``wall_s``, ``machine``, ``quick``, ``rows``, ``paper``
(the anchor numbers with their citation) and ``notes``. The file is rewritten after every finished row, so a rerun
of the same command skips the rows already finished (a run with other settings starts afresh).
``benchmarks/render_results.py`` turns the files into ``docs/results.rst``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from typing import Any, Callable

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "benchmarks", "results")
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


def parser(description: str | None) -> argparse.ArgumentParser:
    """An argument parser with the options every benchmark shares: --framework, --data, --seed, --quick, --out."""
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--framework", choices=["pytorch", "tensorflow"], default="pytorch")
    p.add_argument("--data", default=None, help="data root holding mnist/ and rt-polarity/ (default: $ART_EXT_DATA)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="a small configuration (minutes); written to <name>_quick.json")
    p.add_argument("--out", default=None, help="result JSON (default: benchmarks/results/<name>[_quick].json)")
    p.add_argument("--fresh", action="store_true", help="ignore finished rows of an earlier run")
    p.add_argument(
        "--merge",
        default=None,
        help="comma-separated result files of the same configuration (e.g. one per seed, run in parallel) whose "
        "finished rows are taken over",
    )
    return p


def versions() -> dict[str, str | None]:
    """Versions of Python and of the libraries the numbers depend on (None where not installed)."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name, module in (
        ("numpy", "numpy"),
        ("torch", "torch"),
        ("tensorflow", "tensorflow"),
        ("art", "art"),
        ("art_ext", "art_ext"),
    ):
        if name == "tensorflow" and "tensorflow" not in sys.modules:
            # Importing TensorFlow costs seconds and memory: report its installed version without importing it.
            try:
                from importlib.metadata import version

                out[name] = version("tensorflow-cpu")
            except Exception:  # noqa: BLE001
                try:
                    from importlib.metadata import version

                    out[name] = version("tensorflow")
                except Exception:  # noqa: BLE001
                    out[name] = None
            continue
        try:
            out[name] = __import__(module).__version__
        except Exception:  # noqa: BLE001
            out[name] = None
    out["art_ext_commit"] = commit()
    return out


def commit() -> str | None:
    """The repository's commit (``+changes`` when art_ext/ differs from it), None outside a git checkout."""
    import subprocess

    try:
        head = subprocess.run(
            ["git", "-C", ROOT, "rev-parse", "--short=10", "HEAD"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", ROOT, "diff", "--quiet", "HEAD", "--", "art_ext"], capture_output=True, timeout=10
        ).returncode
    except (OSError, subprocess.SubprocessError):
        return None
    return (head + ("+changes" if dirty else "")) if head else None


def machine() -> dict[str, Any]:
    """CPU count, platform and GPU name (``None`` without one) of this machine."""
    gpu = None
    if "torch" in sys.modules:
        import torch

        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
    return {
        "cpu_count": os.cpu_count(),
        "threads": int(os.environ.get("OMP_NUM_THREADS", "0")) or None,
        "platform": platform.platform(),
        "processor": platform.machine(),
        "gpu": gpu,
    }


class Run:
    """
    One benchmark run: finished rows are kept in the result JSON, so rerunning the same command resumes.

    :param name: Benchmark name (file stem of the result).
    :param args: Parsed arguments; every option except ``--out``/``--fresh`` makes up the configuration.
    :param paper: Anchor numbers of the paper, with ``citation``.
    :param notes: What differs from the paper's setting, and why.
    :param selectors: Options that only select which rows to compute (e.g. seeds, methods): a run differing from an
                      earlier one only in them keeps the earlier rows (rows are identified by their keys).
    """

    def __init__(
        self,
        name: str,
        args: argparse.Namespace,
        paper: dict[str, Any],
        notes: str = "",
        selectors: tuple[str, ...] = (),
    ) -> None:
        if args.data:
            os.environ["ART_EXT_DATA"] = args.data
        self.name = name
        self.path = args.out or os.path.join(RESULTS, f"{name}{'_quick' if args.quick else ''}.json")
        self.config = {k: v for k, v in sorted(vars(args).items()) if k not in ("out", "fresh", "data", "merge")}
        self.selectors = selectors
        self.start = time.perf_counter()
        self.previous_wall = 0.0
        self.rows: list[dict[str, Any]] = []
        self.data: dict[str, Any] = {
            "benchmark": name,
            "command": command_line(sys.argv),
            "config": self.config,
            "quick": bool(args.quick),
            "seed": getattr(args, "seed", None),
            "paper": paper,
            "notes": notes,
            "complete": False,
        }

        def same(config: dict[str, Any]) -> bool:
            return {k: v for k, v in config.items() if k not in selectors} == {
                k: v for k, v in self.config.items() if k not in selectors
            }

        if not args.fresh and os.path.exists(self.path):
            with open(self.path) as f:
                old = json.load(f)
            if same(old.get("config") or {}):
                self.rows = old.get("rows", [])
                self.previous_wall = float(old.get("wall_s", 0.0))
                if old.get("train_seconds"):  # the cached weights' training times, measured by the earlier run
                    self.data["train_seconds"] = dict(old["train_seconds"])
                if old.get("merged_from"):
                    self.data["merged_from"] = old["merged_from"]
                earlier = list(old.get("resumed_from") or [])
                if old.get("command") and old["command"] != self.data["command"]:
                    earlier.append(old["command"])  # its rows stay: a rerun needs the union of the selectors
                if earlier:
                    self.data["resumed_from"] = earlier
                print(f"[{name}] resuming: {len(self.rows)} finished rows in {self.path}", flush=True)
        for other in (getattr(args, "merge", None) or "").split(","):
            if other:
                with open(other) as f:
                    old = json.load(f)
                if not same(old.get("config") or {}):
                    raise ValueError(f"--merge {other}: another configuration; only selectors {selectors} may differ.")
                new = [r for r in old.get("rows", []) if self.done(r.get("key")) is None]
                self.rows += new
                if new:
                    self.previous_wall += float(old.get("wall_s", 0.0))
                if new and old.get("command"):
                    merged = self.data.setdefault("merged_from", [])
                    merged.append({"command": old["command"], "rows": [r.get("key") for r in new]})
                print(f"[{name}] {len(new)} finished rows taken over from {other}", flush=True)

    def done(self, key: str) -> dict[str, Any] | None:
        """The finished row with this key, or None."""
        for row in self.rows:
            if row.get("key") == key:
                return row
        return None

    def row(self, key: str, compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """Return the finished row ``key``, or compute it (a dict), store it and save the file."""
        old = self.done(key)
        if old is not None:
            return old
        start = time.perf_counter()
        row = {"key": key, **compute()}
        row.setdefault("seconds", round(time.perf_counter() - start, 2))
        self.rows.append(row)
        self.save()
        print(f"[{self.name}] {key}: {_short(row)}", flush=True)
        return row

    def save(self, complete: bool = False, **extra: Any) -> str:
        """Write the result JSON (atomically) with the rows so far."""
        self.data.update(extra)
        self.data.update(
            versions=versions(),
            machine=machine(),
            wall_s=round(self.previous_wall + time.perf_counter() - self.start, 1),
            rows=self.rows,
            complete=complete,
        )
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.data, f, indent=1, default=_jsonable)
            f.write("\n")
        os.replace(tmp, self.path)
        return self.path

    def finish(self, **extra: Any) -> str:
        """Mark the run complete and write the file; returns its path."""
        path = self.save(complete=True, **extra)
        print(f"[{self.name}] {len(self.rows)} rows, {self.data['wall_s']:.0f} s -> {_relative(path)}", flush=True)
        return path


def command_line(argv: list[str]) -> str:
    """The command as a user reruns it: the data root as ``$ART_EXT_DATA`` (no path of this machine)."""
    words, skip = [_relative(argv[0])], False
    for i, a in enumerate(argv[1:], 1):
        if skip:
            skip = False
            continue
        if a in ("--data", "--merge"):
            skip = True
            continue
        if a.startswith(("--data=", "--merge=")):
            continue
        if i > 1 and argv[i - 1] == "--out":
            a = _relative(a)
        words.append(a)
    return "python " + " ".join(shlex.quote(w) for w in words)


def _relative(path: str) -> str:
    try:
        rel = os.path.relpath(os.path.abspath(path), ROOT)
    except ValueError:
        return path
    return path if rel.startswith("..") else rel


def _short(row: dict[str, Any]) -> str:
    return ", ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
        for k, v in row.items()
        if k != "key" and not isinstance(v, (list, dict))
    )


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def trained(run: Run, key: str, clf: Any, train: Callable[[], Any], ignore: tuple[str, ...] = ()) -> Any:
    """
    Train ``clf`` with ``train()`` unless its weights were saved by an earlier run of the same configuration.

    Weights go to ``benchmarks/results/cache/`` (not committed), so a rerun after an interruption skips the training.
    Options named in ``ignore`` (e.g. the test-set size) do not change the weights: runs differing only in them share.
    """
    import numpy as np

    cache = os.path.join(os.path.dirname(os.path.abspath(run.path)), "cache")
    import hashlib

    config = {k: v for k, v in run.config.items() if k not in run.selectors and k not in ignore}
    tag = hashlib.sha1(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:10]
    path = os.path.join(cache, f"{run.name}{'_quick' if run.data['quick'] else ''}-{key}-{tag}.npz")
    model = clf.model
    is_torch = hasattr(model, "state_dict")
    if os.path.exists(path):
        weights = np.load(path)
        if is_torch:
            import torch

            model.load_state_dict({k: torch.as_tensor(weights[k]) for k in weights.files})
        else:
            model.set_weights([weights[f"w{i}"] for i in range(len(weights.files))])
        print(f"[{run.name}] {key}: weights loaded from {_relative(path)}", flush=True)
        return None
    start = time.perf_counter()
    out = train()
    run.data.setdefault("train_seconds", {})[key] = round(time.perf_counter() - start, 1)
    os.makedirs(cache, exist_ok=True)
    if is_torch:
        arrays = {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}
    else:
        arrays = {f"w{i}": w for i, w in enumerate(model.get_weights())}
    np.savez(path + ".tmp.npz", **arrays)
    os.replace(path + ".tmp.npz", path)
    return out
