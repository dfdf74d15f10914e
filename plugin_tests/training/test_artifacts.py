"""The simulated artifact transforms change the image and set labels as documented."""

import numpy as np
import pytest
import torch
import torchio as tio

from miqa_worker.constants import ARTIFACT_KEYS, QUALITY_MAX
from miqa_worker.training import artifacts as art


def _phantom() -> np.ndarray:
    """A head-like ellipsoid with a brighter core and a dark background, 48x56x40."""
    x, y, z = np.meshgrid(*(np.linspace(-1, 1, n) for n in (48, 56, 40)), indexing='ij')
    r = x**2 + y**2 + z**2
    data = np.where(r < 0.6, 0.6, 0.0) + np.where(r < 0.25, 0.4, 0.0)
    return data.astype(np.float32)


def _subject() -> tio.Subject:
    subject = tio.Subject(image=tio.ScalarImage(tensor=torch.from_numpy(_phantom())[None]))
    subject[art.LABELS_KEY] = art.new_labels()
    return subject


@pytest.mark.parametrize('family', art.FAMILY_NAMES)
def test_transform_changes_image_and_labels(family):
    torch.manual_seed(3)
    transform = art.TRANSFORMS[family](p=0.5, severity=(0.6, 0.6))
    transform.probability = 1.0  # force it on for this check
    before = _phantom()
    out = transform(_subject())
    after = out['image'].data[0].numpy()
    if after.shape == before.shape:
        assert np.abs(after - before).mean() > 1e-3
    else:  # wraparound and coverage change the field of view
        assert family in ('wraparound', 'coverage')
        assert after.size < before.size
    labels = out[art.LABELS_KEY]
    spec = art.FAMILIES[family]
    assert labels['severity'][family] == pytest.approx(0.6)
    assert labels['quality'] == pytest.approx(QUALITY_MAX - spec.max_penalty * 0.6)
    for key in ARTIFACT_KEYS:
        if key == spec.indicator:
            assert labels['indicators'][key] is True
        elif key in {f.indicator for f in art.FAMILIES.values()}:
            assert labels['indicators'][key] is False  # simulated but absent: a known negative
        else:
            assert labels['indicators'][key] is None  # never simulated: unknown
    if spec.indicator is None:
        assert family == 'noise' and not any(labels['indicators'].values())


def test_probability_is_respected_and_bounded():
    torch.manual_seed(0)
    transform = art.RandomNoiseArtifact(p=0.3)
    image = tio.Subject(image=tio.ScalarImage(tensor=torch.rand(1, 8, 8, 8)))
    applied = 0
    for _ in range(400):
        subject = tio.Subject(image=image['image'])
        subject[art.LABELS_KEY] = art.new_labels()
        applied += transform(subject)[art.LABELS_KEY]['severity']['noise'] > 0
    assert 0.22 < applied / 400 < 0.38
    for bad in (0.05, 0.6):
        with pytest.raises(ValueError):
            art.RandomGhostingArtifact(p=bad)
    with pytest.raises(ValueError):
        art.RandomSpikeArtifact(severity=(0.0, 1.2))


def test_pipeline_stacks_penalties_and_clips():
    torch.manual_seed(1)
    transforms = art.artifact_pipeline(probability=0.5, severity=(1.0, 1.0))
    for t in transforms:
        t.probability = 1.0
    subject = tio.Subject(image=tio.ScalarImage(tensor=torch.from_numpy(_phantom())[None]))
    labels = art.apply_artifacts(subject, transforms)[art.LABELS_KEY]
    assert labels['quality'] == 0.0  # the penalties sum to far more than 10
    assert all(v == 1.0 for v in labels['severity'].values())


@pytest.mark.parametrize('severity', [0.25, 1.0])
def test_bias_field_shades_the_head_by_the_documented_ratio(severity):
    """Brightest over darkest gain inside the head (2nd-98th percentile) is exp(2 a)."""
    data = _phantom()
    head = data > 0
    for seed in range(3):
        transform = art.RandomBiasFieldArtifact()
        params = {**transform.get_params(np.random.default_rng(seed)), 'severity': severity}
        out, _, _ = transform.corrupt(data, np.eye(4), params)
        gain = out[head] / data[head]
        low, high = np.percentile(np.log(gain), [2, 98])
        assert high - low == pytest.approx(2 * (0.25 + 0.35 * severity), rel=0.02)
        assert np.all(out[~head] == 0)


def _draws(seed: int) -> tuple[np.ndarray, dict]:
    """Every family at probability 0.5 on the phantom: the volume and its labels."""
    torch.manual_seed(seed)
    subject = tio.Subject(image=tio.ScalarImage(tensor=torch.from_numpy(_phantom())[None]))
    subject = art.apply_artifacts(subject, art.artifact_pipeline(probability=0.5))
    return subject['image'].data[0].numpy(), subject[art.LABELS_KEY]


def test_every_draw_is_recorded_and_replays_bit_for_bit():
    import json

    seen = set()
    for seed in range(12):
        volume, labels = _draws(seed)
        params = json.loads(json.dumps(labels['artifacts']))  # as the cache index stores them
        assert [p['family'] for p in params] == [f for f in art.TRANSFORMS
                                                 if labels['severity'][f] > 0]
        seen |= {p['family'] for p in params}
        subject = tio.Subject(image=tio.ScalarImage(tensor=torch.from_numpy(_phantom())[None]))
        torch.manual_seed(seed + 1000)  # replay draws nothing: torch's state does not matter
        again = art.replay(subject, params)
        assert np.array_equal(again['image'].data[0].numpy(), volume), seed
        assert again[art.LABELS_KEY] == {**labels, 'artifacts': params}, seed
    assert seen == set(art.FAMILY_NAMES)  # every family was drawn and replayed


def test_changed_parameters_change_the_volume():
    """The recorded parameters are what makes the volume: edit one and the result moves."""
    for seed in range(12):
        volume, labels = _draws(seed)
        ghosting = [p for p in labels['artifacts'] if p['family'] == 'ghosting']
        if ghosting:
            break
    params = [dict(p) for p in labels['artifacts']]
    for p in params:
        if p['family'] == 'ghosting':
            p['num_ghosts'] = 9 if p['num_ghosts'] != 9 else 3
    subject = tio.Subject(image=tio.ScalarImage(tensor=torch.from_numpy(_phantom())[None]))
    assert not np.array_equal(art.replay(subject, params)['image'].data[0].numpy(), volume)
