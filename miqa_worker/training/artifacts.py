"""Simulated MRI artifacts as TorchIO transforms that also update the labels of the subject.

Every transform draws a severity ``s`` in its configured range (default 0.25..1), corrupts the
image, sets its indicator to true (where it has one), stores ``s`` under its family name and
lowers the overall quality by ``max_penalty * s`` (quality starts at 10, never below 0).

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
truncation    truncation            4        zero-filled central k-space (Gibbs ringing)
============  ====================  =======  ==============================================

Spike maps to ``ghosting_motion``: like ghosts and motion it is corrupt k-space data that puts a
structured pattern (herringbone stripes) over the whole field of view, and reviewers flag it
under the same heading; it is not truncation (that is a resolution limit at sharp edges).
Indicators no transform can set (normal_variant, lesion, misalignment, susceptibility_metal,
flow_artifact) stay unknown and are masked out of the loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torchio as tio

from ..constants import ARTIFACT_KEYS, QUALITY_MAX, QUALITY_MIN

LABELS_KEY = 'miqa_labels'
IMAGE_KEY = 'image'
DEFAULT_SEVERITY = (0.25, 1.0)
DEFAULT_PROBABILITY = 0.2


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
    Family('truncation', 'truncation', 4.0),
)}
FAMILY_NAMES: tuple[str, ...] = tuple(FAMILIES)
# What ``miqa-train generate`` simulates unless told otherwise. Truncation is left out: zero-
# filled k-space looks like the thick-slice and low-resolution acquisitions the generator
# already makes (unlabelled, as they are normal), so its label contradicts them; the shipped
# model 0.2.0 reached only ROC AUC 0.52 on it while its penalty blurred the quality target.
DEFAULT_FAMILIES: tuple[str, ...] = tuple(f for f in FAMILY_NAMES if f != 'truncation')


def new_labels(families: tuple[str, ...] | list[str] = FAMILY_NAMES) -> dict:
    """Labels of a clean volume: quality 10, simulated indicators false, the rest unknown."""
    indicators: dict[str, bool | None] = {key: None for key in ARTIFACT_KEYS}
    for name in families:
        if FAMILIES[name].indicator is not None:
            indicators[FAMILIES[name].indicator] = False
    return {'quality': QUALITY_MAX, 'indicators': indicators,
            'severity': {name: 0.0 for name in families}, 'local': {}}


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


class ArtifactTransform(tio.Transform):
    """Base: probability ``p`` (0.1..0.5), severity range, and the label bookkeeping."""

    family: str = ''

    def __init__(self, p: float = DEFAULT_PROBABILITY,
                 severity: tuple[float, float] = DEFAULT_SEVERITY, **kwargs):
        if not 0.1 <= p <= 0.5:
            raise ValueError(f'probability must be within 0.1..0.5, got {p}')
        low, high = severity
        if not 0.0 < low <= high <= 1.0:
            raise ValueError(f'severity range must be within (0, 1], got {severity}')
        super().__init__(p=p, **kwargs)
        self.severity_range = (float(low), float(high))
        self.args_names = ['severity_range']

    def corrupt(self, data: np.ndarray, affine: np.ndarray, severity: float,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Return the corrupted volume and its (possibly new) affine."""
        raise NotImplementedError

    def apply_transform(self, subject: tio.Subject) -> tio.Subject:
        rng = _rng()
        low, high = self.severity_range
        severity = float(rng.uniform(low, high))
        image = subject[IMAGE_KEY]
        data = image.data[0].numpy().astype(np.float32)
        self._local: dict | None = None
        out, affine = self.corrupt(data, np.asarray(image.affine), severity, rng)
        image.set_data(torch.from_numpy(np.ascontiguousarray(out, dtype=np.float32))[None])
        image.affine = affine
        record_artifact(subject, self.family, severity)
        if self._local is not None:
            subject[LABELS_KEY].setdefault('local', {})[self.family] = self._local
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
    """Ghosts along a phase-encoding axis; intensity 0.2 + 0.7 s."""

    family = 'ghosting'

    def corrupt(self, data, affine, severity, rng):
        transform = tio.Ghosting(num_ghosts=int(rng.integers(2, 9)), axis=int(rng.integers(0, 3)),
                                 intensity=0.2 + 0.7 * severity, restore=0.02)
        return _torchio_apply(transform, data, affine), affine


class RandomMotionArtifact(ArtifactTransform):
    """2-4 rigid head moves; rotations and translations up to 1.5 + 8.5 s (degrees, mm)."""

    family = 'motion'

    def corrupt(self, data, affine, severity, rng):
        moves = int(rng.integers(2, 5))
        limit = 1.5 + 8.5 * severity
        degrees = rng.uniform(-limit, limit, (moves, 3))
        translation = rng.uniform(-limit, limit, (moves, 3))
        times = np.sort(rng.uniform(0.15, 0.85, moves))
        transform = tio.Motion(degrees=degrees, translation=translation, times=times,
                               image_interpolation='linear')
        return np.abs(_torchio_apply(transform, data, affine)), affine


