"""
Load on a deployed model (issue 27 item 6): many concurrent clients for a fixed time against ``art-ext serve`` (in
its own process) and against MLServer, counting what every client sent and received against what the server says it
answered (0 lost, 0 double-counted is the goal); then RemoteClassifier's queries per second against MLServer side by
side with ``tritonclient``'s HTTP client, on the same server and batch size, one request at a time.

    python benchmarks/serving_load.py --clients 64 --seconds 60 --batch-size 32
    python benchmarks/serving_load.py --quick --out /tmp/serving_load.json

The servers serve a 64-to-10 softmax regression (PyTorch), so the numbers measure the serving path, not a model.
MLServer needs ``pip install mlserver`` and tritonclient ``pip install tritonclient[http]``; a part whose package is
missing is left out and said so in the notes.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
from _common import ROOT, Run, parser

SHAPE = (1, 8, 8)


def _mlserver_module():
    spec = importlib.util.spec_from_file_location("_mlserver", os.path.join(ROOT, "tests", "_mlserver.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def start_serve(folder: Path) -> tuple[subprocess.Popen, str]:
    """``art-ext serve`` of the softmax regression (TorchScript) in its own process; its URL."""
    import torch

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10), torch.nn.Softmax(dim=1)).eval()
    path = folder / "victim.pt"
    torch.jit.save(torch.jit.script(net), str(path))
    command = [sys.executable, "-m", "art_ext.cli", "serve", str(path), "--port", "0", "--data", "digits"]
    command += ["--max-batch", "4096", "--output", "probabilities"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if "listening on " in line:
            threading.Thread(target=proc.stdout.read, daemon=True).start()  # keep the pipe drained
            return proc, line.split("listening on ")[1].split()[0]
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise RuntimeError("art-ext serve did not start")


def load(url: str, count, clients: int, seconds: float, batch_size: int, timeout: float) -> dict:
    """`clients` threads, each with its own RemoteClassifier, asking batches until the time is up."""
    from art_ext.estimators.classification import RemoteClassifier, RemoteQueryError

    before = count()
    x = np.random.default_rng(0).uniform(0, 1, (batch_size, *SHAPE)).astype(np.float32)
    victims = [
        RemoteClassifier.from_url(url, clip_values=(0.0, 1.0), batch_size=batch_size, timeout=timeout, max_retries=0)
        for _ in range(clients)
    ]
    errors: list[str] = []
    stop = time.monotonic() + seconds

    def client(victim):
        while time.monotonic() < stop:
            try:
                victim.predict(x)
            except RemoteQueryError as error:
                errors.append(str(error)[:200])

    threads = [threading.Thread(target=client, args=(v,)) for v in victims]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    time.sleep(0.5)  # the server's counter catches up with the last answers
    served = count() - before
    sent = sum(v.queries_sent for v in victims)
    answered = sum(v.queries_answered for v in victims)
    return {
        "clients": clients,
        "seconds": round(wall, 2),
        "batch_size": batch_size,
        "queries_sent": sent,
        "queries_answered": answered,
        "server_answered": served,
        "lost": sent - served,  # sent, never answered by the server
        "double_counted": served - answered,  # counted by the server, never received by a client
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "inputs_per_s": round(answered / wall, 1),
    }


def qps_side_by_side(mlserver, seconds: float, batch_size: int) -> dict:
    """Requests per second, one at a time: RemoteClassifier then tritonclient's HTTP client, same batches."""
    from art_ext.estimators.classification import RemoteClassifier

    x = np.random.default_rng(1).uniform(0, 1, (batch_size, *SHAPE)).astype(np.float32)
    remote = RemoteClassifier.from_url(mlserver.url + "/v2/models/victim", batch_size=batch_size)
    out: dict = {"batch_size": batch_size}

    def timed(call):
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            call()
            n += 1
        return n / (time.perf_counter() - start)

    out["remote_classifier_requests_per_s"] = round(timed(lambda: remote.predict(x)), 1)
    try:
        import tritonclient.http as triton
    except ImportError:
        out["tritonclient"] = "not installed"
        return out
    client = triton.InferenceServerClient(mlserver.url.split("//")[1])
    reference = None

    def triton_call():
        nonlocal reference
        inp = triton.InferInput("x", list(x.shape), "FP32")
        inp.set_data_from_numpy(x, binary_data=False)  # MLServer takes JSON tensors
        result = client.infer(
            "victim", [inp], outputs=[triton.InferRequestedOutput("probabilities", binary_data=False)]
        )
        reference = result.as_numpy("probabilities")

    out["tritonclient_requests_per_s"] = round(timed(triton_call), 1)
    out["ratio"] = round(out["remote_classifier_requests_per_s"] / out["tritonclient_requests_per_s"], 3)
    out["same_answers"] = bool(np.allclose(reference, remote.predict(x), rtol=1e-6, atol=1e-7))
    client.close()
    return out


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=64)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--timeout", type=float, default=60.0, help="seconds a client waits for one answer")
    args = p.parse_args(argv)
    if args.quick:
        args.clients, args.seconds = min(args.clients, 16), min(args.seconds, 10.0)
    run = Run(
        "serving_load", args, paper={}, notes="Goal of issue 27: 0 lost, 0 double-counted; tritonclient ratio >= 0.9."
    )
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_serve(Path(tmp))
        try:

            def serve_count():
                with urllib.request.urlopen(url + "/stats", timeout=30) as resp:
                    return json.loads(resp.read())["answered"]

            for protocol, address in (("native", url), ("v2", url + "/v2/models/model")):
                run.row(
                    f"serve_{protocol}",
                    lambda a=address, pr=protocol: {
                        "server": "art-ext serve",
                        "protocol": pr,
                        **load(a, serve_count, args.clients, args.seconds, args.batch_size, args.timeout),
                    },
                )
        finally:
            proc.terminate()
            proc.wait(30)
        if importlib.util.find_spec("mlserver") is None:
            run.data["notes"] += " MLServer is not installed: its rows are left out."
        else:
            helper = _mlserver_module()
            folder = Path(tmp) / "mlserver"
            folder.mkdir()
            mlserver = helper.MLServerProcess(folder, SHAPE)
            try:
                mlserver.wait_ready()
                run.row(
                    "mlserver_v2",
                    lambda: {
                        "server": "mlserver",
                        "protocol": "v2",
                        **load(
                            mlserver.url + "/v2/models/victim",
                            mlserver.answered,
                            args.clients,
                            args.seconds,
                            args.batch_size,
                            args.timeout,
                        ),
                    },
                )
                run.row(
                    "mlserver_qps",
                    lambda: {
                        "server": "mlserver",
                        **qps_side_by_side(mlserver, min(args.seconds, 20.0), args.batch_size),
                    },
                )
            finally:
                mlserver.stop()
    for row in run.rows:
        print(row)
    print(f"written to {run.finish()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
