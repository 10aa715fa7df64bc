"""
``art_ext.estimators.generation``, mirroring ``art.estimators.generation``.
"""

__all__: list[str] = []
