"""
``art_ext.estimators.certification``, mirroring ``art.estimators.certification``.
"""

from art_ext.estimators.certification.graph import LayerRecord, LipschitzGraph
from art_ext.estimators.certification.lipschitz import LipschitzCertifier

__all__ = ["LayerRecord", "LipschitzCertifier", "LipschitzGraph"]
