"""Calibration figures: ECE, reliability bins, Brier, bootstrap intervals, and
``miqa-train calibrate`` on a tiny generated cache."""

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from miqa_worker.model_store import save_model
from miqa_worker.network import build_network
from miqa_worker.training.calibration import (
    ECE_BINS,
    bootstrap_interval,
    brier_score,
    expected_calibration_error,
    indicator_calibration,
    reliability_curve,
)
from miqa_worker.training.cli import main
from miqa_worker.training.synthetic import generate


def _calibrated(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities drawn uniformly and labels drawn with exactly those probabilities."""
    rng = np.random.default_rng(seed)
    p = rng.uniform(0, 1, n)
    return p, (rng.uniform(0, 1, n) < p).astype(float)


def test_ece_of_calibrated_probabilities_is_near_zero():
    p, y = _calibrated(200_000)
    assert expected_calibration_error(p, y) < 0.01
    assert brier_score(p, y) == pytest.approx(1 / 6, abs=0.005)  # E[p(1-p)] for uniform p


def test_ece_of_overconfident_probabilities_is_large():
    p, y = _calibrated(200_000)
    sharp = np.where(p > 0.5, 0.99, 0.01)  # the same ranking, pushed to the extremes
    # observed rates are 0.25 and 0.75 where 0.01 and 0.99 are claimed
    assert expected_calibration_error(sharp, y) == pytest.approx(0.24, abs=0.01)
    assert brier_score(sharp, y) > brier_score(p, y)


def test_reliability_bins_and_counts():
    p = np.array([0.0, 0.05, 0.5, 0.51, 1.0, 1.0])
    y = np.array([0, 1, 1, 0, 1, 1])
    curve = reliability_curve(p, y, bins=10)
    assert curve['edges'][0] == 0 and curve['edges'][-1] == 1 and len(curve['edges']) == 11
    assert curve['counts'] == [2, 0, 0, 0, 0, 2, 0, 0, 0, 2]  # 1.0 goes in the last bin
    assert curve['confidence'][0] == pytest.approx(0.025)
    assert curve['observed'][0] == 0.5 and curve['observed'][5] == 0.5
    assert curve['observed'][9] == 1.0 and curve['confidence'][1] is None
    # ECE = sum of count share x |gap|: (2/6) 0.475 + (2/6) 0.005 + (2/6) 0
    assert expected_calibration_error(p, y, bins=10) == pytest.approx((0.475 + 0.005) / 3)


def test_indicator_figures_leave_unknown_labels_out_and_intervals_are_seeded():
    p, y = _calibrated(400, seed=3)
    y_unknown = y.copy()
    y_unknown[:50] = np.nan
    figures = indicator_calibration(p, y_unknown, resamples=200, seed=1)
    assert figures['volumes'] == 350 and figures['positives'] == int(y[50:].sum())
    assert sum(figures['reliability']['counts']) == 350
    assert len(figures['reliability']['counts']) == ECE_BINS
    low, high = figures['ece_ci95']
    assert low < figures['ece'] < high
    assert figures['brier_ci95'][0] < figures['brier'] < figures['brier_ci95'][1]
    assert figures == indicator_calibration(p, y_unknown, resamples=200, seed=1)
    again = bootstrap_interval(brier_score, p, y, resamples=200, seed=2)
    assert again != bootstrap_interval(brier_score, p, y, resamples=200, seed=1)


def test_bad_probabilities_or_labels_are_one_line_errors():
    with pytest.raises(ValueError, match=r'^probabilities must lie in \[0, 1\]$'):
        expected_calibration_error([0.2, 1.3], [0, 1])
    with pytest.raises(ValueError, match='^labels must be 0 or 1$'):
        brier_score([0.2, 0.3], [0, 2])
    with pytest.raises(ValueError, match='^3 probabilities but 2 labels$'):
        reliability_curve([0.1, 0.2, 0.3], [0, 1])


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    """A templates-only cache of 2 nominal subjects x 2 volumes, and a TEST-ONLY random
    network (its probabilities are meaningless; the figures' shape is what is checked)."""
    base = tmp_path_factory.mktemp('calibration')
    generate(base / 'cache', anatomies_per_subject=1, variants=2, seed=0, shared_dir=None,
             probability=0.5, templates_only_subjects=2, spacing_range=(4.0, 4.5),
             progress=False)
    torch.manual_seed(1234)
    save_model(build_network(), base / 'model', 'test-random-init', '0.0.0-test',
               'TEST ONLY: random initial weights, predictions are meaningless')
    return base


def test_calibrate_writes_both_files(tiny):
    out = tiny / 'out'
    result = CliRunner().invoke(main, ['calibrate', '--model', str(tiny / 'model'), '--cache',
                                       str(tiny / 'cache'), '--subjects', 'mni152-a001',
                                       '--out', str(out), '--resamples', '50',
                                       '--threads', '1'])
    assert result.exit_code == 0, result.output
    figures = json.loads((out / 'calibration.json').read_text(encoding='utf-8'))
    assert figures['volumes'] == 2 and figures['subjects'] == ['mni152-a001']
    assert figures['bins'] == ECE_BINS and figures['model']['name'] == 'test-random-init'
    # a model without outputs.trained reports every indicator; the generator labels these
    simulated = {'incomplete_coverage', 'wraparound', 'ghosting_motion', 'inhomogeneity'}
    assert simulated <= set(figures['indicators'])
    assert 'lesion' in figures['unlabelled_indicators']
    for value in figures['indicators'].values():
        assert 0 <= value['ece'] <= 1 and sum(value['reliability']['counts']) == 2
        assert value['auc'] is None or 0 <= value['auc'] <= 1
    assert {'r2', 'mae'} <= set(figures['quality'])
    assert figures['quality']['member_interval_coverage'] is None
    png = (out / 'reliability.png').read_bytes()
    assert png.startswith(b'\x89PNG') and len(png) > 10_000


@pytest.mark.parametrize(('args', 'message'), [
    (['--subjects', 'nobody'], 'no volumes of nobody in'),
    (['--model', 'no-such-model'], "model 'no-such-model'"),
    (['--subjects', ','], 'name "held-out", "all" or subject ids'),
])
def test_calibrate_bad_arguments_are_one_line_errors(tiny, args, message):
    result = CliRunner().invoke(main, ['calibrate', '--cache', str(tiny / 'cache'), *args])
    assert result.exit_code == 2
    assert message in result.output
    assert 'Traceback' not in result.output and not (tiny / 'cache' / 'calibration').exists()


def test_calibrate_refuses_a_folder_without_an_index(tmp_path):
    result = CliRunner().invoke(main, ['calibrate', '--cache', str(tmp_path)])
    assert result.exit_code == 2 and 'has no index.csv' in result.output
