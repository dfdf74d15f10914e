"""The second and third implementations of each artifact family (simulators.py): they replay
bit for bit from their recorded draws, change the image in their family's way and respect
their severity; post-processing and synthetic heads do what they say."""

import json

import numpy as np
import pytest
import torch
import torchio as tio
from scipy import ndimage

from miqa_worker.constants import QUALITY_MAX
from miqa_worker.training import artifacts as art
from miqa_worker.training import simulators as sim


def _phantom() -> np.ndarray:
    """A head-like ellipsoid with textured tissue inside and air around it, 48x56x40."""
    x, y, z = np.meshgrid(*(np.linspace(-1, 1, n) for n in (48, 56, 40)), indexing='ij')
    r = x**2 / 0.4 + y**2 / 0.45 + z**2 / 0.4
    texture = 0.15 * np.sin(9 * x) * np.cos(7 * y) * np.sin(5 * z)
    data = np.where(r < 1, 0.6 + texture, 0.0) + np.where(r < 0.4, 0.3, 0.0)
    return data.astype(np.float32)


HEAD = _phantom() > 0
AIR = ndimage.binary_dilation(HEAD, iterations=3) ^ True


def _subject(brain: bool = False) -> tio.Subject:
    affine = np.diag([1.5, 1.5, 1.5, 1.0])
    subject = tio.Subject(image=tio.ScalarImage(tensor=torch.from_numpy(_phantom())[None],
                                                affine=affine))
    if brain:
        inner = (_phantom() > 0.75).astype(np.uint8)
        subject['brain'] = tio.LabelMap(tensor=torch.from_numpy(inner)[None], affine=affine)
    subject[art.LABELS_KEY] = art.new_labels()
    return subject


def _run(name: str, severity: float, convention: str = 'real', seed: int = 5):
    """The simulator at one severity with the same other draws (same generator seed)."""
    cls = sim.SIMULATORS[name]
    params = cls(severity=(severity, severity), convention=convention).get_params(
        np.random.default_rng(seed))
    subject = cls().apply_params(_subject(), params)
    return subject['image'].data[0].numpy(), subject[art.LABELS_KEY]


CASES = [(name, conv) for name, cls in sim.SIMULATORS.items()
         for conv in (sim.CONVENTIONS if cls.kspace else ('real',))]


@pytest.mark.parametrize('name,convention', CASES)
def test_simulator_replays_bit_for_bit_and_labels(name, convention):
    torch.manual_seed(11)
    subject = sim.SIMULATORS[name](severity=(0.5, 1.0), convention=convention)(_subject())
    labels = subject[art.LABELS_KEY]
    (params,) = labels['artifacts']
    assert params['simulator'] == name and params['convention'] == convention
    recorded = json.loads(json.dumps(labels['artifacts']))  # as a cache row stores them
    again = sim.replay(_subject(), recorded)
    out = subject['image'].data[0].numpy()
    assert np.array_equal(out, again['image'].data[0].numpy())
    assert again[art.LABELS_KEY]['quality'] == labels['quality'] < QUALITY_MAX
    assert out.min() >= 0  # both conventions store no negative intensity
    family = sim.SIMULATORS[name].family
    assert labels['severity'][family] == params['severity']
    indicator = art.FAMILIES[family].indicator if family in art.FAMILIES else None
    if indicator:
        assert labels['indicators'][indicator] is True
    assert not np.array_equal(out, _phantom())


def _air_energy(volume: np.ndarray) -> float:
    return float(np.mean(volume[AIR] ** 2))


@pytest.mark.parametrize('name', ['torchio-motion', 'segment-motion', 'torchio-ghosting',
                                  'torchio-spike', 'monai-spike'])
@pytest.mark.parametrize('convention', sim.CONVENTIONS)
def test_kspace_corruption_puts_signal_in_the_air_growing_with_severity(name, convention):
    clean = _air_energy(_phantom())
    # seed 6: some draws (e.g. 9 ghosts along y) give ghosts whose real part is negative in
    # the air, which the clamp removes: clamped real images can hide ghosting altogether
    mild, _ = _run(name, 0.2, convention, seed=6)
    strong, labels = _run(name, 1.0, convention, seed=6)
    assert _air_energy(mild) > clean + 1e-7
    assert _air_energy(strong) > _air_energy(mild)
    assert labels['indicators']['ghosting_motion'] is True


def _log_gain_spread(out: np.ndarray) -> float:
    """Spread of the low-frequency gain over the head (log ratio, smoothed)."""
    inner = _phantom() > 0.5
    ratio = np.log(np.maximum(out, 1e-6) / np.maximum(_phantom(), 1e-6))
    smooth = ndimage.uniform_filter(np.where(inner, ratio, 0), 5)
    return float(np.std(smooth[ndimage.binary_erosion(inner, iterations=3)]))


@pytest.mark.parametrize('name', ['torchio-bias', 'monai-bias'])
def test_bias_field_shades_smoothly_more_with_severity(name):
    mild, _ = _run(name, 0.2)
    strong, labels = _run(name, 1.0)
    assert 0.02 < _log_gain_spread(mild) < _log_gain_spread(strong)
    assert labels['indicators']['inhomogeneity'] is True
    assert np.all(strong[~HEAD] == 0)  # a gain: the air stays dark


@pytest.mark.parametrize('name', ['torchio-noise', 'monai-rician'])
def test_noise_raises_the_air_spread_with_severity(name):
    mild, _ = _run(name, 0.2)
    strong, labels = _run(name, 1.0)
    assert 0 < np.std(mild[AIR]) < np.std(strong[AIR])
    assert labels['indicators']['ghosting_motion'] is False  # quality only
    assert labels['quality'] == pytest.approx(QUALITY_MAX - 5.0)


