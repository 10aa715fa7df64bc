"""
``art_ext.defences.trainer``, mirroring ``art.defences.trainer``.
"""

from art_ext.defences.trainer._loop import set_catch_interrupt
from art_ext.defences.trainer.defensive_distillation import DefensiveDistillationTrainer
from art_ext.defences.trainer.lipschitz_margin import LipschitzMarginTrainer
from art_ext.defences.trainer.virtual_adversarial import VirtualAdversarialTrainer

__all__: list[str] = [
    "DefensiveDistillationTrainer",
    "LipschitzMarginTrainer",
    "VirtualAdversarialTrainer",
    "set_catch_interrupt",
]
