"""Intensity normalisation shared by training and inference."""

import numpy as np

LOW_PERCENTILE, HIGH_PERCENTILE = 0.5, 99.5


def rescale_intensity(volume: np.ndarray) -> np.ndarray:
    """Map the 0.5-99.5 percentile range to 0..1 (clipped), as float32.

    Robust to a few hot voxels; a constant volume maps to all zeros.
    """
    data = np.asarray(volume, dtype=np.float32)
    low, high = np.percentile(data, [LOW_PERCENTILE, HIGH_PERCENTILE])
    if not np.isfinite(low) or not np.isfinite(high) or high <= low:
        return np.zeros_like(data, dtype=np.float32)
    out = (data - low) / (high - low)
    return np.clip(out, 0.0, 1.0, out=out)
