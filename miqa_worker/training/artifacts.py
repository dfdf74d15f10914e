"""Simulated MRI artifacts as TorchIO transforms that also update the labels of the subject.

As in TorchIO's ``Random*`` transforms, every random draw of a transform happens in its
``get_params`` (the severity ``s`` in its range, default 0.25..1, then the family's own draws);
``apply_params`` then corrupts the image deterministically, sets its indicator (where it has
one), stores ``s`` under its family name, lowers the overall quality by ``max_penalty * s``
(quality starts at 10, never below 0) and appends the drawn parameters to the labels
(``labels['artifacts']``), so that :func:`replay` remakes the same volume bit for bit.

Family -> indicator (``constants.ARTIFACT_KEYS``) and quality penalty at severity 1:

============  ====================  =======  ==============================================
family        indicator             penalty  what the transform does
============  ====================  =======  ==============================================
ghosting      ghosting_motion       5        ``tio.Ghosting``: 2-8 ghosts along a random axis
motion        ghosting_motion       6        ``tio.Motion``: 2-4 rigid moves during the scan
bias          inhomogeneity         4        smooth cubic log-polynomial gain over the head
spike         ghosting_motion       5        ``tio.Spike``: 1-3 k-space spikes (stripes)
noise         (none)                5        Rician noise; no indicator fits: quality only
wraparound    wraparound            4        phase FOV smaller than the head, folded over
coverage      incomplete_coverage   5        FOV cut through the head at one end
============  ====================  =======  ==============================================

Spike maps to ``ghosting_motion``: like ghosts and motion it is corrupt k-space data that puts a
structured pattern (herringbone stripes) over the whole field of view, and reviewers flag it
under the same heading. Indicators no transform can set (normal_variant, lesion, misalignment,
susceptibility_metal, flow_artifact, truncation) stay unknown and are masked out of the loss; a
truncation transform was tried and not kept (docs/experiments.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torchio as tio

from ..constants import ARTIFACT_KEYS, QUALITY_MAX, QUALITY_MIN
from .config import DEFAULT_PROBABILITY, DEFAULT_SEVERITY
from .config import FAMILIES as FAMILY_ORDER

LABELS_KEY = 'miqa_labels'
IMAGE_KEY = 'image'


@dataclass(frozen=True)
class Family:
    """One simulated artifact family: its indicator (or None) and quality penalty at s=1."""

    name: str
    indicator: str | None
    max_penalty: float


FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family('ghosting', 'ghosting_motion', 5.0),
    Family('motion', 'ghosting_motion', 6.0),
    Family('bias', 'inhomogeneity', 4.0),
    Family('spike', 'ghosting_motion', 5.0),
    Family('noise', None, 5.0),
    Family('wraparound', 'wraparound', 4.0),
    Family('coverage', 'incomplete_coverage', 5.0),
)}
FAMILY_NAMES: tuple[str, ...] = tuple(FAMILIES)
if FAMILY_NAMES != FAMILY_ORDER:  # config.FAMILIES names them for code without torch
    raise ImportError('config.FAMILIES and artifacts.FAMILIES disagree')
#: What ``miqa-train generate`` simulates unless told otherwise: every family.
DEFAULT_FAMILIES: tuple[str, ...] = FAMILY_NAMES


def new_labels(families: tuple[str, ...] | list[str] = FAMILY_NAMES) -> dict:
    """Labels of a clean volume: quality 10, simulated indicators false, the rest unknown."""
    indicators: dict[str, bool | None] = {key: None for key in ARTIFACT_KEYS}
    for name in families:
        if FAMILIES[name].indicator is not None:
            indicators[FAMILIES[name].indicator] = False
    return {'quality': QUALITY_MAX, 'indicators': indicators,
            'severity': {name: 0.0 for name in families}, 'local': {}, 'artifacts': []}


def _rng() -> np.random.Generator:
    """A numpy generator seeded from torch's global RNG, so torch.manual_seed fixes everything."""
    return np.random.default_rng(int(torch.randint(0, 2**31 - 1, (1,)).item()))


def foreground_threshold(data: np.ndarray) -> float:
    """The intensity above which a voxel counts as head (foreground): 10% of the 99th percentile."""
    return 0.1 * float(np.percentile(data, 99))


def foreground_extent(data: np.ndarray, axis: int) -> tuple[int, int]:
    """First and last index (inclusive) along ``axis`` holding foreground."""
    threshold = foreground_threshold(data)
    other = tuple(a for a in range(3) if a != axis)
    profile = (data > threshold).any(axis=other)
    idx = np.flatnonzero(profile)
    if idx.size == 0:
        return 0, data.shape[axis] - 1
    return int(idx[0]), int(idx[-1])


