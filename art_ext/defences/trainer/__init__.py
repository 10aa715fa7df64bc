"""
``art_ext.defences.trainer``, mirroring ``art.defences.trainer``.
"""

from art_ext.defences.trainer.virtual_adversarial import VirtualAdversarialTrainer

__all__: list[str] = ["VirtualAdversarialTrainer"]
