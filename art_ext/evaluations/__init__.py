"""
``art_ext.evaluations``, mirroring ``art.evaluations``.
"""

from art_ext.evaluations.audit_core import SECTIONS as AUDIT_SECTIONS
from art_ext.evaluations.audit_core import audit
from art_ext.evaluations.audit_report import AuditReport
from art_ext.evaluations.certificate_tightness import (
    CertificateTightnessAnalysis,
    CertificateUnsoundError,
    TightnessReport,
)
from art_ext.evaluations.gradient_masking import (
    ATTACKS,
    GradientMaskingAnalysis,
    GradientMaskingReport,
    TemperatureSweepResult,
    margin_attack,
    temperature_sweep,
)
from art_ext.evaluations.transferability import TransferabilityResult, transferability_matrix

__all__: list[str] = [
    "AUDIT_SECTIONS",
    "AuditReport",
    "audit",
    "CertificateTightnessAnalysis",
    "CertificateUnsoundError",
    "TightnessReport",
    "TransferabilityResult",
    "transferability_matrix",
    "ATTACKS",
    "GradientMaskingAnalysis",
    "GradientMaskingReport",
    "TemperatureSweepResult",
    "margin_attack",
    "temperature_sweep",
]
