"""Independent implementations of the artifact families, for training and for honest tests.

The project's own generator (``artifacts.py``) is one implementation per family; a network
trained on it alone learns that generator's signature (issue #21 item 1). This module adds
others, each a TorchIO-style transform whose random draws all happen in :meth:`get_params`
(JSON-ready, appended to ``labels['artifacts']``) and whose :meth:`apply_params` is
deterministic, so :func:`replay` remakes a volume bit for bit:

==================  ==========  =========================================================
simulator           family      implementation
==================  ==========  =========================================================
torchio-motion      motion      stock ``tio.Motion``: 1-4 moves, up to 2 + 13 s deg / mm
torchio-ghosting    ghosting    stock ``tio.Ghosting``: 2-10 ghosts, intensity 0.3 + 0.7 s
torchio-spike       spike       stock ``tio.Spike``: 1-3 spikes, intensity 0.3 + 1.7 s
torchio-bias        bias        stock ``tio.BiasField`` (order 3), coefficients to 0.15 + 0.6 s
torchio-blur        blur        stock ``tio.Blur``, std 0.4 + 2.4 s mm (quality only)
torchio-noise       noise       stock ``tio.Noise`` (Gaussian), std (0.02 + 0.1 s) * p99
monai-spike         spike       MONAI ``KSpaceSpikeNoise``: 1-2 off-centre spikes, e^(-4.5+2.5s) DC
monai-gibbs         gibbs       MONAI ``GibbsNoise``, alpha 0.35 + 0.55 s (quality only)
monai-rician        noise       MONAI ``RandRicianNoise`` (seeded), std (0.02 + 0.1 s) * p99
monai-bias          bias        MONAI ``RandBiasField``'s field (degree 3), coeffs to 0.2 + 0.6 s
segment-motion      motion      own: rigid head moves between k-space line segments
==================  ==========  =========================================================

The k-space simulators reconstruct in one of two *conventions*, drawn or fixed: ``real``
(the real part, negatives clamped to 0, as TorchIO and MONAI do before a clamp) or
``magnitude`` (the modulus of the complex image, as a scanner's magnitude image). The stock
classes are used unchanged except for that last step (:func:`_magnitude_of`).

Labels follow ``artifacts.record_artifact`` (the family's indicator set, quality lowered by its
penalty times ``s``); ``blur`` and ``gibbs`` have no indicator and lower quality only
(:data:`QUALITY_ONLY`). :class:`RandomPostProcessing` varies what pipelines do afterwards
and :class:`SyntheticHead` paints new heads from the MNI152 tissue maps.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import torch
import torchio as tio

from ..constants import QUALITY_MAX, QUALITY_MIN
from . import artifacts as art

Params = dict[str, Any]
CONVENTIONS = ('real', 'magnitude')
#: Families without an indicator beyond the project's: quality penalty at severity 1.
QUALITY_ONLY: dict[str, float] = {'blur': 4.0, 'gibbs': 3.0}


def _magnitude_of(cls: type, method: str) -> type:
    """A subclass of a stock k-space transform whose inverse Fourier step returns the
    magnitude: the stock code then takes ``.real`` of an already real image."""
    stock = getattr(cls, method)

    def magnitude(*args: Any, **kwargs: Any):
        out = stock(*args, **kwargs)
        return out.abs() if isinstance(out, torch.Tensor) else np.abs(out)

    if method == 'inv_shift_fourier':  # MONAI takes .real inside: redo it without
        def magnitude(k, spatial_dims, as_contiguous=False):  # noqa: F811
            dims = tuple(range(-spatial_dims, 0))
            if isinstance(k, torch.Tensor):
                return torch.fft.ifftn(torch.fft.ifftshift(k, dim=dims), dim=dims).abs()
            return np.abs(np.fft.ifftn(np.fft.ifftshift(k, axes=dims), axes=dims))
    return type(f'{cls.__name__}Magnitude', (cls,), {method: staticmethod(magnitude)})


def reconstruct(complex_image: np.ndarray, convention: str) -> np.ndarray:
    """A complex image as a scanner would store it: clamped real part, or magnitude."""
    if convention == 'magnitude':
        return np.abs(complex_image).astype(np.float32)
    return np.clip(complex_image.real, 0, None).astype(np.float32)


def _finish(out: np.ndarray | torch.Tensor, convention: str) -> np.ndarray:
    """The stock transform's output in ``convention`` (clamp its real part; magnitude as is)."""
    out = out.numpy() if isinstance(out, torch.Tensor) else np.asarray(out)
    out = out.astype(np.float32)
    return np.abs(out) if convention == 'magnitude' else np.clip(out, 0, None)


