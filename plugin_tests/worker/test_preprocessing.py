"""The fast percentiles are numpy's percentiles; rescaling maps 0.5-99.5 % to 0..1."""

import numpy as np
import pytest

from miqa_worker.preprocessing import intensity_range, percentiles, rescale_intensity


def _volumes():
    rng = np.random.default_rng(0)
    shape = (128, 128, 96)  # over the size where the fast path starts
    yield 'gamma with background', (rng.gamma(2, 50, shape) * (rng.random(shape) > 0.5))
    yield 'normal', rng.normal(size=shape)
    yield 'few integers', rng.integers(0, 4, shape)
    yield 'hot voxels', np.where(rng.random(shape) > 0.999, 1e6, rng.random(shape))
    yield 'small', rng.random((20, 20, 20))


@pytest.mark.parametrize('name,volume', list(_volumes()))
def test_percentiles_match_numpy(name, volume):
    volume = volume.astype(np.float32)
    qs = (0.0, 0.5, 1.0, 50.0, 99.5, 100.0)
    np.testing.assert_allclose(percentiles(volume, qs), np.percentile(volume, qs), rtol=1e-6,
                               atol=1e-9)


def test_rescale_maps_the_percentile_range_to_unit_interval():
    rng = np.random.default_rng(2)
    volume = rng.normal(100, 10, (80, 80, 80)).astype(np.float32)
    low, high = intensity_range(volume)
    out = rescale_intensity(volume)
    assert out.dtype == np.float32 and out.shape == volume.shape
    assert out.min() == 0.0 and out.max() == 1.0
    inside = (volume > low) & (volume < high)
    np.testing.assert_allclose(out[inside], (volume[inside] - low) / (high - low), rtol=1e-5)
    assert np.mean(out == 0.0) == pytest.approx(0.005, abs=0.001)
    assert not np.shares_memory(out, volume)


def test_constant_volume_rescales_to_zeros():
    assert not rescale_intensity(np.full((70, 70, 70), 5.0)).any()
