"""Transformer defences, mirroring ``art.defences.transformer``."""
