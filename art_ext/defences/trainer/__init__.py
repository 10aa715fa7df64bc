"""
``art_ext.defences.trainer``, mirroring ``art.defences.trainer``.
"""

__all__: list[str] = []
