"""Assessing a scan: the result's shape, orientation invariance, progress, real scans."""

import json
import math

import nibabel as nib
import numpy as np
import pytest

from miqa_worker.assessment import Assessor, clear_cache, get_assessor, warm_up
from miqa_worker.constants import ARTIFACT_KEYS, TILE_SIZE
from miqa_worker.image_io import ImageError, read_volume

from .conftest import TEST_MODEL, head_phantom


def _check_result(result, shape):
    assert json.loads(json.dumps(result, allow_nan=False)) == result
    assert 0.0 <= result['quality'] <= 10.0
    assert list(result['artifacts']) == list(ARTIFACT_KEYS)
    assert all(0.0 <= p <= 1.0 for p in result['artifacts'].values())
    tile_map = result['tileMap']
    grid = tile_map['grid']
    count = math.prod(grid)
    assert grid == [max(1, math.ceil(s / TILE_SIZE)) for s in shape]
    assert tile_map['tileSize'] == TILE_SIZE
    assert tile_map['shape'] == [max(s, TILE_SIZE) for s in shape]
    assert len(tile_map['starts']) == len(tile_map['quality']) == count
    assert all(len(tile_map['artifacts'][key]) == count for key in ARTIFACT_KEYS)
    assert all(0.0 <= q <= 10.0 for q in tile_map['quality'])
    probs = np.array([tile_map['artifacts'][key] for key in ARTIFACT_KEYS])
    np.testing.assert_allclose(probs.mean(axis=1), list(result['artifacts'].values()))
    assert result['model']['name'] == TEST_MODEL and len(result['model']['sha256']) == 64
    assert result['volume']['shape'] == list(shape)
    assert set(result['timings']) == {'read', 'preprocess', 'inference', 'metrics', 'total'}
    assert all(v >= 0 for v in result['timings'].values())
    assert result['metrics'] and all(math.isfinite(v) for v in result['metrics'].values())


def test_assess_file_result(assessor, write_nifti):
    path = write_nifti(head_phantom((150, 100, 70)), 'head.nii.gz', np.diag([1, 1, 1.2, 1]))
    seen = []
    result = assessor.assess_file(path, progress=lambda c, t, m: seen.append((c, t, m)))
    _check_result(result, (150, 100, 70))
    assert result['volume'] == {'shape': [150, 100, 70], 'spacing': [1.0, 1.0, 1.2],
                                'orientation': 'RAS', 'note': None, 'format': 'nifti'}
    assert [c for c, _, _ in seen] == sorted(c for c, _, _ in seen)
    assert seen[0][0] == 1 and seen[-1][0] == seen[-1][1] == 5
    assert result['tileMap']['starts'][:3] == [[0, 0, 0], [0, 0, 6], [0, 36, 0]]


def test_quality_is_the_mean_of_the_tile_outputs(assessor):
    volume = read_volume_from_array(head_phantom((70, 70, 70)))
    result = assessor.assess_volume(volume, metrics=False)
    from miqa_worker.assessment import make_tiles

    tiles, _, _, _ = make_tiles(volume.array)
    outputs = assessor.predict_tiles(tiles)
    single = np.concatenate([assessor.predict_tiles(t[None]) for t in tiles])
    np.testing.assert_allclose(outputs, single, rtol=1e-4, atol=1e-5)  # batching changes nothing
    assert result['quality'] == pytest.approx(float(np.clip(outputs[:, 0].mean(), 0, 10)))
    sig = 1 / (1 + np.exp(-outputs[:, 1:].astype(np.float64)))
    assert list(result['artifacts'].values()) == pytest.approx(list(sig.mean(axis=0)))
    assert result['metrics'] == {}


def _respec(folder, **changes):
    """Rewrite a model folder's model.json with some of its spec's fields changed."""
    import dataclasses

    from miqa_worker.model_spec import load_spec, save_spec

    save_spec(dataclasses.replace(load_spec(folder), **changes), folder)


def _write_raw(folder, section, key, value):
    """Write a model.json with one raw field set (save_spec would refuse a bad one)."""
    raw = json.loads((folder / 'model.json').read_text(encoding='utf-8'))
    raw[section][key] = value
    (folder / 'model.json').write_text(json.dumps(raw), encoding='utf-8')


