"""``train_model`` on a few small random volumes: weight averaging over the last epochs."""

from pathlib import Path

import numpy as np
import pytest
import torch

from miqa_worker.constants import ARTIFACT_KEYS
from miqa_worker.training.dataset import VolumeSet
from miqa_worker.training.train import TrainConfig, averaging_start, train_model

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
                          'channels': NARROW, **changes})


def _train(data: VolumeSet, config: TrainConfig, run_dir: Path, resume: bool = False):
    torch.set_num_threads(1)
    return train_model(data, np.arange(len(data)), None, config, run_dir, resume,
                       torch.device('cpu'), progress=False)


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)


def test_averaging_start():
    assert averaging_start(_config()) is None
    assert averaging_start(_config(average_last=0.5)) == 2  # epochs 3 and 4 of 4
    assert averaging_start(_config(epochs=40, average_last=0.5)) == 20
    assert averaging_start(_config(epochs=3, average_last=0.01)) == 2  # at least the last one


def test_weights_are_the_mean_of_the_last_epochs(volumes, tmp_path):
    # the plain run, epoch by epoch (resume keeps it the same run)
    plain = []
    for epochs in (3, 4):
        _train(volumes, _config(epochs=epochs), tmp_path / 'plain', resume=True)
        plain.append(_weights(tmp_path / 'plain' / 'weights.pt'))
    model, history = _train(volumes, _config(average_last=0.5), tmp_path / 'avg')
    averaged = _weights(tmp_path / 'avg' / 'weights.pt')
    assert [h.get('averaged_epochs') for h in history] == [None, None, 1, 2]
    for name, value in averaged.items():
        expected = (plain[0][name] + plain[1][name]) / 2
        assert torch.allclose(value, expected, atol=1e-6), name
        assert torch.allclose(model.state_dict()[name], value)
    # the checkpoint keeps the last epoch's own weights (training resumes from them)
    state = torch.load(tmp_path / 'avg' / 'checkpoint.pt', weights_only=False)
    for name, value in state['model'].items():
        assert torch.allclose(value, plain[1][name], atol=1e-6), name
    assert any(not torch.allclose(averaged[n], plain[1][n]) for n in averaged)
    # resuming a finished run gives the same averaged weights again
    model, _ = _train(volumes, _config(average_last=0.5), tmp_path / 'avg', resume=True)
    for name, value in model.state_dict().items():
        assert torch.equal(value.cpu(), averaged[name]), name


def test_resume_refuses_another_averaging_share(volumes, tmp_path):
    _train(volumes, _config(epochs=1), tmp_path / 'run')
    with pytest.raises(ValueError, match='other settings'):
        _train(volumes, _config(average_last=0.5), tmp_path / 'run', resume=True)


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
