"""art_ext defences, mirroring ``art.defences``."""
