"""art_ext estimators, mirroring ``art.estimators``."""
