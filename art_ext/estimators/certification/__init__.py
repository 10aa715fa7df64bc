"""
``art_ext.estimators.certification``, mirroring ``art.estimators.certification``.
"""

from art_ext.estimators.certification.lipschitz import LayerRecord, LipschitzCertifier

__all__ = ["LayerRecord", "LipschitzCertifier"]