def _tio(transform: tio.Transform, data: np.ndarray, affine: np.ndarray) -> np.ndarray:
    image = tio.ScalarImage(tensor=torch.from_numpy(np.ascontiguousarray(data))[None],
                            affine=affine)
    return transform(image).data[0].numpy()


def _reference(data: np.ndarray) -> float:
    return float(np.percentile(data, 99)) or 1.0


class Simulator(tio.Transform):
    """Base: one implementation of one family; severity and convention drawn in get_params.

    Args:
        severity: range of the severity ``s`` drawn uniformly, within (0, 1].
        convention: ``real``, ``magnitude`` or None (drawn) for k-space simulators.
    """

    name: str = ''
    family: str = ''
    kspace: bool = False

    def __init__(self, severity: tuple[float, float] = (0.25, 1.0),
                 convention: str | None = None, **kwargs: Any):
        low, high = severity
        if not 0.0 < low <= high <= 1.0:
            raise ValueError(f'severity range must be within (0, 1], got {severity}')
        if convention is not None and convention not in CONVENTIONS:
            raise ValueError(f'convention must be one of {", ".join(CONVENTIONS)}')
        super().__init__(**kwargs)
        self.severity_range = (float(low), float(high))
        self.convention = convention
        self.args_names = ['severity_range', 'convention']

    def get_params(self, rng: np.random.Generator) -> Params:
        """Every draw: severity, convention, then the implementation's own (:meth:`draw`)."""
        severity = float(rng.uniform(*self.severity_range))
        convention = self.convention or str(rng.choice(CONVENTIONS))
        return {'simulator': self.name, 'family': self.family, 'severity': severity,
                'convention': convention if self.kspace else 'real',
                **self.draw(rng, severity)}

    def draw(self, rng: np.random.Generator, severity: float) -> Params:
        """The implementation's own draws (JSON-ready)."""
        return {}

    def corrupt(self, data: np.ndarray, affine: np.ndarray, params: Params) -> np.ndarray:
        """The corrupted volume (same shape), deterministic in ``params``."""
        raise NotImplementedError

    def apply_transform(self, subject: tio.Subject) -> tio.Subject:
        return self.apply_params(subject, self.get_params(art._rng()))

    def apply_params(self, subject: tio.Subject, params: Params) -> tio.Subject:
        """Corrupt the image with ``params`` and update the labels."""
        image = subject[art.IMAGE_KEY]
        data = image.data[0].numpy().astype(np.float32)
        out = self.corrupt(data, np.asarray(image.affine), params)
        image.set_data(torch.from_numpy(np.ascontiguousarray(out, dtype=np.float32))[None])
        record(subject, params['family'], params['severity'])
        subject[art.LABELS_KEY].setdefault('artifacts', []).append(params)
        return subject


def record(subject: tio.Subject, family: str, severity: float) -> None:
    """The labels of ``family`` at ``severity``: the project's families as ``artifacts``
    records them, a quality-only family by its own penalty."""
    if art.LABELS_KEY not in subject:
        subject[art.LABELS_KEY] = art.new_labels()
    if family in art.FAMILIES:
        art.record_artifact(subject, family, severity)
        return
    labels = subject[art.LABELS_KEY]
    labels['severity'][family] = max(severity, labels['severity'].get(family, 0.0))
    labels['quality'] = float(np.clip(labels['quality'] - QUALITY_ONLY[family] * severity,
                                      QUALITY_MIN, QUALITY_MAX))


