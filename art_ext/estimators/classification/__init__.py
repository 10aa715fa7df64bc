"""
``art_ext.estimators.classification``, mirroring ``art.estimators.classification``.
"""

__all__: list[str] = []
