"""``train_model`` on a few small random volumes: resume, penalty outputs."""

from pathlib import Path

import numpy as np
import pytest
import torch

from miqa_worker.constants import ARTIFACT_KEYS
from miqa_worker.training.dataset import VolumeSet
from miqa_worker.training.train import TrainConfig, train_model

NARROW = (2, 2, 4, 4, 8)


@pytest.fixture(scope='module')
def volumes() -> VolumeSet:
    rng = np.random.default_rng(0)
    count = 6
    vols = [rng.integers(0, 255, (64, 64, 64), dtype=np.uint8) for _ in range(count)]
    indicators = np.full((count, len(ARTIFACT_KEYS)), np.nan, dtype=np.float32)
    indicators[:, ARTIFACT_KEYS.index('ghosting_motion')] = [0, 1, 0, 1, 0, 1]
    return VolumeSet([f'v{i}' for i in range(count)], np.array([f's{i}' for i in range(count)]),
                     vols, rng.uniform(0, 10, count).astype(np.float32), indicators,
                     views=np.stack(vols))


def _config(**changes) -> TrainConfig:
    return TrainConfig(**{'epochs': 4, 'batch_size': 4, 'tiles_per_volume': 1,
                          'channels': NARROW, 'penalty_outputs': False, **changes})


def _train(data: VolumeSet, config: TrainConfig, run_dir: Path, resume: bool = False):
    torch.set_num_threads(1)
    return train_model(data, np.arange(len(data)), None, config, run_dir, resume,
                       torch.device('cpu'), progress=False)


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)


def test_resume_continues_the_same_run(volumes, tmp_path):
    """Two epochs, then resumed to three: the weights of one three-epoch run, bit for bit."""
    _train(volumes, _config(epochs=2), tmp_path / 'resumed')
    _, history = _train(volumes, _config(epochs=3), tmp_path / 'resumed', resume=True)
    _train(volumes, _config(epochs=3), tmp_path / 'straight')
    resumed = _weights(tmp_path / 'resumed' / 'weights.pt')
    straight = _weights(tmp_path / 'straight' / 'weights.pt')
    assert [h['epoch'] for h in history] == [1, 2, 3]
    for name, value in straight.items():
        assert torch.equal(value, resumed[name]), name


def test_resume_refuses_other_settings(volumes, tmp_path):
    _train(volumes, _config(epochs=1), tmp_path / 'run')
    with pytest.raises(ValueError, match='other settings'):
        _train(volumes, _config(lr_decay=0.8), tmp_path / 'run', resume=True)


def test_resume_reads_checkpoints_of_retired_settings(volumes, tmp_path):
    """A checkpoint written while weight averaging was an option (off) resumes as before."""
    _train(volumes, _config(epochs=1), tmp_path / 'run')
    checkpoint = tmp_path / 'run' / 'checkpoint.pt'
    state = torch.load(checkpoint, weights_only=False)
    state['config']['average_last'] = 0.0
    torch.save(state, checkpoint)
    _, history = _train(volumes, _config(epochs=2), tmp_path / 'run', resume=True)
    assert len(history) == 2
    state['config']['average_last'] = 0.5  # averaged weights: another run
    torch.save(state, checkpoint)
    with pytest.raises(ValueError, match='other settings'):
        _train(volumes, _config(epochs=3), tmp_path / 'run', resume=True)


def _with_severities(data: VolumeSet) -> VolumeSet:
    import dataclasses

    severity = {'ghosting': np.array([0, 0.5, 0, 1, 0, 0.25], np.float32),
                'motion': np.zeros(6, np.float32),  # never simulated here: no output for it
                'coverage': np.array([0.5, 0, 0, 0, np.nan, 1], np.float32)}
    return dataclasses.replace(data, severity=severity)


def test_penalty_targets_and_their_batches(volumes):
    from miqa_worker.training.dataset import penalty_targets, tile_batches

    data = _with_severities(volumes)
    families, points = penalty_targets(data)
    assert families == ['ghosting', 'coverage']  # generator order; motion never present
    assert np.allclose(points[:, 0], [0, 2.5, 0, 5, 0, 1.25])  # ghosting costs 5 x severity
    assert np.isnan(points[4, 1]) and points[5, 1] == 5
    batches = list(tile_batches(data, np.arange(6), 2, 4, np.random.default_rng(0), 1, True,
                                (families, points)))
    got = torch.cat([b[3] for b in batches])
    assert got.shape == (18, 2)
    # tiles do not know a cut's points (it may be elsewhere); views carry every family's
    assert int(torch.isnan(got[:, 1]).sum()) == 12 + 1  # 12 tiles, and volume 4's view
    assert not torch.isnan(got[:, 0]).any()
    assert all(b[3].shape[1] == 0 for b in tile_batches(data, np.arange(6), 1, 4,
                                                        np.random.default_rng(0)))


def test_penalty_outputs_train_beside_the_eleven(volumes, tmp_path):
    model, history = _train(_with_severities(volumes), _config(epochs=1, penalty_outputs=True),
                            tmp_path / 'points')
    assert model(torch.zeros(1, 1, 64, 64, 64)).shape == (1, 13)
    assert history[0]['train_points'] > 0
    with pytest.raises(ValueError, match='known artifact severities'):
        _train(volumes, _config(epochs=1, penalty_outputs=True), tmp_path / 'none')


def test_a_warm_start_begins_from_the_given_weights(volumes, tmp_path):
    """``init_weights``: epoch 1 starts from those weights (one epoch from them equals one
    more epoch of the run that made them, learning-rate schedule aside), not from random
    ones; a network of another shape is refused in one line."""
    _train(volumes, _config(epochs=1), tmp_path / 'first')
    start = tmp_path / 'first' / 'weights.pt'
    torch.set_num_threads(1)
    model, _ = train_model(volumes, np.arange(len(volumes)), None, _config(epochs=1, seed=7),
                           tmp_path / 'warm', False, torch.device('cpu'), progress=False,
                           init_weights=start)
    cold, _ = train_model(volumes, np.arange(len(volumes)), None, _config(epochs=1, seed=7),
                          tmp_path / 'cold', False, torch.device('cpu'), progress=False)
    first = _weights(start)
    warm = _weights(tmp_path / 'warm' / 'weights.pt')
    cold = _weights(tmp_path / 'cold' / 'weights.pt')
    distance = {name: sum(float((w[k] - first[k]).abs().sum()) for k in first)
                for name, w in (('warm', warm), ('cold', cold))}
    assert distance['warm'] < distance['cold'] / 2
    with pytest.raises(ValueError, match='another shape') as info:
        train_model(volumes, np.arange(len(volumes)), None,
                    _config(epochs=1, channels=(2, 2, 4, 4, 16)), tmp_path / 'other', False,
                    torch.device('cpu'), progress=False, init_weights=start)
    assert '\n' not in str(info.value)
