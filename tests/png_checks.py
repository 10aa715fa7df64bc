"""One check for every PNG the library writes: a decodable image of some size whose pixels are not all the same."""

from __future__ import annotations

import numpy as np


def assert_png(path, min_side: int = 100) -> None:
    """Decode the PNG at `path`: a real image at least `min_side` pixels on each side, not blank."""
    from matplotlib.image import imread

    image = imread(str(path))
    assert image.ndim == 3 and min(image.shape[:2]) >= min_side, f"{path}: shape {image.shape}"
    assert float(np.std(image[..., :3])) > 0.01, f"{path} is blank"
