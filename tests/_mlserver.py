"""
MLServer on free loopback ports (``mlserver start DIR``) with a custom runtime serving a small PyTorch model and
counting the inputs it answered in a file: shared by tests/test_mlserver.py and benchmarks/serving_load.py.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request

import torch

RUNTIME = '''
import os

import numpy as np
import torch
from mlserver import MLModel
from mlserver.types import InferenceRequest, InferenceResponse, ResponseOutput


class TorchVictim(MLModel):
    """A softmax-regression PyTorch model; every answered input is counted in answered.txt beside the settings."""

    async def load(self) -> bool:
        torch.set_num_threads(1)
        folder = os.path.dirname(os.path.abspath(__file__))
        self.net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10), torch.nn.Softmax(dim=1))
        self.net.load_state_dict(torch.load(os.path.join(folder, "victim.pt"), weights_only=True))
        self.net.eval()
        self.counter = os.path.join(folder, "answered.txt")
        self.answered = 0
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        tensor = payload.inputs[0]
        x = np.asarray(tensor.data.root if hasattr(tensor.data, "root") else tensor.data, dtype=np.float32)
        x = x.reshape(tensor.shape)
        with torch.no_grad():
            out = self.net(torch.from_numpy(x)).numpy()
        self.answered += len(x)
        with open(self.counter + ".tmp", "w") as f:
            f.write(str(self.answered))
        os.replace(self.counter + ".tmp", self.counter)
        return InferenceResponse(
            model_name=self.name,
            outputs=[ResponseOutput(name="probabilities", shape=list(out.shape), datatype="FP32", data=out.ravel().tolist())],
        )
'''


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class MLServerProcess:
    """``mlserver start`` on free loopback ports, serving the model ``victim``; :meth:`answered` reads its count."""

    def __init__(self, folder, input_shape):
        self.folder = folder
        model_dir = folder / "victim"
        model_dir.mkdir()
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10), torch.nn.Softmax(dim=1))
        with torch.no_grad():
            net[1].weight.mul_(8.0)  # confident answers, as a trained victim gives
        self.net = net.eval()
        torch.save(net.state_dict(), model_dir / "victim.pt")
        (model_dir / "victim_runtime.py").write_text(textwrap.dedent(RUNTIME))
        settings = {
            "name": "victim",
            "implementation": "victim_runtime.TorchVictim",
            "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, *input_shape]}],
            "outputs": [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 10]}],
        }
        (model_dir / "model-settings.json").write_text(json.dumps(settings))
        self.http_port = _free_port()
        server = {
            "host": "127.0.0.1",
            "http_port": self.http_port,
            "grpc_port": _free_port(),
            "metrics_endpoint": None,  # no metrics server (and no third port)
            "parallel_workers": 0,  # the runtime runs in the server's process: one counter
            "debug": False,
        }
        (folder / "settings.json").write_text(json.dumps(server))
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.log = open(folder / "mlserver.log", "w")  # noqa: SIM115 (closed in stop)
        env = dict(os.environ, OMP_NUM_THREADS="1", MLSERVER_PARALLEL_WORKERS="0")
        command = [sys.executable, "-c", "from mlserver.cli import main; main()", "start", str(folder)]
        self.proc = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT, env=env, cwd=str(folder))

    def wait_ready(self, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mlserver exited with {self.proc.returncode}: {self.tail()}")
            try:
                with urllib.request.urlopen(self.url + "/v2/models/victim/ready", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"mlserver was not ready after {timeout:.0f} s: {self.tail()}")

    def tail(self) -> str:
        self.log.flush()
        return (self.folder / "mlserver.log").read_text()[-2000:]

    def answered(self) -> int:
        path = self.folder / "victim" / "answered.txt"
        return int(path.read_text()) if path.exists() else 0

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self.log.close()
