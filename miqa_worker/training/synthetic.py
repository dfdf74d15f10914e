"""Generate labelled training volumes from real scans and the MNI152 template.

Each *anatomy* is one base image after random resolution (including thick slices along any
axis, i.e. the acquisition orientation), affine (oblique tilt, scale), elastic deformation,
left-right mirroring, contrast (gamma), mild unlabelled noise and field-of-view (margin)
changes. Each anatomy then gives several *variants* with random simulated artifacts
(``artifacts.py``) and the labels those imply. Volumes are stored preprocessed (the shared
``rescale_intensity``, as uint8) in a cache folder with an ``index.csv``.

Subjects: every real scan belongs to the subject (person) it shows (the data manifest,
``manifest.py``); the template is the subject ``mni152``. With templates only (no shared
folder), each anatomy is its own nominal subject ``mni152-aNNN`` so that folds can still be
formed; they share the template anatomy, which the
model card states.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
import torchio as tio
from tqdm import tqdm

from ..preprocessing import rescale_intensity
from . import artifacts as art
from .labels import write_index
from .manifest import DataManifest, load_manifest


@dataclass(frozen=True)
class Source:
    """A base image: file (or template name), the subject it shows, its contrast."""

    name: str
    subject_id: str
    contrast: str
    path: str | None = None  # None: a nilearn template


TEMPLATE_SOURCES: tuple[Source, ...] = (
    Source('mni152-t1', 'mni152', 'T1w'),
    Source('mni152-tissue', 'mni152', 'tissue'),  # random contrast from the GM/WM/CSF maps
)
#: SynthSeg-style heads (``simulators.SyntheticHead``): new contrast, shape and geometry each.
SYNTHETIC_HEAD = Source('synthetic-head', 'synthetic', 'T1w')
#: Label-map resolution (mm) of the generator's synthetic heads (the tests use 1 mm).
SYNTHETIC_HEAD_RESOLUTION = 2


def discover_sources(shared_dir: Path | None,
                     manifest: DataManifest | None = None) -> list[Source]:
    """The template bases plus every real base of the manifest present in ``shared_dir``."""
    sources = list(TEMPLATE_SOURCES)
    if shared_dir is not None and Path(shared_dir).is_dir():
        for entry in (manifest or load_manifest()).entries:
            path = Path(shared_dir) / entry.file
            if path.is_file():
                sources.append(Source(entry.file, entry.subject, entry.contrast, str(path)))
    return sources


@functools.lru_cache(maxsize=1)
def _template_maps() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """MNI152 (nilearn, offline): T1, GM, WM, CSF maps and the affine."""
    from nilearn import datasets

    t1 = datasets.load_mni152_template(resolution=1)
    gm = datasets.load_mni152_gm_template(resolution=1).get_fdata()
    wm = datasets.load_mni152_wm_template(resolution=1).get_fdata()
    mask = datasets.load_mni152_brain_mask(resolution=1).get_fdata()
    csf = np.clip(mask - gm - wm, 0, 1)
    return (np.asarray(t1.get_fdata(), dtype=np.float32), gm, wm, csf, t1.affine)


@functools.lru_cache(maxsize=2)
def _read_real(path: str) -> tuple[np.ndarray, np.ndarray]:
    from .dataset import read_image_array

    data, spacing = read_image_array(path)  # the worker's reader: canonical RAS
    return np.nan_to_num(data), np.diag([*map(float, spacing), 1.0])


def _load_template(source: Source, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The MNI152 T1 template, or a random contrast painted from its tissue maps."""
    t1, gm, wm, csf, affine = _template_maps()
    if source.contrast == 'T1w':
        return t1, affine
    if rng.random() < 0.5:  # T2-like: CSF bright, WM dark
        levels = rng.uniform([0.85, 0.45, 0.2], [1.0, 0.65, 0.4])
    else:  # T1-like with a different tissue contrast than the template
        levels = rng.uniform([0.05, 0.4, 0.75], [0.3, 0.6, 1.0])
    data = levels[0] * csf + levels[1] * gm + levels[2] * wm
    return data.astype(np.float32), affine


