"""A PyTorch generator estimator, the twin of ART's ``TensorFlowV2Generator``."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np
from art.estimators.generation.generator import GeneratorMixin
from art.estimators.pytorch import PyTorchEstimator

from art_ext.utils.checks import check_positive

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)


class PyTorchGenerator(GeneratorMixin, PyTorchEstimator):
    """
    A generative model (noise ``z`` to inputs) with the PyTorch framework, mirroring ART's
    ``art.estimators.generation.TensorFlowV2Generator`` (which has no PyTorch counterpart in ART 1.20).
    """

    estimator_params = PyTorchEstimator.estimator_params + ["encoding_length"]

    def __init__(
        self,
        encoding_length: int,
        model: torch.nn.Module,
        channels_first: bool = True,
        clip_values: Any = None,
        preprocessing_defences: Any = None,
        postprocessing_defences: Any = None,
        preprocessing: Any = (0.0, 1.0),
        device_type: str = "gpu",
    ) -> None:
        """
        :param encoding_length: Length of the input noise vector ``z``.
        :param model: ``torch.nn.Module`` mapping ``(nb_samples, encoding_length)`` to ``(nb_samples, *image_shape)``.
        :param channels_first: Whether the generated images are channels-first.
        :param clip_values: Tuple ``(min, max)`` of the range of the generated features, if known.
        :param preprocessing_defences: Preprocessing defence(s) (kept for API symmetry with ART).
        :param postprocessing_defences: Postprocessing defence(s) (kept for API symmetry with ART).
        :param preprocessing: ``(subtrahend, divisor)`` preprocessing (kept for API symmetry with ART).
        :param device_type: ``"gpu"`` (CUDA when available) or ``"cpu"``.
        """
        import torch

        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"`model` must be a torch.nn.Module, got {type(model).__name__}.")
        check_positive(encoding_length, "encoding_length", integer=True)
        super().__init__(
            model=model,
            clip_values=clip_values,
            channels_first=channels_first,
            preprocessing_defences=preprocessing_defences,
            postprocessing_defences=postprocessing_defences,
            preprocessing=preprocessing,
            device_type=device_type,
        )
        self._encoding_length = int(encoding_length)
        self._model.to(self._device)

    @property
    def model(self) -> torch.nn.Module:
        """
        :return: The generator module.
        """
        return self._model

    @property
    def encoding_length(self) -> int:
        """
        :return: The length of the noise vector.
        """
        return self._encoding_length

    @property
    def input_shape(self) -> tuple[int, ...]:
        """
        :return: Shape of one noise vector, ``(encoding_length,)``.
        """
        return (self._encoding_length,)

    def predict(self, x: np.ndarray, batch_size: int = 128, training_mode: bool = False, **kwargs) -> np.ndarray:
        """
        Generate inputs from noise.

        :param x: Noise of shape ``(nb_samples, encoding_length)``.
        :param batch_size: Batch size.
        :param training_mode: ``True`` to run the model in training mode (batch-normalisation batch statistics).
        :return: Generated samples of shape ``(nb_samples, *image_shape)``.
        """
        import torch

        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self._encoding_length:
            raise ValueError(f"`x` must have shape (nb_samples, {self._encoding_length}), got {x.shape}.")
        self._model.train(training_mode)
        outputs = []
        with torch.no_grad():
            for begin in range(0, len(x), batch_size):
                z = torch.from_numpy(x[begin : begin + batch_size]).to(self._device)
                outputs.append(self._model(z).cpu().numpy())
        return np.concatenate(outputs, axis=0).astype(np.float32)

    def fit(self, x: np.ndarray, y: np.ndarray, batch_size: int = 128, nb_epochs: int = 10, **kwargs) -> None:
        """Not supported: generators are trained by the attacks that use them."""
        raise NotImplementedError("PyTorchGenerator is trained by the attack using it (e.g. DataFreeModelExtraction).")

    def loss_gradient(self, x: np.ndarray, y: np.ndarray, **kwargs) -> np.ndarray:
        """Not supported (generators have no loss of their own)."""
        raise NotImplementedError

    def get_activations(self, x: np.ndarray, layer: int | str, batch_size: int, framework: bool = False) -> np.ndarray:
        """Not supported."""
        raise NotImplementedError

    def compute_loss(self, x: np.ndarray, y: np.ndarray, **kwargs) -> np.ndarray:
        """Not supported (generators have no loss of their own)."""
        raise NotImplementedError
