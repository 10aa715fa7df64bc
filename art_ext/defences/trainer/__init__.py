"""
``art_ext.defences.trainer``, mirroring ``art.defences.trainer``.
"""

from art_ext.defences.trainer.defensive_distillation import DefensiveDistillationTrainer

__all__: list[str] = ["DefensiveDistillationTrainer"]