def load_base(source: Source, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Base image as a float32 array in canonical (RAS) voxel order, with its affine."""
    if source.path is None:
        return _load_template(source, rng)
    return _read_real(source.path)


def normalise(data: np.ndarray) -> np.ndarray:
    """Clip negatives and scale the 99.5th percentile to 1."""
    data = np.clip(data, 0, None)
    ref = float(np.percentile(data, 99.5))
    return data / ref if ref > 0 else data


def _fov(data: np.ndarray, spacing: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Crop or zero-pad so each side has a random 3-30 mm margin around the foreground."""
    mask = data > art.foreground_threshold(data)
    out = data
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        idx = np.flatnonzero(mask.any(axis=other))
        if idx.size == 0:
            continue
        n = out.shape[axis]
        lo_margin, hi_margin = (int(rng.uniform(3, 30) / spacing[axis]) for _ in range(2))
        lo, hi = idx[0] - lo_margin, idx[-1] + 1 + hi_margin
        pad = (max(0, -lo), max(0, hi - n))
        sl = [slice(None)] * 3
        sl[axis] = slice(max(lo, 0), min(hi, n))
        out = out[tuple(sl)]
        mask = mask[tuple(sl)]
        if any(pad):
            widths = [(0, 0)] * 3
            widths[axis] = pad
            out = np.pad(out, widths)
            mask = np.pad(mask, widths)
    return out


def make_anatomy(data: np.ndarray, affine: np.ndarray, rng: np.random.Generator,
                 spacing_range: tuple[float, float] = (1.0, 2.0)
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Random resolution, orientation, deformation, contrast and FOV of one base image."""
    spacing = np.full(3, rng.uniform(*spacing_range))
    if rng.random() < 0.35:  # a thick-slice acquisition (axial, coronal or sagittal)
        spacing[int(rng.integers(0, 3))] = max(spacing[0], rng.uniform(2.5, 5.0))
    image = tio.ScalarImage(tensor=torch.from_numpy(normalise(data))[None], affine=affine)
    transform = tio.Compose([
        tio.Resample(tuple(float(s) for s in spacing), antialias=True),
        tio.RandomAffine(scales=(0.9, 1.1), degrees=12, translation=4,
                         default_pad_value='minimum'),
        tio.RandomElasticDeformation(num_control_points=7, max_displacement=6,
                                     locked_borders=2),
        tio.RandomFlip(axes=('LR',), flip_probability=0.5),
    ])
    image = transform(image)
    out = np.clip(image.data[0].numpy(), 0, None)
    out = normalise(out) ** float(np.exp(rng.uniform(-0.35, 0.35)))  # contrast
    out = _fov(out, spacing, rng)
    out = art.add_rician_noise(out, float(rng.uniform(0.0, 0.012)), rng)  # unlabelled noise
    new_affine = np.array(image.affine)
    return out.astype(np.float32), new_affine


def make_variant(anatomy: np.ndarray, affine: np.ndarray, transforms: list,
                 families: tuple[str, ...], brain: np.ndarray | None = None
                 ) -> tuple[np.ndarray, np.ndarray, dict]:
    """Apply random artifacts to an anatomy; returns volume, affine and labels."""
    subject = _subject(anatomy, affine, brain)
    subject = art.apply_artifacts(subject, transforms, families)
    image = subject[art.IMAGE_KEY]
    return image.data[0].numpy(), np.array(image.affine), subject[art.LABELS_KEY]


def to_uint8(volume: np.ndarray) -> np.ndarray:
    """The shared preprocessing (percentile rescale to 0..1), quantised to uint8 for the cache."""
    return np.round(rescale_intensity(volume) * 255.0).astype(np.uint8)


def _seed(*parts: object) -> int:
    """A stable 31-bit seed from any parts."""
    digest = hashlib.sha256('/'.join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:4], 'little') & 0x7FFFFFFF


def generate(cache_dir: Path, anatomies_per_subject: int = 12, variants: int = 5,
             seed: int = 0, shared_dir: Path | None = None,
             families: tuple[str, ...] = art.DEFAULT_FAMILIES,
             probability: float = art.DEFAULT_PROBABILITY,
             severity: tuple[float, float] = art.DEFAULT_SEVERITY,
             templates_only_subjects: int = 10, save_nifti: bool = False,
             spacing_range: tuple[float, float] = (1.0, 2.0), progress: bool = True,
             workers: int = 1, manifest: DataManifest | None = None,
             simulators: tuple[tuple[str, ...], ...] = (), post_processing: float = 0.0,
             synthetic_heads: int = 0) -> Path:
    """Write ``cache_dir/volumes/*.npz`` and ``cache_dir/index.csv``; returns the index path.

    With ``simulators`` (leave-one-simulator-out groups) variant v of an anatomy is made by
    every implementation but group ``v % len(simulators)``'s (:func:`variant_pipeline`; its
    row's ``held_out`` column names the group), then post-processed with probability
    ``post_processing``; ``synthetic_heads`` more anatomies are SynthSeg-style heads.

    The real bases are the ``manifest``'s files found in ``shared_dir`` (templates only when
    it is None). Resumable: volumes already in the cache are kept (generation is
    deterministic per id). Each row records its artifacts' drawn parameters
    (``artifacts``, JSON) for :func:`replay_volume`.
    """
    cache_dir = Path(cache_dir)
    (cache_dir / 'volumes').mkdir(parents=True, exist_ok=True)
    if save_nifti:
        (cache_dir / 'nifti').mkdir(exist_ok=True)
    sources = discover_sources(shared_dir, manifest)
    subjects = sorted({s.subject_id for s in sources})
    templates_only = subjects == ['mni152']
    jobs: list[tuple[Source, int, str]] = []
    for subject in subjects:
        own = [s for s in sources if s.subject_id == subject]
        count = anatomies_per_subject
        if templates_only:
            count = max(anatomies_per_subject, templates_only_subjects)
        for a in range(count):
            sid = f'{subject}-a{a:03d}' if templates_only else subject
            jobs.append((own[a % len(own)], a, sid))
    jobs += [(SYNTHETIC_HEAD, a, SYNTHETIC_HEAD.subject_id) for a in range(synthetic_heads)]
    jobs.sort(key=lambda job: (job[0].name, job[1]))  # one base file after the other
    rows = []
    settings = {'seed': seed, 'anatomies_per_subject': anatomies_per_subject,
                'variants': variants, 'families': list(families), 'probability': probability,
                'severity': list(severity), 'templates_only': templates_only,
                'spacing_range': list(spacing_range),
                'sources': [s.name for s in sources]}
    if simulators or post_processing or synthetic_heads:  # older caches' settings unchanged
        settings.update({'simulators': [list(group) for group in simulators],
                         'post_processing': post_processing,
                         'synthetic_heads': synthetic_heads})
    (cache_dir / 'settings.json').write_text(json.dumps(settings, indent=1), encoding='utf-8')
    settings_args = (cache_dir, variants, seed, families, probability, severity, spacing_range,
                     save_nifti, tuple(map(tuple, simulators)), post_processing)
    bar = tqdm(total=len(jobs), desc='generate', unit='anatomy', disable=not progress)
    if workers > 1:
        import multiprocessing

        context = multiprocessing.get_context('spawn')  # no forked torch thread pools
        with context.Pool(workers, initializer=_worker_init) as pool:
            for out in pool.imap(_anatomy_job, [(job, settings_args) for job in jobs],
                                 chunksize=2):
                rows.extend(out)
                bar.update()
    else:
        for job in jobs:
            rows.extend(_anatomy_job((job, settings_args)))
            bar.update()
    bar.close()
    index = cache_dir / 'index.csv'
    write_index(rows, index)
    if save_nifti:
        nifti_rows = [{**r, 'file': f'nifti/{r["volume_id"]}.nii.gz'} for r in rows]
        write_index(nifti_rows, cache_dir / 'labels.csv')
    return index


def build_anatomy(source: Source, a: int, seed: int,
                  spacing_range: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Anatomy number ``a`` of a base: deterministic in (seed, base, a)."""
    data, affine, _ = build_anatomy_with_brain(source, a, seed, spacing_range)
    return data, affine


def build_anatomy_with_brain(source: Source, a: int, seed: int,
                             spacing_range: tuple[float, float]
                             ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """:func:`build_anatomy` and the brain mask where the base has one (synthetic heads), for
    post-processing's skull-stripping."""
    rng = np.random.default_rng(_seed(seed, source.name, a))
    torch.manual_seed(_seed(seed, source.name, a, 'torch'))
    if source == SYNTHETIC_HEAD:
        from .simulators import SyntheticHead

        head = SyntheticHead(resolution=SYNTHETIC_HEAD_RESOLUTION)
        data, brain, affine = head.make(head.get_params(rng))
        data = art.add_rician_noise(normalise(data), float(rng.uniform(0.0, 0.012)), rng)
        return data.astype(np.float32), affine, brain
    data, affine = load_base(source, rng)
    return (*make_anatomy(data, affine, rng, spacing_range), None)


def variant_pipeline(v: int, families: tuple[str, ...], probability: float,
                     severity: tuple[float, float],
                     simulators: tuple[tuple[str, ...], ...] = (),
                     post_processing: float = 0.0) -> tuple[list, str | None]:
    """The transforms of variant ``v`` and its leave-one-simulator-out group (the
    implementations it was made without, joined by '+'; None for the own generator)."""
    if not simulators:
        return art.artifact_pipeline(families, probability, severity), None
    from .simulators import mixed_pipeline

    group = tuple(simulators[v % len(simulators)])
    return (mixed_pipeline(hold_out=group, probability=probability, severity=severity,
                           post_processing=post_processing), '+'.join(group))


def replay_volume(cache_dir: Path, volume_id: str, shared_dir: Path | None = None,
                  manifest: DataManifest | None = None) -> tuple[np.ndarray, dict]:
    """A cached volume made again from its anatomy and recorded draws, without drawing any
    artifact: ``(uint8 volume, labels)``, equal to the cache's bit for bit."""
    from .dataset import generator_settings

    cache_dir = Path(cache_dir)
    settings = generator_settings(cache_dir) or {}
    row = json.loads((cache_dir / 'volumes' / f'{volume_id}.json').read_text(encoding='utf-8'))
    if 'artifacts' not in row:
        raise ValueError(f'{volume_id} was generated before draws were recorded')
    source = next((s for s in (*discover_sources(shared_dir, manifest), SYNTHETIC_HEAD)
                   if s.name == row['source']), None)
    if source is None:
        raise ValueError(f'base {row["source"]} of {volume_id} is not in the shared folder')
    from .simulators import replay

    a = int(volume_id.rsplit('-a', 1)[1].split('-v', 1)[0])
    anatomy, affine, brain = build_anatomy_with_brain(
        source, a, settings.get('seed', 0), tuple(settings.get('spacing_range', (1.0, 2.0))))
    subject = _subject(anatomy, affine, brain)
    subject = replay(subject, json.loads(row['artifacts']),
                     tuple(settings.get('families', art.DEFAULT_FAMILIES)))
    return to_uint8(subject[art.IMAGE_KEY].data[0].numpy()), subject[art.LABELS_KEY]


def _subject(anatomy: np.ndarray, affine: np.ndarray, brain: np.ndarray | None) -> tio.Subject:
    """A clean anatomy as a TorchIO subject (with its brain mask when it has one)."""
    subject = tio.Subject(**{art.IMAGE_KEY: tio.ScalarImage(
        tensor=torch.from_numpy(anatomy.copy())[None], affine=affine)})
    if brain is not None:
        subject['brain'] = tio.LabelMap(tensor=torch.from_numpy(brain.astype(np.uint8))[None],
                                        affine=affine)
    return subject


def _worker_init() -> None:
    """One torch thread per generator process."""
    torch.set_num_threads(1)


def _anatomy_job(args: tuple) -> list[dict]:
    """Make one anatomy and its variants (skipped when already cached); returns their rows."""
    (source, a, sid), (cache_dir, variants, seed, families, probability, severity,
                       spacing_range, save_nifti, simulators, post_processing) = args
    ids = [f'{source.name.split(".")[0]}-a{a:03d}-v{v:02d}' for v in range(variants)]
    meta_paths = [cache_dir / 'volumes' / f'{i}.json' for i in ids]
    if all(p.is_file() for p in meta_paths):
        return [json.loads(p.read_text(encoding='utf-8')) for p in meta_paths]
    anatomy, anat_affine, brain = build_anatomy_with_brain(source, a, seed, spacing_range)
    rows = []
    for v, (meta_path, vid) in enumerate(zip(meta_paths, ids, strict=True)):
        transforms, group = variant_pipeline(v, families, probability, severity, simulators,
                                             post_processing)
        torch.manual_seed(_seed(seed, vid))
        volume, vol_affine, labels = make_variant(anatomy, anat_affine, transforms, families,
                                                  brain)
        spacing = np.sqrt((vol_affine[:3, :3] ** 2).sum(axis=0))
        u8 = to_uint8(volume)
        np.savez_compressed(cache_dir / 'volumes' / f'{vid}.npz', volume=u8,
                            spacing=spacing.astype(np.float32),
                            local=np.array(json.dumps(labels.get('local', {}))))
        row = {'volume_id': vid, 'file': f'volumes/{vid}.npz', 'subject_id': sid,
               'source': source.name, 'contrast': source.contrast,
               'quality': labels['quality'], **labels['indicators'],
               **{f'severity_{name}': value for name, value in labels['severity'].items()},
               'shape': 'x'.join(map(str, u8.shape)),
               'spacing': 'x'.join(f'{s:.3f}' for s in spacing),
               'artifacts': json.dumps(labels['artifacts'])}
        if group is not None:
            row['held_out'] = group
        if save_nifti:
            nib.save(nib.Nifti1Image(volume.astype(np.float32), vol_affine),
                     str(cache_dir / 'nifti' / f'{vid}.nii.gz'))
        meta_path.write_text(json.dumps(row), encoding='utf-8')
        rows.append(row)
    return rows


def default_cache_dir() -> Path:
    """``$MIQA_TRAINING_CACHE`` or ``.state/training-cache`` of the checkout (git-ignored)."""
    env = os.environ.get('MIQA_TRAINING_CACHE')
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / '.state' / 'training-cache'
