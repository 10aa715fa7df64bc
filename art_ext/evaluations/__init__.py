"""
``art_ext.evaluations``, mirroring ``art.evaluations``.
"""

from art_ext.evaluations.certificate_tightness import (
    CertificateTightnessAnalysis,
    CertificateUnsoundError,
    TightnessReport,
)

__all__ = ["CertificateTightnessAnalysis", "CertificateUnsoundError", "TightnessReport"]
