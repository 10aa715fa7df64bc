"""art_ext attacks, mirroring ``art.attacks``."""
