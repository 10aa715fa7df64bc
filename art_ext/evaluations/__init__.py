"""
``art_ext.evaluations``, mirroring ``art.evaluations``.
"""

# The package art_ext.evaluations.audit holds the sections; the name `audit` here is the function, as it always was
# (the package module is callable too).
from art_ext.evaluations.audit import SECTIONS as AUDIT_SECTIONS
from art_ext.evaluations.audit import AuditReport, audit
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
