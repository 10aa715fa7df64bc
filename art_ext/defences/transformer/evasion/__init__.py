"""
``art_ext.defences.transformer.evasion``, mirroring ``art.defences.transformer.evasion``.
"""

__all__: list[str] = []
