"""
``art_ext.defences.trainer``, mirroring ``art.defences.trainer``.
"""

from art_ext.defences.trainer.lipschitz_margin import LipschitzMarginTrainer

__all__ = ["LipschitzMarginTrainer"]
