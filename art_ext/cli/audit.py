"""``art-ext audit MODEL --data DATA``: the main job on the user's own model and data."""

from __future__ import annotations

import argparse
import os
import sys

from art_ext.cli.audit_endpoint import add_endpoint_arguments, check_endpoint_arguments, is_url, load_endpoint
from art_ext.evaluations.audit import SECTIONS

MODEL_HELP = (
    "the model: a TorchScript file (torch.jit.save; TorchScript is code: only audit files you trust), "
    "package.module:factory returning a torch.nn.Module (or Keras model) plus --weights STATE_DICT "
    "(read with torch.load(weights_only=True)), a Keras .keras file, or a TensorFlow SavedModel folder"
)


def add_model_arguments(p: argparse.ArgumentParser, framework_help: str = "") -> None:
    """Options describing MODEL, shared by ``audit`` and ``serve`` (`framework_help` ends ``--framework``'s help)."""
    p.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    p.add_argument("--weights", default=None, help="state_dict file for a package.module:factory MODEL")
    p.add_argument(
        "--framework",
        dest="expected_framework",
        choices=["pytorch", "tensorflow"],
        default=None,
        help="refuse a MODEL of the other framework (default: whatever MODEL is)" + framework_help,
    )
    p.add_argument(
        "--layout",
        choices=["channels_first", "channels_last"],
        default=None,
        help="image layout the model expects, for built-in and image-folder DATA (default: channels_first for "
        "PyTorch models, channels_last for Keras/SavedModel); an .npz is given to the model as it is",
    )
    p.add_argument("--clip-values", default=None, metavar="MIN,MAX", help="input range (default: inferred from DATA)")
    p.add_argument("--mean", default=None, help="preprocessing mean, one number or one per channel (comma-separated)")
    p.add_argument("--std", default=None, help="preprocessing standard deviation, as --mean")
    p.add_argument(
        "--output",
        choices=["auto", "logits", "probabilities"],
        default="auto",
        help="what the model returns (default: detected from its answers)",
    )


def export_demo_model(ctx) -> str:
    """
    Save the demo's baseline digits CNN in ``ctx.out_dir`` for ``art-ext audit``: ``digits_cnn.pt`` (TorchScript) on
    PyTorch, ``digits_cnn.keras`` on TensorFlow. Returns the path.
    """
    trained = [v for k, v in ctx._cache.items() if k.startswith("digits_cnn:")]
    clf = trained[0] if trained else ctx.train_classifier("digits_cnn", nb_epochs=15 if ctx.quick else 30)
    if ctx.framework == "pytorch":
        import torch

        path = os.path.join(ctx.out_dir, "digits_cnn.pt")
        torch.jit.save(torch.jit.script(clf.model.eval()), path)
    else:
        path = os.path.join(ctx.out_dir, "digits_cnn.keras")
        clf.model.save(path)
    ctx.report.text(
        f"The baseline digits CNN is saved as `{os.path.basename(path)}`: `art-ext audit {path} --data digits`."
    )
    return path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "audit",
        help="audit your own model on your data: accuracy, robustness, masking, certification, extraction",
        description="Audit a saved model, or a deployed one at a URL (through its answers only, within --max-queries), "
        "on labelled data and write report.md, report.html and results.json.",
        epilog="Exit status: 0 when every section ran or was skipped with its reason, 1 when a section failed (an "
        "internal error of the audit; the report holds the others), 2 on bad input (nothing is written). A CI job "
        "can gate on it.",
    )
    add_model_arguments(
        p,
        "; for a URL MODEL (or --max-queries), the framework of DFME's student (default: PyTorch where installed)",
    )
    p.add_argument(
        "--data",
        required=True,
        help="an .npz with arrays x and y, a folder of images in class sub-folders, 'digits' (built in) or 'mnist' "
        "(local files under $ART_EXT_DATA/mnist or --data-root)",
    )
    p.add_argument("--data-root", default=None, help="folder of the MNIST files for --data mnist")
    p.add_argument("--sample-size", type=int, default=500, help="inputs audited, a seeded random subset (default 500)")
    p.add_argument("--out", default="art_ext_audit", help="output folder (default ./art_ext_audit)")
    p.add_argument("--eps", default=None, help="comma-separated l-inf budgets (default: 0.02..0.3 of the input range)")
    p.add_argument("--eps-l2", default=None, help="comma-separated l2 budgets (default: scaled by sqrt(dimensions))")
    p.add_argument("--norm", default="inf,2", help="norms of the robustness curves: inf, 2 or inf,2 (default)")
    p.add_argument("--budget-minutes", type=float, default=None, help="cap on the whole run; sections shrink to fit")
    p.add_argument("--sections", default=",".join(SECTIONS), help=f"sections to run (default: {','.join(SECTIONS)})")
    p.add_argument("--skip", default="", help="sections to leave out (comma-separated)")
    p.add_argument("--format", default="md,html,json", help="files to write: md, html, json (default: all)")
    p.add_argument(
        "--attacks",
        default="fgsm,pgd,square,hopskipjump,autoattack",
        help="robustness attacks: fgsm, pgd, square, hopskipjump, autoattack (ART's AutoAttack); each runs where it "
        "fits the input (Square on square images, HopSkipJump elsewhere) and the report says why (default: all)",
    )
    p.add_argument("--extraction-queries", type=int, default=20_000, help="DFME budget per victim (default 20000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no estimates or progress bars")
    add_endpoint_arguments(p)
    p.set_defaults(run=run)