def _shift_affine(affine: np.ndarray, axis: int, start: int) -> np.ndarray:
    """Affine of a crop that starts at voxel ``start`` along ``axis``."""
    out = np.array(affine, dtype=np.float64, copy=True)
    offset = np.zeros(3)
    offset[axis] = start
    out[:3, 3] = affine[:3, :3] @ offset + affine[:3, 3]
    return out


Params = dict[str, Any]
Corrupted = tuple[np.ndarray, np.ndarray, dict | None]


class ArtifactTransform(tio.Transform):
    """Base: probability and severity range, the draws (:meth:`get_params`) and the labels.

    Args:
        p: probability that the transform is applied (0.1..0.5).
        severity: range of the severity ``s`` drawn uniformly, within (0, 1].
    """

    family: str = ''

    def __init__(self, p: float = DEFAULT_PROBABILITY,
                 severity: tuple[float, float] = DEFAULT_SEVERITY, **kwargs: Any):
        if not 0.1 <= p <= 0.5:
            raise ValueError(f'probability must be within 0.1..0.5, got {p}')
        low, high = severity
        if not 0.0 < low <= high <= 1.0:
            raise ValueError(f'severity range must be within (0, 1], got {severity}')
        super().__init__(p=p, **kwargs)
        self.severity_range = (float(low), float(high))
        self.args_names = ['severity_range']

    def get_params(self, rng: np.random.Generator) -> Params:
        """Every random draw of one application: the severity, then the family's own."""
        low, high = self.severity_range
        return {'family': self.family, 'severity': float(rng.uniform(low, high)),
                **self.draw(rng)}

    def draw(self, rng: np.random.Generator) -> Params:
        """The family's own draws (JSON-ready); none by default."""
        return {}

    def corrupt(self, data: np.ndarray, affine: np.ndarray, params: Params) -> Corrupted:
        """The corrupted volume, its (possibly new) affine and where a local artifact is."""
        raise NotImplementedError

    def apply_transform(self, subject: tio.Subject) -> tio.Subject:
        return self.apply_params(subject, self.get_params(_rng()))

    def apply_params(self, subject: tio.Subject, params: Params) -> tio.Subject:
        """Corrupt the image with drawn ``params`` and update the labels: deterministic."""
        image = subject[IMAGE_KEY]
        data = image.data[0].numpy().astype(np.float32)
        out, affine, local = self.corrupt(data, np.asarray(image.affine), params)
        image.set_data(torch.from_numpy(np.ascontiguousarray(out, dtype=np.float32))[None])
        image.affine = affine
        record_artifact(subject, self.family, params['severity'])
        labels = subject[LABELS_KEY]
        if local is not None:
            labels.setdefault('local', {})[self.family] = local
        labels.setdefault('artifacts', []).append(params)
        return subject


def record_artifact(subject: tio.Subject, family: str, severity: float) -> None:
    """Set the family's indicator and severity and lower the quality by its penalty."""
    if LABELS_KEY not in subject:
        subject[LABELS_KEY] = new_labels()
    labels = subject[LABELS_KEY]
    spec = FAMILIES[family]
    labels['severity'][family] = max(severity, labels['severity'].get(family, 0.0))
    if spec.indicator is not None:
        labels['indicators'][spec.indicator] = True
    labels['quality'] = float(np.clip(labels['quality'] - spec.max_penalty * severity,
                                      QUALITY_MIN, QUALITY_MAX))


