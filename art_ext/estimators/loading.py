"""
Load a user's saved model as an ART classifier, the way ``art-ext audit`` and ``art-ext serve`` do.

Four kinds of ``MODEL`` are understood:

* a TorchScript file (``torch.jit.save``): TorchScript is code; loading it runs what its author compiled into it, so
  only load files you trust;
* a PyTorch ``nn.Module`` given as ``package.module:factory`` (a callable returning the module), with an optional
  ``state_dict`` file read with ``torch.load(weights_only=True)`` (no pickled code is executed);
* a Keras ``.keras`` file (``keras.saving.load_model`` with ``safe_mode=True``);
* a TensorFlow SavedModel folder (wrapped with ``keras.layers.TFSMLayer``).

Nothing is reshaped or transposed behind the user's back: the data must already have the layout the model expects,
and every mismatch is refused with a :class:`ModelLoadError` naming the file or option to fix.
"""

from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from art_ext.utils.outputs import check_output_kind, detect_output_kind

__all__ = ["LoadedModel", "ModelLoadError", "infer_clip_values", "load_classifier", "model_kind"]


class ModelLoadError(ValueError):
    """A model or an option describing it cannot be used; the message names the file or option to fix."""


@dataclass
class LoadedModel:
    """
    A user's model wrapped as an ART classifier, with what was detected about it.

    :param classifier: ART ``PyTorchClassifier`` or ``TensorFlowV2Classifier``.
    :param framework: ``"pytorch"`` or ``"tensorflow"``.
    :param kind: ``"torchscript"``, ``"factory"``, ``"keras"`` or ``"savedmodel"``.
    :param output: ``"logits"`` or ``"probabilities"``.
    :param output_detected: Whether `output` was detected (``True``) or given.
    :param clip_values: Input range.
    :param clip_values_inferred: Whether the range was inferred from the data.
    :param source: The ``MODEL`` argument.
    """

    classifier: Any
    framework: str
    kind: str
    output: str
    output_detected: bool
    clip_values: tuple[float, float]
    clip_values_inferred: bool
    source: str

    def describe(self) -> str:
        """One line describing the model for reports."""
        clf = self.classifier
        return (
            f"{self.kind} model `{os.path.basename(self.source.rstrip(os.sep)) or self.source}` ({self.framework}), "
            f"input shape {tuple(clf.input_shape)}, {clf.nb_classes} classes, {self.output} "
            f"({'detected' if self.output_detected else 'given'}), input range {list(self.clip_values)} "
            f"({'inferred from the data' if self.clip_values_inferred else 'given'})"
        )


def model_kind(model: str) -> str:
    """
    The kind of a ``MODEL`` argument, from its form only (nothing is loaded).

    :raises ModelLoadError: When it is neither an existing file/folder nor ``package.module:factory``.
    """
    if os.path.isdir(model):
        if os.path.isfile(os.path.join(model, "saved_model.pb")):
            return "savedmodel"
        raise ModelLoadError(f"MODEL {model!r} is a folder without saved_model.pb (not a TensorFlow SavedModel).")
    if os.path.isfile(model):
        return "keras" if model.endswith(".keras") else "torchscript"
    module, sep, attr = model.partition(":")
    if sep and module and attr and all(part.isidentifier() for part in module.split(".") + attr.split(".")):
        return "factory"
    raise ModelLoadError(
        f"MODEL {model!r}: no such file or folder, and not of the form package.module:factory "
        "(a TorchScript file, a .keras file, a SavedModel folder or an importable nn.Module factory)."
    )


def infer_clip_values(x: np.ndarray) -> tuple[float, float]:
    """The input range of data: ``(0, 1)`` or ``(0, 255)`` when the data fits in it, else its own min and max."""
    lo, hi = float(np.min(x)), float(np.max(x))
    if lo >= 0.0 and hi <= 1.0:
        return 0.0, 1.0
    if lo >= 0.0 and hi <= 255.0 and hi > 1.0:
        return 0.0, 255.0
    return lo, hi


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"[:300]


def _framework_module(name: str, path: str, what: str) -> Any:
    """Import torch or keras for a model file, or refuse in one line saying which framework to install."""
    try:
        return importlib.import_module(name)
    except ImportError:
        extra = "torch" if name == "torch" else "tensorflow-cpu"
        raise ModelLoadError(
            f"MODEL {path!r} is {what}, which needs {'PyTorch' if name == 'torch' else 'TensorFlow'}: install it "
            f"(pip install -e '.[{extra}]')."
        ) from None


def _load_torchscript(path: str) -> Any:
    torch = _framework_module("torch", path, "a TorchScript file")
    try:
        return torch.jit.load(path, map_location="cpu")
    except Exception as error:  # noqa: BLE001 (any failure of the loader is reported as one line)
        raise ModelLoadError(
            f"MODEL {path!r} is not a TorchScript file ({_first_line(error)}); save it with torch.jit.save, "
            "or give a .keras file, a SavedModel folder or package.module:factory."
        ) from None