class TorchioMotion(Simulator):
    """Stock ``tio.Motion``: 1-4 rigid moves, rotations and translations up to 2 + 13 s."""

    name, family, kspace = 'torchio-motion', 'motion', True

    def draw(self, rng, severity):
        moves = int(rng.integers(1, 5))
        limit = 2.0 + 13.0 * severity
        return {'degrees': rng.uniform(-limit, limit, (moves, 3)).tolist(),
                'translation': rng.uniform(-limit, limit, (moves, 3)).tolist(),
                'times': np.sort(rng.uniform(0.1, 0.9, moves)).tolist()}

    def corrupt(self, data, affine, params):
        cls = tio.Motion if params['convention'] == 'real' else _magnitude_of(
            tio.Motion, 'inv_fourier_transform')
        transform = cls(degrees=np.asarray(params['degrees']),
                        translation=np.asarray(params['translation']),
                        times=np.asarray(params['times']), image_interpolation='linear')
        return _finish(_tio(transform, data, affine), params['convention'])


class TorchioGhosting(Simulator):
    """Stock ``tio.Ghosting``: 2-10 ghosts along a random axis, intensity 0.3 + 0.7 s."""

    name, family, kspace = 'torchio-ghosting', 'ghosting', True

    def draw(self, rng, severity):
        return {'num_ghosts': int(rng.integers(2, 11)), 'axis': int(rng.integers(0, 3)),
                'restore': float(rng.uniform(0.0, 0.05))}

    def corrupt(self, data, affine, params):
        cls = tio.Ghosting if params['convention'] == 'real' else _magnitude_of(
            tio.Ghosting, 'inv_fourier_transform')
        transform = cls(num_ghosts=params['num_ghosts'], axis=params['axis'],
                        intensity=0.3 + 0.7 * params['severity'], restore=params['restore'])
        return _finish(_tio(transform, data, affine), params['convention'])


class TorchioSpike(Simulator):
    """Stock ``tio.Spike``: 1-3 spikes anywhere in k-space, intensity 0.3 + 1.7 s."""

    name, family, kspace = 'torchio-spike', 'spike', True

    def draw(self, rng, severity):
        return {'positions': rng.uniform(0.0, 1.0, (int(rng.integers(1, 4)), 3)).tolist()}

    def corrupt(self, data, affine, params):
        cls = tio.Spike if params['convention'] == 'real' else _magnitude_of(
            tio.Spike, 'inv_fourier_transform')
        transform = cls(spikes_positions=np.asarray(params['positions']),
                        intensity=0.3 + 1.7 * params['severity'])
        return _finish(_tio(transform, data, affine), params['convention'])


class TorchioBiasField(Simulator):
    """Stock ``tio.BiasField`` of order 3, coefficients uniform within +-(0.15 + 0.6 s)."""

    name, family = 'torchio-bias', 'bias'

    def draw(self, rng, severity):
        limit = 0.15 + 0.6 * severity
        return {'coefficients': rng.uniform(-limit, limit, 20).tolist()}  # i + j + k <= 3

    def corrupt(self, data, affine, params):
        transform = tio.BiasField(coefficients=params['coefficients'], order=3)
        return _finish(_tio(transform, data, affine), 'real')


class TorchioBlur(Simulator):
    """Stock ``tio.Blur``: Gaussian std 0.4 + 2.4 s mm per axis (each axis 0.7-1.3 of it)."""

    name, family = 'torchio-blur', 'blur'

    def draw(self, rng, severity):
        return {'std': ((0.4 + 2.4 * severity) * rng.uniform(0.7, 1.3, 3)).tolist()}

    def corrupt(self, data, affine, params):
        return _finish(_tio(tio.Blur(std=tuple(params['std'])), data, affine), 'real')


class TorchioNoise(Simulator):
    """Stock ``tio.Noise`` (Gaussian), std (0.02 + 0.1 s) of the 99th percentile, seeded."""

    name, family, kspace = 'torchio-noise', 'noise', True

    def draw(self, rng, severity):
        return {'seed': int(rng.integers(0, 2**31 - 1))}

    def corrupt(self, data, affine, params):
        std = (0.02 + 0.1 * params['severity']) * _reference(data)
        out = _tio(tio.Noise(mean=0.0, std=std, seed=params['seed']), data, affine)
        return _finish(out, params['convention'])


