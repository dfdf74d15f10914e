"""The shipped model's calibration as the worker applies it (issue #21 item 4): each trained
indicator's reported probability is its model.json map of the uncalibrated one, the quality
interval holds the point estimate and is the fitted widening of the networks x flips spread,
metrics.json reports before and after, and a bad calibration block is refused in one line."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from miqa_worker.image_io import ScanVolume
from miqa_worker.model_spec import load_spec
from miqa_worker.model_store import PACKAGE_MODEL_DIR, ModelError

SHIPPED = PACKAGE_MODEL_DIR / 'miqa-default'


def _head(shape=(96, 112, 96), seed: int = 3) -> ScanVolume:
    """A bright ellipsoid 'head' with a darker core and noise, at 2 mm: a scan the model can
    score (its values do not matter, only that the stages run on it)."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing='ij'))
    radius = np.sqrt((grid ** 2 / np.array([0.8, 0.85, 0.75])[:, None, None, None] ** 2)
                     .sum(axis=0))
    array = np.where(radius < 1, 600.0, 5.0) - np.where(radius < 0.6, 250.0, 0.0)
    array += rng.normal(0, 12, shape)
    return ScanVolume(array.astype(np.float32), (2.0, 2.0, 2.0), 'RAS', 'test')


@pytest.fixture(scope='module')
def assessed():
    """The shipped assessor's result on one volume, and the same assessor's result with the
    calibration block taken out of its spec (the uncalibrated outputs)."""
    from miqa_worker.assessment import Assessor

    assessor = Assessor('miqa-default', threads=2)
    volume = _head()
    calibrated = assessor.assess_volume(volume, metrics=False)
    spec = assessor.spec
    assessor.spec = dataclasses.replace(spec, postprocessing=dataclasses.replace(
        spec.postprocessing, calibration=None))
    try:
        raw = assessor.assess_volume(volume, metrics=False)
    finally:
        assessor.spec = spec
    return assessor, volume, calibrated, raw


def _mapped(block: dict, p: float) -> float:
    """A map as model.json writes it, computed here from its numbers (not the spec's code)."""
    if block['method'] == 'platt':
        z = block['slope'] * math.log(p / (1 - p)) + block['intercept']
        return 1 / (1 + math.exp(-z))
    if block['method'] == 'isotonic':
        return float(np.interp(p, block['x'], block['y']))
    return p


def test_the_shipped_model_has_a_calibration_of_its_trained_indicators():
    raw = json.loads((SHIPPED / 'model.json').read_text(encoding='utf-8'))
    block = raw['postprocessing']['calibration']
    trained = [k for k in raw['outputs']['trained'] if k != 'quality']
    assert sorted(block['indicators']) == sorted(trained)
    assert {b['method'] for b in block['indicators'].values()} <= {'identity', 'platt',
                                                                     'isotonic'}
    assert 'held-out' in block['fitted_on']  # says what it was fitted on
    assert block['quality_interval']['method'] == 'member-flip-spread'


def test_probabilities_are_the_calibrated_map_of_the_raw_ones(assessed):
    assessor, _, calibrated, raw = assessed
    blocks = json.loads((SHIPPED / 'model.json').read_text(encoding='utf-8'))[
        'postprocessing']['calibration']['indicators']
    assert calibrated['calibrated'] is True and 'calibrated' not in raw
    assert list(calibrated['artifacts']) == list(raw['artifacts'])
    for key, p in raw['artifacts'].items():
        assert calibrated['artifacts'][key] == pytest.approx(_mapped(blocks[key], p),
                                                             abs=1e-9), key
    changed = [k for k in raw['artifacts'] if blocks[k]['method'] != 'identity']
    assert changed and any(abs(calibrated['artifacts'][k] - raw['artifacts'][k]) > 1e-3
                           for k in changed)
    # the network's own values stay as they were: quality, the view, the tiles, the fusion
    assert calibrated['quality'] == raw['quality']
    assert calibrated['globalView']['artifacts'] == raw['globalView']['artifacts']
    assert calibrated['tileMap'] == raw['tileMap']
    fused = calibrated['fusion']['indicator']
    assert calibrated['fusion']['probability'] == raw['artifacts'][fused]


def test_the_interval_holds_the_quality_and_is_the_fitted_spread(assessed):
    from miqa_worker.assessment import view_outputs, whole_view
    from miqa_worker.preprocessing import intensity_range

    assessor, volume, calibrated, raw = assessed
    low, high = calibrated['qualityInterval']
    assert 0 <= low <= calibrated['quality'] <= high <= 10 and low < high
    assert 'qualityInterval' not in raw  # no block, no interval (an older model's result)
    # the spread: the sd of the quality blended with each network x flip view prediction
    rows = view_outputs(assessor.networks, whole_view(volume, intensity_range(volume.array)),
                        assessor.spec.view)
    assert len(rows) == assessor.spec.view.flips * (1 + len(assessor.spec.members))
    share = assessor.spec.view.shares()[0]
    spread = share * float(np.std(rows[:, 0]))
    assert calibrated['globalView']['qualitySpread'] == pytest.approx(spread, rel=1e-4)
    fitted = json.loads((SHIPPED / 'model.json').read_text(encoding='utf-8'))[
        'postprocessing']['calibration']['quality_interval']
    half = fitted['scale'] * math.sqrt(spread ** 2 + fitted['floor'] ** 2)
    q = calibrated['quality']
    assert (low, high) == pytest.approx((max(0.0, q - half), min(10.0, q + half)), abs=1e-4)