def _load_factory(spec: str, weights: str | None) -> tuple[Any, str]:
    module_name, _, attr = spec.partition(":")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as error:  # noqa: BLE001
        raise ModelLoadError(f"MODEL {spec!r}: cannot import {module_name!r} ({_first_line(error)}).") from None
    factory: Any = module
    for part in attr.split("."):
        factory = getattr(factory, part, None)
        if factory is None:
            raise ModelLoadError(f"MODEL {spec!r}: {module_name!r} has no attribute {attr!r}.")
    if not callable(factory):
        raise ModelLoadError(f"MODEL {spec!r}: {attr!r} is not callable (expected a function returning the model).")
    try:
        model = factory()
    except Exception as error:  # noqa: BLE001
        raise ModelLoadError(f"MODEL {spec!r}: calling {attr}() failed ({_first_line(error)}).") from None
    from art_ext.backend import framework_of

    try:
        framework = framework_of(model)
    except TypeError:
        raise ModelLoadError(
            f"MODEL {spec!r}: {attr}() returned a {type(model).__name__}, not a torch.nn.Module or Keras model."
        ) from None
    if weights is not None:
        if not os.path.isfile(weights):
            raise ModelLoadError(f"--weights {weights!r}: no such file.")
        if framework == "pytorch":
            import torch

            try:
                state = torch.load(weights, map_location="cpu", weights_only=True)
                if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
                    state = state["state_dict"]
                model.load_state_dict(state)
            except Exception as error:  # noqa: BLE001
                raise ModelLoadError(
                    f"--weights {weights!r} is not a state_dict of {spec} ({_first_line(error)})."
                ) from None
        else:
            try:
                model.load_weights(weights)
            except Exception as error:  # noqa: BLE001
                raise ModelLoadError(f"--weights {weights!r} does not fit {spec} ({_first_line(error)}).") from None
    if framework == "pytorch":
        model.eval()
    return model, framework


def _load_keras(path: str) -> Any:
    keras = _framework_module("keras", path, "a .keras file")

    try:
        return keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as error:  # noqa: BLE001
        raise ModelLoadError(f"MODEL {path!r} is not a loadable .keras file ({_first_line(error)}).") from None


def _load_savedmodel(path: str, input_shape: tuple[int, ...]) -> Any:
    keras = _framework_module("keras", path, "a TensorFlow SavedModel")

    errors = []
    for endpoint in ("serving_default", "serve"):
        try:
            layer = keras.layers.TFSMLayer(path, call_endpoint=endpoint)
            inputs = keras.Input(shape=input_shape)
            outputs = layer(inputs)
            if isinstance(outputs, dict):
                if len(outputs) != 1:
                    raise ModelLoadError(
                        f"MODEL {path!r}: the SavedModel's {endpoint!r} signature has {len(outputs)} outputs "
                        f"({sorted(outputs)}); export a model with a single output."
                    )
                outputs = next(iter(outputs.values()))
            return keras.Model(inputs, outputs)
        except ModelLoadError:
            raise
        except Exception as error:  # noqa: BLE001
            errors.append(_first_line(error))
    raise ModelLoadError(f"MODEL {path!r}: cannot call the SavedModel ({errors[-1]}).")


def _parse_floats(values: Any, option: str) -> Any:
    if values is None:
        return None
    if isinstance(values, str):
        values = [v for v in values.replace(",", " ").split() if v]
    try:
        out = [float(v) for v in np.atleast_1d(values)]
    except (TypeError, ValueError):
        raise ModelLoadError(f"{option} must be numbers, got {values!r}.") from None
    if not out or not all(np.isfinite(out)):
        raise ModelLoadError(f"{option} must be finite numbers, got {values!r}.")
    return out[0] if len(out) == 1 else out


