"""The shipped model's outputs on every real scan in ../shared stay what they were.

``data/shipped_outputs.json`` holds what ``miqa-default`` gave on each scan (quality, every
probability, the whole-volume view, the fused indicator, the penalties, the tile map and the
image quality metrics) before the model format was rewritten; this recomputes them with the
current code and model files and compares within float tolerance. Needs no server.

Since the calibration (issue #21 item 4) the trained indicators' probabilities in the file are
the model.json calibration map of the values first recorded (the network's and fusion's own
values stay as they were in ``globalView``, ``tileMap`` and ``fusion``), and ``qualityInterval``,
``calibrated`` and ``globalView.qualitySpread`` were recorded from the calibrated model. A change
of the calibration changes them on purpose: apply the new map to the recorded probabilities
(``IndicatorCalibration.apply``), record the new intervals, and say old -> new in the commit.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

SHARED_MRI = Path(__file__).resolve().parents[2].parent / 'shared' / 'data' / 'mri'
GOLDEN = Path(__file__).resolve().parent / 'data' / 'shipped_outputs.json'
EXPECTED: dict[str, dict[str, Any]] = json.loads(GOLDEN.read_text(encoding='utf-8'))['scans']

#: Tolerances: probabilities, quality points, and the metrics (relative: they span many scales).
PROBABILITY_ATOL = 1e-4
QUALITY_ATOL = 1e-3
METRIC_RTOL, METRIC_ATOL = 1e-4, 1e-6

pytestmark = pytest.mark.realdata


def _scan_path(name: str, tmp_path_factory) -> Path:
    """The file to assess: a plain scan, or the DICOM folder zipped as a series."""
    if not name.startswith('dicom/'):
        return SHARED_MRI / name
    folder = SHARED_MRI / 'dicom' / Path(name).stem
    archive = tmp_path_factory.mktemp('dicom') / Path(name).name
    with zipfile.ZipFile(archive, 'w') as zf:
        for path in sorted(folder.iterdir()):
            zf.write(path, f'{folder.name}/{path.name}')
    return archive


@pytest.fixture(scope='module')
def shipped():
    """The process-wide assessor of the shipped model (skips when ../shared is absent)."""
    if not SHARED_MRI.is_dir():
        pytest.skip(f'needs the real scans in {SHARED_MRI}, which is absent here')
    from miqa_worker.assessment import get_assessor

    return get_assessor()


def _close(actual, expected, atol: float, what: str, rtol: float = 0.0) -> None:
    np.testing.assert_allclose(np.asarray(actual, dtype=np.float64),
                               np.asarray(expected, dtype=np.float64), rtol=rtol, atol=atol,
                               err_msg=what)


def _close_map(actual: dict, expected: dict, atol: float, what: str, rtol: float = 0.0) -> None:
    assert list(actual) == list(expected), what
    for key, value in expected.items():
        _close(actual[key], value, atol, f'{what}.{key}', rtol)


def _close_trained(actual: dict, expected: dict, trained: list[str], what: str) -> None:
    """Probabilities: the result reports the trained indicators only, each as it was."""
    assert list(actual) == [key for key in expected if key in trained], what
    _close_map(actual, {key: expected[key] for key in actual}, PROBABILITY_ATOL, what)


def test_every_real_scan_is_covered():
    """The golden file names every scan in the folder (a new scan needs a new golden record)."""
    if not SHARED_MRI.is_dir():
        pytest.skip(f'needs the real scans in {SHARED_MRI}, which is absent here')
    names = {p.name for p in SHARED_MRI.iterdir()
             if p.is_file() and p.suffix != '.json' and p.name != 'SOURCES.md'}
    names |= {f'dicom/{p.name}.zip' for p in (SHARED_MRI / 'dicom').iterdir() if p.is_dir()}
    assert names == set(EXPECTED)


@pytest.mark.parametrize('name', sorted(EXPECTED))
def test_shipped_model_outputs_unchanged(name, shipped, tmp_path_factory):
    from miqa_worker.image_io import ImageError

    expected = EXPECTED[name]
    path = _scan_path(name, tmp_path_factory)
    if 'refused' in expected:
        with pytest.raises(ImageError) as info:
            shipped.assess_file(path)
        assert str(info.value).splitlines()[0] == expected['refused']
        return
    result = shipped.assess_file(path)
    assert result['model'] == expected['model']
    volume = result['volume']
    assert volume['shape'] == expected['volume']['shape']
    assert (volume['orientation'], volume['format']) == (expected['volume']['orientation'],
                                                         expected['volume']['format'])
    _close(volume['spacing'], expected['volume']['spacing'], 1e-6, 'spacing')

    _close(result['quality'], expected['quality'], QUALITY_ATOL, 'quality')
    assert result.get('calibrated') == expected.get('calibrated'), 'calibrated'
    if 'qualityInterval' in expected or 'qualityInterval' in result:
        _close(result['qualityInterval'], expected['qualityInterval'], QUALITY_ATOL,
               'qualityInterval')
        _close(result['globalView']['qualitySpread'], expected['globalView']['qualitySpread'],
               QUALITY_ATOL, 'globalView.qualitySpread')
    trained = result['trainedOutputs']
    _close_trained(result['artifacts'], expected['artifacts'], trained, 'artifacts')
    _close_map(result['penalties'], expected['penalties'], QUALITY_ATOL, 'penalties')

    view, view_expected = result['globalView'], expected['globalView']
    assert (view['flips'], view['networks']) == (view_expected['flips'],
                                                 view_expected['networks'])
    _close(view['weight'], view_expected['weight'], 0, 'globalView.weight')
    _close_map(view['weights'], view_expected['weights'], 0, 'globalView.weights')
    _close(view['quality'], view_expected['quality'], QUALITY_ATOL, 'globalView.quality')
    _close_trained(view['artifacts'], view_expected['artifacts'], trained,
                   'globalView.artifacts')

    fusion, fusion_expected = result['fusion'], expected['fusion']
    assert fusion['indicator'] == fusion_expected['indicator']
    _close(fusion['network'], fusion_expected['network'], PROBABILITY_ATOL, 'fusion.network')
    _close(fusion['probability'], fusion_expected['probability'], PROBABILITY_ATOL,
           'fusion.probability')
    _close_map(fusion['metrics'], fusion_expected['metrics'], METRIC_ATOL, 'fusion.metrics',
               METRIC_RTOL)

    tiles, tiles_expected = result['tileMap'], expected['tileMap']
    for key in ('grid', 'shape', 'tileSize'):
        assert tiles[key] == tiles_expected[key], f'tileMap.{key}'
    _close(tiles['quality'], tiles_expected['quality'], QUALITY_ATOL, 'tileMap.quality')
    _close_trained(tiles['artifacts'], tiles_expected['artifacts'], trained,
                   'tileMap.artifacts')

    _close_map(result['metrics'], expected['metrics'], METRIC_ATOL, 'metrics', METRIC_RTOL)


#: How far the bfloat16 passes may move the recorded (float32) outputs on the real scans
#: (measured on 15 of them: quality < 0.021, probabilities < 0.005, interval < 0.016); the fused
#: indicator's trees are step functions of the network's probability, so a scan near a split
#: moves further (0.018 on one BOLD series, its network's input moved by 0.001).
BF16_QUALITY_ATOL, BF16_PROBABILITY_ATOL, BF16_FUSED_ATOL = 0.05, 0.01, 0.05


@pytest.fixture(scope='module')
def shipped_bfloat16():
    """The shipped model with its passes in bfloat16 (the worker's default on a CPU with
    bfloat16; emulated, slower, elsewhere)."""
    if not SHARED_MRI.is_dir():
        pytest.skip(f'needs the real scans in {SHARED_MRI}, which is absent here')
    from miqa_worker.assessment import Assessor

    return Assessor(precision='bfloat16')


@pytest.mark.parametrize('name', sorted(n for n in EXPECTED if 'refused' not in EXPECTED[n]))
def test_bfloat16_outputs_stay_near_the_recorded_ones(name, shipped_bfloat16,
                                                      tmp_path_factory):
    expected = EXPECTED[name]
    result = shipped_bfloat16.assess_file(_scan_path(name, tmp_path_factory))
    assert result['inference']['precision'] == 'bfloat16'
    _close(result['quality'], expected['quality'], BF16_QUALITY_ATOL, 'quality')
    if 'qualityInterval' in expected:
        _close(result['qualityInterval'], expected['qualityInterval'], BF16_QUALITY_ATOL,
               'qualityInterval')
    for key, p in result['artifacts'].items():
        _close(p, expected['artifacts'][key], BF16_PROBABILITY_ATOL, f'artifacts.{key}')
    _close(result['fusion']['network'], expected['fusion']['network'], BF16_PROBABILITY_ATOL,
           'fusion.network')
    _close(result['fusion']['probability'], expected['fusion']['probability'],
           BF16_FUSED_ATOL, 'fusion.probability')
    _close_map(result['metrics'], expected['metrics'], METRIC_ATOL, 'metrics', METRIC_RTOL)
