"""
Load on a deployed model (issue 27 item 6): many concurrent clients for a fixed time against ``art-ext serve`` (in
its own process) and against MLServer, counting what every client sent and received against what the server says it
answered (0 lost, 0 double-counted is the goal); then RemoteClassifier's queries per second against MLServer side by
side with ``tritonclient``'s HTTP client, on the same server and batch size, one request at a time; and
RemoteClassifier's transport (a fresh ``http.client`` connection per request) side by side with urllib3's connection
pool (keep-alive), 1 and 4 requests in flight, on ``art-ext serve`` (in this process, v2 JSON and binary) and MLServer.

    python benchmarks/serving_load.py --clients 64 --seconds 60 --batch-size 32
    python benchmarks/serving_load.py --quick --out /tmp/serving_load.json
    python benchmarks/serving_load.py --only transport --seconds 15   # the transport rows alone: serving_transport.json

The servers serve a 64-to-10 softmax regression (PyTorch), so the numbers measure the serving path, not a model.
MLServer needs ``pip install mlserver`` and tritonclient ``pip install tritonclient[http]``; a part whose package is
missing is left out and said so in the notes; so are the transport rows without urllib3.
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
import urllib.parse
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


def _timed_threads(call, inflight: int, seconds: float) -> tuple[int, float]:
    """`inflight` threads calling `call` until `seconds` are up: (calls finished, seconds taken)."""
    counts, errors = [0] * inflight, []
    barrier = threading.Barrier(inflight + 1)
    stop = [0.0]

    def worker(i):
        barrier.wait()
        try:
            while time.perf_counter() < stop[0]:
                call()
                counts[i] += 1
        except Exception as error:  # noqa: BLE001 (raised again below)
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(inflight)]
    for t in threads:
        t.start()
    start = time.perf_counter()
    stop[0] = start + seconds
    barrier.wait()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return sum(counts), time.perf_counter() - start


def transport_side_by_side(url: str, payload: str, inflight: int, seconds: float, batch_size: int) -> dict:
    """
    Requests per second with `inflight` threads asking at once, same server, body and batch: RemoteClassifier.predict
    (end to end, one shared classifier), its transport alone (``protocols.post``: a fresh ``http.client`` connection
    per request) and urllib3's ``HTTPConnectionPool`` (keep-alive, `inflight` connections), the last two with the
    body encoded once and every answer decoded by the classifier's protocol. Each is timed for `seconds` in three
    alternating slices, so drifts of the machine's load fall on all three alike.
    """
    import urllib3

    from art_ext.estimators.classification import RemoteClassifier
    from art_ext.estimators.classification.protocols import post

    x = np.random.default_rng(2).uniform(0, 1, (batch_size, *SHAPE)).astype(np.float32)
    remote = RemoteClassifier.from_url(url, batch_size=batch_size, payload=payload, timeout=60.0, max_retries=0)
    protocol, shape = remote._protocol, (batch_size, remote.nb_classes)
    body, headers = protocol.encode(x)
    headers = {**headers, "Content-Length": str(len(body))}
    parts = urllib.parse.urlsplit(url)
    pool = urllib3.HTTPConnectionPool(parts.hostname, parts.port, maxsize=inflight, block=True, timeout=60.0)

    def fresh():
        status, answer_headers, data = post(url, protocol.path, body, headers, 60.0)
        if status != 200:
            raise RuntimeError(f"HTTP {status}: {data[:200]!r}")
        return protocol.decode(data, answer_headers, shape)

    def pooled():
        resp = pool.urlopen("POST", parts.path.rstrip("/") + protocol.path, body=body, headers=headers, retries=False)
        if resp.status != 200:
            raise RuntimeError(f"HTTP {resp.status}: {resp.data[:200]!r}")
        return protocol.decode(resp.data, {k.lower(): v for k, v in resp.headers.items()}, shape)

    calls = {"remote_classifier": lambda: remote.predict(x), "fresh_connection": fresh, "urllib3_pool": pooled}
    answers = {name: np.asarray(call(), dtype=np.float32) for name, call in calls.items()}  # one warm-up each
    done, elapsed = dict.fromkeys(calls, 0), dict.fromkeys(calls, 0.0)
    names = list(calls)
    for slice_ in range(3):
        for name in names[slice_:] + names[:slice_]:
            n, t = _timed_threads(calls[name], inflight, seconds / 3)
            done[name] += n
            elapsed[name] += t
    pool.close()
    out: dict = {"payload": remote.payload, "in_flight": inflight, "batch_size": batch_size}
    out.update({f"{name}_requests_per_s": round(done[name] / elapsed[name], 1) for name in calls})
    out["pool_over_fresh"] = round(out["urllib3_pool_requests_per_s"] / out["fresh_connection_requests_per_s"], 3)
    out["pool_over_remote_classifier"] = round(
        out["urllib3_pool_requests_per_s"] / out["remote_classifier_requests_per_s"], 3
    )
    out["same_answers"] = all(np.array_equal(answers["fresh_connection"], a) for a in answers.values())
    out["seconds_each"] = seconds
    return out


def start_serve_in_thread():
    """``art-ext serve`` (:func:`~art_ext.estimators.serving.serve_in_thread`) of the softmax regression, here."""
    import torch
    from art.estimators.classification import PyTorchClassifier

    from art_ext.estimators.serving import serve_in_thread

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10), torch.nn.Softmax(dim=1)).eval()
    classifier = PyTorchClassifier(
        net, loss=torch.nn.CrossEntropyLoss(), input_shape=SHAPE, nb_classes=10, clip_values=(0.0, 1.0)
    )
    server = serve_in_thread(classifier, max_batch=4096)
    return server, f"http://127.0.0.1:{server.port}/v2/models/model"


def transport_rows(run: Run, seconds: float, batch_size: int, mlserver=None) -> None:
    """The transport rows on ``art-ext serve`` in this process (v2 JSON and binary), or on `mlserver` when given."""
    if importlib.util.find_spec("urllib3") is None:
        if "urllib3" not in run.data["notes"]:
            run.data["notes"] += " urllib3 is not installed: the transport rows are left out."
        return
    if mlserver is not None:
        for inflight in (1, 4):
            run.row(
                f"transport_mlserver_json_{inflight}",
                lambda i=inflight: {
                    "server": "mlserver",
                    "protocol": "v2",
                    **transport_side_by_side(mlserver.url + "/v2/models/victim", "json", i, seconds, batch_size),
                },
            )
        return
    server, url = start_serve_in_thread()
    try:
        for payload in ("json", "binary"):
            for inflight in (1, 4):
                run.row(
                    f"transport_serve_{payload}_{inflight}",
                    lambda p=payload, i=inflight: {
                        "server": "art-ext serve (in process)",
                        "protocol": "v2",
                        **transport_side_by_side(url, p, i, seconds, batch_size),
                    },
                )
    finally:
        server.shutdown()
        server.server_close()


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=64)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--timeout", type=float, default=60.0, help="seconds a client waits for one answer")
    p.add_argument(
        "--only",
        choices=["transport"],
        default=None,
        help="only the transport rows (fresh connection against urllib3's pool, at most 20 s each of --seconds), "
        "written to benchmarks/results/serving_transport.json",
    )
    args = p.parse_args(argv)
    if args.quick:
        args.clients, args.seconds = min(args.clients, 16), min(args.seconds, 10.0)
    transport_only = args.only == "transport"
    notes = "Goal of issue 27: 0 lost, 0 double-counted; tritonclient ratio >= 0.9."
    if transport_only:
        notes = (
            "Requests per second with 1 or 4 in flight, same server, body and batch: RemoteClassifier.predict end to "
            "end, its transport alone (a fresh http.client connection per request) and urllib3's HTTPConnectionPool "
            "(keep-alive), timed in alternating slices; pool_over_fresh is the pool's rate over the fresh "
            "connection's. art-ext serve runs in the benchmark's process (it shares the interpreter with the "
            "clients), MLServer in its own."
        )
    run = Run("serving_transport" if transport_only else "serving_load", args, paper={}, notes=notes)
    transport_seconds = min(args.seconds, 20.0)
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_serve(Path(tmp)) if not transport_only else (None, None)
        try:

            def serve_count():
                with urllib.request.urlopen(url + "/stats", timeout=30) as resp:
                    return json.loads(resp.read())["answered"]

            for protocol, address in (("native", url), ("v2", url + "/v2/models/model")) if url else ():
                run.row(
                    f"serve_{protocol}",
                    lambda a=address, pr=protocol: {
                        "server": "art-ext serve",
                        "protocol": pr,
                        **load(a, serve_count, args.clients, args.seconds, args.batch_size, args.timeout),
                    },
                )
        finally:
            if proc is not None:
                proc.terminate()
                proc.wait(30)
        transport_rows(run, transport_seconds, args.batch_size)
        if importlib.util.find_spec("mlserver") is None:
            run.data["notes"] += " MLServer is not installed: its rows are left out."
        else:
            helper = _mlserver_module()
            folder = Path(tmp) / "mlserver"
            folder.mkdir()
            mlserver = helper.MLServerProcess(folder, SHAPE)
            try:
                mlserver.wait_ready()
                if not transport_only:
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
                transport_rows(run, transport_seconds, args.batch_size, mlserver)
            finally:
                mlserver.stop()
    for row in run.rows:
        print(row)
    print(f"written to {run.finish()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
