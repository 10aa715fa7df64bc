"""
``art_ext.evaluations``, mirroring ``art.evaluations``.
"""

from art_ext.evaluations.transferability import TransferabilityResult, transferability_matrix

__all__: list[str] = ["TransferabilityResult", "transferability_matrix"]