def _torchio_apply(transform: tio.Transform, data: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Run a deterministic TorchIO transform on one 3D array."""
    image = tio.ScalarImage(tensor=torch.from_numpy(data)[None], affine=affine)
    return transform(image).data[0].numpy()


class RandomGhostingArtifact(ArtifactTransform):
    """Ghosts along a phase-encoding axis: 2-8 ghosts, intensity 0.2 + 0.7 s."""

    family = 'ghosting'

    def draw(self, rng):
        return {'num_ghosts': int(rng.integers(2, 9)), 'axis': int(rng.integers(0, 3))}

    def corrupt(self, data, affine, params):
        transform = tio.Ghosting(num_ghosts=params['num_ghosts'], axis=params['axis'],
                                 intensity=0.2 + 0.7 * params['severity'], restore=0.02)
        return _torchio_apply(transform, data, affine), affine, None


class RandomMotionArtifact(ArtifactTransform):
    """2-4 rigid head moves; rotations and translations up to 1.5 + 8.5 s (degrees, mm)."""

    family = 'motion'

    def get_params(self, rng):
        params = super().get_params(rng)
        moves = int(rng.integers(2, 5))
        limit = 1.5 + 8.5 * params['severity']
        params['degrees'] = rng.uniform(-limit, limit, (moves, 3)).tolist()
        params['translation'] = rng.uniform(-limit, limit, (moves, 3)).tolist()
        params['times'] = np.sort(rng.uniform(0.15, 0.85, moves)).tolist()
        return params

    def corrupt(self, data, affine, params):
        transform = tio.Motion(degrees=np.asarray(params['degrees']),
                               translation=np.asarray(params['translation']),
                               times=np.asarray(params['times']),
                               image_interpolation='linear')
        return np.abs(_torchio_apply(transform, data, affine)), affine, None


#: The (i, j, k) powers of the bias polynomial's terms, in the order their weights are drawn.
BIAS_TERMS: tuple[tuple[int, int, int], ...] = tuple(
    (i, j, k) for i in range(4) for j in range(4 - i) for k in range(4 - i - j) if i + j + k)


class RandomBiasFieldArtifact(ArtifactTransform):
    """Smooth gain exp(P(x,y,z)), P a random cubic polynomial dominated by its low orders.

    Scaled over the head, not the box: the 2nd-98th percentile span of P inside the head is
    ``2 a`` with a = 0.25 + 0.35 s, so the brightest tissue is 1.6x (mildest) to 3.3x (worst)
    the gain of the darkest: a shading a reviewer sees, as a real receive-coil bias is.
    """

    family = 'bias'

    def draw(self, rng):
        return {'coefficients': [float(rng.uniform(-1, 1)) for _ in BIAS_TERMS]}

    def corrupt(self, data, affine, params):
        half_span = 0.25 + 0.35 * params['severity']
        axes = [np.linspace(-1, 1, n, dtype=np.float32) for n in data.shape]
        x, y, z = np.meshgrid(*axes, indexing='ij', sparse=True)
        field = np.zeros(data.shape, dtype=np.float32)
        for (i, j, k), value in zip(BIAS_TERMS, params['coefficients'], strict=True):
            weight = value / (i + j + k)  # degree d weighs 1/d: a smooth, broad shading
            field = field + weight * x**i * y**j * z**k
        head = data > foreground_threshold(data)
        inside = field[head] if head.sum() > 100 else field.ravel()
        low, high = np.percentile(inside, [2, 98])
        field = (field - float(low + high) / 2) * (2 * half_span / max(float(high - low), 1e-6))
        field = np.clip(field, -2 * half_span, 2 * half_span)  # no runaway gain in the air
        return data * np.exp(field), affine, None


class RandomSpikeArtifact(ArtifactTransform):
    """1-3 spikes in k-space (herringbone stripes); intensity 0.15 + 0.85 s of the DC term."""

    family = 'spike'

    def draw(self, rng):
        count = int(rng.integers(1, 4))
        return {'positions': rng.uniform(0.1, 0.9, (count, 3)).tolist()}

    def corrupt(self, data, affine, params):
        transform = tio.Spike(spikes_positions=np.asarray(params['positions']),
                              intensity=0.15 + 0.85 * params['severity'])
        return np.abs(_torchio_apply(transform, data, affine)), affine, None


def add_rician_noise(data: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Magnitude of the image plus complex Gaussian noise of standard deviation ``sigma``."""
    real = data + rng.normal(0.0, sigma, data.shape).astype(np.float32)
    imag = rng.normal(0.0, sigma, data.shape).astype(np.float32)
    return np.sqrt(real * real + imag * imag)


class RandomNoiseArtifact(ArtifactTransform):
    """Rician noise, sigma = (0.025 + 0.075 s) * the 99.5th percentile; no indicator.

    The noise field is one draw per voxel: its parameters are the generator state it is
    drawn from (``noise_state``), not the field itself.
    """

    family = 'noise'

    def draw(self, rng):
        return {'noise_state': rng.bit_generator.state}

    def corrupt(self, data, affine, params):
        rng = np.random.Generator(getattr(np.random, params['noise_state']['bit_generator'])())
        rng.bit_generator.state = params['noise_state']
        reference = float(np.percentile(data, 99.5)) or 1.0
        sigma = (0.025 + 0.075 * params['severity']) * reference
        return add_rician_noise(data, sigma, rng), affine, None


class RandomWraparoundArtifact(ArtifactTransform):
    """Phase FOV shorter than the head along x or y by 2 * (0.06 + 0.16 s) of its extent.

    Records which slices received folded-in tissue so that tiles can be labelled.
    """

    family = 'wraparound'

    def draw(self, rng):
        return {'axis': int(rng.integers(0, 2))}

    def corrupt(self, data, affine, params):
        axis = params['axis']
        first, last = foreground_extent(data, axis)
        extent = last - first + 1
        cut = max(2, int(round((0.06 + 0.16 * params['severity']) * extent)))
        fov = max(8, extent - 2 * cut)
        start = first + cut
        index = (np.arange(data.shape[axis]) - start) % fov
        moved = np.moveaxis(data, axis, 0)
        out = np.zeros((fov,) + moved.shape[1:], dtype=np.float32)
        np.add.at(out, index, moved)
        # where folded-in tissue landed: slices whose wrapped part is brighter than 10% of p99
        inside = np.zeros_like(out)
        stop = min(start + fov, moved.shape[0])
        inside[:stop - start] = moved[start:stop]
        folded = (out - inside).reshape(fov, -1)
        profile = (folded > foreground_threshold(data)).mean(axis=1) > 0.002
        return (np.moveaxis(out, 0, axis), _shift_affine(affine, axis, start),
                {'axis': axis, 'profile': profile.tolist()})


#: The faces a cut field of view may end at, (axis, high end), and how often: left, right,
#: front, back or the vertex; never the bottom (whole-head scans end in the neck anyway, so
#: a cut there need not miss any brain).
COVERAGE_FACES = ((0, False), (0, True), (1, False), (1, True), (2, True))
COVERAGE_ODDS = (0.1, 0.1, 0.15, 0.15, 0.5)


class RandomCoverageArtifact(ArtifactTransform):
    """The FOV ends inside the head: (0.08 + 0.27 s) of its extent cut at one end (not the
    inferior one). Records the cut face so that tiles touching it can be labelled."""

    family = 'coverage'

    def draw(self, rng):
        return {'face': int(rng.choice(len(COVERAGE_FACES), p=list(COVERAGE_ODDS)))}

    @staticmethod
    def crop(data: np.ndarray, params: Params) -> tuple[int, int, int]:
        """The axis and the [start, stop) range of the slices the cut keeps."""
        axis, high = COVERAGE_FACES[params['face']]
        first, last = foreground_extent(data, axis)
        cut = max(2, int(round((0.08 + 0.27 * params['severity']) * (last - first + 1))))
        if high:
            return axis, 0, last + 1 - cut
        return axis, first + cut, data.shape[axis]

    def corrupt(self, data, affine, params):
        axis, start, stop = self.crop(data, params)
        out = np.moveaxis(data, axis, 0)[start:stop]
        side = 'high' if COVERAGE_FACES[params['face']][1] else 'low'
        return (np.moveaxis(out, 0, axis).copy(), _shift_affine(affine, axis, start),
                {'axis': axis, 'side': side})

    def apply_params(self, subject, params):
        before = subject[LABELS_KEY].get('local', {}).get('wraparound') if (
            LABELS_KEY in subject) else None
        axis, lo, hi = self.crop(subject[IMAGE_KEY].data[0].numpy().astype(np.float32), params)
        subject = super().apply_params(subject, params)
        if before is not None and before['axis'] == axis:  # the wrap profile follows the crop
            subject[LABELS_KEY]['local']['wraparound'] = {
                'axis': before['axis'], 'profile': before['profile'][lo:hi]}
        return subject


TRANSFORMS: dict[str, type[ArtifactTransform]] = {
    'bias': RandomBiasFieldArtifact,
    'motion': RandomMotionArtifact,
    'ghosting': RandomGhostingArtifact,
    'spike': RandomSpikeArtifact,
    'wraparound': RandomWraparoundArtifact,
    'coverage': RandomCoverageArtifact,
    'noise': RandomNoiseArtifact,
}  # in the order they are applied: coil gain, k-space corruptions, FOV, thermal noise


def artifact_pipeline(families: tuple[str, ...] | list[str] = FAMILY_NAMES,
                      probability: float | dict[str, float] = DEFAULT_PROBABILITY,
                      severity: tuple[float, float] | dict[str, tuple[float, float]]
                      = DEFAULT_SEVERITY) -> list[ArtifactTransform]:
    """The artifact transforms for ``families`` in physical order, with their settings."""
    out = []
    for name, cls in TRANSFORMS.items():
        if name not in families:
            continue
        p = probability[name] if isinstance(probability, dict) else probability
        sev = severity[name] if isinstance(severity, dict) else severity
        out.append(cls(p=p, severity=sev))
    return out


def apply_artifacts(subject: tio.Subject, transforms: list[ArtifactTransform],
                    families: tuple[str, ...] | list[str] = FAMILY_NAMES) -> tio.Subject:
    """Initialise clean labels for ``families`` and run the transforms in order."""
    subject[LABELS_KEY] = new_labels(families)
    for transform in transforms:
        subject = transform(subject)
    return subject


def replay(subject: tio.Subject, params: list[Params],
           families: tuple[str, ...] | list[str] = FAMILY_NAMES) -> tio.Subject:
    """Apply recorded draws (``labels['artifacts']`` of an earlier run) to a clean subject:
    the same volume and labels, bit for bit, without drawing anything."""
    subject[LABELS_KEY] = new_labels(families)
    for entry in params:
        subject = TRANSFORMS[entry['family']]().apply_params(subject, entry)
    return subject
