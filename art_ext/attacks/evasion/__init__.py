"""
``art_ext.attacks.evasion``, mirroring ``art.attacks.evasion``.
"""

__all__: list[str] = []
