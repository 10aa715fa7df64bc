"""
``art-ext audit URL --data DATA``: the audit of a deployed model through its answers only (Open Inference Protocol
v2, TF Serving's REST API or ``art-ext serve``), within ``--max-queries``: the endpoint's metadata gives the input
shape and classes, DATA gives the inputs in that shape, and the sections that need the model's weights or gradients
are skipped with the reason.
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from art_ext.cli.options import add_endpoint_options

__all__ = ["add_endpoint_arguments", "check_endpoint_arguments", "is_url", "load_endpoint"]

#: MODEL options that describe a saved model, meaningless for an endpoint.
SAVED_MODEL_ONLY = {"--weights": "weights", "--mean": "mean", "--std": "std"}


def is_url(model: str) -> bool:
    return model.startswith(("http://", "https://"))


def add_endpoint_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group(
        "a deployed model (MODEL is http://host:port/v2/models/NAME, /v1/models/NAME or an art-ext serve URL)"
    )
    g.add_argument(
        "--max-queries",
        type=int,
        default=None,
        help="most inputs sent to the model in the whole audit: the model is then audited through its answers only "
        "(always so for a URL); clean accuracy first, then 45%% robustness and 55%% extraction (default: no limit)",
    )
    add_endpoint_options(g, " to a URL")


def check_endpoint_arguments(args: argparse.Namespace) -> None:
    """``ValueError`` naming the option, before anything is sent."""
    from art_ext.cli.experiments.dfme import parse_headers
    from art_ext.cli.options import CommandError

    if args.max_queries is not None and args.max_queries <= 0:
        raise ValueError(f"--max-queries must be a positive integer, got {args.max_queries}.")
    if not is_url(args.model):
        given = [o for o, a in (("--header", args.header), ("--rate-limit", args.rate_limit)) if a]
        if given:
            raise ValueError(f"{', '.join(given)} only apply to a MODEL given as a URL.")
        return
    given = [o for o, attr in SAVED_MODEL_ONLY.items() if getattr(args, attr) is not None]
    if given:
        raise ValueError(f"{', '.join(given)} describe a saved model; the endpoint at MODEL applies its own.")
    try:
        parse_headers(args.header)
    except CommandError as error:
        raise ValueError(str(error)) from None


def endpoint_layout(shape: tuple, layout: str | None) -> bool:
    """
    Whether the endpoint's inputs are channels first: ``--layout``, else read from its input shape when exactly one
    end of it is a channel count (1, 3 or 4) and the other is not; otherwise ``ValueError`` asking for ``--layout``.
    """
    if layout is not None:
        return layout == "channels_first"
    if len(shape) <= 1:
        return True
    first, last = shape[0] in (1, 3, 4), shape[-1] in (1, 3, 4)
    if first != last:
        return first
    raise ValueError(
        f"the endpoint takes inputs of shape {tuple(shape)}, which could be channels first or last: pass --layout "
        "channels_first or --layout channels_last."
    )


def load_endpoint(args: argparse.Namespace, sample_size: int) -> tuple[Any, Any, str]:
    """
    ``(AuditData, RemoteClassifier, description)`` for a URL MODEL: the endpoint's metadata, then DATA in its
    input shape. Raises ``ValueError`` (or ``AuditDataError``) with one line.
    """
    from art_ext.cli.experiments.dfme import parse_clip_values, parse_headers
    from art_ext.cli.options import CommandError
    from art_ext.data.user_data import AuditDataError, load_audit_data
    from art_ext.estimators.classification import RemoteClassifier, RemoteQueryError
    from art_ext.estimators.loading import infer_clip_values

    options: dict = {"concurrency": args.concurrency, "rate_limit": args.rate_limit}
    options["batch_size"] = max(1, 128 // args.concurrency)  # the audit's batches of 128, spread over the requests
    try:
        clip, headers = parse_clip_values(args.clip_values), parse_headers(args.header)
    except CommandError as error:
        raise ValueError(str(error)) from None
    if clip is not None:
        options["clip_values"] = clip
    try:
        model = RemoteClassifier.from_url(args.model, headers=headers, **options)
    except (RemoteQueryError, OSError) as error:
        raise ValueError(f"MODEL {args.model}: {error}") from None
    channels_first = endpoint_layout(tuple(model.input_shape), args.layout)
    data = load_audit_data(
        args.data, channels_first, sample_size, seed=args.seed, mnist_path=getattr(args, "data_root", None)
    )
    if tuple(data.x.shape[1:]) != tuple(model.input_shape):
        raise AuditDataError(
            f"DATA {args.data!r} holds samples of shape {tuple(data.x.shape[1:])}, the endpoint takes "
            f"{tuple(model.input_shape)}: give an .npz with arrays x and y in the endpoint's shape."
        )
    inferred = model.clip_values is None
    if inferred:
        model.set_params(clip_values=infer_clip_values(data.x))
    lo, hi = (float(np.min(v)) for v in model.clip_values)
    if float(data.x.min()) < lo - 1e-6 or float(data.x.max()) > hi + 1e-6:
        raise AuditDataError(f"DATA {args.data!r} lies outside the endpoint's input range [{lo:g}, {hi:g}].")
    for name, labels in (("y", data.y), ("y (not sampled)", data.y_spare)):
        if labels is not None and len(labels) and labels.max() >= model.nb_classes:
            raise AuditDataError(
                f"DATA {args.data!r}: {name} holds class {int(labels.max())}, but the endpoint scores only "
                f"{model.nb_classes} classes."
            )
    model.channels_first = channels_first  # what the audit reads the layout from (ART's black boxes have none)
    description = (
        f"endpoint {args.model} ({model.protocol} protocol), input shape {tuple(model.input_shape)} "
        f"({'channels first' if channels_first else 'channels last'}), {model.nb_classes} classes, input range "
        f"[{lo:g}, {hi:g}] ({'inferred from the data' if inferred else 'given'})"
    )
    return data, model, description
