"""Image quality metrics: finite, sensible directions, stable keys."""

import math

import numpy as np
import pytest

from miqa_worker.quality_metrics import (
    compute_quality_metrics,
    head_mask,
    otsu_threshold,
    subsample,
    tissue_classes,
)

from .conftest import head_phantom

CORE = ('snr_total', 'snr_fg', 'snrd_total', 'cnr', 'cjv', 'efc', 'fber', 'wm2max')


def test_noisier_image_scores_worse():
    clean = compute_quality_metrics(head_phantom(noise=0.02), (1, 1, 1))
    noisy = compute_quality_metrics(head_phantom(noise=0.08), (1, 1, 1))
    assert set(CORE) <= set(clean)
    assert all(isinstance(v, float) and math.isfinite(v) for v in clean.values())
    assert noisy['snr_total'] < clean['snr_total']
    assert noisy['snrd_total'] < clean['snrd_total']
    assert noisy['cnr'] < clean['cnr']
    assert noisy['cjv'] > clean['cjv']
    assert noisy['fber'] < clean['fber']
    assert noisy['efc'] > clean['efc']


def test_head_mask_and_tissue_classes_find_the_phantom():
    volume = head_phantom((80, 80, 80))
    mask = head_mask(volume)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, 80)] * 3, indexing='ij'))
    truth = np.sqrt((grid ** 2 / np.array([0.8, 0.9, 0.75])[:, None, None, None] ** 2)
                    .sum(0)) < 1.0
    assert (mask == truth).mean() > 0.98
    classes, centres = tissue_classes(volume[mask])
    assert list(centres) == sorted(centres) and set(np.unique(classes)) == {0, 1, 2}


def test_otsu_separates_two_modes():
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.normal(10, 1, 5000), rng.normal(50, 2, 5000)])
    threshold = otsu_threshold(values)
    assert (values[:5000] < threshold).mean() > 0.99 and (values[5000:] > threshold).all()


def test_skull_stripped_volume_gives_finite_sentinels():
    """Zero-valued air: ratios with a zero denominator are -1, never inf or nan."""
    volume = head_phantom(noise=0.0)
    volume[volume < 300] = 0
    metrics = compute_quality_metrics(volume)
    assert all(math.isfinite(v) for v in metrics.values())
    assert metrics['fber'] == -1.0 and metrics['snrd_total'] == -1.0
    assert metrics['fg_volume_ml'] == 0.0  # no spacing given


def test_large_volumes_are_subsampled_by_stride():
    volume = np.arange(200 * 200 * 100, dtype=np.float32).reshape(200, 200, 100)
    small, factor = subsample(volume, 1 << 18)
    assert factor == 3 and small.size <= 1 << 18  # (4e6 / 2^18)^(1/3) = 2.5
    np.testing.assert_array_equal(small, volume[::3, ::3, ::3])
    metrics = compute_quality_metrics(head_phantom((120, 120, 100)), (1, 1, 1), 1 << 18)
    assert metrics['subsample_factor'] == 2.0
    assert metrics['fg_volume_ml'] == pytest.approx(metrics['fg_fraction'] * 120 * 120 * 100
                                                    / 1000, rel=0.03)


def test_refuses_non_3d():
    with pytest.raises(ValueError, match='3D'):
        compute_quality_metrics(np.zeros((10, 10)))


@pytest.mark.realdata
def test_real_scans_have_finite_metrics(shared_mri):
    from miqa_worker.image_io import read_volume

    for path in sorted(shared_mri.glob('*.nii.gz'))[:6]:
        volume = read_volume(path)
        metrics = compute_quality_metrics(volume.array, volume.spacing)
        assert all(math.isfinite(v) for v in metrics.values()), path.name
        assert 0.0 < metrics['fg_fraction'] < 1.0, path.name


def test_fast_hole_filling_and_level_statistics_match_the_plain_ones():
    from scipy import ndimage

    from miqa_worker.quality_metrics import _level_summary, _summary, fill_holes

    rng = np.random.default_rng(3)
    structure = ndimage.generate_binary_structure(3, 1)
    for _ in range(5):
        mask = ndimage.binary_closing(rng.random((30, 34, 28)) > 0.45, structure)
        np.testing.assert_array_equal(fill_holes(mask, structure),
                                      ndimage.binary_fill_holes(mask))
    for size in (0, 1, 2, 7, 4000):
        levels = rng.integers(0, 60, size).astype(np.uint8)
        fast = _level_summary(np.bincount(levels, minlength=256), 'bg')
        plain = _summary(levels.astype(np.float32) / np.float32(255), 'bg')
        assert list(fast) == list(plain)
        for key in fast:
            assert fast[key] == pytest.approx(plain[key], rel=1e-5, abs=1e-7), key


def test_one_partition_summary_matches_numpy_definitions():
    """_summary's one partition and in-place moments give numpy's own numbers, and
    order_statistics gives np.percentile's, on odd, even, signed and tied samples."""
    from miqa_worker.quality_metrics import _median_energy, _summary, order_statistics

    rng = np.random.default_rng(5)
    samples = [rng.normal(100, 15, 4001).astype(np.float32),
               rng.normal(0, 3, 4000).astype(np.float32),  # signed
               rng.integers(0, 4, 3000).astype(np.float32),  # many ties
               np.array([7.0], dtype=np.float32), np.array([2.0, 5.0], dtype=np.float32)]
    for values in samples:
        wide = values.astype(np.float64)
        middle: list = []
        out = _summary(values, 'r', middle)
        median = np.median(wide)
        std = wide.std()
        expected = {'mean': wide.mean(), 'stdv': std, 'median': median,
                    'mad': np.median(np.abs(wide - median)) * 1.4826,
                    'p05': np.percentile(wide, 5), 'p95': np.percentile(wide, 95),
                    'k': ((wide - wide.mean()) ** 4).mean() / std ** 4 - 3 if std > 0 else 0.0,
                    'n': float(values.size)}
        for key, value in expected.items():
            assert out[f'summary_r_{key}'] == pytest.approx(value, rel=1e-9, abs=1e-9), key
        qs = (0.5, 20.0, 99.5, 99.95)
        np.testing.assert_allclose(order_statistics(values, qs)[0], np.percentile(wide, qs),
                                   rtol=1e-12)
        assert _median_energy(values, middle[0]) == pytest.approx(np.median(wide ** 2),
                                                                  rel=1e-12)
