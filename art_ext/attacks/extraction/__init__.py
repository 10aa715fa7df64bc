"""
``art_ext.attacks.extraction``, mirroring ``art.attacks.extraction``: :class:`DataFreeModelExtraction` (DFME).
"""

from art_ext.attacks.extraction.data_free_model_extraction import DataFreeModelExtraction

__all__ = ["DataFreeModelExtraction"]
