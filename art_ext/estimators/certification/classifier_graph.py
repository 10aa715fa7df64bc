"""
Reading an ART classifier into a verified :class:`~art_ext.estimators.certification.graph.LipschitzGraph`: the
classifier checks (postprocessing refused, predict-time preprocessing only if it is ART's mean/std standardisation),
the framework reader, the comparison of the rebuilt graph with the classifier's own outputs, and the fingerprint of
the parameters that tells when a bound belongs to weights the model no longer holds.
"""

from __future__ import annotations

import contextlib
import hashlib
from typing import Any

import numpy as np

from art_ext.backend import framework_of, get_backend
from art_ext.backend.distributed import unwrap_model
from art_ext.estimators.certification.graph import LayerRecord, LipschitzGraph

__all__ = [
    "build_graph",
    "check_certifiable_classifier",
    "fingerprint",
    "no_grad",
    "preprocessing_affine",
    "preprocessing_factor",
    "verify_graph",
]


# ---------------------------------------------------------------------------------------------------- classifiers
def check_certifiable_classifier(classifier: Any) -> str:
    """
    An ART classifier a Lipschitz certificate can cover: PyTorch, TensorFlow v2 or Keras, no postprocessing defences.

    :return: Its framework, ``"pytorch"`` or ``"tensorflow"``.
    :raises TypeError: Naming what prevents it.
    """
    from art.estimators.classification.classifier import ClassifierMixin

    if not isinstance(classifier, ClassifierMixin):
        raise TypeError(
            "`classifier` must be an ART PyTorchClassifier, TensorFlowV2Classifier or KerasClassifier, got "
            f"{type(classifier).__name__}."
        )
    try:
        framework = framework_of(classifier)
    except TypeError as err:
        raise TypeError(f"`classifier`: {err}") from err
    if getattr(classifier, "postprocessing_defences", None):
        names = ", ".join(type(d).__name__ for d in classifier.postprocessing_defences)
        raise TypeError(
            f"`classifier` has postprocessing defences ({names}); a Lipschitz certificate bounds the logits, which "
            "these change. Certify the classifier without postprocessing_defences."
        )
    return framework


def _standardisation_types() -> tuple:
    from art.preprocessing.standardisation_mean_std.numpy import StandardisationMeanStd
    from art.preprocessing.standardisation_mean_std.pytorch import StandardisationMeanStdPyTorch
    from art.preprocessing.standardisation_mean_std.tensorflow import StandardisationMeanStdTensorFlow

    return StandardisationMeanStd, StandardisationMeanStdPyTorch, StandardisationMeanStdTensorFlow


