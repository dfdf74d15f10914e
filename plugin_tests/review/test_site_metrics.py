"""Site-aware image metrics (issue #22.4): robust z-scores, percentiles, Tukey fences and the
minimum number of peers, checked against numbers worked out by hand."""

import math

import numpy as np
import pytest

from girder_miqa.models import site_metrics as sm

# snr_wm of ten scans of site-b; worked out by hand below.
SNR = [10.0, 11.0, 12.0, 12.0, 13.0, 13.0, 14.0, 15.0, 16.0, 4.0]


def group(values, metric='snr_wm'):
    return {f'scan{i}': {metric: v} for i, v in enumerate(values)}


def test_robust_stats_by_hand():
    stats = sm.robust_stats(SNR)
    # sorted: 4 10 11 12 12 13 13 14 15 16 -> median (12 + 13) / 2
    assert stats['median'] == 12.5
    # |x - 12.5| sorted: .5 .5 .5 .5 1.5 1.5 2.5 2.5 3.5 8.5 -> MAD 1.5
    assert stats['mad'] == 1.5
    assert stats['scale'] == pytest.approx(1.4826 * 1.5)
    # Q1 at rank 2.25: 11 + .25 (12 - 11); Q3 at rank 6.75: 13 + .75 (14 - 13)
    assert (stats['q1'], stats['q3']) == (11.25, 13.75)
    assert (stats['low'], stats['high']) == (11.25 - 1.5 * 2.5, 13.75 + 1.5 * 2.5)
    assert stats['q1'] == np.percentile(SNR, 25) and stats['q3'] == np.percentile(SNR, 75)
    assert sm.z_score(4.0, stats) == pytest.approx((4.0 - 12.5) / (1.4826 * 1.5))
    assert sm.percentile(4.0, sorted(SNR)) == 5.0  # none below, itself half
    assert sm.percentile(12.0, sorted(SNR)) == 40.0  # 3 below, 2 equal: (3 + 1) / 10


def test_zero_mad_falls_back_to_the_mean_deviation():
    values = [5.0] * 9 + [7.0]
    stats = sm.robust_stats(values)
    assert stats['mad'] == 0 and stats['scale'] == pytest.approx(1.2533 * 0.2)
    assert sm.z_score(7.0, stats) == pytest.approx(2.0 / (1.2533 * 0.2))
    assert sm.z_score(5.0, sm.robust_stats([5.0] * 9)) == 0.0  # no spread at all


def test_outlier_and_reason_text():
    scored = sm.score_site('site-b', 'T1w', group(SNR), group(SNR + [12.0] * 5))
    metrics, reasons = scored['scan9']  # the 4.0
    z = (4.0 - 12.5) / (1.4826 * 1.5)
    assert metrics['group'] == 'site-b / T1w' and metrics['peers'] == 10
    assert metrics['enough'] is True and metrics['minimumPeers'] == 8
    assert metrics['z']['snr_wm'] == round(z, 3) and metrics['percentiles']['snr_wm'] == 5.0
    assert metrics['outliers'] == ['snr_wm']
    assert reasons == [{
        'source': 'metrics', 'severity': 'warning', 'text': 'snr_wm low for site-b (z = −3.8)',
        'label': 'snr_wm low', 'target': {'kind': 'metric', 'key': 'snr_wm'},
        'weight': round(abs(round(z, 3)) / 2, 3)}]
    for name in ('scan0', 'scan8'):  # 10 and 16 are inside the fences
        assert scored[name][0]['outliers'] == [] and scored[name][1] == []


def test_only_the_bad_side_counts():
    # cjv: lower is better, so a low outlier is no reason; wm2max: either side is one
    low = sm.score_site('a', 'T1w', group(SNR, 'cjv'), {})['scan9']
    assert low[0]['z']['cjv'] < -3 and low[0]['outliers'] == [] and low[1] == []
    both = sm.score_site('a', 'T1w', group(SNR, 'wm2max'), {})['scan9']
    assert both[0]['outliers'] == ['wm2max']
    high = sm.score_site('a', 'T1w', group([20 - v for v in SNR], 'snr_gm'), {})['scan9']
    assert high[0]['outliers'] == [] and high[0]['z']['snr_gm'] > 3  # high snr is good
    # a metric without a direction gets z and percentile, never a reason
    plain = sm.score_site('a', 'T1w', group(SNR, 'summary_wm_mean'), {})['scan9']
    assert plain[0]['percentiles']['summary_wm_mean'] == 5.0 and plain[1] == []


def test_too_few_peers_fall_back_then_give_no_distribution():
    small = group([12.0, 13.0, 4.0])
    project = {**small, **{f'other{i}': {'snr_wm': 12.0 + i % 3} for i in range(7)}}
    metrics, reasons = sm.score_site('site-c', 'T1w', small, project)['scan2']
    assert metrics['group'] == 'all sites / T1w' and metrics['peers'] == 10
    assert metrics['note'].startswith('site-c has 3 T1w scan(s), fewer than 8')
    assert reasons[0]['text'].startswith("snr_wm low for the project's T1w scans (z = −")
    metrics, reasons = sm.score_site('site-c', 'T1w', small, {**small, 'x': {}, 'y': {}})['scan2']
    assert metrics['enough'] is False and metrics['peers'] == 5
    assert metrics['note'] == 'too few peers (5) for a distribution'
    assert metrics['z'] == {} and metrics['percentiles'] == {} and reasons == []


def test_metric_values_leave_out_undefined_and_bookkeeping():
    values = sm.metric_values({'metrics': {
        'snr_wm': -1.0, 'summary_fg_mean': -1.0, 'subsample_factor': 2.0, 'efc': math.nan,
        'cnr': True, 'fber': 'x', 'cjv': 0.4}})
    assert values == {'summary_fg_mean': -1.0, 'cjv': 0.4}
    assert sm.metric_values(None) == {} and sm.metric_values({'metrics': [1]}) == {}


def test_every_rated_metric_is_one_the_worker_reports():
    from miqa_worker.quality_metrics import compute_quality_metrics

    volume = np.random.default_rng(0).normal(100, 10, (24, 24, 24)).astype(np.float32)
    volume[6:18, 6:18, 6:18] += 300
    reported = compute_quality_metrics(volume, (1.0, 1.0, 1.0))
    assert set(sm.DIRECTIONS) <= set(reported)
    assert sm.RATIOS <= set(sm.DIRECTIONS)
