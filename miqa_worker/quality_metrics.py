"""Classic no-reference image quality metrics (IQMs) with MRIQC's definitions, numpy/scipy only.

The masks are deliberately simple, so the numbers are comparable between scans of this tool, not
with MRIQC's own output:

* head mask: Otsu threshold of the intensities (clipped to their 99.5th percentile), morphological
  closing, hole filling, the largest connected component;
* air (background): everything outside the head mask dilated by two voxels;
* tissue classes: a 3-class 1D k-means of the head's intensities, named after T1w contrast
  ``csf`` (darkest), ``gm`` (middle), ``wm`` (brightest). For other contrasts they are just
  dark/middle/bright classes.

Large volumes are subsampled by an integer stride (every f-th voxel along each axis, no
averaging, so the voxel noise is unchanged) to at most ``max_voxels`` voxels.

Undefined ratios (a zero denominator, e.g. the air of a skull-stripped scan is all zeros) are
reported as ``-1.0`` like MRIQC; every value is a finite float.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

DIETRICH_FACTOR = 1.0 / math.sqrt(2.0 / (4.0 - math.pi))
DEFAULT_MAX_VOXELS = 1 << 20
TISSUES = ('csf', 'gm', 'wm')
UNDEFINED = -1.0


def _finite(value: float, default: float = UNDEFINED) -> float:
    """A plain float, or ``default`` when not finite."""
    value = float(value)
    return value if math.isfinite(value) else default


def _ratio(num: float, den: float, floor: float) -> float:
    """``num / den``, or UNDEFINED when ``|den|`` is at most ``floor``."""
    if not math.isfinite(den) or abs(den) <= floor:
        return UNDEFINED
    return _finite(num / den)


def subsample(array: np.ndarray, max_voxels: int = DEFAULT_MAX_VOXELS) -> tuple[np.ndarray, int]:
    """Every f-th voxel along each axis so that at most ``max_voxels`` remain; also f."""
    factor = max(1, math.ceil((array.size / max_voxels) ** (1.0 / 3.0)))
    while math.prod(math.ceil(s / factor) for s in array.shape) > max_voxels:
        factor += 1
    if factor == 1:
        return array, 1
    return np.ascontiguousarray(array[::factor, ::factor, ::factor]), factor


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold of a 1D array of intensities (maximises between-class variance)."""
    hist, edges = np.histogram(values, bins=bins)
    centers = (edges[:-1] + edges[1:]) / 2.0
    hist = hist.astype(np.float64)
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centers)
    mu0 = np.divide(m0, w0, out=np.zeros_like(m0), where=w0 > 0)
    mu1 = np.divide(m0[-1] - m0, w1, out=np.zeros_like(m0), where=w1 > 0)
    between = w0 * w1 * (mu0 - mu1) ** 2
    return float(centers[int(np.argmax(between[:-1]))]) if bins > 1 else float(centers[0])


def fill_holes(mask: np.ndarray, structure: np.ndarray) -> np.ndarray:
    """``ndimage.binary_fill_holes`` (same result), twice as fast: the background components
    that do not touch the border are holes."""
    labels, _ = ndimage.label(~mask, structure)
    faces = [labels[0], labels[-1], labels[:, 0], labels[:, -1], labels[:, :, 0],
             labels[:, :, -1]]
    outside = np.zeros(int(labels.max()) + 1, dtype=bool)
    outside[np.concatenate([f.reshape(-1) for f in faces])] = True
    outside[0] = True  # the mask itself
    return mask | ~outside[labels]


def head_mask(array: np.ndarray, high: float | None = None) -> np.ndarray:
    """A boolean head (foreground) mask: Otsu, closing, hole filling, largest component.

    ``high``: the array's 99.5th percentile when the caller has it already (one sort fewer).
    """
    high = float(np.percentile(array, 99.5)) if high is None else float(high)
    low = float(array.min())
    clipped = np.clip(array, low, high) if high > low else array
    mask = array > otsu_threshold(clipped.reshape(-1))
    if not mask.any():
        return mask
    structure = ndimage.generate_binary_structure(3, 1)
    mask = ndimage.binary_closing(mask, structure, iterations=2, border_value=0)
    mask = fill_holes(mask, structure)
    labels, count = ndimage.label(mask, structure)
    if count > 1:
        sizes = np.bincount(labels.reshape(-1))
        sizes[0] = 0
        mask = labels == int(np.argmax(sizes))
    return mask


