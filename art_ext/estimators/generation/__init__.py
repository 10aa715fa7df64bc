"""
``art_ext.estimators.generation``, mirroring ``art.estimators.generation``: :class:`PyTorchGenerator`, the PyTorch
twin of ART's ``TensorFlowV2Generator`` (use ART's class on TensorFlow).
"""

from art_ext.estimators.generation.pytorch import PyTorchGenerator

__all__ = ["PyTorchGenerator"]
