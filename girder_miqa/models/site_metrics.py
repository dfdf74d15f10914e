"""Site-aware image quality metrics (issue #22.4): each scan's metrics against its peers.

The peers of a scan are the assessed scans of its project with the same site and scan type
(``models/sites.py``). For every metric the worker reports (``assessment['metrics']``, see
``miqa_worker/quality_metrics.py``) a scan gets

* its robust z-score ``(x - median) / (1.4826 * MAD)`` among the peers (when the MAD is 0, the
  mean absolute deviation times 1.2533 stands in; when that is 0 too, every value is the
  median and z is 0);
* its percentile among them (mid-rank: the share below it plus half the share equal to it);
* for the metrics of :data:`DIRECTIONS` (those with a known good direction), whether it lies
  outside Tukey's fences (Q1 - 1.5 IQR, Q3 + 1.5 IQR) on the bad side, which makes it an
  outlier and gives it a reason such as "snr_wm low for site-b (z = −3.4)".

The distribution includes the scan itself (one scan barely moves a median), so every scan of a
group is scored against the same numbers. A site with fewer than :data:`MIN_PEERS` scans of the
type is compared with the project's scans of that type instead (and the note says so); with
fewer than that in the whole project there is no distribution: no z, no percentiles, no
outliers, and the note says "too few peers (n) for a distribution". MRIQC reports undefined
ratios as -1; those values are left out, as missing.
"""

from __future__ import annotations

import bisect
import math

MIN_PEERS = 8  # fewer scans than this make no distribution worth a z-score
MAD_SCALE = 1.4826  # MAD to standard deviation, for normal data
MEAN_AD_SCALE = 1.2533  # mean absolute deviation to standard deviation (sqrt(pi / 2))
FENCE = 1.5  # Tukey
UNDEFINED = -1.0

HIGHER_IS_BETTER, LOWER_IS_BETTER, BOTH = 'higher is better', 'lower is better', 'both'

# The metrics whose outliers are reasons: (direction, why). A metric outside the fences on its
# bad side is an outlier; "both": either side is suspicious.
DIRECTIONS: dict[str, tuple[str, str]] = {
    'snr_csf': (HIGHER_IS_BETTER, 'signal over noise in the dark class; low = noisy'),
    'snr_gm': (HIGHER_IS_BETTER, 'signal over noise in the middle class; low = noisy'),
    'snr_wm': (HIGHER_IS_BETTER, 'signal over noise in the bright class; low = noisy'),
    'snr_total': (HIGHER_IS_BETTER, 'mean of the tissue SNRs; low = noisy'),
    'snr_fg': (HIGHER_IS_BETTER, 'signal over noise in the whole head; low = noisy'),
    'snrd_total': (HIGHER_IS_BETTER, 'Dietrich SNR against the air\'s noise; low = noisy'),
    'cnr': (HIGHER_IS_BETTER, 'grey/white contrast over noise; low = poor contrast'),
    'fber': (HIGHER_IS_BETTER, 'head energy over air energy; low = ghosts or noise in the air'),
    'cjv': (LOWER_IS_BETTER, 'joint variation of grey and white; high = noise, inhomogeneity'),
    'efc': (LOWER_IS_BETTER, 'entropy focus criterion; high = blur, ghosting, motion'),
    'wm2max': (BOTH, 'white-matter median over the maximum; low = spikes, high = clipping'),
    'fg_fraction': (BOTH, 'the head\'s share of the field of view; a coverage change'),
    'fg_volume_ml': (BOTH, 'the head\'s volume; a field-of-view or coverage change'),
}
# Ratios that MRIQC reports as -1 when undefined (a zero denominator).
RATIOS = frozenset({'snr_csf', 'snr_gm', 'snr_wm', 'snr_total', 'snr_fg', 'snrd_total', 'cnr',
                    'cjv', 'efc', 'fber', 'wm2max'})
SKIPPED = frozenset({'subsample_factor'})  # how the worker computed, not what it saw


def metric_values(assessment: dict | None) -> dict[str, float]:
    """The usable metrics of an assessment: finite numbers, the undefined ratios (-1) and the
    bookkeeping ones left out."""
    raw = (assessment or {}).get('metrics')
    out: dict[str, float] = {}
    if not isinstance(raw, dict):
        return out
    for name, value in raw.items():
        if name in SKIPPED or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        value = float(value)
        if not math.isfinite(value) or (name in RATIOS and value == UNDEFINED):
            continue
        out[str(name)] = value
    return out


def quantile(ordered: list[float], q: float) -> float:
    """The q-quantile (0..1) of sorted values, linear between order statistics (numpy's
    default)."""
    rank = q * (len(ordered) - 1)
    below = math.floor(rank)
    above = min(below + 1, len(ordered) - 1)
    return ordered[below] + (rank - below) * (ordered[above] - ordered[below])


