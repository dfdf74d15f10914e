"""The fused indicator: background metrics, trees exported as arrays, and the worker using them."""

import json
import shutil

import numpy as np
import pytest

from miqa_worker.fusion import (
    FORMAT,
    FUSION_FILE,
    NETWORK_INPUT,
    FusionError,
    fusion_from_dict,
    load_fusion,
    network_logit,
)
from miqa_worker.quality_metrics import BACKGROUND_METRICS, background_metrics
from miqa_worker.training.fusion import (
    FusionSource,
    classifier,
    export_trees,
    fit_fusion,
    run_fusion,
)

from .conftest import head_phantom

N_INPUTS = 1 + len(BACKGROUND_METRICS)


def _ghosted(volume: np.ndarray, shift: int = 20, strength: float = 0.15) -> np.ndarray:
    """The head plus a faint copy of itself shifted along one axis (a ghost in the air)."""
    return volume + strength * np.roll(volume, shift, axis=1)


def _toy_fusion(seed: int = 0):
    rng = np.random.default_rng(seed)
    inputs = rng.normal(size=(80, N_INPUTS))
    labels = (inputs[:, 0] + inputs[:, 3] > 0).astype(float)
    return fit_fusion(inputs, labels, seed), inputs, labels


def test_background_metrics_tell_a_ghost_from_noise():
    clean = head_phantom(noise=0.01) / 1000
    noisy = head_phantom(noise=0.06) / 1000
    ghost = _ghosted(clean)
    m = {name: background_metrics(v) for name, v in
         (('clean', clean), ('noisy', noisy), ('ghost', ghost))}
    for values in m.values():
        assert list(values) == list(BACKGROUND_METRICS)
        assert all(np.isfinite(v) for v in values.values())
    # both raise the air, but only the ghost survives a box filter (noise averages out)
    assert m['noisy']['summary_bg_mean'] > m['clean']['summary_bg_mean']
    assert m['ghost']['summary_bg_mean'] > m['clean']['summary_bg_mean']
    assert m['ghost']['bg_smooth_ratio'] > 2 * m['noisy']['bg_smooth_ratio']
    assert m['ghost']['qi_1'] > m['noisy']['qi_1']
    assert all(np.isfinite(v) for v in background_metrics(np.zeros((40, 40, 40))).values())
    with pytest.raises(ValueError, match='3D'):
        background_metrics(np.zeros((10, 10)))


def test_exported_trees_score_as_scikit_learn():
    rng = np.random.default_rng(1)
    inputs = rng.normal(size=(120, N_INPUTS))
    labels = (inputs[:, 0] - inputs[:, 5] + 0.3 * rng.normal(size=120) > 0).astype(int)
    model = classifier(0).fit(inputs, labels)
    spec = {'format': FORMAT, 'indicator': 'ghosting_motion',
            'inputs': [NETWORK_INPUT, *BACKGROUND_METRICS], 'max_voxels': 1 << 18,
            **export_trees(model, inputs)}
    fusion = fusion_from_dict(json.loads(json.dumps(spec)))  # through JSON, as shipped
    fresh = rng.normal(size=(50, N_INPUTS))
    np.testing.assert_allclose(fusion.trees.logit(fresh), model.decision_function(fresh),
                               atol=1e-9)
    row = fresh[0]
    metrics = dict(zip(BACKGROUND_METRICS, row[1:], strict=True))
    probability = 1 / (1 + np.exp(-row[0]))
    assert fusion.probability(probability, metrics) == pytest.approx(
        model.predict_proba(np.r_[network_logit(probability), row[1:]][None])[0, 1], abs=1e-9)


@pytest.mark.parametrize('change, message', [
    ({'format': 'pickle'}, 'unknown format'),
    ({'indicator': 'motion'}, 'unknown indicator'),
    ({'inputs': [NETWORK_INPUT, 'snr_total']}, 'inputs must be'),
    ({'inputs': [NETWORK_INPUT, NETWORK_INPUT]}, 'inputs must be'),
    ({'max_voxels': 10}, 'max_voxels'),
    ({'max_voxels': True}, 'max_voxels'),
    ({'init': 'nan'}, 'finite init'),
    ({'trees': []}, 'one tree or more'),
    ({'trees': [{'feature': [0, -1], 'threshold': [0.0, 0.0], 'left': [1, -1],
                 'right': [2, -1], 'value': [0.0, 1.0]}]}, 'points outside'),
    ({'trees': [{'feature': [0, -1, -1], 'threshold': [0.0, 0, 0], 'left': [0, -1, -1],
                 'right': [2, -1, -1], 'value': [0.0, 1.0, 2.0]}]}, 'backwards'),
    ({'trees': [{'feature': [99, -1, -1], 'threshold': [0.0, 0, 0], 'left': [1, -1, -1],
                 'right': [2, -1, -1], 'value': [0.0, 1.0, 2.0]}]}, 'feature index'),
    ({'trees': [{'feature': [0, -1, -1], 'threshold': [0.0, 0, 0], 'left': [1, -1, -1],
                 'right': [2, -1, -1], 'value': [0.0, float('inf'), 2.0]}]}, 'finite'),
    ({'trees': [{'feature': [0], 'threshold': [0.0, 1.0], 'left': [-1], 'right': [-1],
                 'value': [0.0]}]}, 'differ in length'),
    ({'trees': [{'feature': [0]}]}, 'malformed'),
])
def test_bad_fusion_files_are_refused(change, message):
    fusion, _, _ = _toy_fusion()
    spec = {**fusion.to_dict(), **change}
    with pytest.raises(FusionError, match=message):
        fusion_from_dict(spec)


