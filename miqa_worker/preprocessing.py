"""Intensity normalisation shared by training and inference."""

import numpy as np

from .constants import INTENSITY_PERCENTILES

LOW_PERCENTILE, HIGH_PERCENTILE = INTENSITY_PERCENTILES

# Volumes with more voxels than this get the exact two-pass percentile below, not np.percentile.
_FAST_PERCENTILE_MIN_SIZE = 1 << 20
_SAMPLE_SIZE = 1 << 18


def _bracket(m: int, q: float) -> tuple[int, int]:
    """Indices into a sorted subsample of ``m`` values that bracket the ``q``-th percentile."""
    pos = q / 100.0 * (m - 1)
    margin = 0.004 * m + 32
    return max(0, int(pos - margin)), min(m - 1, int(pos + margin) + 1)


#: Voxels per chunk of :func:`_bands`: 1 MiB of float32, so each chunk's compares hit the cache.
_CHUNK = 1 << 18


def _bands(flat: np.ndarray, brackets: list[tuple[float, float]]
           ) -> list[tuple[int, np.ndarray | int]]:
    """Per bracket ``(a, b)``: the count of values below ``a``, and the values in ``[a, b]``
    (their count only when ``a == b``), in one pass over ``flat`` in cache-sized chunks
    (no volume-sized masks: the two percentiles cost one read of the volume, not six)."""
    below = [0] * len(brackets)
    inside: list[list[np.ndarray] | int] = [0 if a == b else [] for a, b in brackets]
    for start in range(0, flat.size, _CHUNK):
        chunk = flat[start:start + _CHUNK]
        for i, (a, b) in enumerate(brackets):
            at_least = chunk >= a
            below[i] += chunk.size - int(np.count_nonzero(at_least))
            if a == b:
                inside[i] += int(np.count_nonzero(chunk == a))  # type: ignore[operator]
            else:
                np.logical_and(at_least, chunk <= b, out=at_least)
                inside[i].append(chunk[at_least])  # type: ignore[union-attr]
    return [(count, part if isinstance(part, int) else np.concatenate(part))
            for count, part in zip(below, inside, strict=True)]


def _order_statistic_pair(k: int, n: int, bracket: tuple[float, float],
                          band: tuple[int, np.ndarray | int]):
    """The sorted values at ranks ``k`` and ``k + 1`` of the ``n`` values, or None if the
    bracket missed them.

    The bracket ``(a, b)`` comes from a subsample (in sorted place at least at the
    :func:`_bracket` indices); ``band`` is :func:`_bands`' count of the values below it and
    the values inside it: only those are partitioned. Exact, and one pass instead of a full
    partition.
    """
    a, b = bracket
    below, values = band
    if a == b:
        if below <= k and below + values >= k + 2:  # type: ignore[operator]
            return a, a
        return None
    size = values.size  # type: ignore[union-attr]
    if not (below <= k and below + size >= k + 2) or k + 1 >= n:
        return None
    part = np.partition(values, [k - below, k + 1 - below])
    return part[k - below], part[k + 1 - below]


def percentiles(volume: np.ndarray, qs: tuple[float, ...]) -> list[float]:
    """Exact percentiles (numpy's default linear interpolation), fast on large volumes."""
    flat = np.asarray(volume).reshape(-1)
    n = flat.size
    if n < _FAST_PERCENTILE_MIN_SIZE:
        return [float(v) for v in np.percentile(flat, qs)]
    sample = flat[::max(1, n // _SAMPLE_SIZE)]
    # Only the brackets' ranks and the extremes are needed: a partition, not a sort.
    sample = np.partition(sample, sorted({0, sample.size - 1,
                                          *(i for q in qs for i in _bracket(sample.size, q))}))
    if not np.isfinite(sample[0]) or not np.isfinite(sample[-1]):
        return [float(v) for v in np.percentile(flat, qs)]
    brackets = []
    for q in qs:
        low, high = _bracket(sample.size, q)
        brackets.append((sample[low], sample[high]))
    bands = _bands(flat, brackets)
    out = []
    for q, bracket, band in zip(qs, brackets, bands, strict=True):
        rank = q / 100.0 * (n - 1)
        k = int(np.floor(rank))
        pair = _order_statistic_pair(k, n, bracket, band) if k + 1 < n else None
        if pair is None:
            out.append(float(np.percentile(flat, q)))
            continue
        lo, hi = float(pair[0]), float(pair[1])
        out.append(lo + (rank - k) * (hi - lo))
    return out


def intensity_range(volume: np.ndarray) -> tuple[float, float]:
    """The 0.5 and 99.5 percentiles that :func:`rescale_intensity` maps to 0 and 1."""
    low, high = percentiles(volume, (LOW_PERCENTILE, HIGH_PERCENTILE))
    return low, high


def usable_range(low: float, high: float) -> bool:
    """Whether ``low..high`` can be mapped to 0..1 (finite, not empty); else the data maps to 0."""
    return bool(np.isfinite(low) and np.isfinite(high) and high > low)


def rescale_into(data: np.ndarray, low: float, high: float) -> np.ndarray:
    """Map ``low..high`` to 0..1 (clipped) in place on a float32 array; constant range -> 0."""
    if not usable_range(low, high):
        data[...] = 0.0
        return data
    np.subtract(data, np.float32(low), out=data)
    np.multiply(data, np.float32(1.0 / (high - low)), out=data)
    return np.clip(data, 0.0, 1.0, out=data)


def rescale_intensity(volume: np.ndarray) -> np.ndarray:
    """Map the 0.5-99.5 percentile range to 0..1 (clipped), as float32.

    Robust to a few hot voxels; a constant volume maps to all zeros.
    """
    data = np.asarray(volume, dtype=np.float32)
    low, high = intensity_range(data)
    return rescale_into(np.array(data, dtype=np.float32, copy=True), low, high)