def _outer_energy(volume: np.ndarray) -> float:
    """Share of the spectrum's energy outside the central half of k-space."""
    power = np.abs(np.fft.fftshift(np.fft.fftn(volume))) ** 2
    centre = tuple(slice(n // 4, n - n // 4) for n in volume.shape)
    return float(1 - power[centre].sum() / power.sum())


@pytest.mark.parametrize('name', ['torchio-blur', 'monai-gibbs'])
def test_blur_and_truncation_remove_fine_detail_with_severity(name):
    mild, _ = _run(name, 0.2)
    strong, labels = _run(name, 1.0)
    assert _outer_energy(strong) < _outer_energy(mild) < _outer_energy(_phantom())
    assert labels['quality'] == pytest.approx(QUALITY_MAX - sim.QUALITY_ONLY[
        sim.SIMULATORS[name].family])


def test_conventions_differ_only_where_the_real_part_goes_negative():
    real, _ = _run('torchio-ghosting', 1.0, 'real')
    magnitude, _ = _run('torchio-ghosting', 1.0, 'magnitude')
    assert not np.array_equal(real, magnitude)
    assert np.all(magnitude >= real - 1e-5)  # |z| >= max(Re z, 0)


def test_post_processing_replays_and_does_what_it_draws():
    subject = _subject(brain=True)
    params = {'family': 'postprocessing', 'background': 'zero', 'deface': True,
              'deface_depth': 0.35, 'strip': False, 'resample': None, 'scale': 300.0,
              'storage': 'int16'}
    noisy = sim.SIMULATORS['torchio-noise']().apply_params(subject, _run_params())
    noisy_air = noisy['image'].data[0].numpy()[AIR]
    out = sim.RandomPostProcessing().apply_params(noisy, params)
    data = out['image'].data[0].numpy()
    assert np.array_equal(data, np.round(data)) and data.max() > 255  # int16 after scaling
    front_bottom = data[:, -12:, :6]
    assert np.all(front_bottom == 0)  # the face wedge
    assert (data[AIR] == 0).mean() > 0.9 > (noisy_air == 0).mean()  # the background zeroed
    again = sim.replay(_subject(brain=True), out[art.LABELS_KEY]['artifacts'])
    assert np.array_equal(data, again['image'].data[0].numpy())
    assert again[art.LABELS_KEY]['quality'] == out[art.LABELS_KEY]['quality']

    stripped = sim.RandomPostProcessing().apply_params(_subject(brain=True), {
        **params, 'deface': False, 'strip': True, 'background': 'keep', 'resample': 1.5,
        'storage': 'uint8'})
    data = stripped['image'].data[0].numpy()
    assert data.max() == 255 and np.array_equal(data, np.round(data))
    assert data.shape == (32, 37, 26)  # 1.5 mm -> 2.25 mm
    assert (data > 0).mean() < (_phantom() > 0.75).mean() * 1.3  # only the brain is left


def _run_params() -> dict:
    return sim.TorchioNoise(severity=(0.3, 0.3)).get_params(np.random.default_rng(2))


def test_post_processing_draws_are_recorded():
    torch.manual_seed(4)
    transform = sim.RandomPostProcessing(p_background=1.0, p_deface=1.0, p_strip=1.0,
                                         p_resample=1.0)
    out = transform(_subject(brain=True))
    (params,) = out[art.LABELS_KEY]['artifacts']
    assert params['background'] in ('zero', 'mask') and params['deface'] and params['strip']
    assert 0.7 <= params['resample'] <= 1.5 and params['storage'] in ('float', 'int16', 'uint8')
    again = sim.replay(_subject(brain=True), [params])
    assert np.array_equal(out['image'].data[0].numpy(), again['image'].data[0].numpy())


def test_synthetic_heads_replay_and_vary():
    pytest.importorskip('nilearn')
    head = sim.SyntheticHead(resolution=2)
    first = head.get_params(np.random.default_rng(0))
    second = head.get_params(np.random.default_rng(1))
    image, brain, affine = head.make(first)
    again, _, _ = head.make(json.loads(json.dumps(first)))
    assert np.array_equal(image, again)
    other, _, other_affine = head.make(second)
    assert image.shape != other.shape or not np.allclose(affine, other_affine)
    assert np.allclose(np.sqrt((affine[:3, :3] ** 2).sum(axis=0)), first['spacing'], atol=0.05)
    assert 0.05 < brain.mean() < 0.6 and image[brain].mean() > 0
    csf, gm, wm = first['means'][1:4]
    assert csf <= gm <= wm  # T1-like: the model's domain


def test_mixed_pipeline_holds_out_implementations_and_replays():
    transforms = sim.mixed_pipeline(hold_out=('monai', 'segment'), probability=0.5)
    names = [getattr(t, 'name', None) or type(t).__name__ for t in transforms]
    assert not any(n.startswith(('monai', 'segment')) for n in names)
    assert 'torchio-motion' in names and 'RandomMotionArtifact' in names
    assert names[-1] == 'RandomPostProcessing'
    torch.manual_seed(8)
    subject = art.apply_artifacts(_subject(), transforms)
    labels = subject[art.LABELS_KEY]
    assert len(labels['artifacts']) >= 3  # about half of 16 transforms are drawn
    again = sim.replay(_subject(), json.loads(json.dumps(labels['artifacts'])))
    assert np.array_equal(subject['image'].data[0].numpy(), again['image'].data[0].numpy())
    assert again[art.LABELS_KEY]['quality'] == labels['quality']
    assert again[art.LABELS_KEY]['indicators'] == labels['indicators']
    with pytest.raises(ValueError, match="unknown implementation 'mine'"):
        sim.mixed_pipeline(hold_out=('mine',))