def tissue_classes(values: np.ndarray, iterations: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """1D 3-means of foreground intensities: (class per value 0/1/2 dark..bright, centres)."""
    if values.size < 3:
        return np.zeros(values.shape, dtype=np.int8), np.zeros(3)
    hist, edges = np.histogram(values, bins=512)
    centers_bins = (edges[:-1] + edges[1:]) / 2.0
    means = np.percentile(values, [20.0, 50.0, 80.0]).astype(np.float64)
    for _ in range(iterations):
        cuts = (means[:-1] + means[1:]) / 2.0
        assign = np.searchsorted(cuts, centers_bins)
        new = means.copy()
        for c in range(3):
            weight = hist[assign == c].sum()
            if weight > 0:
                new[c] = (hist[assign == c] * centers_bins[assign == c]).sum() / weight
        new.sort()
        if np.allclose(new, means):
            break
        means = new
    cuts = (means[:-1] + means[1:]) / 2.0
    return np.searchsorted(cuts, values).astype(np.int8), means


def order_statistics(values: np.ndarray, qs: tuple[float, ...]) -> tuple[list[float],
                                                                         tuple[float, float]]:
    """``np.percentile(values, qs)`` (linear) and the two middle order statistics, from one
    partition of one copy (np.percentile copies and partitions once per call).

    The middle pair gives the median of any monotone function of non-negative values.
    """
    flat = np.asarray(values).reshape(-1)
    n = flat.size
    ranks = [q / 100.0 * (n - 1) for q in qs]
    middle = ((n - 1) // 2, n // 2)
    kth = sorted({*middle, *(int(math.floor(r)) for r in ranks),
                  *(min(int(math.floor(r)) + 1, n - 1) for r in ranks)})
    part = np.partition(flat, kth)
    out = []
    for rank in ranks:
        below = int(math.floor(rank))
        lo, hi = float(part[below]), float(part[min(below + 1, n - 1)])
        out.append(lo + (rank - below) * (hi - lo))
    return out, (float(part[middle[0]]), float(part[middle[1]]))


def _summary(values: np.ndarray, prefix: str,
             middle: list[tuple[float, float]] | None = None) -> dict[str, float]:
    """MRIQC-style summary statistics of a region: mean, stdv, median, mad, p05, p95, k, n.

    One partition for the percentiles, the moments from one float64 copy; ``middle`` (a list)
    gets the region's two middle order statistics (:func:`order_statistics`).
    """
    out: dict[str, float] = {}
    n = values.size
    if n == 0:
        for key in ('mean', 'stdv', 'median', 'mad', 'p05', 'p95', 'k'):
            out[f'summary_{prefix}_{key}'] = 0.0
        out[f'summary_{prefix}_n'] = 0.0
        return out
    (p05, median, p95), pair = order_statistics(values, (5.0, 50.0, 95.0))
    if middle is not None:
        middle.append(pair)
    deviation = values.astype(np.float64)  # a copy, worked on in place
    mean = float(deviation.mean())
    deviation -= mean
    square = deviation * deviation
    variance = float(square.sum()) / n
    std = math.sqrt(variance)
    # not np.dot: BLAS threads would spin on the cores the network needs next
    fourth = float(np.square(square, out=square).sum())
    kurt = fourth / n / variance ** 2 - 3.0 if std > 0 else 0.0
    deviation -= median - mean  # values - median
    np.abs(deviation, out=deviation)
    mad = float(np.median(deviation, overwrite_input=True)) * 1.4826
    for key, value in (('mean', mean), ('stdv', std), ('median', median), ('mad', mad),
                       ('p05', p05), ('p95', p95), ('k', kurt), ('n', float(n))):
        out[f'summary_{prefix}_{key}'] = _finite(value, 0.0)
    return out


def _median_energy(values: np.ndarray, pair: tuple[float, float] | None) -> float:
    """``np.median(values ** 2)`` (float64); from the middle pair when no value is negative."""
    if values.size == 0:
        return 0.0
    if pair is not None and pair[0] >= 0 and float(values.min()) >= 0:
        return (pair[0] ** 2 + pair[1] ** 2) / 2.0
    return float(np.median(values.astype(np.float64) ** 2))


def efc(array: np.ndarray) -> float:
    """Entropy focus criterion (Atkinson 1997), normalised by its maximum as in MRIQC."""
    values = np.abs(array.reshape(-1).astype(np.float64))
    n = values.size
    efc_max = n * (1.0 / math.sqrt(n)) * math.log(1.0 / math.sqrt(n))
    energy = math.sqrt(float(np.square(values).sum()))  # not np.dot: see _summary
    if energy == 0 or efc_max == 0:
        return UNDEFINED
    b = values[values > 0] / energy
    return _finite(float(np.sum(b * np.log(b))) / efc_max)


def compute_quality_metrics(array: np.ndarray, spacing=None,
                            max_voxels: int = DEFAULT_MAX_VOXELS) -> dict[str, float]:
    """No-reference IQMs of a 3D volume (any intensity units); every value a finite float.

    Keys (MRIQC definitions; ``fg`` = head, ``bg``/``air`` = outside the dilated head):

    * ``snr_csf``/``snr_gm``/``snr_wm``: ``mean / (std * sqrt(n / (n - 1)))`` inside a class;
      ``snr_total`` their mean.
    * ``snr_fg``: the same ratio over the whole head.
    * ``snrd_total``: Dietrich SNR ``mean_fg / (sqrt(2 / (4 - pi)) * sigma_air)`` with the air's
      MAD-based sigma (its std when the MAD is zero); -1 when the air is noiseless.
    * ``cnr``: ``|mu_wm - mu_gm| / sqrt(sigma_air^2 + sigma_gm^2 + sigma_wm^2)``.
    * ``cjv``: coefficient of joint variation ``(sigma_wm + sigma_gm) / |mu_wm - mu_gm|``
      (lower is better).
    * ``efc``: entropy focus criterion, 0..1 (lower = sharper, less ghosting/blur).
    * ``fber``: ``median(|fg|^2) / median(|air|^2)``; -1 when the air's median energy is ~0.
    * ``wm2max``: ``median(wm) / p99.95(volume)``.
    * ``fg_fraction``: the head's share of the field of view; ``fg_volume_ml`` its volume
      (millilitres, from ``spacing``; 0 when no spacing is given); ``subsample_factor``.
    * ``summary_{fg,bg,csf,gm,wm}_{mean,stdv,median,mad,p05,p95,k,n}``: region statistics in
      the image's units (``mad`` scaled by 1.4826, ``k`` excess kurtosis, ``n`` voxel count of
      the subsampled volume).
    """
    data = np.asarray(array, dtype=np.float32)
    if data.ndim != 3:
        raise ValueError(f'expected a 3D volume, got {data.ndim} dimensions')
    data, factor = subsample(data, max_voxels)
    (high, top), _ = order_statistics(data, (99.5, 99.95))
    fg_mask = head_mask(data, high)
    air_mask = ~ndimage.binary_dilation(fg_mask, iterations=2) if fg_mask.any() else ~fg_mask
    fg = data[fg_mask]
    air = data[air_mask]
    scale = high - float(data.min())
    floor = max(scale, 1e-30) * 1e-6

    metrics: dict[str, float] = {}
    classes, _ = tissue_classes(fg)
    tissue = {name: fg[classes == c] for c, name in enumerate(TISSUES)}
    stats = {}
    middles: dict[str, list[tuple[float, float]]] = {'fg': [], 'bg': []}
    for name, values in (('fg', fg), ('bg', air), *tissue.items()):
        metrics.update(_summary(values, name, middles.get(name)))
        stats[name] = (metrics[f'summary_{name}_mean'], metrics[f'summary_{name}_stdv'],
                       values.size)

    def snr(name: str) -> float:
        mean, std, n = stats[name]
        return _ratio(mean, std * math.sqrt(n / (n - 1)), floor) if n > 1 else UNDEFINED

    for name in TISSUES:
        metrics[f'snr_{name}'] = snr(name)
    metrics['snr_total'] = _finite(float(np.mean([metrics[f'snr_{t}'] for t in TISSUES])))
    metrics['snr_fg'] = snr('fg')

    sigma_air = metrics['summary_bg_mad'] or metrics['summary_bg_stdv']
    metrics['snrd_total'] = _ratio(metrics['summary_fg_mean'], sigma_air / DIETRICH_FACTOR,
                                   floor)
    mu_gm, sd_gm, _ = stats['gm']
    mu_wm, sd_wm, _ = stats['wm']
    sd_air = metrics['summary_bg_stdv']
    metrics['cnr'] = _ratio(abs(mu_wm - mu_gm), math.sqrt(sd_air ** 2 + sd_gm ** 2 + sd_wm ** 2),
                            floor)
    metrics['cjv'] = _ratio(sd_wm + sd_gm, abs(mu_wm - mu_gm), floor)
    metrics['efc'] = efc(data)
    fg_energy = _median_energy(fg, (middles['fg'] or [None])[0])
    air_energy = _median_energy(air, (middles['bg'] or [None])[0])
    metrics['fber'] = _ratio(fg_energy, air_energy, floor ** 2)
    metrics['wm2max'] = _ratio(metrics['summary_wm_median'], top, floor)
    metrics['fg_fraction'] = _finite(fg_mask.mean(), 0.0)
    voxel_ml = (math.prod(float(s) for s in spacing) * factor ** 3 / 1000.0) if spacing else 0.0
    metrics['fg_volume_ml'] = _finite(fg.size * voxel_ml, 0.0)
    metrics['subsample_factor'] = float(factor)
    return {key: _finite(value) for key, value in sorted(metrics.items())}


#: The background metrics of :func:`background_metrics`, in a fixed order (fusion inputs).
BACKGROUND_METRICS: tuple[str, ...] = (
    'summary_bg_mean', 'summary_bg_stdv', 'summary_bg_median', 'summary_bg_mad',
    'summary_bg_p05', 'summary_bg_p95', 'summary_bg_k', 'summary_bg_n',
    'qi_1', 'bg_artifact_fraction', 'bg_near_mean', 'bg_near_stdv', 'bg_far_mean',
    'bg_smooth_stdv', 'bg_smooth_ratio', 'bg_profile_max', 'bg_profile_min',
    'bg_laplacian_stdv', 'head_laplacian_ratio', 'fwhm_min', 'fwhm_median', 'fwhm_max')


def _fwhm(data: np.ndarray, mask: np.ndarray, axis: int) -> float:
    """Smoothness along ``axis`` in voxels (AFNI 3dFWHMx's first-difference estimate)."""
    diff = np.diff(data, axis=axis)
    inside = mask[tuple(slice(0, -1) if a == axis else slice(None) for a in range(3))]
    var = float(data[mask].var()) if mask.any() else 0.0
    if var <= 0 or not inside.any():
        return 0.0
    ratio = 1.0 - float(diff[inside].var()) / (2.0 * var)
    return math.sqrt(-2.0 * math.log(2.0) / math.log(ratio)) if 0.0 < ratio < 1.0 else 0.0


def _level_percentile(counts: np.ndarray, levels: np.ndarray, q: float) -> float:
    """``np.percentile`` (linear) of values given as sorted distinct ``levels`` with ``counts``."""
    n = int(counts.sum())
    rank = q / 100.0 * (n - 1)
    below = int(np.floor(rank))
    cumulative = np.cumsum(counts)
    lo = levels[np.searchsorted(cumulative, below, side='right')]
    hi = levels[np.searchsorted(cumulative, min(below + 1, n - 1), side='right')]
    return float(lo + (rank - below) * (hi - lo))


def _level_median_mad(counts: np.ndarray, levels: np.ndarray) -> tuple[float, float]:
    """Median and unscaled median absolute deviation of sorted distinct ``levels`` with
    ``counts`` (numpy's ``np.median`` of the values and of their distances to it)."""
    median = _level_percentile(counts, levels, 50.0)
    deviation = np.abs(levels - median)
    order = np.argsort(deviation, kind='stable')
    return median, _level_percentile(counts[order], deviation[order], 50.0)


def _level_summary(level_counts: np.ndarray, prefix: str) -> dict[str, float]:
    """:func:`_summary` of values on the 256 levels 0..255 (reported as 0..1), from their
    histogram ``level_counts`` (256 counts): the same numbers, without sorting."""
    counts = np.asarray(level_counts, dtype=np.float64)
    n = counts.sum()
    if n == 0:
        return _summary(np.zeros(0), prefix)
    values = np.arange(256, dtype=np.float64) / 255.0
    mean = float(counts @ values) / n
    std = math.sqrt(max(float(counts @ (values - mean) ** 2) / n, 0.0))
    present = counts > 0
    p05, p95 = (_level_percentile(counts[present], values[present], q) for q in (5.0, 95.0))
    median, mad = _level_median_mad(counts[present], values[present])
    mad *= 1.4826
    kurt = float(counts @ (values - mean) ** 4) / n / std ** 4 - 3.0 if std > 0 else 0.0
    out = {'mean': mean, 'stdv': std, 'median': median, 'mad': mad, 'p05': p05, 'p95': p95,
           'k': kurt, 'n': float(n)}
    return {f'summary_{prefix}_{key}': _finite(value, 0.0) for key, value in out.items()}


def background_metrics(array: np.ndarray, max_voxels: int = DEFAULT_MAX_VOXELS
                       ) -> dict[str, float]:
    """Statistics of the air around the head, where ghosts and motion echoes land.

    ``array`` is a normalised volume (0..1, clipped); it is subsampled by stride to at most
    ``max_voxels`` and put on 256 levels, as the training volumes are stored.
    Noise fills the air evenly; ghosting and motion put copies of the head's edges into it.
    So next to MRIQC's ``summary_bg_*`` (the air: more than 2 voxels from the head, city-block
    distance, i.e. outside the head dilated twice) and ``qi_1`` (Mortamet: share of air voxels
    more than 10 robust SDs above the air's median that survive a morphological opening), this
    measures structure: the same count at 3 SDs; the air within 12 voxels of the head against
    the air beyond; the air's spread after a 5-voxel box filter (noise averages out, ghosts do
    not) and as a share of its raw spread; how much slab means of the air vary along each axis
    (min/max over axes); the Laplacian's spread in the air and in the head (over the head's
    mean); and the head's smoothness per axis (``fwhm_*``, voxels of the subsampled grid).
    Every value is a finite float.
    """
    data = np.asarray(array, dtype=np.float32)
    if data.ndim != 3:
        raise ValueError(f'expected a 3D volume, got {data.ndim} dimensions')
    data, _ = subsample(data, max_voxels)
    levels = np.rint(np.clip(np.nan_to_num(data), 0.0, 1.0) * 255.0).astype(np.uint8)
    data = levels.astype(np.float32) / np.float32(255.0)
    head = head_mask(data)
    dist = (ndimage.distance_transform_cdt(~head, metric='taxicab') if head.any()
            else np.full(data.shape, np.iinfo(np.int32).max, dtype=np.int32))
    air = dist > 2
    air_counts = np.bincount(levels[air], minlength=256)
    out = _level_summary(air_counts, 'bg')
    values = data[air]
    positive = air_counts[1:]  # the air's non-zero levels
    centre = spread = 0.0
    if positive.any():
        present = np.flatnonzero(positive)
        centre, spread = _level_median_mad(positive[present], (present + 1) / 255.0)
        spread *= 1.4826
    spread = max(spread, 1.0 / 255.0)  # 8-bit training volumes: the air is often all zeros
    opening = ndimage.generate_binary_structure(3, 1)
    count = max(int(air.sum()), 1)
    for key, z in (('qi_1', 10.0), ('bg_artifact_fraction', 3.0)):
        flagged = ndimage.binary_opening(air & ((data - centre) / spread > z), opening)
        out[key] = float(flagged.sum()) / count
    near, far = air & (dist <= 12), dist > 12
    out['bg_near_mean'] = float(data[near].mean()) if near.any() else 0.0
    out['bg_near_stdv'] = float(data[near].std()) if near.any() else 0.0
    out['bg_far_mean'] = float(data[far].mean()) if far.any() else 0.0
    smooth = ndimage.uniform_filter(data, 5)
    out['bg_smooth_stdv'] = float(smooth[air].std()) if air.any() else 0.0
    out['bg_smooth_ratio'] = out['bg_smooth_stdv'] / max(float(values.std()) if values.size
                                                         else 0.0, 1e-6)
    profiles = []
    for axis in range(3):
        others = tuple(a for a in range(3) if a != axis)
        total = (data * air).sum(axis=others)
        size = air.sum(axis=others)
        ok = size > 50
        means = total[ok] / size[ok]
        profiles.append(float(means.std() / max(float(means.mean()), 1e-6))
                        if ok.sum() > 2 else 0.0)
    out['bg_profile_max'], out['bg_profile_min'] = max(profiles), min(profiles)
    laplacian = ndimage.laplace(data)
    out['bg_laplacian_stdv'] = float(laplacian[air].std()) if air.any() else 0.0
    head_mean = float(data[head].mean()) if head.any() else 0.0
    out['head_laplacian_ratio'] = (float(laplacian[head].std()) / head_mean
                                   if head_mean > 0 else 0.0)
    out['fwhm_min'], out['fwhm_median'], out['fwhm_max'] = sorted(
        _fwhm(data, head, axis) for axis in range(3))
    return {key: _finite(out[key], 0.0) for key in BACKGROUND_METRICS}
