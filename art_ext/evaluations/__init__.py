"""
``art_ext.evaluations``, mirroring ``art.evaluations``.
"""

__all__: list[str] = []