def test_the_worker_reports_the_fused_indicator(model_path, tmp_path):
    """model.json's ``fusion`` names the indicator and its trees' file; the worker reports
    the network's probability and the fused one, and refuses a file that does not fit."""
    import dataclasses

    from miqa_worker.assessment import Assessor
    from miqa_worker.image_io import ScanVolume
    from miqa_worker.model_spec import FusionSpec, load_spec, save_spec
    from miqa_worker.model_store import ModelError

    folder = tmp_path / 'fused-model'
    shutil.copytree(model_path, folder)
    fusion, _, _ = _toy_fusion()
    (folder / FUSION_FILE).write_text(json.dumps(fusion.to_dict()), encoding='utf-8')
    assert 'fusion' not in Assessor(folder, threads=1).assess_volume(
        ScanVolume(head_phantom(), (1.0, 1.0, 1.0), 'RAS', 'array'), metrics=False)
    spec = load_spec(folder)
    save_spec(dataclasses.replace(spec, fusion=FusionSpec('ghosting_motion')), folder)
    loaded = load_fusion(folder)
    assert loaded is not None and loaded.indicator == 'ghosting_motion'

    volume = ScanVolume(_ghosted(head_phantom()), (1.0, 1.0, 1.0), 'RAS', 'array')
    plain = Assessor(model_path, threads=1).assess_volume(volume, metrics=False)
    result = Assessor(folder, threads=1).assess_volume(volume, metrics=False)
    assert 'fusion' not in plain
    fused = result['fusion']
    assert fused['indicator'] == 'ghosting_motion'
    assert list(fused['metrics']) == list(BACKGROUND_METRICS)
    # the network's own probability is the plain model's; the fused one replaces it
    assert fused['network'] == pytest.approx(plain['artifacts']['ghosting_motion'], abs=1e-6)
    assert result['artifacts']['ghosting_motion'] == fused['probability']
    assert fused['probability'] == pytest.approx(
        loaded.probability(fused['network'], fused['metrics']), abs=1e-12)
    assert {k: v for k, v in result['artifacts'].items() if k != 'ghosting_motion'} == {
        k: v for k, v in plain['artifacts'].items() if k != 'ghosting_motion'}
    assert result['timings']['fusion'] > 0

    save_spec(dataclasses.replace(spec, fusion=FusionSpec('wraparound')), folder)
    with pytest.raises(ModelError, match="fusion.json: decides 'ghosting_motion', model.json "
                                         "names 'wraparound'"):
        Assessor(folder, threads=1)
    save_spec(dataclasses.replace(spec, fusion=FusionSpec('ghosting_motion', 'trees.json')),
              folder)
    with pytest.raises(ModelError, match='trees.json: missing in'):
        Assessor(folder, threads=1)
    save_spec(dataclasses.replace(spec, fusion=FusionSpec('ghosting_motion')), folder)
    (folder / FUSION_FILE).write_text('{"format": "pickle"}', encoding='utf-8')
    with pytest.raises(ModelError, match='fusion.json: unknown format'):
        Assessor(folder, threads=1)
    (folder / FUSION_FILE).write_text('{not json', encoding='utf-8')
    with pytest.raises(ModelError, match='fusion.json: unreadable'):
        Assessor(folder, threads=1)


def test_fusion_folds_split_people_across_sources():
    """A person's fresh volumes never help score their development ones (or the reverse).

    Each of 10 people has a code in one input and a label of their own: trees can only learn
    it by seeing that person, so out of person folds they score near chance, while a split
    that let a person's other source into training would score near 1.
    """
    rng = np.random.default_rng(3)
    people = np.array([f'p{i}' for i in range(10)])
    code, label = rng.permutation(10).astype(float), np.array([0, 1] * 5, dtype=float)

    def source(name: str, per_person: int, unknown: int = 0) -> FusionSource:
        who = np.repeat(np.arange(10), per_person)
        inputs = rng.normal(size=(len(who), N_INPUTS))
        inputs[:, 2] = code[who]
        labels = label[who].copy()
        labels[:unknown] = np.nan  # unknown labels are left out
        return FusionSource(name, inputs[:, 0], inputs[:, 1:], labels, people[who])

    fused, summary = run_fusion([source('development volumes', 30, unknown=4),
                                 source('fresh volumes of x1', 30)], n_folds=5)
    assert summary['sources'] == {'development volumes': 296, 'fresh volumes of x1': 300}
    assert summary['volumes'] == 596
    assert summary['out_of_fold_auc']['fused'] < 0.8
    assert set(summary['out_of_fold_auc_by_source']) == set(summary['sources'])
    assert fused.to_dict()['fitted_on'] == ('296 development volumes and 300 fresh volumes '
                                            'of x1')
