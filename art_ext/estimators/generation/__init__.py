"""
``art_ext.estimators.generation``, mirroring ``art.estimators.generation``: :class:`PyTorchGenerator`, the PyTorch
twin of ART's ``TensorFlowV2Generator`` (use ART's class on TensorFlow), and :func:`build_auto_generator`, a DFME
generator for any input shape (flat vectors, 1-D signals, images of any size in either layout).
"""

from art_ext.estimators.generation.auto import GeneratorPlan, build_auto_generator, plan_generator
from art_ext.estimators.generation.pytorch import PyTorchGenerator

__all__ = ["GeneratorPlan", "PyTorchGenerator", "build_auto_generator", "plan_generator"]