def test_the_whole_volume_view_is_blended_in_at_the_model_weight(model_dir, tmp_path):
    """A model whose model.json gives the view a share (view.weight) also runs the view."""
    import shutil

    from miqa_worker.assessment import make_tiles
    from miqa_worker.model_spec import ViewSpec
    from miqa_worker.preprocessing import rescale_intensity
    from miqa_worker.tiling import global_view

    target = tmp_path / 'with-view'
    shutil.copytree(model_dir / TEST_MODEL, target)
    _respec(target, view=ViewSpec(weight=0.3))
    with_view = Assessor(target)
    volume = read_volume_from_array(head_phantom((90, 80, 70)))
    volume.spacing = (1.0, 1.2, 1.5)
    result = with_view.assess_volume(volume, metrics=False)
    tiles, _, _, _ = make_tiles(volume.array)
    view = global_view(rescale_intensity(volume.array), volume.spacing)
    out = with_view.predict_tiles(np.concatenate([tiles, view[None]])).astype(np.float64)
    sig = 1 / (1 + np.exp(-out[:, 1:]))
    assert result['globalView']['weight'] == 0.3
    assert set(result['globalView']['weights'].values()) == {0.3}
    assert result['globalView']['quality'] == pytest.approx(float(np.clip(out[-1, 0], 0, 10)))
    assert list(result['globalView']['artifacts'].values()) == pytest.approx(list(sig[-1]))
    expected_q = 0.7 * out[:-1, 0].mean() + 0.3 * out[-1, 0]
    assert result['quality'] == pytest.approx(float(np.clip(expected_q, 0, 10)))
    expected = 0.7 * sig[:-1].mean(axis=0) + 0.3 * sig[-1]
    assert list(result['artifacts'].values()) == pytest.approx(list(expected))
    assert len(result['tileMap']['quality']) == len(tiles)  # the view is not a tile of the map
    plain = Assessor(model_dir / TEST_MODEL).assess_volume(volume, metrics=False)
    assert 'globalView' not in plain


def test_per_output_view_weights_from_model_json(model_dir, tmp_path):
    """model.json's view.weights give each output its own share; the rest take view.weight."""
    import shutil

    from miqa_worker.assessment import OUTPUT_NAMES, blend_outputs
    from miqa_worker.model_spec import ViewSpec
    from miqa_worker.model_store import ModelError

    target = tmp_path / 'per-output'
    shutil.copytree(model_dir / TEST_MODEL, target)
    shares = {'quality': 0.75, 'incomplete_coverage': 1.0, 'ghosting_motion': 0.0}
    _respec(target, view=ViewSpec(0.5, shares))
    assessor = Assessor(target)
    expected = [shares.get(name, 0.5) for name in OUTPUT_NAMES]
    assert assessor.view_weights.tolist() == expected
    volume = read_volume_from_array(head_phantom((90, 80, 70)))
    result = assessor.assess_volume(volume, metrics=False)
    assert result['globalView']['weight'] == 0.75
    assert result['globalView']['weights'] == dict(zip(OUTPUT_NAMES, expected, strict=True))
    view = result['globalView']
    tiles = np.array([[np.mean(result['tileMap']['quality'])] + [
        np.mean(result['tileMap']['artifacts'][k]) for k in ARTIFACT_KEYS]])
    # coverage is the view's alone, ghosting/motion the tiles' alone
    assert result['artifacts']['incomplete_coverage'] == pytest.approx(
        view['artifacts']['incomplete_coverage'])
    assert result['artifacts']['ghosting_motion'] == pytest.approx(
        tiles[0, 1 + ARTIFACT_KEYS.index('ghosting_motion')], rel=1e-5)
    # blend_outputs takes one share or one per output
    outs, view_out = np.zeros((2, 11)), np.full(11, 2.0)
    both = blend_outputs(outs, view_out, np.array(expected))
    assert both[0] == pytest.approx(1.5) and both[1:].tolist() == pytest.approx(
        [0.5 * (1 - w) + w / (1 + math.exp(-2.0)) for w in expected[1:]])
    for bad, reason in (
            ({'quality': 1.5}, 'view.weights.quality must be a number in 0..1, got 1.5'),
            ({'wobble': 0.2}, 'unknown field view.weights.wobble'),
            ({'quality': 'x'}, 'view.weights.quality must be a number in 0..1, got "x"')):
        _write_raw(target, 'view', 'weights', bad)
        with pytest.raises(ModelError, match=reason):
            Assessor(target)