def _split(text: str | None) -> list[str]:
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def _floats(text: str | None, option: str) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(t) for t in _split(text)]
    except ValueError:
        raise ValueError(f"{option} must be comma-separated numbers, got {text!r}.") from None


def check_out_dir(out: str) -> None:
    """Refuse an --out that cannot be created or written, without creating anything."""
    path = os.path.abspath(out)
    if os.path.exists(path):
        if not os.path.isdir(path):
            raise ValueError(f"--out {out!r} exists and is not a folder.")
        if not os.access(path, os.W_OK | os.X_OK):
            raise ValueError(f"--out {out!r} is not writable.")
        return
    parent = path
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent) or not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"--out {out!r} cannot be created ({parent!r} is not a writable folder).")


def default_channels_first(model: str, layout: str | None) -> bool:
    """The image layout for built-in data: --layout, else the usual one of MODEL's framework."""
    from art_ext.estimators.loading import model_kind

    if layout is not None:
        return layout == "channels_first"
    return model_kind(model) in ("torchscript", "factory")


def prepare(args: argparse.Namespace, sample_size: int | None) -> tuple:
    """Load DATA and MODEL as the audit does: ``(AuditData, LoadedModel)``; raises one-line errors."""
    from art_ext.data.user_data import AuditDataError, load_audit_data
    from art_ext.estimators.loading import load_classifier

    channels_first = default_channels_first(args.model, args.layout)
    data = load_audit_data(
        args.data,
        channels_first,
        sample_size,
        seed=getattr(args, "seed", 0),
        mnist_path=getattr(args, "data_root", None),
    )
    loaded = load_classifier(
        args.model,
        data.x,
        weights=args.weights,
        clip_values=args.clip_values,
        mean=args.mean,
        std=args.std,
        output=args.output,
        framework=args.expected_framework,
    )
    nb_classes = loaded.classifier.nb_classes
    for name, labels in (("y", data.y), ("y (not sampled)", data.y_spare)):
        if labels is not None and len(labels) and labels.max() >= nb_classes:
            raise AuditDataError(
                f"DATA {args.data!r}: {name} holds class {int(labels.max())}, but MODEL has only {nb_classes} "
                f"outputs (classes 0..{nb_classes - 1})."
            )
    return data, loaded


