"""Calibration of a model's probabilities on held-out volumes (issue #21 item 4).

A probability is calibrated when, of the volumes it is given to, that share has the
artifact. Measured per trained indicator: the expected calibration error (ECE, 15 equal-width
bins over [0, 1], weighted by each bin's volumes), the reliability curve with its bin counts
and the Brier score, each with a seeded bootstrap 95 % interval over volumes. Quality gets its
MAE and R² (``evaluate.metrics``). Volumes are assessed with the worker's own
:class:`~miqa_worker.assessment.Assessor`, so the probabilities are the ones a scan's result
reports (view blend, members, fusion and all).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

#: Equal-width probability bins of the ECE and the reliability curve.
ECE_BINS = 15
#: Bootstrap resamples and confidence level of every interval.
BOOTSTRAP_RESAMPLES = 1000
CONFIDENCE = 0.95


def _checked(probabilities: Sequence[float], labels: Sequence[float]
             ) -> tuple[np.ndarray, np.ndarray]:
    """Float arrays of equal length, probabilities in [0, 1], labels 0/1 (ValueError else)."""
    p = np.asarray(probabilities, dtype=np.float64).ravel()
    y = np.asarray(labels, dtype=np.float64).ravel()
    if p.shape != y.shape:
        raise ValueError(f'{p.size} probabilities but {y.size} labels')
    if p.size and (np.nanmin(p) < 0 or np.nanmax(p) > 1):
        raise ValueError('probabilities must lie in [0, 1]')
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError('labels must be 0 or 1')
    return p, y


def bin_index(probabilities: np.ndarray, bins: int = ECE_BINS) -> np.ndarray:
    """The equal-width bin of each probability; 1.0 falls in the last bin."""
    return np.minimum((np.asarray(probabilities) * bins).astype(int), bins - 1)


def reliability_curve(probabilities: Sequence[float], labels: Sequence[float],
                      bins: int = ECE_BINS) -> dict[str, list]:
    """Per equal-width bin: its edges, volume count, mean probability and observed rate.

    Args:
        probabilities: predicted probability of the artifact, per volume.
        labels: 1 when the volume has it, 0 when not.
        bins: number of equal-width bins over [0, 1].

    Returns:
        ``{'edges': [bins + 1], 'counts', 'confidence', 'observed': [bins]}``; an empty bin's
        confidence and observed rate are None.
    """
    p, y = _checked(probabilities, labels)
    which = bin_index(p, bins)
    counts = np.bincount(which, minlength=bins)
    sums_p = np.bincount(which, weights=p, minlength=bins)
    sums_y = np.bincount(which, weights=y, minlength=bins)
    with np.errstate(invalid='ignore', divide='ignore'):
        conf, obs = sums_p / counts, sums_y / counts
    return {'edges': np.linspace(0.0, 1.0, bins + 1).round(6).tolist(),
            'counts': counts.astype(int).tolist(),
            'confidence': [None if n == 0 else float(c) for n, c in zip(counts, conf, strict=True)],
            'observed': [None if n == 0 else float(o) for n, o in zip(counts, obs, strict=True)]}


def expected_calibration_error(probabilities: Sequence[float], labels: Sequence[float],
                               bins: int = ECE_BINS) -> float:
    """ECE: the count-weighted mean gap between mean probability and observed rate per bin.

    Args:
        probabilities: predicted probability of the artifact, per volume.
        labels: 1 when the volume has it, 0 when not.
        bins: number of equal-width bins over [0, 1].
    """
    p, y = _checked(probabilities, labels)
    if p.size == 0:
        return float('nan')
    which = bin_index(p, bins)
    counts = np.bincount(which, minlength=bins)
    gap = np.abs(np.bincount(which, weights=p - y, minlength=bins))
    return float(gap.sum() / counts.sum())


def brier_score(probabilities: Sequence[float], labels: Sequence[float]) -> float:
    """Mean squared difference between probability and label (0 best, 0.25 a coin)."""
    p, y = _checked(probabilities, labels)
    return float(np.mean((p - y) ** 2)) if p.size else float('nan')


def bootstrap_interval(statistic: Callable[..., float], *arrays: np.ndarray,
                       resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0,
                       level: float = CONFIDENCE) -> list[float | None]:
    """Percentile bootstrap interval of ``statistic(*arrays)`` over resampled volumes.

    Args:
        statistic: a function of the arrays (all indexed by volume).
        arrays: equal-length arrays; each resample draws the same volumes from all.
        resamples: number of resamples.
        seed: seed of the resampling (the same seed gives the same interval).
        level: coverage of the interval.

    Returns:
        ``[low, high]``, or ``[None, None]`` when no resample gives a finite value.
    """
    n = len(arrays[0])
    if n == 0:
        return [None, None]
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(resamples):
        pick = rng.integers(0, n, n)
        values.append(statistic(*(np.asarray(a)[pick] for a in arrays)))
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return [None, None]
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(values, [tail, 100.0 - tail])
    return [float(low), float(high)]


def indicator_calibration(probabilities: Sequence[float], labels: Sequence[float],
                          bins: int = ECE_BINS, resamples: int = BOOTSTRAP_RESAMPLES,
                          seed: int = 0) -> dict[str, Any]:
    """ECE and Brier score with bootstrap intervals, and the reliability curve, of one
    indicator; volumes whose label is unknown (NaN) are left out.

    Args:
        probabilities: predicted probability per volume.
        labels: 1, 0 or NaN (unknown) per volume.
        bins: equal-width bins of the ECE and the curve.
        resamples: bootstrap resamples of the intervals.
        seed: seed of the resampling.
    """
    p = np.asarray(probabilities, dtype=np.float64).ravel()
    y = np.asarray(labels, dtype=np.float64).ravel()
    known = ~np.isnan(y)
    p, y = _checked(p[known], y[known])

    def ece(a: np.ndarray, b: np.ndarray) -> float:
        return expected_calibration_error(a, b, bins)

    return {'volumes': int(p.size), 'positives': int(y.sum()),
            'ece': expected_calibration_error(p, y, bins),
            'ece_ci95': bootstrap_interval(ece, p, y, resamples=resamples, seed=seed),
            'brier': brier_score(p, y),
            'brier_ci95': bootstrap_interval(brier_score, p, y, resamples=resamples,
                                             seed=seed),
            'reliability': reliability_curve(p, y, bins)}


def assess_volumes(assessor, data, index: Sequence[int]
                   ) -> tuple[np.ndarray, list[dict], list[list[float] | None]]:
    """Quality and trained-indicator probabilities of cached volumes, as the worker reports
    them: each volume (uint8 0..255 = the shared preprocessing's 0..1) at its cached spacing
    through :meth:`Assessor.assess_volume`.

    Args:
        assessor: a :class:`miqa_worker.assessment.Assessor`.
        data: a :class:`miqa_worker.training.dataset.VolumeSet` with its index rows.
        index: the volumes to assess.

    Returns:
        quality ``[N]`` and, per volume, the result's ``artifacts`` (trained indicators) and
        its ``qualityInterval`` (None without one).
    """
    from ..image_io import ScanVolume

    quality, artifacts, intervals = [], [], []
    for v in index:
        spacing = tuple(float(s) for s in str(data.rows[v]['spacing']).split('x'))
        array = data.volumes[v].astype(np.float32) / np.float32(255.0)
        result = assessor.assess_volume(ScanVolume(array, spacing, 'RAS', 'cache'),
                                        metrics=False)
        quality.append(result['quality'])
        artifacts.append(result['artifacts'])
        intervals.append(result.get('qualityInterval'))
    return np.asarray(quality, dtype=np.float64), artifacts, intervals


def calibrate(assessor, data, index: Sequence[int], bins: int = ECE_BINS,
              resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0) -> dict[str, Any]:
    """Calibration figures of ``assessor`` on the volumes ``index`` of ``data``.

    Args:
        assessor: a :class:`miqa_worker.assessment.Assessor`.
        data: a generated or ingested :class:`~miqa_worker.training.dataset.VolumeSet`.
        index: the volumes to measure on (e.g. the held-out subjects').
        bins: equal-width bins of the ECE and the reliability curves.
        resamples: bootstrap resamples of every interval.
        seed: seed of the resampling.
    """
    from ..constants import ARTIFACT_KEYS
    from .evaluate import metrics

    index = np.asarray(index, dtype=int)
    quality, artifacts, intervals = assess_volumes(assessor, data, index)
    trained = [k for k in ARTIFACT_KEYS if k in assessor.spec.outputs.trained]
    probs = np.array([[a.get(k, np.nan) for k in ARTIFACT_KEYS] for a in artifacts],
                     dtype=np.float64).reshape(len(index), len(ARTIFACT_KEYS))
    indicators, unlabelled = {}, []
    for key in trained:
        k = ARTIFACT_KEYS.index(key)
        if np.isnan(data.indicators[index, k]).all() or np.isnan(probs[:, k]).all():
            unlabelled.append(key)  # no volume says whether it has it: nothing to measure
            continue
        indicators[key] = indicator_calibration(probs[:, k], data.indicators[index, k], bins,
                                                resamples, seed)
    scored = metrics(data, index, quality.astype(np.float32), np.nan_to_num(probs))
    for key, figures in indicators.items():  # ranking beside calibration (AUC of p = of logit)
        figures['auc'] = scored['indicator_auc'].get(key)
    quality_out: dict[str, Any] = {k: scored[k] for k in ('r2', 'mae') if k in scored}
    reported = [i for i in intervals if i is not None]
    if len(reported) == len(index) and len(index):
        truth = np.asarray(data.quality[index], dtype=np.float64)
        known = ~np.isnan(truth)
        bounds = np.asarray(reported, dtype=np.float64)[known]
        inside = ((truth[known] >= bounds[:, 0]) & (truth[known] <= bounds[:, 1])).astype(float)
        quality_out['member_interval_coverage'] = float(inside.mean())  # qualityInterval's
        quality_out['member_interval_coverage_ci95'] = bootstrap_interval(
            np.mean, inside, resamples=resamples, seed=seed)
        quality_out['interval_mean_width'] = float(np.mean(bounds[:, 1] - bounds[:, 0]))
    else:
        quality_out['member_interval_coverage'] = None
        quality_out['member_interval_note'] = (
            "not measured: the model's results carry no qualityInterval")
    return {'model': dict(assessor.model), 'volumes': int(len(index)),
            'subjects': scored['subjects'], 'bins': bins,
            'method': (f'ECE over {bins} equal-width probability bins (count-weighted '
                       f'|mean probability - observed rate|); Brier = mean (p - y)^2; '
                       f'95 % intervals: percentile bootstrap over volumes, {resamples} '
                       f'resamples, seed {seed}; probabilities as the worker reports them '
                       '(Assessor.assess_volume on the cached volumes)'),
            'indicators': indicators, 'unlabelled_indicators': unlabelled,
            'quality': quality_out}


def plot_reliability(result: dict[str, Any], path: Path | str) -> Path:
    """The reliability diagram: per trained indicator, observed rate against mean
    probability per bin (the diagonal is perfect), with the bin counts as a histogram under it.

    Args:
        result: :func:`calibrate`'s result.
        path: the PNG to write.
    """
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    names = list(result['indicators'])
    fig, axes = plt.subplots(2, max(1, len(names)), figsize=(3.2 * max(1, len(names)), 5.2),
                             gridspec_kw={'height_ratios': [3, 1]}, squeeze=False)
    for col, name in enumerate(names):
        figures = result['indicators'][name]
        curve = figures['reliability']
        edges = np.asarray(curve['edges'])
        centres = (edges[:-1] + edges[1:]) / 2
        top, bottom = axes[0, col], axes[1, col]
        top.plot([0, 1], [0, 1], color='0.6', lw=1, ls='--')
        keep = [i for i, n in enumerate(curve['counts']) if n]
        top.plot([curve['confidence'][i] for i in keep], [curve['observed'][i] for i in keep],
                 marker='o', ms=3, lw=1.2)
        low, high = figures['ece_ci95']
        span = '' if low is None else f' [{low:.3f}, {high:.3f}]'
        top.set_title(f'{name}\nECE {figures["ece"]:.3f}{span}', fontsize=8)
        top.set_xlim(0, 1)
        top.set_ylim(0, 1)
        top.set_xticklabels([])
        top.tick_params(labelsize=7)
        if col == 0:
            top.set_ylabel('observed rate', fontsize=8)
            bottom.set_ylabel('volumes', fontsize=8)
        bottom.bar(centres, curve['counts'], width=edges[1] - edges[0], color='0.5')
        bottom.set_yscale('symlog')
        bottom.set_xlim(0, 1)
        bottom.set_xlabel('predicted probability', fontsize=8)
        bottom.tick_params(labelsize=7)
    fig.suptitle(f'{result["model"].get("name", "")} {result["model"].get("version", "")}: '
                 f'{result["volumes"]} volumes of {", ".join(result["subjects"])}', fontsize=9)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_outputs(result: dict[str, Any], out_dir: Path | str) -> tuple[Path, Path]:
    """``calibration.json`` and ``reliability.png`` of a result in ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / 'calibration.json'
    target.write_text(json.dumps(result, indent=1) + '\n', encoding='utf-8')
    return target, plot_reliability(result, out_dir / 'reliability.png')


# ---- recalibration: fitted on volumes that are not the held-out ones (issue #21 item 4) ----

#: Folds of the cross-validation that picks each indicator's map.
FIT_FOLDS = 5
#: The share of volumes whose true quality the fitted quality interval is to cover.
INTERVAL_LEVEL = 0.8
#: The floors (quality points, added in quadrature to the spread) the interval fit tries.
INTERVAL_FLOORS = tuple(round(0.05 * i, 2) for i in range(61))


def measuring_spec(spec):
    """``spec`` with a calibration that changes no probability and whose interval is the bare
    spread: the assessor then reports the raw probabilities and ``globalView.qualitySpread``."""
    from dataclasses import replace

    from ..model_spec import Calibration, QualityInterval

    measuring = Calibration({}, QualityInterval(scale=1.0, floor=0.0, level=0.5),
                            'measuring: no map')
    return replace(spec, postprocessing=replace(spec.postprocessing, calibration=measuring))


def assess_raw(assessor, data, index: Sequence[int]) -> dict[str, np.ndarray]:
    """The uncalibrated outputs of cached volumes as the worker computes them: quality, the
    ten probabilities (NaN: not reported) and the view's quality spread, with the labels.

    Args:
        assessor: a :class:`miqa_worker.assessment.Assessor` (its spec is restored after).
        data: a :class:`~miqa_worker.training.dataset.VolumeSet` with its index rows.
        index: the volumes to assess.
    """
    from ..constants import ARTIFACT_KEYS
    from ..image_io import ScanVolume

    index = np.asarray(index, dtype=int)
    spec, assessor.spec = assessor.spec, measuring_spec(assessor.spec)
    quality, probs, spread = [], [], []
    try:
        for v in index:
            spacing = tuple(float(s) for s in str(data.rows[v]['spacing']).split('x'))
            array = data.volumes[v].astype(np.float32) / np.float32(255.0)
            result = assessor.assess_volume(ScanVolume(array, spacing, 'RAS', 'cache'),
                                            metrics=False)
            quality.append(result['quality'])
            probs.append([result['artifacts'].get(k, np.nan) for k in ARTIFACT_KEYS])
            spread.append(result.get('globalView', {}).get('qualitySpread', 0.0))
    finally:
        assessor.spec = spec
    return {'index': index, 'quality': np.asarray(quality, dtype=np.float64),
            'probabilities': np.asarray(probs, dtype=np.float64).reshape(len(index), -1),
            'spread': np.asarray(spread, dtype=np.float64),
            'truth': np.asarray(data.quality[index], dtype=np.float64),
            'labels': np.asarray(data.indicators[index], dtype=np.float64),
            'subjects': sorted(set(data.subjects[index].tolist()))}


def apply_map(calibration, probabilities: Sequence[float]) -> np.ndarray:
    """An :class:`~miqa_worker.model_spec.IndicatorCalibration` applied to each probability
    (the assessor's own per-scan function, so the figures are the worker's)."""
    return np.array([calibration.apply(float(p)) for p in np.ravel(probabilities)])


def fit_platt(probabilities: np.ndarray, labels: np.ndarray):
    """Platt scaling on the logit: logistic regression of the label on logit(p)."""
    from sklearn.linear_model import LogisticRegression

    from ..model_spec import IndicatorCalibration, _logit

    z = np.array([[_logit(float(p))] for p in probabilities])
    model = LogisticRegression(C=1e4, max_iter=1000).fit(z, labels.astype(int))
    slope = float(np.clip(model.coef_[0, 0], 1e-3, 1e3))
    return IndicatorCalibration('platt', slope=slope,
                                intercept=float(np.clip(model.intercept_[0], -1e3, 1e3)))


def fit_isotonic(probabilities: np.ndarray, labels: np.ndarray):
    """Isotonic regression (non-decreasing, flat outside the fitted range) as breakpoints."""
    from sklearn.isotonic import IsotonicRegression

    from ..model_spec import IndicatorCalibration

    model = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds='clip').fit(
        probabilities, labels)
    x = np.asarray(model.X_thresholds_, dtype=np.float64)
    y = np.clip(np.asarray(model.y_thresholds_, dtype=np.float64), 0.0, 1.0)
    if x.size < 2:  # one value seen: a flat map through it
        x, y = np.array([0.0, 1.0]), np.array([y[0], y[0]])
    return IndicatorCalibration('isotonic', x=tuple(map(float, x)),
                                y=tuple(map(float, np.maximum.accumulate(y))))


def fit_identity(probabilities: np.ndarray, labels: np.ndarray):
    """No map: the probabilities as they are (the candidate the others must beat)."""
    from ..model_spec import IndicatorCalibration

    return IndicatorCalibration()


#: The candidate maps, tried in this order (a tie keeps the earlier).
FITTERS: dict[str, Callable[[np.ndarray, np.ndarray], Any]] = {
    'identity': fit_identity, 'platt': fit_platt, 'isotonic': fit_isotonic}


def fit_indicator(probabilities: Sequence[float], labels: Sequence[float],
                  folds: int = FIT_FOLDS, seed: int = 0, bins: int = ECE_BINS
                  ) -> tuple[Any, dict[str, Any]]:
    """The map of one indicator: identity, Platt or isotonic, whichever has the lowest
    cross-validated Brier score on the fitting volumes (ECE beside it), refitted on all.

    Args:
        probabilities: the uncalibrated probability per fitting volume.
        labels: 1, 0 or NaN (unknown: left out) per volume.
        folds: folds of the stratified cross-validation.
        seed: seed of the fold split.
        bins: equal-width bins of the ECE.

    Returns:
        the :class:`~miqa_worker.model_spec.IndicatorCalibration` and the cross-validation's
        figures per method with the choice.
    """
    from sklearn.model_selection import StratifiedKFold

    p = np.asarray(probabilities, dtype=np.float64).ravel()
    y = np.asarray(labels, dtype=np.float64).ravel()
    known = ~np.isnan(y) & ~np.isnan(p)
    p, y = _checked(p[known], y[known])
    if y.sum() < folds or (1 - y).sum() < folds:
        raise ValueError(f'{int(y.sum())} positives of {y.size} volumes: too few to fit')
    split = StratifiedKFold(folds, shuffle=True, random_state=seed)
    table = {}
    for name, fit in FITTERS.items():
        out_of_fold = np.empty_like(p)
        for train, test in split.split(p.reshape(-1, 1), y):
            out_of_fold[test] = apply_map(fit(p[train], y[train]), p[test])
        table[name] = {'brier': brier_score(out_of_fold, y),
                       'ece': expected_calibration_error(out_of_fold, y, bins)}
    chosen = min(table, key=lambda name: table[name]['brier'])
    return FITTERS[chosen](p, y), {'volumes': int(p.size), 'positives': int(y.sum()),
                                   'cross_validated': table, 'chosen': chosen}


def fit_quality_interval(quality: np.ndarray, truth: np.ndarray, spread: np.ndarray,
                         level: float = INTERVAL_LEVEL,
                         floors: Sequence[float] = INTERVAL_FLOORS) -> tuple[Any, dict]:
    """The narrowest interval ``quality ± scale * sqrt(spread^2 + floor^2)`` (on average over
    the fitting volumes) that covers the true quality of ``level`` of them.

    Args:
        quality: the reported quality per fitting volume.
        truth: its true quality (NaN: left out).
        spread: the sd of the quality over the view's networks x flips.
        level: the share to cover.
        floors: the floors tried; for each, ``scale`` is the ``level`` quantile of
            ``|error| / sqrt(spread^2 + floor^2)``.
    """
    from ..constants import QUALITY_MAX, QUALITY_MIN
    from ..model_spec import QualityInterval

    known = ~np.isnan(truth)
    q, t, s = quality[known], truth[known], spread[known]
    err = np.abs(t - q)
    best = None
    for floor in floors:
        base = np.sqrt(s ** 2 + floor ** 2)
        if (base <= 0).any():
            continue
        scale = float(np.quantile(err / base, level, method='higher'))
        low = np.clip(q - scale * base, QUALITY_MIN, QUALITY_MAX)
        high = np.clip(q + scale * base, QUALITY_MIN, QUALITY_MAX)
        width = float(np.mean(high - low))
        if best is None or width < best[0]:
            best = (width, QualityInterval(scale=round(scale, 6), floor=float(floor),
                                           level=level))
    if best is None:
        raise ValueError('no floor gives an interval (every spread is 0 and floors are 0)')
    interval = best[1]
    return interval, {'volumes': int(known.sum()), 'level': level, 'mean_width': best[0],
                      'coverage': interval_coverage(q, t, s, interval)}


def interval_bounds(quality: np.ndarray, spread: np.ndarray, interval) -> np.ndarray:
    """``[N, 2]`` interval of each volume, as the assessor makes it."""
    from ..constants import QUALITY_MAX, QUALITY_MIN

    half = np.array([interval.half_width(float(s)) for s in spread])
    return np.stack([np.clip(quality - half, QUALITY_MIN, QUALITY_MAX),
                     np.clip(quality + half, QUALITY_MIN, QUALITY_MAX)], axis=1)


def interval_coverage(quality: np.ndarray, truth: np.ndarray, spread: np.ndarray,
                      interval) -> float:
    """The share of volumes whose true quality lies in their interval."""
    bounds = interval_bounds(quality, spread, interval)
    return float(np.mean((truth >= bounds[:, 0]) & (truth <= bounds[:, 1])))


def interval_figures(raw: dict[str, np.ndarray], interval, resamples: int = BOOTSTRAP_RESAMPLES,
                     seed: int = 0) -> dict[str, Any]:
    """Coverage (with its bootstrap interval) and widths of the quality interval on volumes."""
    known = ~np.isnan(raw['truth'])
    q, t, s = raw['quality'][known], raw['truth'][known], raw['spread'][known]
    bounds = interval_bounds(q, s, interval)
    inside = ((t >= bounds[:, 0]) & (t <= bounds[:, 1])).astype(np.float64)
    width = bounds[:, 1] - bounds[:, 0]
    return {'volumes': int(known.sum()), 'level': interval.level,
            'coverage': float(inside.mean()),
            'coverage_ci95': bootstrap_interval(np.mean, inside, resamples=resamples,
                                                seed=seed),
            'mean_width': float(width.mean()), 'median_width': float(np.median(width)),
            'spread_median': float(np.median(s)), 'spread_max': float(np.max(s)),
            'spearman_spread_error': _spearman(s, np.abs(t - q))}


def _spearman(a: np.ndarray, b: np.ndarray) -> float | None:
    """Rank correlation of a and b (None when either is constant)."""
    from scipy.stats import spearmanr

    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    return float(spearmanr(a, b).statistic)


def fit_calibration(fit: dict[str, np.ndarray], trained: Sequence[str], fitted_on: str,
                    level: float = INTERVAL_LEVEL, seed: int = 0):
    """The model spec's :class:`~miqa_worker.model_spec.Calibration` fitted on ``fit``
    (:func:`assess_raw` of volumes that are not the held-out ones), with the fit's figures.

    Args:
        fit: the uncalibrated outputs and labels of the fitting volumes.
        trained: the model's trained outputs (only these indicators get a map).
        fitted_on: one line on the fitting volumes (written into model.json).
        level: the share of fitting volumes the quality interval is to cover.
        seed: seed of the cross-validation's folds.
    """
    from ..constants import ARTIFACT_KEYS
    from ..model_spec import Calibration

    maps, report = {}, {}
    for k, key in enumerate(ARTIFACT_KEYS):
        if key not in trained or np.isnan(fit['labels'][:, k]).all():
            continue
        maps[key], report[key] = fit_indicator(fit['probabilities'][:, k], fit['labels'][:, k],
                                               seed=seed)
    interval, interval_report = fit_quality_interval(fit['quality'], fit['truth'],
                                                     fit['spread'], level)
    return (Calibration(maps, interval, fitted_on),
            {'volumes': int(len(fit['quality'])), 'subjects': fit['subjects'],
             'indicators': report, 'quality_interval': interval_report})


def recalibration_figures(held: dict[str, np.ndarray], calibration, trained: Sequence[str],
                          bins: int = ECE_BINS, resamples: int = BOOTSTRAP_RESAMPLES,
                          seed: int = 0) -> dict[str, Any]:
    """Per trained indicator on the held-out volumes: ECE, Brier and reliability before
    (``uncalibrated``) and after the map (``indicators``), and the quality interval's
    coverage."""
    from ..constants import ARTIFACT_KEYS

    before, after = {}, {}
    for k, key in enumerate(ARTIFACT_KEYS):
        if key not in trained or np.isnan(held['labels'][:, k]).all():
            continue
        raw = held['probabilities'][:, k]
        before[key] = indicator_calibration(raw, held['labels'][:, k], bins, resamples, seed)
        mapped = apply_map(calibration.indicators[key], raw) if key in calibration.indicators \
            else raw
        after[key] = indicator_calibration(mapped, held['labels'][:, k], bins, resamples, seed)
        after[key]['map'] = (calibration.indicators[key].method
                             if key in calibration.indicators else 'none')
        after[key]['ece_uncalibrated'] = before[key]['ece']
        after[key]['brier_uncalibrated'] = before[key]['brier']
    out = {'indicators': after, 'uncalibrated': {'indicators': before}}
    if calibration.quality_interval is not None:
        out['quality_interval'] = interval_figures(held, calibration.quality_interval,
                                                   resamples, seed)
    return out


def plot_reliability_before_after(before: dict[str, Any], after: dict[str, Any],
                                  title: str, path: Path | str) -> Path:
    """The reliability diagram before (grey) and after (blue) recalibration, per indicator,
    with the after-map bin counts under each.

    Args:
        before: ``{indicator: indicator_calibration(...)}`` of the raw probabilities.
        after: the same of the calibrated ones.
        title: the figure's title.
        path: the PNG to write.
    """
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    names = list(after)
    fig, axes = plt.subplots(2, max(1, len(names)), figsize=(3.2 * max(1, len(names)), 5.6),
                             gridspec_kw={'height_ratios': [3, 1]}, squeeze=False)
    for col, name in enumerate(names):
        top, bottom = axes[0, col], axes[1, col]
        top.plot([0, 1], [0, 1], color='0.6', lw=1, ls='--')
        for figures, colour, label in ((before[name], '0.55', 'uncalibrated'),
                                       (after[name], 'tab:blue', 'calibrated')):
            curve = figures['reliability']
            keep = [i for i, n in enumerate(curve['counts']) if n]
            top.plot([curve['confidence'][i] for i in keep],
                     [curve['observed'][i] for i in keep], marker='o', ms=3, lw=1.2,
                     color=colour, label=f'{label} ECE {figures["ece"]:.3f}')
        top.set_title(f'{name} ({after[name].get("map", "")})', fontsize=8)
        top.legend(fontsize=6, loc='upper left')
        top.set_xlim(0, 1)
        top.set_ylim(0, 1)
        top.set_xticklabels([])
        top.tick_params(labelsize=7)
        curve = after[name]['reliability']
        edges = np.asarray(curve['edges'])
        bottom.bar((edges[:-1] + edges[1:]) / 2, curve['counts'], width=edges[1] - edges[0],
                   color='tab:blue', alpha=0.7)
        bottom.set_yscale('symlog')
        bottom.set_xlim(0, 1)
        bottom.set_xlabel('predicted probability', fontsize=8)
        bottom.tick_params(labelsize=7)
        if col == 0:
            top.set_ylabel('observed rate', fontsize=8)
            bottom.set_ylabel('volumes (calibrated)', fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def fit_and_measure(assessor, data, index: Sequence[int], fit_cache: Path | str,
                    level: float = INTERVAL_LEVEL, resamples: int = BOOTSTRAP_RESAMPLES,
                    seed: int = 0, out_dir: Path | str | None = None, ship: bool = False,
                    command: str = '', cache: str = '') -> dict[str, Any]:
    """``miqa-train calibrate --fit``: fit the recalibration and the quality interval on the
    volumes of ``fit_cache`` (its volumes of the measured people are left out), measure
    before/after on ``index``
    of ``data``, write ``calibration.json`` and ``reliability.png`` to ``out_dir`` and, with
    ``ship``, the calibration into the assessor's model folder (``model.json``, and
    ``metrics.json`` ``calibration`` and ``reliability.png`` beside it).

    Args:
        assessor: the model's :class:`~miqa_worker.assessment.Assessor` (its calibration, if
            any, is ignored: the fit starts from the uncalibrated outputs).
        data: the cache measured on (e.g. the held-out people's volumes).
        index: the volumes of ``data`` measured on.
        fit_cache: a cache from ``generate``; only its other people's volumes are fitted on
            (ValueError when none is left).
        level: the share of fitting volumes the quality interval is to cover.
        resamples: bootstrap resamples of every interval.
        seed: seed of the bootstrap and of the cross-validation's folds.
        out_dir: where calibration.json and reliability.png go (None: not written).
        ship: also write the model folder.
        command: the command line, recorded.
        cache: the measured cache's path, recorded.
    """
    from dataclasses import replace

    from sklearn.metrics import r2_score

    from ..model_spec import save_spec
    from .dataset import load_cache

    fit_cache = Path(fit_cache)
    if not (fit_cache / 'index.csv').is_file():
        raise ValueError(f'{fit_cache} has no index.csv (make one with "generate")')
    fit_data = load_cache(fit_cache)
    index = np.asarray(index, dtype=int)
    measured = sorted(set(data.subjects[index].tolist()))
    left_out = sorted(set(fit_data.subjects.tolist()) & set(measured))
    fit_index = np.flatnonzero(~np.isin(fit_data.subjects, measured))
    if not len(fit_index):
        raise ValueError(f'{fit_cache} holds volumes of the measured people only '
                         f'({", ".join(measured)}): fit on other people')
    settings = {}
    if (fit_cache / 'settings.json').is_file():
        settings = json.loads((fit_cache / 'settings.json').read_text(encoding='utf-8'))
    trained = assessor.spec.outputs.trained
    fit_raw = assess_raw(assessor, fit_data, fit_index)
    held = assess_raw(assessor, data, index)
    fitted_on = (f'{len(fit_index)} generated volumes of {", ".join(fit_raw["subjects"])} '
                 f'(cache {fit_cache.name}, generator seed {settings.get("seed", "?")}), '
                 'none of the held-out people and none the networks or fusion trained on')
    calibration, fit_report = fit_calibration(fit_raw, trained, fitted_on, level, seed)
    figures = recalibration_figures(held, calibration, trained, resamples=resamples,
                                    seed=seed)
    known = ~np.isnan(held['truth'])
    quality = {'r2': float(r2_score(held['truth'][known], held['quality'][known])),
               'mae': float(np.abs(held['truth'][known] - held['quality'][known]).mean()),
               'interval': {**calibration.quality_interval.to_json(),
                            **figures.get('quality_interval', {})}}
    fit_report['left_out_subjects'] = left_out
    result = {'model': dict(assessor.model), 'volumes': int(len(index)),
              'subjects': held['subjects'], 'bins': ECE_BINS,
              'method': (f'maps fitted on other volumes (fitted_on), each indicator\'s chosen '
                         f'among identity, Platt on the logit and isotonic by {FIT_FOLDS}-fold '
                         f'cross-validated Brier on them; ECE over {ECE_BINS} equal-width '
                         'probability bins (count-weighted |mean probability - observed '
                         'rate|); Brier = mean (p - y)^2; 95 % intervals: percentile bootstrap '
                         f'over volumes, {resamples} resamples, seed {seed}; probabilities as '
                         'the worker reports them (Assessor.assess_volume, then the map the '
                         'assessor applies); quality interval = quality +- scale * '
                         'sqrt(spread^2 + floor^2), spread = sd of the quality over the '
                         'view\'s networks x flips, scale and floor the narrowest to cover '
                         f'{level:.0%} of the fitting volumes'),
              'fitted_on': {'description': fitted_on, 'cache': str(fit_cache),
                            'settings': settings, **fit_report},
              'indicators': figures['indicators'],
              'uncalibrated': {**figures['uncalibrated'],
                               'note': 'the probabilities as the network and fusion give '
                                       'them, before the maps, on the same volumes'},
              'quality': quality, 'cache': cache, 'command': command}
    spec = replace(assessor.spec, postprocessing=replace(assessor.spec.postprocessing,
                                                         calibration=calibration))
    title = (f'{result["model"].get("name", "")} {result["model"].get("version", "")}: '
             f'{result["volumes"]} held-out volumes of {", ".join(result["subjects"])}, '
             f'maps fitted on {len(fit_index)} others')
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / 'calibration.json').write_text(json.dumps(result, indent=1) + '\n',
                                              encoding='utf-8')
        (out / 'model.json.calibration').write_text(
            json.dumps(calibration.to_json(), indent=1) + '\n', encoding='utf-8')
        plot_reliability_before_after(figures['uncalibrated']['indicators'],
                                      figures['indicators'], title, out / 'reliability.png')
    if ship:
        folder = Path(assessor.info['path'])
        save_spec(spec, folder)
        metrics_file = folder / 'metrics.json'
        metrics = json.loads(metrics_file.read_text(encoding='utf-8'))
        metrics['calibration'] = _rounded(result)
        metrics_file.write_text(json.dumps(metrics, indent=1) + '\n', encoding='utf-8')
        plot_reliability_before_after(figures['uncalibrated']['indicators'],
                                      figures['indicators'], title, folder / 'reliability.png')
    return result


def _rounded(value: Any, digits: int = 4) -> Any:
    """Floats of a JSON value rounded (as metrics.json keeps its figures)."""
    if isinstance(value, float):
        return round(value, digits)
    if isinstance(value, dict):
        return {k: _rounded(v, digits) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_rounded(v, digits) for v in value]
    return value


def calibrate_recipe_model(config) -> dict[str, Any]:
    """The recipe's ``calibrate`` stage: ``fit_and_measure`` on the shipped model folder, fitted
    on ``config.calibrate_fit_cache`` and measured on the held-out people of
    ``config.calibrate_cache`` (else the training cache), shipped into the folder."""
    from ..assessment import Assessor
    from .dataset import load_cache

    if config.ship_to is None:
        raise ValueError('calibrate needs ship.to (the model folder it calibrates)')
    measured = config.calibrate_cache or config.cache
    data = load_cache(measured)
    index = np.flatnonzero(np.isin(data.subjects, list(config.test_subjects)))
    if not len(index):
        raise ValueError(f'no volumes of the held-out subjects in {measured}')
    assessor = Assessor(str(config.ship_to), threads=config.threads)
    return fit_and_measure(assessor, data, index, config.calibrate_fit_cache,
                           level=config.calibrate_level, out_dir=config.out / 'calibration',
                           ship=True, command='miqa-train run (calibrate stage)',
                           cache=str(measured))