class MonaiSpike(Simulator):
    """MONAI ``KSpaceSpikeNoise``: 1-2 spikes off the k-space centre, log-intensity the
    centre's log plus (-4.5 + 2.5 s): stripes of about 1.1 % (s 0) to 13.5 % (s 1) of the
    mean intensity."""

    name, family, kspace = 'monai-spike', 'spike', True

    def draw(self, rng, severity):
        return {'offsets': rng.uniform(0.05, 0.4, (int(rng.integers(1, 3)), 3)).tolist(),
                'signs': rng.choice([-1, 1], (2, 3)).tolist()}

    def corrupt(self, data, affine, params):
        from monai.transforms import KSpaceSpikeNoise

        shape = np.array(data.shape)
        locs = []
        for offset, sign in zip(params['offsets'], params['signs'], strict=False):
            loc = shape // 2 + np.asarray(sign) * np.floor(np.asarray(offset) * shape / 2)
            locs.append(tuple(int(v) for v in np.clip(loc, 0, shape - 1)))
        dc = float(np.log(np.abs(np.fft.fftn(data).flat[0]) + 1e-10))
        level = dc - 4.5 + 2.5 * params['severity']
        cls = KSpaceSpikeNoise if params['convention'] == 'real' else _magnitude_of(
            KSpaceSpikeNoise, 'inv_shift_fourier')
        transform = cls(loc=tuple(locs), k_intensity=tuple(level for _ in locs))
        return _finish(transform(torch.from_numpy(data)[None])[0], params['convention'])


class MonaiGibbs(Simulator):
    """MONAI ``GibbsNoise`` (k-space truncation: ringing and blur), alpha 0.35 + 0.55 s."""

    name, family, kspace = 'monai-gibbs', 'gibbs', True

    def corrupt(self, data, affine, params):
        from monai.transforms import GibbsNoise

        cls = GibbsNoise if params['convention'] == 'real' else _magnitude_of(
            GibbsNoise, 'inv_shift_fourier')
        out = cls(alpha=0.35 + 0.55 * params['severity'])(torch.from_numpy(data)[None])[0]
        return _finish(out, params['convention'])


class MonaiRician(Simulator):
    """MONAI ``RandRicianNoise``, std (0.02 + 0.1 s) of the 99th percentile, its own RNG
    seeded by a recorded draw."""

    name, family = 'monai-rician', 'noise'

    def draw(self, rng, severity):
        return {'seed': int(rng.integers(0, 2**31 - 1))}

    def corrupt(self, data, affine, params):
        from monai.transforms import RandRicianNoise

        std = (0.02 + 0.1 * params['severity']) * _reference(data)
        transform = RandRicianNoise(prob=1.0, std=std, sample_std=False)
        transform.set_random_state(params['seed'])
        return _finish(transform(torch.from_numpy(data)[None])[0], 'real')


class MonaiBiasField(Simulator):
    """MONAI ``RandBiasField``'s Legendre field of degree 3 with recorded coefficients,
    each uniform within +-(0.2 + 0.6 s)."""

    name, family = 'monai-bias', 'bias'

    def draw(self, rng, severity):
        limit = 0.2 + 0.6 * severity
        return {'coefficients': rng.uniform(-limit, limit, 20).tolist()}

    def corrupt(self, data, affine, params):
        from monai.transforms import RandBiasField

        transform = RandBiasField(degree=3, prob=1.0)
        field = transform._generate_random_field(data.shape, 3, params['coefficients'])
        return (data * np.exp(field)).astype(np.float32)