def run(args: argparse.Namespace) -> int:
    import time

    from art_ext.data.user_data import AuditDataError
    from art_ext.estimators.loading import ModelLoadError

    start_time = time.perf_counter()
    try:
        formats = _split(args.format)
        bad = [f for f in formats if f not in ("md", "html", "json")]
        if bad or not formats:
            raise ValueError(f"--format must be a comma-separated subset of md,html,json, got {args.format!r}.")
        sections = [s for s in _split(args.sections) if s not in _split(args.skip)]
        unknown = [s for s in _split(args.sections) + _split(args.skip) if s not in SECTIONS]
        if unknown or not sections:
            raise ValueError(
                f"--sections/--skip must name sections among {','.join(SECTIONS)}, got {unknown or 'none'}."
            )
        norms = _split(args.norm)
        if not norms or any(n not in ("inf", "2") for n in norms):
            raise ValueError(f"--norm must be inf, 2 or inf,2, got {args.norm!r}.")
        if args.budget_minutes is not None and not args.budget_minutes > 0:
            raise ValueError(f"--budget-minutes must be positive, got {args.budget_minutes}.")
        if args.extraction_queries <= 0:
            raise ValueError(f"--extraction-queries must be positive, got {args.extraction_queries}.")
        eps, eps_l2 = _floats(args.eps, "--eps"), _floats(args.eps_l2, "--eps-l2")
        for option, values in (("--eps", eps), ("--eps-l2", eps_l2)):
            if values is not None and (not values or min(values) <= 0 or sorted(values) != values):
                raise ValueError(f"{option} must be increasing positive numbers, got {values}.")
        check_endpoint_arguments(args)
        check_out_dir(args.out)
        if is_url(args.model):
            data, classifier, description = load_endpoint(args, args.sample_size)
            framework, output = None, args.output
        else:
            data, loaded = prepare(args, args.sample_size)
            classifier, description, framework, output = (
                loaded.classifier,
                loaded.describe(),
                loaded.framework,
                loaded.output,
            )
    except (ModelLoadError, AuditDataError, ValueError) as error:
        print(f"art-ext audit: error: {error}", file=sys.stderr)
        return 2

    from art_ext.evaluations import audit
    from art_ext.utils.seed import set_seed

    set_seed(args.seed, framework or args.expected_framework)
    verbose = not args.quiet
    if verbose:
        print(f"[art-ext audit] {description}", flush=True)
    header = {
        "model": description,
        "data": f"{args.data} ({len(data.x)} inputs audited, sample shape {tuple(data.x.shape[1:])})",
    }
    try:
        report = audit(
            classifier,
            data.x,
            data.y,
            x_spare=data.x_spare,
            y_spare=data.y_spare,
            sections=sections,
            eps=eps,
            eps_l2=eps_l2,
            norms=norms,
            budget_minutes=args.budget_minutes,
            output=output,
            robustness_attacks=_split(args.attacks),
            extraction_queries=args.extraction_queries,
            out_dir=args.out,
            formats=formats,
            title="art_ext audit",
            header=header,
            seed=args.seed,
            verbose=verbose,
            start_time=start_time,
            max_queries=args.max_queries,
            student_framework=args.expected_framework,
        )
    except ValueError as error:
        print(f"art-ext audit: error: {error}", file=sys.stderr)
        return 2
    for line in [f"{f.text}" for f in report.findings][:6]:
        print(f"  - {line}")
    for fmt, path in report.files.items():
        print(f"[art-ext audit] {fmt}: {os.path.abspath(path)}")
    for s in report.sections:
        if s.status == "skipped" and verbose:
            print(f"[art-ext audit] {s.key} skipped: {s.reason}")
    failed = [s.key for s in report.sections if s.status == "failed"]
    if failed:
        print(f"art-ext audit: error: section(s) {', '.join(failed)} failed (see the report).", file=sys.stderr)
        return 1
    return 0