class RandomBiasFieldArtifact(ArtifactTransform):
    """Smooth gain exp(P(x,y,z)), P a random cubic polynomial dominated by its low orders.

    Scaled over the head, not the box: the 2nd-98th percentile span of P inside the head is
    ``2 a`` with a = 0.25 + 0.35 s, so the brightest tissue is 1.6x (mildest) to 3.3x (worst)
    the gain of the darkest: a shading a reviewer sees, as a real receive-coil bias is.
    """

    family = 'bias'

    def corrupt(self, data, affine, severity, rng):
        half_span = 0.25 + 0.35 * severity
        axes = [np.linspace(-1, 1, n, dtype=np.float32) for n in data.shape]
        x, y, z = np.meshgrid(*axes, indexing='ij', sparse=True)
        field = np.zeros(data.shape, dtype=np.float32)
        for i in range(4):
            for j in range(4 - i):
                for k in range(4 - i - j):
                    if i + j + k:  # a degree-d term gets weight 1/d: a smooth, broad shading
                        weight = float(rng.uniform(-1, 1)) / (i + j + k)
                        field = field + weight * x**i * y**j * z**k
        head = data > foreground_threshold(data)
        inside = field[head] if head.sum() > 100 else field.ravel()
        low, high = np.percentile(inside, [2, 98])
        field = (field - float(low + high) / 2) * (2 * half_span / max(float(high - low), 1e-6))
        field = np.clip(field, -2 * half_span, 2 * half_span)  # no runaway gain in the air
        return data * np.exp(field), affine


class RandomSpikeArtifact(ArtifactTransform):
    """1-3 spikes in k-space (herringbone stripes); intensity 0.15 + 0.85 s of the DC term."""

    family = 'spike'

    def corrupt(self, data, affine, severity, rng):
        count = int(rng.integers(1, 4))
        positions = rng.uniform(0.1, 0.9, (count, 3))
        transform = tio.Spike(spikes_positions=positions, intensity=0.15 + 0.85 * severity)
        return np.abs(_torchio_apply(transform, data, affine)), affine


def add_rician_noise(data: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Magnitude of the image plus complex Gaussian noise of standard deviation ``sigma``."""
    real = data + rng.normal(0.0, sigma, data.shape).astype(np.float32)
    imag = rng.normal(0.0, sigma, data.shape).astype(np.float32)
    return np.sqrt(real * real + imag * imag)


class RandomNoiseArtifact(ArtifactTransform):
    """Rician noise, sigma = (0.025 + 0.075 s) * the 99.5th percentile; no indicator."""

    family = 'noise'

    def corrupt(self, data, affine, severity, rng):
        reference = float(np.percentile(data, 99.5)) or 1.0
        sigma = (0.025 + 0.075 * severity) * reference
        return add_rician_noise(data, sigma, rng), affine


class RandomWraparoundArtifact(ArtifactTransform):
    """Phase FOV shorter than the head along x or y by 2 * (0.06 + 0.16 s) of its extent.

    Records which slices received folded-in tissue so that tiles can be labelled.
    """

    family = 'wraparound'

    def corrupt(self, data, affine, severity, rng):
        axis = int(rng.integers(0, 2))
        first, last = foreground_extent(data, axis)
        extent = last - first + 1
        cut = max(2, int(round((0.06 + 0.16 * severity) * extent)))
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
        self._local = {'axis': axis, 'profile': profile.tolist()}
        return np.moveaxis(out, 0, axis), _shift_affine(affine, axis, start)


class RandomCoverageArtifact(ArtifactTransform):
    """The FOV ends inside the head: (0.08 + 0.27 s) of its extent cut at one end (not the
    inferior one). Records the cut face so that tiles touching it can be labelled."""

    family = 'coverage'

    def corrupt(self, data, affine, severity, rng):
        # left, right, front, back or the vertex; never the bottom (whole-head scans end in
        # the neck anyway, so a cut there need not miss any brain)
        axis, high = [(0, False), (0, True), (1, False), (1, True), (2, True)][
            int(rng.choice(5, p=[0.1, 0.1, 0.15, 0.15, 0.5]))]
        first, last = foreground_extent(data, axis)
        extent = last - first + 1
        cut = max(2, int(round((0.08 + 0.27 * severity) * extent)))
        moved = np.moveaxis(data, axis, 0)
        if high:
            out = moved[:last + 1 - cut]
            start = 0
        else:
            start = first + cut
            out = moved[start:]
        self._local = {'axis': axis, 'side': 'high' if high else 'low'}
        self._crop = (axis, start, start + out.shape[0])
        return np.moveaxis(out, 0, axis).copy(), _shift_affine(affine, axis, start)

    def apply_transform(self, subject: tio.Subject) -> tio.Subject:
        before = subject[LABELS_KEY].get('local', {}).get('wraparound') if (
            LABELS_KEY in subject) else None
        self._crop = None
        subject = super().apply_transform(subject)
        if before is not None and self._crop is not None and before['axis'] == self._crop[0]:
            _, lo, hi = self._crop  # the wrap profile follows the crop
            subject[LABELS_KEY]['local']['wraparound'] = {
                'axis': before['axis'], 'profile': before['profile'][lo:hi]}
        return subject


class RandomTruncationArtifact(ArtifactTransform):
    """Keep the central 0.55 - 0.35 s of k-space along 1-2 axes, zero-filled: Gibbs rings."""

    family = 'truncation'

    def corrupt(self, data, affine, severity, rng):
        keep = 0.55 - 0.35 * severity
        axes = rng.choice(3, size=int(rng.integers(1, 3)), replace=False)
        spectrum = np.fft.fftshift(np.fft.fftn(data))
        for axis in axes:
            n = data.shape[axis]
            half = max(1, int(round(keep * n / 2)))
            mask = np.zeros(n, dtype=bool)
            mask[n // 2 - half:n // 2 + half] = True
            shape = [1, 1, 1]
            shape[axis] = n
            spectrum = spectrum * mask.reshape(shape)
        out = np.abs(np.fft.ifftn(np.fft.ifftshift(spectrum))).astype(np.float32)
        return out, affine


TRANSFORMS: dict[str, type[ArtifactTransform]] = {
    'bias': RandomBiasFieldArtifact,
    'motion': RandomMotionArtifact,
    'ghosting': RandomGhostingArtifact,
    'spike': RandomSpikeArtifact,
    'truncation': RandomTruncationArtifact,
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