class SegmentMotion(Simulator):
    """Own motion model: the head moves (rigid) between k-space segments.

    The phase-encoding axis is cut into 3-8 contiguous line blocks; the block holding the
    k-space centre keeps the reference position, each other block is acquired with the head
    rotated and translated (up to 1 + 9 s degrees and mm). Each moved volume is resampled
    (linear) and its Fourier transform gives that block's lines; the assembled k-space is
    reconstructed in the drawn convention.
    """

    name, family, kspace = 'segment-motion', 'motion', True

    def draw(self, rng, severity):
        count = int(rng.integers(3, 9))
        limit = 1.0 + 9.0 * severity
        return {'axis': int(rng.integers(0, 3)),
                'cuts': np.sort(rng.uniform(0.05, 0.95, count - 1)).tolist(),
                'degrees': rng.uniform(-limit, limit, (count, 3)).tolist(),
                'translation': rng.uniform(-limit, limit, (count, 3)).tolist()}

    @staticmethod
    def moved(data: np.ndarray, spacing: np.ndarray, degrees, translation) -> np.ndarray:
        """``data`` after a rigid move about its centre (degrees about x, y, z; mm)."""
        from scipy.ndimage import affine_transform
        from scipy.spatial.transform import Rotation

        rotation = Rotation.from_euler('xyz', degrees, degrees=True).as_matrix()
        scale = np.diag(spacing)
        matrix = np.linalg.inv(scale) @ rotation.T @ scale  # output voxel -> input voxel
        centre = (np.array(data.shape) - 1) / 2
        offset = centre - matrix @ (centre + np.asarray(translation) / spacing)
        return affine_transform(data, matrix, offset, order=1, mode='constant')

    def corrupt(self, data, affine, params):
        spacing = np.sqrt((np.asarray(affine)[:3, :3] ** 2).sum(axis=0))
        axis, n = params['axis'], data.shape[params['axis']]
        bounds = [0, *(int(round(c * n)) for c in params['cuts']), n]
        spectrum = np.fft.fftshift(np.fft.fftn(data))
        centre = n // 2
        for block, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
            if hi <= lo or lo <= centre < hi:
                continue  # the centre's block is the reference position
            moved = self.moved(data, spacing, params['degrees'][block],
                               params['translation'][block])
            lines = [slice(None)] * 3
            lines[axis] = slice(lo, hi)
            spectrum[tuple(lines)] = np.fft.fftshift(np.fft.fftn(moved))[tuple(lines)]
        return reconstruct(np.fft.ifftn(np.fft.ifftshift(spectrum)), params['convention'])


SIMULATORS: dict[str, type[Simulator]] = {cls.name: cls for cls in (
    TorchioMotion, TorchioGhosting, TorchioSpike, TorchioBiasField, TorchioBlur, TorchioNoise,
    MonaiSpike, MonaiGibbs, MonaiRician, MonaiBiasField, SegmentMotion)}
#: Implementation (group) of each simulator, for leave-one-simulator-out.
IMPLEMENTATION = {name: name.split('-')[0] for name in SIMULATORS}
#: Every implementation a leave-one-simulator-out group can name ('own': ``artifacts.py``).
IMPLEMENTATIONS = ('own', *sorted(set(IMPLEMENTATION.values())))


def mixed_pipeline(hold_out: tuple[str, ...] = (), probability: float = 0.2,
                   severity: tuple[float, float] = (0.25, 1.0),
                   post_processing: float = 0.5) -> list[tio.Transform]:
    """Training transforms for leave-one-simulator-out: the project's own transforms and every
    simulator whose implementation (``torchio``, ``monai``, ``segment``; ``own`` for the
    project's) is not in ``hold_out``, each applied with ``probability``, in physical order
    (coil gain, k-space corruptions, FOV, noise, blur), then post-processing with probability
    ``post_processing``. Apply with ``artifacts.apply_artifacts``."""
    unknown = set(hold_out) - set(IMPLEMENTATIONS)
    if unknown:
        raise ValueError(f'unknown implementation {sorted(unknown)[0]!r}')
    order = ('bias', 'motion', 'ghosting', 'spike', 'wraparound', 'coverage', 'noise', 'blur',
             'gibbs')
    out: list[tuple[int, tio.Transform]] = []
    if 'own' not in hold_out:
        out += [(order.index(t.family), t) for t in art.artifact_pipeline(
            probability=probability, severity=severity)]
    for name, cls in SIMULATORS.items():
        if IMPLEMENTATION[name] not in hold_out:
            out.append((order.index(cls.family), cls(severity=severity, p=probability)))
    transforms = [t for _, t in sorted(out, key=lambda pair: pair[0])]
    if post_processing:
        transforms.append(RandomPostProcessing(p=post_processing))
    return transforms