def test_view_flips_average_the_mirrored_whole_volume_view(model_dir, tmp_path):
    """model.json's view.flips runs the view as that many mirror images and averages them."""
    import shutil

    from miqa_worker.assessment import FLIPS, mirrored, whole_view
    from miqa_worker.model_spec import ViewSpec
    from miqa_worker.model_store import ModelError

    target = tmp_path / 'flips'
    shutil.copytree(model_dir / TEST_MODEL, target)
    _respec(target, view=ViewSpec(1.0, {}, 8))
    assessor = Assessor(target)
    volume = read_volume_from_array(head_phantom((90, 80, 70)))
    result = assessor.assess_volume(volume, metrics=False)
    view = whole_view(volume)
    images = mirrored(view, 8)
    assert images.shape == (8, *view.shape) and len(set(FLIPS)) == 8
    np.testing.assert_array_equal(images[0], view)
    np.testing.assert_array_equal(images[7], view[::-1, ::-1, ::-1])
    out = assessor.predict_tiles(images).astype(np.float64).mean(axis=0)
    assert result['globalView']['flips'] == 8
    assert result['quality'] == pytest.approx(float(np.clip(out[0], 0, 10)), rel=1e-5)
    assert list(result['artifacts'].values()) == pytest.approx(
        list(1 / (1 + np.exp(-out[1:]))), rel=1e-5)
    single = assessor.predict_tiles(view[None]).astype(np.float64)[0]
    assert not np.allclose(out, single)  # the mirror images do change the result
    for bad in (0, 9, 2.5, '4', True):
        _write_raw(target, 'view', 'flips', bad)
        with pytest.raises(ModelError, match='view.flips must be an integer in 1..8, got'):
            Assessor(target)


def read_volume_from_array(array):
    from miqa_worker.image_io import ScanVolume

    return ScanVolume(array=np.ascontiguousarray(array, np.float32), spacing=(1.0, 1.0, 1.0),
                      original_orientation='RAS', source_format='array')


@pytest.mark.parametrize('codes', ['LPI', 'ASR'])
def test_same_scan_in_another_orientation_assesses_the_same(assessor, tmp_path, codes):
    array = head_phantom((100, 90, 70))
    affine = np.diag([1.1, 1.0, 1.3, 1.0])
    nib.save(nib.Nifti1Image(array, affine), str(tmp_path / 'ras.nii.gz'))
    image = nib.Nifti1Image(array, affine)
    ornt = nib.orientations.ornt_transform(nib.orientations.axcodes2ornt('RAS'),
                                           nib.orientations.axcodes2ornt(codes))
    nib.save(image.as_reoriented(ornt), str(tmp_path / 'moved.nii.gz'))
    a = assessor.assess_file(tmp_path / 'ras.nii.gz')
    b = assessor.assess_file(tmp_path / 'moved.nii.gz')
    assert b['volume']['orientation'] == codes
    assert b['quality'] == pytest.approx(a['quality'], abs=1e-5)
    assert b['artifacts'] == pytest.approx(a['artifacts'], abs=1e-6)
    assert b['tileMap']['starts'] == a['tileMap']['starts']
    assert b['tileMap']['quality'] == pytest.approx(a['tileMap']['quality'], abs=1e-5)
    assert b['metrics'] == pytest.approx(a['metrics'], rel=1e-5, abs=1e-6)


def test_bad_input_raises_image_error(assessor, tmp_path):
    (tmp_path / 'x.nii').write_text('not an image')
    with pytest.raises(ImageError, match='not a readable image'):
        assessor.assess_file(tmp_path / 'x.nii')


def test_get_assessor_caches_and_warm_up_never_raises(model_path, caplog):
    clear_cache()
    first = get_assessor(str(model_path))
    assert get_assessor(str(model_path)) is first
    assert warm_up(str(model_path)) is first
    assert warm_up('no-such-model-anywhere') is None
    assert 'no-such-model-anywhere' in caplog.text
    clear_cache()


def test_assessor_uses_the_available_cores(model_path):
    import os

    import torch

    assessor = Assessor(model_path)
    assert assessor.threads == len(os.sched_getaffinity(0))
    assert torch.get_num_threads() == assessor.threads


@pytest.mark.realdata
def test_every_readable_real_scan_assesses_to_finite_numbers(assessor, shared_mri):
    files = sorted(p for p in shared_mri.iterdir() if p.is_file() and p.suffix != '.md'
                   and p.suffix != '.json')
    assert len(files) >= 15
    for path in files:
        result = assessor.assess_file(path)
        _check_result(result, tuple(read_volume(path).shape))
