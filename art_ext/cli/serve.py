"""``art-ext serve MODEL --port``: expose a model over HTTP on loopback (the reference victim of remote extraction)."""

from __future__ import annotations

import argparse
import sys

from art_ext.cli.audit import add_model_arguments


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="serve MODEL over HTTP (POST /predict, GET /stats, GET /info), loaded as `art-ext audit` loads it",
        description="Serve a saved model over HTTP. POST /predict takes JSON {'inputs', 'shape'} or an .npy body; "
        "GET /stats answers {'answered': N}; GET /info the input shape, classes and input range.",
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
        server = ClassifierServer(loaded.classifier, host=args.host, port=args.port, max_batch=args.max_batch)
    except (ModelLoadError, AuditDataError, ValueError, OSError) as error:
        print(f"art-ext serve: error: {error}", file=sys.stderr)
        return 2
    print(f"[art-ext serve] {loaded.describe()}", flush=True)
    print(f"[art-ext serve] listening on {server.url} (POST /predict, GET /stats, GET /info); Ctrl-C stops", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        print(f"[art-ext serve] stopped after answering {server.answered} inputs", flush=True)
    return 0