def replay(subject: tio.Subject, params: list[Params],
           families: tuple[str, ...] | list[str] = art.FAMILY_NAMES) -> tio.Subject:
    """Apply recorded draws (``labels['artifacts']``) of simulators, the project's own
    transforms and :class:`RandomPostProcessing` to a clean subject, in order."""
    subject[art.LABELS_KEY] = art.new_labels(families)
    for entry in params:
        if 'simulator' in entry:
            subject = SIMULATORS[entry['simulator']]().apply_params(subject, entry)
        elif entry.get('family') == 'postprocessing':
            subject = RandomPostProcessing().apply_params(subject, entry)
        else:
            subject = art.TRANSFORMS[entry['family']]().apply_params(subject, entry)
    return subject


# ----------------------------------------------------------------------- post-processing

class RandomPostProcessing(tio.Transform):
    """What pipelines do to an image after reconstruction; labels are left as they are.

    Drawn per application: background (kept, zeroed below a threshold, or masked outside the
    dilated head), defacing (a face wedge zeroed), skull-stripping (the subject's ``brain``
    label map, when it has one), resampling (0.7-1.5x the voxel size), intensity scaling
    (x 10^U(-1, 3)) and storage (float, int16 or uint8 quantisation).

    Args:
        p_background: probability of zeroing or masking the background.
        p_deface: probability of defacing.
        p_strip: probability of skull-stripping (needs a ``brain`` label map).
        p_resample: probability of resampling.
    """

    def __init__(self, p_background: float = 0.4, p_deface: float = 0.25,
                 p_strip: float = 0.15, p_resample: float = 0.3, **kwargs: Any):
        super().__init__(**kwargs)
        self.odds = {'background': p_background, 'deface': p_deface, 'strip': p_strip,
                     'resample': p_resample}
        self.args_names = []

    def get_params(self, rng: np.random.Generator) -> Params:
        """Every draw of one application."""
        odds = self.odds
        background = 'keep'
        if rng.random() < odds['background']:
            background = str(rng.choice(['zero', 'mask']))
        return {'family': 'postprocessing', 'background': background,
                'deface': bool(rng.random() < odds['deface']),
                'deface_depth': float(rng.uniform(0.25, 0.4)),
                'strip': bool(rng.random() < odds['strip']),
                'resample': float(rng.uniform(0.7, 1.5)) if rng.random() < odds['resample']
                else None,
                'scale': float(10 ** rng.uniform(-1, 3)),
                'storage': str(rng.choice(['float', 'int16', 'uint8']))}

    def apply_transform(self, subject: tio.Subject) -> tio.Subject:
        return self.apply_params(subject, self.get_params(art._rng()))

    def apply_params(self, subject: tio.Subject, params: Params) -> tio.Subject:
        """Post-process with ``params``: deterministic."""
        image = subject[art.IMAGE_KEY]
        data = image.data[0].numpy().astype(np.float32)
        affine = np.asarray(image.affine)
        brain = subject['brain'].data[0].numpy() > 0 if 'brain' in subject else None
        if params['strip'] and brain is not None and brain.shape == data.shape:
            data = np.where(brain, data, 0).astype(np.float32)
        if params['deface']:
            data = deface(data, params['deface_depth'])
        if params['background'] != 'keep':
            data = clear_background(data, params['background'])
        if params['resample']:
            spacing = np.sqrt((affine[:3, :3] ** 2).sum(axis=0)) * params['resample']
            out = tio.Resample(tuple(float(s) for s in spacing))(
                tio.ScalarImage(tensor=torch.from_numpy(data)[None], affine=affine))
            data, affine = np.clip(out.data[0].numpy(), 0, None), np.asarray(out.affine)
        data = data * np.float32(params['scale'])
        if params['storage'] == 'int16':
            data = np.round(np.clip(data, -32768, 32767)).astype(np.int16)
        elif params['storage'] == 'uint8':
            top = float(data.max()) or 1.0
            data = np.round(np.clip(data, 0, None) / top * 255).astype(np.uint8)
        image.set_data(torch.from_numpy(data.astype(np.float32))[None])
        image.affine = affine
        if art.LABELS_KEY not in subject:
            subject[art.LABELS_KEY] = art.new_labels()
        subject[art.LABELS_KEY].setdefault('artifacts', []).append(params)
        return subject


