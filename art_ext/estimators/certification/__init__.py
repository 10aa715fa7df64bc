"""
``art_ext.estimators.certification``, mirroring ``art.estimators.certification``.
"""

__all__: list[str] = []
