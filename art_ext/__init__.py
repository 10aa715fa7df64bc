"""
art_ext: what the Adversarial Robustness Toolbox (ART) lacks, as ART attacks, trainers and estimators that run on
PyTorch and TensorFlow.

Subpackages mirror ART's namespaces: :mod:`art_ext.attacks`, :mod:`art_ext.defences`, :mod:`art_ext.estimators`,
:mod:`art_ext.evaluations`, plus :mod:`art_ext.data`, :mod:`art_ext.models` and :mod:`art_ext.cli`.
Importing art_ext imports neither torch nor tensorflow.
"""

import logging

from art_ext._version import __version__

logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = ["__version__"]