def clear_background(data: np.ndarray, how: str) -> np.ndarray:
    """``zero``: voxels below the foreground threshold set to 0; ``mask``: everything outside
    the dilated, hole-filled head set to 0 (as a masked export)."""
    from scipy import ndimage

    head = data > art.foreground_threshold(data)
    if how == 'zero':
        return np.where(head, data, 0).astype(np.float32)
    head = ndimage.binary_fill_holes(ndimage.binary_dilation(head, iterations=3))
    return np.where(head, data, 0).astype(np.float32)


def deface(data: np.ndarray, depth: float) -> np.ndarray:
    """Zero a wedge at the face (anterior and inferior in RAS voxel order): the voxels whose
    height above the head's bottom is under ``depth`` of its extent, scaled down towards the
    back, so the cut slants as defacing tools cut."""
    head = data > art.foreground_threshold(data)
    if not head.any():
        return data
    ys = np.flatnonzero(head.any(axis=(0, 2)))
    zs = np.flatnonzero(head.any(axis=(0, 1)))
    y = (np.arange(data.shape[1]) - ys[0]) / max(ys[-1] - ys[0], 1)  # 0 back .. 1 front
    z = (np.arange(data.shape[2]) - zs[0]) / max(zs[-1] - zs[0], 1)  # 0 bottom .. 1 top
    cut = z[None, :] < depth * 2 * (y[:, None] - 0.5)  # grows from mid-head to the face
    return np.where(cut[None], 0, data).astype(np.float32)


# ----------------------------------------------------------------------- synthetic heads