def load_classifier(
    model: str,
    x_sample: np.ndarray,
    weights: str | None = None,
    clip_values: Sequence[float] | None = None,
    mean: Any = None,
    std: Any = None,
    output: str = "auto",
    framework: str | None = None,
    device_type: str = "cpu",
) -> LoadedModel:
    """
    Load `model` and wrap it as an ART classifier that accepts inputs shaped like `x_sample`.

    :param model: TorchScript file, ``.keras`` file, SavedModel folder or ``package.module:factory``.
    :param x_sample: A few inputs ``(nb_samples, ...)`` in the layout the model expects (used for the input shape,
                     the number of classes, the output kind and, when `clip_values` is ``None``, the input range).
    :param weights: A PyTorch ``state_dict`` file (or Keras weights file) for a ``module:factory`` model.
    :param clip_values: Input range ``(min, max)``; ``None`` infers it from `x_sample` (:func:`infer_clip_values`).
    :param mean: Preprocessing mean (a number or one per channel), applied inside the classifier.
    :param std: Preprocessing standard deviation.
    :param output: ``"auto"`` (detected), ``"logits"`` or ``"probabilities"``.
    :param framework: Expected framework; a model of the other framework is refused.
    :param device_type: ``"cpu"`` or ``"gpu"`` (PyTorch).
    :return: The :class:`LoadedModel`.
    :raises ModelLoadError: With a one-line message naming the file or option to fix.
    """
    check_output_kind(output)
    kind = model_kind(model)
    x_sample = np.asarray(x_sample, dtype=np.float32)[:64]
    input_shape = tuple(int(d) for d in x_sample.shape[1:])
    mean = _parse_floats(mean, "--mean")
    std = _parse_floats(std, "--std")
    if std is not None and np.any(np.asarray(std) == 0):
        raise ModelLoadError("--std must not contain zero.")
    preprocessing = (0.0 if mean is None else mean, 1.0 if std is None else std)
    inferred = clip_values is None
    if inferred:
        clip = infer_clip_values(x_sample)
    else:
        values = _parse_floats(clip_values, "--clip-values")
        if not isinstance(values, list) or len(values) != 2 or not values[0] < values[1]:
            raise ModelLoadError(f"--clip-values must be two increasing numbers MIN,MAX, got {clip_values!r}.")
        clip = (values[0], values[1])
        if float(x_sample.min()) < clip[0] - 1e-6 or float(x_sample.max()) > clip[1] + 1e-6:
            raise ModelLoadError(
                f"--clip-values {list(clip)} do not contain the data (range [{x_sample.min():g}, {x_sample.max():g}])."
            )

    if kind == "torchscript":
        net, fw = _load_torchscript(model), "pytorch"
    elif kind == "factory":
        net, fw = _load_factory(model, weights)
    elif kind == "keras":
        net, fw = _load_keras(model), "tensorflow"
    else:
        net, fw = _load_savedmodel(model, input_shape), "tensorflow"
    if weights is not None and kind != "factory":
        raise ModelLoadError(
            "--weights is only for a package.module:factory MODEL; the other kinds hold their weights."
        )
    if framework is not None and framework != fw:
        raise ModelLoadError(f"--framework {framework} given, but MODEL {model!r} is a {fw} model.")

    outputs = _probe(net, fw, x_sample[:8], model)
    if outputs.ndim != 2 or outputs.shape[1] < 2:
        raise ModelLoadError(
            f"MODEL {model!r} returns outputs of shape {outputs.shape} on DATA inputs of shape {x_sample.shape[1:]}; "
            "expected (nb_samples, nb_classes) scores."
        )
    nb_classes = int(outputs.shape[1])
    kind_of_output = output if output != "auto" else detect_output_kind(_probe(net, fw, x_sample, model))
    classifier = _wrap(net, fw, input_shape, nb_classes, kind_of_output, clip, preprocessing, device_type)
    return LoadedModel(classifier, fw, kind, kind_of_output, output == "auto", clip, inferred, model)


def _probe(net: Any, framework: str, x: np.ndarray, source: str) -> np.ndarray:
    """Raw model outputs on `x` (no preprocessing): checks that the model accepts the data's shape."""
    try:
        if framework == "pytorch":
            import torch

            with torch.no_grad():
                out = net(torch.from_numpy(np.ascontiguousarray(x)))
            return np.asarray(out.detach().cpu().numpy(), dtype=np.float64)
        out = net(x, training=False)
        return np.asarray(out, dtype=np.float64)
    except Exception as error:  # noqa: BLE001
        raise ModelLoadError(
            f"MODEL {source!r} does not accept DATA inputs of shape {x.shape[1:]} ({_first_line(error)}); give DATA "
            "in the layout the model expects (e.g. channels first for PyTorch) or use --layout."
        ) from None


def _wrap(net, framework, input_shape, nb_classes, output, clip, preprocessing, device_type) -> Any:
    if framework == "pytorch":
        import torch
        from art.estimators.classification import PyTorchClassifier

        from art_ext.estimators.classification.utils import probability_nll_loss

        loss = torch.nn.CrossEntropyLoss() if output == "logits" else probability_nll_loss()
        return PyTorchClassifier(
            model=net,
            loss=loss,
            input_shape=input_shape,
            nb_classes=nb_classes,
            clip_values=clip,
            preprocessing=preprocessing,
            device_type=device_type,
        )
    import tensorflow as tf
    from art.estimators.classification import TensorFlowV2Classifier

    return TensorFlowV2Classifier(
        model=net,
        nb_classes=nb_classes,
        input_shape=input_shape,
        loss_object=tf.keras.losses.CategoricalCrossentropy(from_logits=output == "logits"),
        clip_values=clip,
        preprocessing=preprocessing,
        channels_first=False,
    )
