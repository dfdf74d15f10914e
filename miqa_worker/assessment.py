"""Assess one scan with the MIQA network: read, normalise, tile, one batched forward pass.

Result of :meth:`Assessor.assess_file` / :meth:`Assessor.assess_volume` (JSON-serialisable)::

    quality    float 0..10: mean over tiles of output 0, blended with the whole-volume view's
               output at the model's share for it (:func:`view_weights`: model.json's
               ``view_weights``, else ``global_view_weight``; 0 = tiles only), clamped
    artifacts  {key: probability}: mean over tiles of sigmoid(output 1..10), each blended
               at its own share, keys in the order of constants.ARTIFACT_KEYS
    globalView {weight (the quality's share), weights {output: share}, flips, networks,
               quality, artifacts}: the whole volume seen as one 64^3 view (isotropic voxels,
               tiling.global_view), its raw outputs averaged over ``flips`` mirror images
               (:func:`view_flips`) in each of ``networks`` networks (model.json
               ``view_members`` adds networks of other seeds); absent when the model does not
               use it
    tileMap    {grid [nx, ny, nz], starts [[i, j, k], ...], tileSize 64,
                shape [X, Y, Z] (the padded volume), quality [per tile],
                artifacts {key: [per tile]}}
               Tiles are listed in C order of the grid (k fastest); starts are voxel indices
               of the reoriented volume: canonical RAS, axes increasing toward Right,
               Anterior, Superior (``volume.shape`` before padding).
    metrics    {name: float} from quality_metrics.compute_quality_metrics
    model      {name, version, sha256}
    volume     {shape, spacing, orientation (of the file, e.g. 'LAS'), note, format}
    fusion     {indicator, network, probability, metrics}: present when the model folder has
               ``fusion.json`` (:mod:`miqa_worker.fusion`): the indicator's probability from
               the network alone, the fused one (also in ``artifacts``), and the background
               metrics it used; the tile map keeps the network's per-tile probabilities
    penalties  {family: points}: the quality points each simulated artifact family is
               estimated to cost (0..its penalty), blended at the quality's share; present
               when the model has ``penalty_families`` (extra outputs after the 11)
    timings    {read, preprocess, inference, fusion (with fusion.json), metrics, total} seconds
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from .constants import (
    ARTIFACT_KEYS,
    DEFAULT_MODEL,
    NUM_OUTPUTS,
    QUALITY_MAX,
    QUALITY_MIN,
    TILE_SIZE,
)
from .fusion import FUSION_FILE, Fusion, FusionError, load_fusion
from .image_io import ScanVolume, read_volume, usable_cores, warm_up_itk
from .preprocessing import intensity_range, rescale_into, usable_range
from .quality_metrics import compute_quality_metrics, subsample
from .tiling import global_view, pad_to_tile, tile_grid

logger = logging.getLogger(__name__)

Progress = Callable[[int, int, str], None]

#: Tiles per forward pass: bounds memory (a 64^3 tile is 1 MiB in, ~3 MiB of activations).
DEFAULT_BATCH_SIZE = 8
PROGRESS_TOTAL = 5


def available_cores() -> int:
    """Torch threads to use: ``MIQA_TORCH_THREADS`` if set, else the cores this process may use.

    On an oversubscribed machine one thread can beat several (no OpenMP barrier contention).
    """
    env = os.environ.get('MIQA_TORCH_THREADS', '').strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    return usable_cores()


def make_tiles(array: np.ndarray, tile: int = TILE_SIZE,
               value_range: tuple[float, float] | None = None
               ) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int], tuple[int, int, int]]:
    """Normalised tiles of a volume, like ``extract_tiles(rescale_intensity(array))``.

    Faster: the percentiles are found without sorting (or taken from ``value_range``, the
    volume's ``intensity_range``), and the rescale runs in place on the tiles rather than on a
    full copy of the volume. Returns (tiles [N, t, t, t] float32, starts [N, 3], grid shape,
    padded shape).
    """
    low, high = value_range or intensity_range(array)
    if any(s < tile for s in array.shape):
        volume = pad_to_tile(rescale_into(np.array(array, dtype=np.float32, copy=True),
                                          low, high), tile)
        low = high = None
    else:
        volume = array
    grid = tile_grid(volume.shape, tile)
    count = len(grid[0]) * len(grid[1]) * len(grid[2])
    tiles = np.empty((count, tile, tile, tile), dtype=np.float32)
    starts = np.empty((count, 3), dtype=np.int64)
    n = 0
    for i in grid[0]:
        for j in grid[1]:
            for k in grid[2]:
                tiles[n] = volume[i:i + tile, j:j + tile, k:k + tile]
                starts[n] = (i, j, k)
                n += 1
    if low is not None:
        rescale_into(tiles, low, high)
    shape = tuple(int(s) for s in volume.shape)
    return tiles, starts, (len(grid[0]), len(grid[1]), len(grid[2])), shape  # type: ignore


def whole_view(volume: ScanVolume, value_range: tuple[float, float] | None = None
               ) -> np.ndarray:
    """The normalised whole volume as one 64^3 view (``tiling.global_view``), as in training.

    Clips once and rescales the small view, not every voxel (the same view, a copy fewer).
    """
    low, high = value_range or intensity_range(volume.array)
    if not usable_range(low, high):
        return np.zeros((TILE_SIZE,) * 3, dtype=np.float32)  # as rescale_into: all zeros
    clipped = np.clip(volume.array, np.float32(low), np.float32(high))
    return global_view(clipped, volume.spacing, value_range=(float(low), float(high)))


def _sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-logits))


def mix(tiles: np.ndarray, view: np.ndarray, weight: float | np.ndarray) -> np.ndarray:
    """``(1 - weight) * tiles + weight * view``: the one blend rule of the worker and training.

    ``weight`` is one share, or one per output (broadcast along the last axis).
    """
    share = np.asarray(weight, dtype=np.float64)
    return (1 - share) * np.asarray(tiles, dtype=np.float64) + share * np.asarray(
        view, dtype=np.float64)


def blend_outputs(tile_outputs: np.ndarray, view_output: np.ndarray | None = None,
                  weight: float | np.ndarray = 0.0) -> np.ndarray:
    """A scan's ``[quality, probabilities...]`` (quality not clipped) from raw network outputs.

    Mean tile quality and mean sigmoid probability, blended with the whole-volume view's
    output at ``weight``: one share for all eleven outputs, or one per output (see
    :func:`view_weights`). Training evaluation calls this too, so its figures are the worker's.
    """
    tiles = np.asarray(tile_outputs, dtype=np.float64)
    result = np.concatenate([tiles[:, :1], _sigmoid(tiles[:, 1:])], axis=1).mean(axis=0)
    if view_output is not None and np.any(weight):
        view = np.asarray(view_output, dtype=np.float64)
        result = mix(result, np.concatenate([view[:1], _sigmoid(view[1:])]), weight)
    return result


OUTPUT_NAMES: tuple[str, ...] = ('quality', *ARTIFACT_KEYS)

#: The mirror images of the whole-volume view, in the order ``view_flips`` takes them: the
#: view itself, then flipped along one, two and all three axes (training flips views too).
FLIPS: tuple[tuple[int, ...], ...] = ((), (0,), (1,), (2,), (0, 1), (0, 2), (1, 2), (0, 1, 2))


def view_flips(info: dict[str, Any]) -> int:
    """How many mirror images of the whole-volume view a model averages (``model.json``
    ``view_flips``, 1..8; absent: 1, the view alone). ValueError with the reason otherwise.

    The view is one 64^3 input, so its mirror images cost a few tiles' time, and averaging
    them steadies the outputs the view decides (bias field, cut coverage, wraparound).
    """
    value = info.get('view_flips', 1)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= len(FLIPS):
        raise ValueError(f'view_flips must be an integer from 1 to {len(FLIPS)}, got {value!r}')
    return value


def mirrored(view: np.ndarray, count: int) -> np.ndarray:
    """The first ``count`` of :data:`FLIPS` applied to a 3D view: ``[count, *view.shape]``."""
    return np.stack([np.flip(view, axes) if axes else view for axes in FLIPS[:count]])


def view_weights(info: dict[str, Any]) -> np.ndarray:
    """The whole-volume view's share in each of the 11 outputs, from a model's ``model.json``.

    ``view_weights`` ({output name: share}, chosen by cross-validation when training) wins;
    outputs it does not name take ``global_view_weight`` (absent: 0, tiles only). Raises
    ValueError, with the reason, for a share outside 0..1 or an unknown output name.
    """
    default = info.get('global_view_weight') or 0.0
    per_output = info.get('view_weights') or {}
    if not isinstance(per_output, dict):
        raise ValueError('view_weights must map output names to shares')
    unknown = sorted(set(per_output) - set(OUTPUT_NAMES))
    if unknown:
        raise ValueError(f'view_weights names unknown outputs: {", ".join(unknown)}')
    try:
        shares = np.array([float(per_output.get(name, default)) for name in OUTPUT_NAMES])
    except (TypeError, ValueError):
        raise ValueError('view weights must be numbers') from None
    if not np.all((shares >= 0) & (shares <= 1)):
        raise ValueError('view weights must lie within 0..1')
    return shares


def fused_indicator(fusion: Fusion, array: np.ndarray, value_range: tuple[float, float],
                    network_probability: float) -> dict[str, Any]:
    """The fusion's probability for its indicator, with its inputs (the result's ``fusion``).

    The metrics see the volume as training saw it: subsampled by stride, mapped to 0..1 by the
    scan's own range and put on 256 levels.
    """
    low, high = value_range
    part, _ = subsample(array, fusion.max_voxels)
    normalised = rescale_into(np.array(part, dtype=np.float32, copy=True), low, high)
    features = fusion.features(normalised)
    return {'indicator': fusion.indicator, 'network': float(network_probability),
            'probability': fusion.probability(network_probability, features),
            'metrics': features}


class Assessor:
    """A loaded model that assesses scans; create once per process (see :func:`get_assessor`)."""

    def __init__(self, model: str | os.PathLike = DEFAULT_MODEL, batch_size: int =
                 DEFAULT_BATCH_SIZE, threads: int | None = None, max_voxels: int | None = None,
                 _loaded: tuple[Any, dict[str, Any]] | None = None):
        import torch

        from .model_store import ModelError, load_members, load_model, penalty_families

        self.threads = threads or available_cores()
        torch.set_num_threads(self.threads)
        self.network, self.info = _loaded or load_model(model)
        # Channels-last 3D convolutions run about 1.6x faster on CPU (measured in
        # benchmarks/bench_inference.py); the outputs are the same.
        self.network = self.network.to(memory_format=torch.channels_last_3d)
        self.device = next(self.network.parameters()).device
        self.batch_size = max(1, int(batch_size))
        try:
            self.view_weights = view_weights(self.info)
            self.view_flips = view_flips(self.info)
            self.fusion = load_fusion(self.info.get('path'))
            self.penalty_families = penalty_families(self.info)
        except FusionError as exc:
            raise ModelError(f"model {self.info.get('name')}: {FUSION_FILE}: {exc}") from None
        except ValueError as exc:
            raise ModelError(f"model {self.info.get('name')}: {exc}") from None
        self.members = [m.to(self.device, memory_format=torch.channels_last_3d)
                        for m in load_members(self.info, self.network)]
        self.uses_view = bool(self.view_weights.any())
        self.max_voxels = max_voxels
        self._lock = threading.Lock()

    @classmethod
    def from_network(cls, network, global_view_weight: float = 0.0, threads: int | None = None,
                     weights: dict[str, float] | None = None, flips: int = 1,
                     fusion: Fusion | None = None, penalty_families: list[str] | None = None,
                     members: list | tuple = (), **kwargs: Any) -> Assessor:
        """An Assessor of a network in memory (training evaluates its models this way);
        ``members``: more networks whose view outputs are averaged with its own."""
        import torch

        info = {'name': 'in-memory', 'version': '-', 'sha256': '-',
                'global_view_weight': global_view_weight, 'view_weights': weights,
                'view_flips': flips, 'penalty_families': penalty_families}
        assessor = cls(batch_size=kwargs.pop('batch_size', DEFAULT_BATCH_SIZE),
                       threads=threads or torch.get_num_threads(), _loaded=(network, info),
                       **kwargs)
        assessor.fusion = fusion
        assessor.members = list(members)
        return assessor

    @property
    def model(self) -> dict[str, str]:
        """``{name, version, sha256}`` of the loaded weights."""
        return {'name': str(self.info['name']), 'version': str(self.info['version']),
                'sha256': str(self.info['sha256'])}

    def predict_tiles(self, tiles: np.ndarray, network=None) -> np.ndarray:
        """Network outputs ``[N, 11 + penalty outputs]`` (float32) for normalised tiles
        ``[N, 64, 64, 64]`` (of ``network``: default the model's own)."""
        import torch

        network = network if network is not None else self.network
        if torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)
        batch = torch.from_numpy(np.ascontiguousarray(tiles, dtype=np.float32)).unsqueeze(1)
        outputs = []
        with self._lock, torch.inference_mode():
            for start in range(0, batch.shape[0], self.batch_size):
                chunk = batch[start:start + self.batch_size].to(
                    self.device, memory_format=torch.channels_last_3d)
                outputs.append(network(chunk).float().cpu())
        return torch.cat(outputs).numpy()

    def predict_with_view(self, tiles: np.ndarray, view: np.ndarray | None
                          ) -> tuple[np.ndarray, np.ndarray | None]:
        """Raw outputs of normalised tiles ``[N, 11+]`` and of a whole-volume view ``[11+]``:
        the view's mirror images (:func:`view_flips`) run in the same batches, then averaged
        with those of the view members. ``view`` None: tiles only."""
        count = len(tiles)
        if view is None:
            return self.predict_tiles(tiles), None
        images = mirrored(view, self.view_flips)
        out = self.predict_tiles(np.concatenate([tiles, images]))
        views = [out[count:]] + [self.predict_tiles(images, m) for m in self.members]
        return out[:count], np.concatenate(views).mean(axis=0, dtype=np.float64)

    def assess_volume(self, volume: ScanVolume, progress: Progress | None = None,
                      metrics: bool = True, _timings: dict[str, float] | None = None
                      ) -> dict[str, Any]:
        """Assess a volume already read (see the module docstring for the result)."""
        timings = dict(_timings or {})
        report = progress or (lambda current, total, message: None)
        t0 = time.perf_counter()
        report(2, PROGRESS_TOTAL, 'normalising and tiling')
        value_range = intensity_range(volume.array)
        tiles, starts, grid, padded = make_tiles(volume.array, value_range=value_range)
        view = whole_view(volume, value_range) if self.uses_view else None
        t1 = time.perf_counter()
        report(3, PROGRESS_TOTAL, f'running the model on {len(tiles)} tiles')
        out, view_out = self.predict_with_view(tiles, view)
        t2 = time.perf_counter()
        del tiles
        out = out.astype(np.float64)
        extra: dict[str, Any] = {}
        if self.penalty_families:
            points = out[:, NUM_OUTPUTS:].mean(axis=0)
            if view_out is not None:
                points = mix(points, view_out[NUM_OUTPUTS:], self.view_weights[0])
            extra['penalties'] = {family: float(max(p, 0.0)) for family, p in zip(
                self.penalty_families, points, strict=True)}
            out = out[:, :NUM_OUTPUTS]
            view_out = view_out[:NUM_OUTPUTS] if view_out is not None else None
        quality_tiles = np.clip(out[:, 0], QUALITY_MIN, QUALITY_MAX)
        probs = _sigmoid(out[:, 1:])
        scan = blend_outputs(out, view_out, self.view_weights)
        quality = float(np.clip(scan[0], QUALITY_MIN, QUALITY_MAX))
        artifacts = {key: float(p) for key, p in zip(ARTIFACT_KEYS, scan[1:], strict=True)}
        if view_out is not None:
            extra['globalView'] = {
                'weight': float(self.view_weights[0]),
                'weights': dict(zip(OUTPUT_NAMES, map(float, self.view_weights), strict=True)),
                'flips': self.view_flips,
                'networks': 1 + len(self.members),
                'quality': float(np.clip(view_out[0], QUALITY_MIN, QUALITY_MAX)),
                'artifacts': {key: float(p) for key, p in zip(ARTIFACT_KEYS,
                                                               _sigmoid(view_out[1:]),
                                                               strict=True)}}
        if self.fusion is not None:
            extra['fusion'] = fused_indicator(self.fusion, volume.array, value_range,
                                              artifacts[self.fusion.indicator])
            artifacts[self.fusion.indicator] = extra['fusion']['probability']
        t3 = time.perf_counter()
        report(4, PROGRESS_TOTAL, 'image quality metrics')
        iqms = compute_quality_metrics(volume.array, volume.spacing) if metrics else {}
        t4 = time.perf_counter()
        timings.update(preprocess=t1 - t0, inference=t2 - t1, metrics=t4 - t3)
        if self.fusion is not None:
            timings['fusion'] = t3 - t2
        timings.setdefault('read', 0.0)
        timings['total'] = timings['read'] + (t4 - t0)
        report(PROGRESS_TOTAL, PROGRESS_TOTAL, f'quality {quality:.2f}/10')
        return {
            'quality': quality,
            'artifacts': artifacts,
            'tileMap': {
                'grid': [int(g) for g in grid],
                'starts': starts.tolist(),
                'tileSize': TILE_SIZE,
                'shape': list(padded),
                'quality': [float(q) for q in quality_tiles],
                'artifacts': {key: [float(p) for p in probs[:, i]]
                              for i, key in enumerate(ARTIFACT_KEYS)},
            },
            **extra,
            'metrics': iqms,
            'model': self.model,
            'volume': {
                'shape': list(volume.shape),
                'spacing': [float(s) for s in volume.spacing],
                'orientation': volume.original_orientation,
                'note': volume.note,
                'format': volume.source_format,
            },
            'timings': {key: float(value) for key, value in timings.items()},
        }

    def assess_file(self, path: str | os.PathLike, progress: Progress | None = None,
                    metrics: bool = True) -> dict[str, Any]:
        """Read and assess a scan file; ImageError (one line) when it cannot be assessed."""
        if progress:
            progress(1, PROGRESS_TOTAL, 'reading the image')
        t0 = time.perf_counter()
        volume = read_volume(path, max_voxels=self.max_voxels)
        read = time.perf_counter() - t0
        return self.assess_volume(volume, progress, metrics=metrics, _timings={'read': read})


_assessors: dict[str, Assessor] = {}
_assessors_lock = threading.Lock()


def get_assessor(model_name: str | os.PathLike = DEFAULT_MODEL) -> Assessor:
    """The process-wide Assessor of a model (loaded on first use, then cached)."""
    key = os.fspath(model_name)
    with _assessors_lock:
        if key not in _assessors:
            _assessors[key] = Assessor(key)
        return _assessors[key]


def clear_cache() -> None:
    """Forget the cached assessors (after new weights are installed, and in tests)."""
    with _assessors_lock:
        _assessors.clear()


def warm_up(model_name: str | os.PathLike = DEFAULT_MODEL) -> Assessor | None:
    """Load ITK and the model and run the network once; logs (never raises) when unavailable."""
    try:
        warm_up_itk()
    except Exception:
        logger.exception('ITK warm-up failed')
    try:
        assessor = get_assessor(model_name)
    except Exception as exc:
        logger.warning('MIQA model %s not loaded at warm-up: %s', model_name, exc)
        return None
    try:
        assessor.predict_tiles(np.zeros((1, TILE_SIZE, TILE_SIZE, TILE_SIZE), np.float32))
    except Exception:
        logger.exception('MIQA model %s failed its warm-up pass', model_name)
    return assessor