@functools.lru_cache(maxsize=2)
def _labels_maps(resolution: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """MNI152 tissue labels (nilearn, offline): 0 air, 1 CSF, 2 GM, 3 WM, 4 dark non-brain
    (skull), 5 bright non-brain (scalp, fat) and the affine."""
    from nilearn import datasets

    t1 = datasets.load_mni152_template(resolution=resolution)
    shape_affine = t1.affine
    t1 = np.asarray(t1.get_fdata(), dtype=np.float32)
    gm = datasets.load_mni152_gm_template(resolution=resolution).get_fdata()
    wm = datasets.load_mni152_wm_template(resolution=resolution).get_fdata()
    brain = datasets.load_mni152_brain_mask(resolution=resolution).get_fdata() > 0
    csf = np.clip(brain - gm - wm, 0, 1)
    labels = np.zeros(t1.shape, dtype=np.uint8)
    head = t1 > 0.08 * np.percentile(t1, 99)
    non_brain = head & ~brain
    bright = t1 > np.percentile(t1[non_brain], 50) if non_brain.any() else head
    labels[non_brain & ~bright] = 4
    labels[non_brain & bright] = 5
    tissue = np.stack([csf, gm, wm])
    labels[brain] = 1 + np.argmax(tissue[:, brain], axis=0)
    return labels, shape_affine


class SyntheticHead:
    """A new head from the MNI152 tissue labels (SynthSeg-style, Billot et al. 2023).

    Per label a Gaussian intensity (mean uniform in 0..1, so any contrast, std up to 12 % of
    it), a little partial-volume blur, then a strong affine (scales 0.8-1.2, 20 degrees,
    15 mm) and elastic deformation (7 control points, up to 12 mm), a voxel size of
    0.9-2.2 mm (a third of them with 3-5 mm slices along one axis) and a field of view with
    random margins. Every draw is in :meth:`get_params`; :meth:`make` is deterministic.

    Args:
        resolution: resolution (mm) of the nilearn template read (1 or 2).
        t1_like: paint T1-like contrasts only (WM > GM > CSF), the model's domain.
    """

    def __init__(self, resolution: int = 2, t1_like: bool = True):
        self.resolution = resolution
        self.t1_like = t1_like

    def get_params(self, rng: np.random.Generator) -> Params:
        """Every random draw of one head."""
        if self.t1_like:
            csf, gm, wm = np.sort(rng.uniform(0.05, 1.0, 3))
            means = [0.0, csf, gm, wm, rng.uniform(0.0, 0.3), rng.uniform(0.4, 1.0)]
        else:
            means = [0.0, *rng.uniform(0.0, 1.0, 5)]
        spacing = np.full(3, rng.uniform(0.9, 2.2))
        if rng.random() < 0.33:
            spacing[int(rng.integers(0, 3))] = rng.uniform(3.0, 5.0)
        return {'means': [float(m) for m in means],
                'stds': rng.uniform(0.01, 0.12, 6).tolist(),
                'noise_seed': int(rng.integers(0, 2**31 - 1)),
                'blur': float(rng.uniform(0.3, 1.0)),
                'scales': rng.uniform(0.8, 1.2, 3).tolist(),
                'degrees': rng.uniform(-20, 20, 3).tolist(),
                'translation': rng.uniform(-15, 15, 3).tolist(),
                'control_points': rng.uniform(-1, 1, (7, 7, 7, 3)).round(4).tolist(),
                'max_displacement': float(rng.uniform(4, 12)),
                'spacing': spacing.tolist(),
                'margins': rng.uniform(3, 30, (3, 2)).tolist()}

    def make(self, params: Params) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The head ``(image, brain mask, affine)`` of drawn ``params``, float32 in 0..~1."""
        from scipy import ndimage

        labels, affine = _labels_maps(self.resolution)  # cached: read-only
        noise = np.random.default_rng(params['noise_seed'])
        means = np.asarray(params['means'], dtype=np.float32)
        stds = np.asarray(params['stds'], dtype=np.float32) * np.maximum(means, 0.05)
        image = means[labels] + stds[labels] * noise.standard_normal(labels.shape,
                                                                     dtype=np.float32)
        image = ndimage.gaussian_filter(np.clip(image, 0, None), params['blur'])
        subject = tio.Subject(image=tio.ScalarImage(tensor=torch.from_numpy(image)[None],
                                                    affine=affine),
                              brain=tio.LabelMap(tensor=torch.from_numpy(
                                  np.isin(labels, (1, 2, 3)).astype(np.uint8))[None],
                                  affine=affine))
        points = np.asarray(params['control_points'], dtype=np.float64)
        points *= params['max_displacement'] / max(float(np.abs(points).max()), 1e-6)
        transform = tio.Compose([
            tio.Resample(tuple(params['spacing'])),
            tio.Affine(scales=params['scales'], degrees=params['degrees'],
                       translation=params['translation'], default_pad_value=0),
            tio.ElasticDeformation(control_points=points, max_displacement=np.full(3, params[
                'max_displacement']), image_interpolation='linear'),
        ])
        subject = transform(subject)
        data = np.clip(subject['image'].data[0].numpy(), 0, None)
        brain = subject['brain'].data[0].numpy() > 0
        data, brain = self._fov(data, brain, np.asarray(params['spacing']), params['margins'])
        return data.astype(np.float32), brain, np.asarray(subject['image'].affine)

    @staticmethod
    def _fov(data, brain, spacing, margins):
        """Crop (or zero-pad) to the head plus each side's margin in mm."""
        head = data > art.foreground_threshold(data)
        for axis in range(3):
            other = tuple(a for a in range(3) if a != axis)
            idx = np.flatnonzero(head.any(axis=other))
            if idx.size == 0:
                continue
            lo = idx[0] - int(margins[axis][0] / spacing[axis])
            hi = idx[-1] + 1 + int(margins[axis][1] / spacing[axis])
            pad = [(0, 0)] * 3
            pad[axis] = (max(0, -lo), max(0, hi - data.shape[axis]))
            sl = [slice(None)] * 3
            sl[axis] = slice(max(lo, 0), min(hi, data.shape[axis]))
            data, brain, head = (np.pad(a[tuple(sl)], pad) for a in (data, brain, head))
        return data, brain
