"""Cached training volumes, subject folds and tile batches."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..constants import ARTIFACT_KEYS, TILE_SIZE
from ..tiling import extract_tiles, global_view, pad_to_tile
from .artifacts import FAMILIES, FAMILY_NAMES
from .labels import parse_bool, parse_quality, read_label_csv, write_index


@dataclass
class VolumeSet:
    """Preprocessed volumes (uint8, 0..255 = 0..1) with their labels; NaN = unknown."""

    ids: list[str]
    subjects: np.ndarray
    volumes: list[np.ndarray]
    quality: np.ndarray  # [N] float32, NaN unknown
    indicators: np.ndarray  # [N, 10] float32: 1, 0, NaN
    severity: dict[str, np.ndarray] = field(default_factory=dict)  # family -> [N], NaN unknown
    rows: list[dict] = field(default_factory=list)
    local: list[dict] = field(default_factory=list)  # where local artifacts are, per volume
    views: np.ndarray | None = None  # [N, 64, 64, 64] uint8: each whole volume as one view

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, index: np.ndarray) -> VolumeSet:
        """The volumes at ``index``."""
        index = np.asarray(index, dtype=int)
        return VolumeSet([self.ids[i] for i in index], self.subjects[index],
                         [self.volumes[i] for i in index], self.quality[index],
                         self.indicators[index], {k: v[index] for k, v in self.severity.items()},
                         [self.rows[i] for i in index] if self.rows else [],
                         [self.local[i] for i in index] if self.local else [],
                         self.views[index] if self.views is not None else None)


def _float(value: str | None) -> float:
    try:
        return float(value) if value not in (None, '') else math.nan
    except ValueError:
        return math.nan


def generator_settings(cache_dir: Path | str) -> dict | None:
    """The ``settings.json`` that ``generate`` wrote into a cache; None for an ingested one."""
    path = Path(cache_dir) / 'settings.json'
    return json.loads(path.read_text(encoding='utf-8')) if path.is_file() else None


def load_cache(cache_dir: Path | str) -> VolumeSet:
    """Read ``index.csv`` and every ``.npz`` volume of a cache folder into memory."""
    cache_dir = Path(cache_dir)
    with (cache_dir / 'index.csv').open(newline='') as handle:
        rows = list(csv.DictReader(handle))
    volumes, local, views = [], [], []
    for row in rows:
        with np.load(cache_dir / row['file']) as npz:
            volumes.append(npz['volume'])
            local.append(json.loads(str(npz['local'])) if 'local' in npz.files else {})
            spacing = npz['spacing'] if 'spacing' in npz.files else np.ones(3)
        views.append(np.round(global_view(volumes[-1], spacing)).astype(np.uint8))
    quality = np.array([parse_quality(r.get('quality')) for r in rows], dtype=np.float32)
    indicators = np.array([[parse_bool(r.get(k)) for k in ARTIFACT_KEYS] for r in rows],
                          dtype=np.float32).reshape(len(rows), len(ARTIFACT_KEYS))
    severity = {f: np.array([_float(r.get(f'severity_{f}')) for r in rows], dtype=np.float32)
                for f in FAMILY_NAMES if rows and f'severity_{f}' in rows[0]}
    return VolumeSet([r['volume_id'] for r in rows], np.array([r['subject_id'] for r in rows]),
                     volumes, quality, indicators, severity, rows, local,
                     np.stack(views) if views else None)


def read_image_array(path: str) -> tuple[np.ndarray, np.ndarray]:
    """A scan as a float32 array in canonical RAS voxel order, and its spacing."""
    try:
        from ..image_io import read_volume
    except ImportError:  # the worker's reader is not there: nibabel gives the same convention
        read_volume = None
    if read_volume is not None:
        scan = read_volume(path)
        return np.asarray(scan.array, dtype=np.float32), np.asarray(scan.spacing)
    import nibabel as nib

    img = nib.as_closest_canonical(nib.load(path))
    data = np.asarray(img.dataobj, dtype=np.float32)
    while data.ndim > 3:
        data = data[..., 0]
    return data, np.asarray(img.header.get_zooms()[:3])


def cache_from_csv(csv_path: Path | str, cache_dir: Path | str, progress: bool = True) -> Path:
    """Preprocess the scans of a label CSV into a cache folder; returns its index path."""
    from tqdm import tqdm

    from .synthetic import to_uint8

    cache_dir = Path(cache_dir)
    (cache_dir / 'volumes').mkdir(parents=True, exist_ok=True)
    out = []
    for number, row in enumerate(tqdm(read_label_csv(csv_path), desc='read', disable=not progress)):
        vid = f'{number:05d}-{Path(row.file).name.split(".")[0]}'
        target = cache_dir / 'volumes' / f'{vid}.npz'
        if not target.is_file():
            data, spacing = read_image_array(row.file)
            np.savez_compressed(target, volume=to_uint8(data), spacing=spacing)
        entry = {'volume_id': vid, 'file': f'volumes/{vid}.npz', 'subject_id': row.subject_id,
                 'source': row.file, 'quality': row.quality}
        for key, value in zip(ARTIFACT_KEYS, row.indicators, strict=True):
            entry[key] = None if math.isnan(value) else bool(value)
        out.append(entry)
    index = cache_dir / 'index.csv'
    write_index(out, index)
    return index


#: Families whose effect is local: a tile away from it does not show it, so their points are
#: learned from the whole-volume views only.
LOCAL_FAMILIES = ('wraparound', 'coverage')


def penalty_targets(data: VolumeSet) -> tuple[list[str], np.ndarray]:
    """The simulated families of ``data`` and, per volume, the quality points each cost
    (penalty x severity; 0 when absent, NaN when unknown, as for ingested real ratings)."""
    families = [f for f in FAMILY_NAMES if f in data.severity and np.nanmax(
        np.r_[data.severity[f], 0.0]) > 0]
    points = np.stack([data.severity[f] * np.float32(FAMILIES[f].max_penalty)
                       for f in families], axis=1) if families else np.zeros((len(data), 0))
    return families, points.astype(np.float32)


def subject_folds(subjects: np.ndarray, n_folds: int = 5, seed: int = 0) -> np.ndarray:
    """Fold number per volume; a subject's volumes are all in one fold, sizes balanced."""
    unique, counts = np.unique(subjects, return_counts=True)
    if len(unique) < n_folds:
        raise ValueError(f'{len(unique)} subjects cannot form {n_folds} subject-disjoint folds')
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(unique))
    order = order[np.argsort(-counts[order], kind='stable')]  # largest subjects first
    sizes = np.zeros(n_folds, dtype=int)
    fold_of: dict[str, int] = {}
    for i in order:
        fold = int(np.argmin(sizes))
        fold_of[str(unique[i])] = fold
        sizes[fold] += counts[i]
    return np.array([fold_of[str(s)] for s in subjects], dtype=int)


