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


def assess_volumes(assessor, data, index: Sequence[int]) -> tuple[np.ndarray, list[dict]]:
    """Quality and trained-indicator probabilities of cached volumes, as the worker reports
    them: each volume (uint8 0..255 = the shared preprocessing's 0..1) at its cached spacing
    through :meth:`Assessor.assess_volume`.

    Args:
        assessor: a :class:`miqa_worker.assessment.Assessor`.
        data: a :class:`miqa_worker.training.dataset.VolumeSet` with its index rows.
        index: the volumes to assess.

    Returns:
        quality ``[N]`` and, per volume, the result's ``artifacts`` (trained indicators).
    """
    from ..image_io import ScanVolume

    quality, artifacts = [], []
    for v in index:
        spacing = tuple(float(s) for s in str(data.rows[v]['spacing']).split('x'))
        array = data.volumes[v].astype(np.float32) / np.float32(255.0)
        result = assessor.assess_volume(ScanVolume(array, spacing, 'RAS', 'cache'),
                                        metrics=False)
        quality.append(result['quality'])
        artifacts.append(result['artifacts'])
    return np.asarray(quality, dtype=np.float64), artifacts


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
    quality, artifacts = assess_volumes(assessor, data, index)
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
    quality_out['member_interval_coverage'] = None
    quality_out['member_interval_note'] = (
        "not measured: a scan's result reports one blended quality, not each member's")
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
