"""Fixtures for the model-side tests: a test-only random model, synthetic scans (no server)."""

from pathlib import Path

import numpy as np
import pytest

TEST_MODEL = 'test-random-init'


def head_phantom(shape=(96, 100, 80), noise: float = 0.02, seed: int = 0) -> np.ndarray:
    """A crude T1-like head: dark air, bright scalp shell, brain with 'WM' core and 'CSF' rim."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing='ij'))
    radius = np.sqrt((grid ** 2 / np.array([0.8, 0.9, 0.75])[:, None, None, None] ** 2).sum(0))
    data = np.zeros(shape, np.float32)
    data[radius < 1.0] = 0.9  # scalp
    data[radius < 0.9] = 0.25  # CSF
    data[radius < 0.85] = 0.55  # GM
    data[radius < 0.6] = 0.8  # WM
    data += data * 0.2 * grid[0]  # a gradient, so orientation mistakes show
    data += rng.normal(0, noise, shape).astype(np.float32)
    return np.abs(data * 1000).astype(np.float32)


@pytest.fixture(scope='session')
def model_dir(tmp_path_factory) -> Path:
    """TEST-ONLY model: a randomly initialised network saved as weights (seeded)."""
    import torch

    from miqa_worker.model_store import save_model
    from miqa_worker.network import build_network

    torch.manual_seed(1234)
    base = tmp_path_factory.mktemp('models')
    save_model(build_network(), base / TEST_MODEL, TEST_MODEL, '0.0.0-test',
               'TEST ONLY: random initial weights, predictions are meaningless')
    return base


@pytest.fixture(scope='session')
def model_path(model_dir) -> Path:
    return model_dir / TEST_MODEL


@pytest.fixture(scope='session')
def assessor(model_path):
    from miqa_worker.assessment import Assessor

    return Assessor(model_path)


@pytest.fixture
def phantom() -> np.ndarray:
    return head_phantom()


@pytest.fixture
def write_nifti(tmp_path):
    """Write an array as NIfTI (default RAS 1 mm affine); returns the path."""
    import nibabel as nib

    def write(array, name='scan.nii.gz', affine=None):
        path = tmp_path / name
        nib.save(nib.Nifti1Image(np.asarray(array), np.eye(4) if affine is None else affine),
                 str(path))
        return path

    return write
