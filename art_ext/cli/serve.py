"""``art-ext serve MODEL --port``: expose a model over HTTP on loopback (the reference victim of remote extraction)."""

from __future__ import annotations

import argparse
import sys

from art_ext.cli.audit import add_model_arguments


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="serve MODEL over HTTP (its own protocol, the Open Inference Protocol v2, TF Serving's REST API)",
        description="Serve a saved model over HTTP. POST /predict takes JSON {'inputs', 'shape'} or an .npy body; "
        "GET /stats answers {'answered': N}; GET /info the input shape, classes and input range. The Open Inference "
        "Protocol v2 (GET /v2/models/NAME, POST /v2/models/NAME/infer, binary tensors too) and TF Serving's REST API "
        "(POST /v1/models/NAME:predict) are answered as well. Malformed requests get a 4xx and one line.",
    )
    add_model_arguments(p)
    p.add_argument(
        "--data",
        default="digits",
        help="a few inputs in the model's layout to read the input shape and range from: an .npz with x and y, an "
        "image folder, 'digits' or 'mnist' (default: digits)",
    )
    p.add_argument("--data-root", default=None, help="folder of the MNIST files for --data mnist")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    p.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1, loopback only)")
    p.add_argument("--max-batch", type=int, default=4096, help="largest number of inputs per request (default 4096)")
    p.add_argument("--model-name", default="model", help="NAME in the v2 and TF Serving paths (default: model)")
    p.add_argument(
        "--clip",
        action="store_true",
        help="clip inputs outside the served input range (--clip-values or DATA's) instead of refusing them (400)",
    )
    p.add_argument(
        "--read-timeout",
        type=float,
        default=10.0,
        help="seconds a client may stay silent mid-request before it gets 408 and is dropped (default 10)",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from art_ext.cli.audit import prepare
    from art_ext.data.user_data import AuditDataError
    from art_ext.estimators.loading import ModelLoadError
    from art_ext.estimators.serving import ClassifierServer

    if not 0 <= args.port <= 65535:
        print(f"art-ext serve: error: --port must be in 0..65535, got {args.port}.", file=sys.stderr)
        return 2
    try:
        args.seed = 0
        _, loaded = prepare(args, sample_size=64)
        server = ClassifierServer(
            loaded.classifier,
            host=args.host,
            port=args.port,
            max_batch=args.max_batch,
            model_name=args.model_name,
            clip=args.clip,
            read_timeout=args.read_timeout,
        )
    except (ModelLoadError, AuditDataError, ValueError, OSError) as error:
        print(f"art-ext serve: error: {error}", file=sys.stderr)
        return 2
    print(f"[art-ext serve] {loaded.describe()}", flush=True)
    print(
        f"[art-ext serve] listening on {server.url} (POST /predict, GET /stats, GET /info; "
        f"Open Inference Protocol: {server.url}/v2/models/{server.model_name}); Ctrl-C stops",
        flush=True,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        print(f"[art-ext serve] stopped after answering {server.answered} inputs", flush=True)
    return 0
