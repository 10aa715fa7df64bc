"""
``art_ext.defences.transformer.evasion``, mirroring ``art.defences.transformer.evasion``.
"""

from art_ext.defences.transformer.evasion.defensive_distillation import DefensiveDistillation

__all__: list[str] = ["DefensiveDistillation"]