def robust_stats(values: list[float]) -> dict[str, float]:
    """Median, the robust scale (1.4826 MAD, else 1.2533 mean absolute deviation, else 0),
    quartiles and Tukey's fences of some values (at least one)."""
    ordered = sorted(values)
    median = quantile(ordered, 0.5)
    deviations = sorted(abs(v - median) for v in ordered)
    mad = quantile(deviations, 0.5)
    scale = MAD_SCALE * mad
    if scale == 0:
        scale = MEAN_AD_SCALE * sum(deviations) / len(deviations)
    q1, q3 = quantile(ordered, 0.25), quantile(ordered, 0.75)
    iqr = q3 - q1
    return {'n': len(ordered), 'median': median, 'mad': mad, 'scale': scale, 'q1': q1,
            'q3': q3, 'low': q1 - FENCE * iqr, 'high': q3 + FENCE * iqr}


def z_score(value: float, stats: dict) -> float:
    """The robust z of ``value`` (0 when the distribution has no spread)."""
    return (value - stats['median']) / stats['scale'] if stats['scale'] > 0 else 0.0


def percentile(value: float, ordered: list[float]) -> float:
    """The mid-rank percentile (0..100) of ``value`` among sorted values (two bisections, so
    a group of n scans costs n log n, not n squared)."""
    below = bisect.bisect_left(ordered, value)
    equal = bisect.bisect_right(ordered, value) - below
    return 100.0 * (below + 0.5 * equal) / len(ordered)


def is_outlier(name: str, value: float, stats: dict) -> bool:
    """Whether a metric of :data:`DIRECTIONS` lies outside the fences on its bad side."""
    if name not in DIRECTIONS:
        return False
    direction = DIRECTIONS[name][0]
    low, high = value < stats['low'], value > stats['high']
    return {HIGHER_IS_BETTER: low, LOWER_IS_BETTER: high}.get(direction, low or high)


def minus(number: float, digits: int = 1) -> str:
    """A signed number with a true minus sign, as in "z = −3.4"."""
    text = f'{number:.{digits}f}'
    return text.replace('-', '\u2212')


def score_group(members: dict, population: dict | None, group: str, where: str,
                note: str | None = None, peers: int | None = None
                ) -> dict[object, tuple[dict, list[dict]]]:
    """The stored ``metrics`` and the metric reasons of each member.

    Args:
        members: {itemId: {metric: value}} of the scans to score.
        population: {itemId: {metric: value}} of the distribution they are scored against (the
            members themselves, or the project's scans of the type); None: too few peers.
        group: the label of the distribution, e.g. "site-b / T1w".
        where: how a reason names it, e.g. "site-b" ("snr_wm low for site-b").
        note: a line on the comparison (a fallback, too few peers).
        peers: how many peers there are (default: the population's size).
    """
    peers = len(population or {}) if peers is None else peers
    base = {'group': group, 'peers': peers, 'minimumPeers': MIN_PEERS,
            'enough': population is not None and peers >= MIN_PEERS, 'note': note}
    out: dict = {}
    if not base['enough']:
        for itemId in members:
            out[itemId] = ({**base, 'percentiles': {}, 'z': {}, 'outliers': []}, [])
        return out
    columns: dict[str, list[float]] = {}
    for values in population.values():
        for name, value in values.items():
            columns.setdefault(name, []).append(value)
    stats, ordered = {}, {}
    for name, column in columns.items():
        if len(column) >= MIN_PEERS:  # a metric most scans lack has no distribution either
            ordered[name] = sorted(column)
            stats[name] = robust_stats(column)
    for itemId, values in members.items():
        z, pct, outliers, reasons = {}, {}, [], []
        for name in sorted(values):
            if name not in stats:
                continue
            value = values[name]
            z[name] = round(z_score(value, stats[name]), 3)
            pct[name] = round(percentile(value, ordered[name]), 1)
            if is_outlier(name, value, stats[name]):
                outliers.append(name)
                side = 'low' if value < stats[name]['median'] else 'high'
                reasons.append({
                    'source': 'metrics', 'severity': 'warning',
                    'text': f'{name} {side} for {where} (z = {minus(z[name])})',
                    'label': f'{name} {side}',
                    'target': {'kind': 'metric', 'key': name},
                    'weight': round(min(abs(z[name]), 10.0) / 2.0, 3),
                })
        outliers.sort(key=lambda name: -abs(z[name]))
        out[itemId] = ({**base, 'percentiles': pct, 'z': z, 'outliers': outliers}, reasons)
    return out


def score_site(site: str, scan_type: str, site_scans: dict, type_scans: dict
               ) -> dict[object, tuple[dict, list[dict]]]:
    """Score the scans of one site and type: against the site's scans when it has at least
    :data:`MIN_PEERS`, else against the project's scans of the type, else not at all.

    Args:
        site_scans: {itemId: {metric: value}} of the site's assessed scans of the type.
        type_scans: the same for the project's scans of the type (all sites).
    """
    if len(site_scans) >= MIN_PEERS:
        return score_group(site_scans, site_scans, f'{site} / {scan_type}', site)
    if len(type_scans) >= MIN_PEERS:
        note = (f'{site} has {len(site_scans)} {scan_type} scan(s), fewer than {MIN_PEERS}: '
                f'compared with the project\'s {len(type_scans)} {scan_type} scans')
        return score_group(site_scans, type_scans, f'all sites / {scan_type}',
                           f'the project\'s {scan_type} scans', note)
    return score_group(site_scans, None, f'{site} / {scan_type}', site,
                       f'too few peers ({len(type_scans)}) for a distribution',
                       peers=len(type_scans))