def random_tiles(volume: np.ndarray, count: int, rng: np.random.Generator,
                 tile: int = TILE_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """``count`` tiles at random positions inside the (padded) volume, and their starts."""
    volume = pad_to_tile(volume, tile)
    out = np.empty((count, tile, tile, tile), dtype=volume.dtype)
    starts = np.empty((count, 3), dtype=int)
    for n in range(count):
        i, j, k = (int(rng.integers(0, s - tile + 1)) for s in volume.shape)
        out[n] = volume[i:i + tile, j:j + tile, k:k + tile]
        starts[n] = (i, j, k)
    return out, starts


COVERAGE = ARTIFACT_KEYS.index('incomplete_coverage')
WRAPAROUND = ARTIFACT_KEYS.index('wraparound')


def tile_indicators(indicators: np.ndarray, local: dict, start: np.ndarray,
                    shape: tuple[int, ...], tile: int = TILE_SIZE) -> np.ndarray:
    """A tile's indicator labels: the volume's, but local artifacts only where they are.

    A cut field of view is positive only in tiles that touch the cut face; wraparound only
    in tiles holding slices with folded-in tissue. Elsewhere those tiles are negative.
    """
    out = indicators.copy()
    cover = local.get('coverage')
    if cover and out[COVERAGE] == 1:
        axis = cover['axis']
        touches = (start[axis] == 0) if cover['side'] == 'low' else (
            start[axis] + tile >= shape[axis])
        out[COVERAGE] = float(touches)
    wrap = local.get('wraparound')
    if wrap and out[WRAPAROUND] == 1:
        profile = np.asarray(wrap['profile'], dtype=bool)
        axis = wrap['axis']
        out[WRAPAROUND] = float(profile[start[axis]:start[axis] + tile].any())
    return out


def grid_tiles(volume: np.ndarray, max_tiles: int | None = None) -> np.ndarray:
    """The inference tiles of a volume, evenly subsampled to at most ``max_tiles``."""
    tiles, _, _ = extract_tiles(volume)
    if max_tiles is not None and len(tiles) > max_tiles:
        keep = np.unique(np.linspace(0, len(tiles) - 1, max_tiles).round().astype(int))
        tiles = tiles[keep]
    return tiles


def to_tensor(tiles: np.ndarray) -> torch.Tensor:
    """uint8 tiles [N, 64, 64, 64] to float tensors [N, 1, 64, 64, 64] in 0..1."""
    return torch.from_numpy(tiles.astype(np.float32) / 255.0)[:, None]


def augment_tile(tile: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random flip of each axis and a random order of the axes: the labels do not change.

    Scans come in every orientation and artifacts run along any axis, so the network should
    not tie a finding to one; with few training anatomies this also fights memorising them.
    """
    tile = np.transpose(tile, rng.permutation(3))
    flips = tuple(a for a in range(3) if rng.random() < 0.5)
    return np.flip(tile, flips) if flips else tile


def tile_batches(data: VolumeSet, index: np.ndarray, tiles_per_volume: int, batch_size: int,
                 rng: np.random.Generator, global_views: int = 0,
                 augment: bool = False, penalties: tuple[list[str], np.ndarray] | None = None
                 ) -> Iterator[tuple[torch.Tensor, ...]]:
    """One epoch: random tiles of each volume and ``global_views`` copies of its whole-volume
    view (differently augmented), shuffled into batches of ``(tiles, quality, indicators,
    points)``; ``points`` (the :func:`penalty_targets` given as ``penalties``) is ``[B, 0]``
    without them.

    A tile has its volume's quality and indicators, except local artifacts (see
    ``tile_indicators``; their points are unknown in a tile); the whole-volume view always has
    the volume's labels.
    """
    families, points = penalties if penalties is not None else ([], np.zeros((len(data), 0)))
    local_points = [families.index(f) for f in LOCAL_FAMILIES if f in families]
    index = np.asarray(index, dtype=int)
    pairs = np.repeat(index, tiles_per_volume)
    kinds = np.zeros(len(pairs), dtype=bool)  # True: the whole-volume view
    if global_views and data.views is not None:
        views = np.repeat(index, int(global_views))
        pairs = np.concatenate([pairs, views])
        kinds = np.concatenate([kinds, np.ones(len(views), dtype=bool)])
    order = rng.permutation(len(pairs))
    pairs, kinds = pairs[order], kinds[order]
    for first in range(0, len(pairs), batch_size):
        chunk = pairs[first:first + batch_size]
        tiles, labels = [], []
        chunk_points = points[chunk].astype(np.float32)
        for n, (v, whole) in enumerate(zip(chunk, kinds[first:first + batch_size],
                                           strict=True)):
            local = data.local[v] if data.local else {}
            if whole:
                tile = data.views[v]
                label = data.indicators[v]
            else:
                found, start = random_tiles(data.volumes[v], 1, rng)
                tile = found[0]
                label = tile_indicators(data.indicators[v], local, start[0],
                                        data.volumes[v].shape) if local else data.indicators[v]
                chunk_points[n, local_points] = np.nan
            tiles.append(augment_tile(tile, rng) if augment else tile)
            labels.append(label)
        yield (to_tensor(np.stack(tiles)), torch.from_numpy(data.quality[chunk]),
               torch.from_numpy(np.stack(labels)), torch.from_numpy(chunk_points))
