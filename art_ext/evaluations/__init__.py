"""
``art_ext.evaluations``, mirroring ``art.evaluations``.
"""

from art_ext.evaluations.gradient_masking import (
    ATTACKS,
    GradientMaskingAnalysis,
    GradientMaskingReport,
    TemperatureSweepResult,
    margin_attack,
    temperature_sweep,
)

__all__: list[str] = [
    "ATTACKS",
    "GradientMaskingAnalysis",
    "GradientMaskingReport",
    "TemperatureSweepResult",
    "margin_attack",
    "temperature_sweep",
]
