"""
``art_ext.attacks.extraction``, mirroring ``art.attacks.extraction``.
"""

__all__: list[str] = []