def preprocessing_affine(classifier: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """
    ART's predict-time preprocessing as an element-wise affine map ``x * a + b`` (``None`` for the identity).

    Only ART's mean/std standardisation is accepted (preprocessors applied at fit time only are ignored, as ART's
    predict ignores them); anything else raises a ``TypeError``.
    """
    kinds = _standardisation_types()
    ops_used = []
    for op in getattr(classifier, "preprocessing_operations", None) or []:
        if type(op) in kinds:
            std = np.asarray(op.std, dtype=np.float64)
            if np.any(std == 0):
                raise ValueError("`classifier` preprocessing has a zero standard deviation.")
            ops_used.append(op)
        elif getattr(op, "apply_predict", True):
            raise TypeError(
                f"`classifier` has preprocessing {type(op).__name__} applied at predict time, whose Lipschitz constant "
                "is unknown; only ART's mean/std standardisation can be certified."
            )
    if not ops_used:
        return None
    shape = (1,) + tuple(classifier.input_shape)
    zero, one = np.zeros(shape, dtype=np.float32), np.ones(shape, dtype=np.float32)
    for op in ops_used:
        zero, one = op(zero)[0], op(one)[0]
    zero, one = np.asarray(zero, dtype=np.float64), np.asarray(one, dtype=np.float64)
    return one - zero, zero


def preprocessing_factor(classifier: Any) -> float:
    """Lipschitz constant of ART's preprocessing: ``1 / min |std|`` for mean/std standardisation, else an error."""
    affine = preprocessing_affine(classifier)
    return 1.0 if affine is None else float(np.max(np.abs(affine[0])))


@contextlib.contextmanager
def no_grad(framework: str):
    """No autograd bookkeeping for evaluation-only forward passes."""
    if framework == "pytorch":
        import torch

        with torch.no_grad():
            yield
    else:
        yield


def fingerprint(classifier: Any, framework: str) -> str:
    """A digest of the model's parameters and buffers (values and identities) and of its preprocessing."""
    digest = hashlib.blake2b(digest_size=16)
    if framework == "pytorch":
        for name, tensor in unwrap_model(classifier.model).state_dict(keep_vars=True).items():
            digest.update(f"{name}:{id(tensor)}:{tuple(tensor.shape)}".encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    else:
        for weight in classifier.model.weights:
            digest.update(f"{weight.path}:{id(weight)}:{tuple(weight.shape)}".encode())
            digest.update(np.ascontiguousarray(weight.numpy()).tobytes())
    for op in getattr(classifier, "preprocessing_operations", None) or []:
        digest.update(repr((type(op).__name__, getattr(op, "mean", None), getattr(op, "std", None))).encode())
    digest.update(repr([type(d).__name__ for d in getattr(classifier, "postprocessing_defences", None) or []]).encode())
    return digest.hexdigest()


def _probe_inputs(classifier: Any, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = (n,) + tuple(classifier.input_shape)
    clip = getattr(classifier, "clip_values", None)
    if clip is None:
        return rng.standard_normal(shape).astype(np.float32)
    low, high = (np.broadcast_to(np.asarray(v, dtype=np.float32), shape[1:]) for v in clip)
    return (low + (high - low) * rng.uniform(0, 1, size=shape)).astype(np.float32)


def build_graph(classifier: Any, check: bool = True) -> LipschitzGraph:
    """
    Read an ART classifier's model (and its mean/std preprocessing) into a verified :class:`LipschitzGraph`.

    :param classifier: ART ``PyTorchClassifier``, ``TensorFlowV2Classifier`` or ``KerasClassifier``.
    :param check: Compare the rebuilt graph with the classifier's own output on random inputs in ``clip_values``.
    :raises TypeError: When a node cannot be bounded or the rebuilt graph does not compute what the model computes.
    """
    framework = check_certifiable_classifier(classifier)
    ops = get_backend(framework)
    nodes = [LayerRecord(kind="input", name="input")]
    affine = preprocessing_affine(classifier)
    if affine is not None:
        a, b = affine
        a_t, b_t = (
            ops.asarray(a[0], device=ops.device_of(classifier)),
            ops.asarray(b[0], device=ops.device_of(classifier)),
        )
        nodes.append(
            LayerRecord(
                kind="constant",
                name="preprocessing (mean/std)",
                inputs=(0,),
                forward=lambda x: x * a_t + b_t,
                factor=float(np.max(np.abs(a))),
                note="preprocessing",
            )
        )
    if framework == "pytorch":
        from art_ext.estimators.certification.torch_graph import read_torch

        example = ops.asarray(_probe_inputs(classifier, 2, 3), device=ops.device_of(classifier))
        # the module inside a DDP wrapper; a TorchScript model's shape checks are resolved on the example
        output = read_torch(unwrap_model(classifier.model), nodes, ops, example=example)
    else:
        from art_ext.estimators.certification.keras_graph import read_keras

        output = read_keras(classifier.model, nodes, ops)
    graph = LipschitzGraph(nodes, output)
    with no_grad(framework):
        graph.run(ops.asarray(_probe_inputs(classifier, 2, 1), device=ops.device_of(classifier)), record_shapes=True)
    out_shape = nodes[output].out_shape
    if out_shape != (classifier.nb_classes,):
        raise TypeError(
            f"The model outputs per-sample shape {out_shape}, not (nb_classes,) = ({classifier.nb_classes},): logits "
            "must be one flat row per sample (a dense layer on a non-flat tensor keeps its leading axes; flatten first)."
        )
    for node in nodes:
        if node.factor_fn is not None:
            node.factor = float(node.factor_fn(node))
    if check:
        x = _probe_inputs(classifier, 4, 2)
        verify_graph(graph, classifier, x, np.asarray(classifier.predict(x), dtype=np.float64))
    return graph


def verify_graph(
    graph: LipschitzGraph, classifier: Any, x: np.ndarray, logits: np.ndarray, tol: float = 1e-4, compiled: bool = False
) -> None:
    """
    Raise a ``TypeError`` unless the rebuilt graph reproduces `logits` (the classifier's own outputs on `x`).

    :param compiled: On TensorFlow, run the graph as one ``tf.function`` (traced once per input shape, without
                     AutoGraph).
    """
    framework = framework_of(classifier)
    ops = get_backend(framework)
    run = graph.run
    if compiled and framework == "tensorflow":
        if getattr(graph, "_tf_run", None) is None:
            import tensorflow as tf

            # No AutoGraph: the graph's Python loop runs over its nodes, never over tensor values, and converting
            # it (its source and every node's forward) took seconds on the first certify of a process.
            graph._tf_run = tf.function(graph.run, autograph=False)
        run = graph._tf_run
    with no_grad(framework):
        rebuilt = np.asarray(ops.to_numpy(run(ops.asarray(x, device=ops.device_of(classifier)))), np.float64)
    scale = 1.0 + np.abs(logits).max(initial=0.0)
    if rebuilt.shape != logits.shape or not np.all(np.abs(rebuilt - logits) <= tol * scale):
        gap = float(np.abs(rebuilt - logits).max()) if rebuilt.shape == logits.shape else float("nan")
        raise TypeError(
            f"The computation graph read from {type(unwrap_model(classifier.model)).__name__} does not reproduce the classifier's "
            f"outputs (shape {rebuilt.shape} vs {logits.shape}, largest difference {gap:.3g}): the model computes "
            "something its layers do not show (a forward hook, a layer subclass with its own forward, a patched "
            "method?). Remove it, or express it with certifiable layers."
        )