def test_metrics_report_before_and_after_on_the_held_out_volumes():
    metrics = json.loads((SHIPPED / 'metrics.json').read_text(encoding='utf-8'))['calibration']
    spec = load_spec(SHIPPED)
    assert metrics['subjects'] == sorted(spec.evaluation['test_subjects'])
    assert not set(metrics['fitted_on']['subjects']) & set(metrics['subjects'])
    for key, figures in metrics['indicators'].items():
        before = metrics['uncalibrated']['indicators'][key]
        assert figures['ece_uncalibrated'] == before['ece']
        assert figures['map'] == spec.postprocessing.calibration.indicators[key].method
        assert figures['volumes'] == before['volumes'] == metrics['volumes']
        low, high = figures['ece_ci95']
        assert low <= figures['ece'] <= high
    interval = metrics['quality']['interval']
    assert interval['level'] == spec.postprocessing.calibration.quality_interval.level
    assert 0 < interval['coverage'] <= 1 and interval['volumes'] == metrics['volumes']


def test_a_bad_calibration_block_is_refused_in_one_line(tmp_path):
    from miqa_worker.assessment import Assessor

    folder = tmp_path / 'bad-calibration'
    shutil.copytree(SHIPPED, folder)
    raw = json.loads((folder / 'model.json').read_text(encoding='utf-8'))
    block = raw['postprocessing']['calibration']
    block['indicators']['lesion'] = {'method': 'identity'}  # never trained
    (folder / 'model.json').write_text(json.dumps(raw), encoding='utf-8')
    with pytest.raises(ModelError) as info:
        Assessor(str(folder), threads=1)
    text = str(info.value)
    assert text.startswith(f'{folder}/model.json: postprocessing.calibration.indicators names '
                           '"lesion", not a trained indicator'), text
    assert '\n' not in text


def test_calibrate_fit_refuses_bad_options_in_one_line(tmp_path):
    from miqa_worker.training.cli import main

    (tmp_path / 'held').mkdir()
    (tmp_path / 'held' / 'index.csv').write_text('volume_id\n')
    runner = CliRunner()
    outcome = runner.invoke(main, ['calibrate', '--cache', str(tmp_path / 'held'), '--ship'])
    assert outcome.exit_code == 2 and '--ship needs --fit' in outcome.output
    outcome = runner.invoke(main, ['calibrate', '--cache', str(tmp_path / 'held'),
                                   '--fit', str(tmp_path / 'nothing')])
    assert outcome.exit_code == 2 and 'has no index.csv' in outcome.output


def test_the_fit_recalibrates_squeezed_probabilities_and_covers_the_fitting_volumes():
    """Underconfident probabilities (the true logit squeezed by 3) are mapped back: the
    cross-validation picks a map over identity, and on fresh draws its ECE is lower; the
    interval covers its level of the fitting volumes."""
    from miqa_worker.training.calibration import (
        apply_map,
        expected_calibration_error,
        fit_indicator,
        fit_quality_interval,
        interval_coverage,
    )

    rng = np.random.default_rng(0)

    def draw(n):
        logit = rng.normal(0, 3, n)
        labels = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(float)
        return 1 / (1 + np.exp(-logit / 3)), labels

    p, y = draw(600)
    found, report = fit_indicator(p, y)
    assert report['chosen'] in ('platt', 'isotonic') and report['chosen'] == found.method
    assert report['cross_validated']['identity']['brier'] > report['cross_validated'][
        report['chosen']]['brier']
    fresh_p, fresh_y = draw(600)
    assert expected_calibration_error(apply_map(found, fresh_p), fresh_y) < 0.5 * \
        expected_calibration_error(fresh_p, fresh_y)
    with pytest.raises(ValueError, match='too few to fit'):
        fit_indicator(p[:20], np.r_[np.ones(2), np.zeros(18)])

    truth = rng.uniform(2, 10, 400)
    spread = rng.uniform(0.05, 0.5, 400)
    quality = truth + rng.normal(0, 1, 400) * (0.5 + 2 * spread)
    interval, fitted = fit_quality_interval(quality, truth, spread, level=0.8)
    assert interval.level == 0.8 and interval.scale > 0
    assert 0.8 <= interval_coverage(quality, truth, spread, interval) <= 0.83
    assert fitted['coverage'] == interval_coverage(quality, truth, spread, interval)
