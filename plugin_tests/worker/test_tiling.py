"""Tiling: every voxel covered, the fewest tiles, short axes padded, C-ordered grid."""

import math

import numpy as np
import pytest

from miqa_worker.assessment import make_tiles
from miqa_worker.preprocessing import rescale_intensity
from miqa_worker.tiling import extract_tiles, pad_to_tile, tile_starts

T = 64


@pytest.mark.parametrize('size', [1, 10, 63, 64, 65, 100, 127, 128, 129, 176, 256, 300, 1024])
def test_starts_cover_every_index_with_the_fewest_tiles(size):
    starts = tile_starts(size)
    padded = max(size, T)
    assert len(starts) == max(1, math.ceil(size / T))
    assert starts[0] == 0 and starts[-1] == padded - T
    assert starts == sorted(set(starts))
    covered = np.zeros(padded, bool)
    for s in starts:
        covered[s:s + T] = True
    assert covered.all()
    if len(starts) > 1:
        # evenly spread: neighbouring gaps differ by at most one voxel, overlap under a tile
        gaps = np.diff(starts)
        assert gaps.max() - gaps.min() <= 1
        overlap = len(starts) * T - padded
        assert 0 <= overlap < T


def test_short_axes_are_padded_at_the_end_with_zeros():
    volume = np.ones((10, 70, 64), np.float32)
    padded = pad_to_tile(volume)
    assert padded.shape == (64, 70, 64)
    assert padded[:10].all() and not padded[10:].any()
    tiles, starts, grid = extract_tiles(volume)
    assert grid == (1, 2, 1) and tiles.shape == (2, T, T, T)
    assert starts.tolist() == [[0, 0, 0], [0, 6, 0]]


def test_tiles_reassemble_the_volume_in_c_order():
    rng = np.random.default_rng(3)
    volume = rng.random((130, 64, 100)).astype(np.float32)
    tiles, starts, grid = extract_tiles(volume)
    assert grid == (3, 1, 2) and len(tiles) == 6
    # C order: the last axis changes fastest
    assert [tuple(s) for s in starts] == [(i, j, k) for i in (0, 33, 66) for j in (0,)
                                          for k in (0, 36)]
    rebuilt = np.full(volume.shape, np.nan, np.float32)
    for tile, (i, j, k) in zip(tiles, starts, strict=True):
        rebuilt[i:i + T, j:j + T, k:k + T] = tile
    np.testing.assert_array_equal(rebuilt, volume)


@pytest.mark.parametrize('shape', [(256, 256, 176), (40, 90, 70), (64, 64, 64), (65, 300, 2)])
def test_fast_tiles_equal_the_reference_pipeline(shape):
    """make_tiles (in-place rescale, fast percentiles) == extract_tiles(rescale_intensity(v))."""
    rng = np.random.default_rng(1)
    volume = (rng.gamma(2.0, 100.0, shape) * (rng.random(shape) > 0.3)).astype(np.float32)
    tiles, starts, grid, padded = make_tiles(volume)
    ref_tiles, ref_starts, ref_grid = extract_tiles(rescale_intensity(volume))
    assert grid == ref_grid
    assert padded == tuple(max(s, T) for s in shape)
    np.testing.assert_array_equal(starts, ref_starts)
    np.testing.assert_allclose(tiles, ref_tiles, atol=1e-6)
    assert tiles.dtype == np.float32 and tiles.min() >= 0.0 and tiles.max() <= 1.0


def test_global_view_keeps_physical_proportions_and_centres_the_volume():
    from miqa_worker.tiling import global_view

    # 200 x 100 x 40 voxels of 1 x 1 x 2.5 mm: 200 x 100 x 100 mm -> 64 x 32 x 32 voxels
    volume = np.ones((200, 100, 40), np.float32)
    view = global_view(volume, (1.0, 1.0, 2.5))
    assert view.shape == (T, T, T) and view.dtype == np.float32
    inside = np.argwhere(view > 0.5)
    assert inside.min(axis=0).tolist() == [0, 16, 16]
    assert inside.max(axis=0).tolist() == [63, 47, 47]
    np.testing.assert_allclose(view[0:64, 16:48, 16:48], 1.0, atol=1e-6)  # area mean of ones
    assert view[:, :16].max() == 0 and view[:, 48:].max() == 0


def test_global_view_of_a_small_volume_is_interpolated_up():
    from miqa_worker.tiling import global_view

    volume = np.zeros((32, 32, 16), np.float32)
    volume[:16] = 1.0
    view = global_view(volume, (2.0, 2.0, 2.0))  # 64 x 64 x 32 mm: 64 x 64 x 32 voxels
    assert view[:30, :, 16:48].min() > 0.99 and view[34:, :, 16:48].max() < 0.01
    assert view[:, :, :16].max() == 0 and view[:, :, 48:].max() == 0


def test_global_view_rescaled_after_resizing_equals_the_view_of_the_rescaled_volume():
    """Clip, resize, then map to 0..1: the view the network was trained on, cheaper."""
    from miqa_worker.assessment import whole_view
    from miqa_worker.image_io import ScanVolume
    from miqa_worker.preprocessing import intensity_range, rescale_intensity
    from miqa_worker.tiling import global_view

    rng = np.random.default_rng(0)
    for shape, spacing in (((120, 90, 30), (1.0, 1.2, 4.0)), ((40, 30, 20), (1.0, 1.0, 1.0))):
        array = (rng.gamma(2.0, 300.0, shape) - 50).astype(np.float32)  # hot voxels to clip
        expected = global_view(rescale_intensity(array), spacing)
        volume = ScanVolume(array, spacing, 'RAS', 'array')
        np.testing.assert_allclose(whole_view(volume), expected, atol=2e-6)
        low, high = intensity_range(array)
        np.testing.assert_allclose(
            global_view(np.clip(array, low, high), spacing, value_range=(low, high)),
            expected, atol=2e-6)
    flat = ScanVolume(np.full((70, 70, 70), 5.0, np.float32), (1.0, 1.0, 1.0), 'RAS', 'array')
    assert not whole_view(flat).any()  # a constant volume maps to zeros, as rescale_intensity


@pytest.mark.parametrize('shape,spacing', [((256, 256, 176), (1.0, 1.0, 1.0)),  # slabs
                                           ((130, 97, 61), (1.0, 1.2, 2.0)),  # no whole factor
                                           ((40, 40, 30), (1.0, 1.0, 1.0))])  # grown
def test_global_view_clipping_itself_equals_the_view_of_the_clipped_volume(shape, spacing):
    """``clip=True`` (slab by slab where every axis shrinks by a whole factor) is the view of
    the volume clipped first, and leaves the volume as it was."""
    from miqa_worker.tiling import global_view

    rng = np.random.default_rng(5)
    volume = (rng.gamma(2.0, 60.0, shape) * (rng.random(shape) > 0.3)).astype(np.float32)
    before = volume.copy()
    low, high = 5.0, 250.0
    expected = global_view(np.clip(volume, np.float32(low), np.float32(high)), spacing,
                           value_range=(low, high))
    got = global_view(volume, spacing, value_range=(low, high), clip=True)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    assert got.min() >= 0.0 and got.max() <= 1.0 + 1e-6 and got.max() > 0.5
    np.testing.assert_array_equal(volume, before)
