"""Assess one scan with a MIQA model, in four stages that take the model's spec
(:mod:`miqa_worker.model_spec`) and that training evaluation reuses:

1. tiles (:class:`Tiles`, :func:`run_tiles`): normalise by the volume's percentile range, cover
   it with 64^3 tiles, run the main network on them in batches;
2. view (:func:`whole_view`, :func:`run_view`): the whole volume as one 64^3 view, run as
   ``view.flips`` mirror images in the main network and every member, averaged;
3. blend (:func:`blend`): mean over tiles mixed with the view at its share per output;
4. post-processing (:func:`postprocess`): quality clipped, the penalty families' points, the
   fused indicator (``fusion``).

Result of :meth:`Assessor.assess_file` / :meth:`Assessor.assess_volume` (JSON-serialisable)::

    quality    float 0..10: mean over tiles of output 0, blended with the whole-volume view's
               output at the model's share for it (``spec.view.shares()``: model.json's
               ``view.weights``, else ``view.weight``; 0 = tiles only), clamped
    qualityInterval [low, high] 0..10: present when model.json has
               ``postprocessing.calibration.quality_interval``: the quality ± its half width,
               from the spread (``globalView.qualitySpread``, the sd of the quality blended
               with each network x flip view prediction) widened as fitted
               (``model_spec.QualityInterval``)
    artifacts  {key: probability}: mean over tiles of sigmoid(output 1..10), each blended
               at its own share, keys in the order of constants.ARTIFACT_KEYS; with
               ``postprocessing.calibration`` each indicator it names is then recalibrated
               (``calibrated: true``; ``fusion.probability``, ``globalView`` and
               ``tileMap`` keep the uncalibrated values)
    globalView {weight (the quality's share), weights {output: share}, flips, networks,
               quality, artifacts}: the whole volume seen as one 64^3 view (isotropic voxels,
               tiling.global_view), its raw outputs averaged over ``flips`` mirror images
               (model.json ``view.flips``) in each of ``networks`` networks (model.json
               ``members`` adds networks of other seeds); absent when the model does not
               use it
    tileMap    {grid [nx, ny, nz], starts [[i, j, k], ...], tileSize 64,
                shape [X, Y, Z] (the padded volume), quality [per tile],
                artifacts {key: [per tile]}}
               Tiles are listed in C order of the grid (k fastest); starts are voxel indices
               of the reoriented volume: canonical RAS, axes increasing toward Right,
               Anterior, Superior (``volume.shape`` before padding).
    metrics    {name: float} from quality_metrics.compute_quality_metrics
    model      {name, version, sha256}
    inference  {device, precision}: where the network passes ran, and in float32 or bfloat16
               (``Assessor(precision=...)``, ``MIQA_PRECISION``; :mod:`miqa_worker.inference`)
    volume     {shape, spacing, orientation (of the file, e.g. 'LAS'), note, format}
    fusion     {indicator, network, probability, metrics}: present when model.json names a
               ``fusion`` (its file, :mod:`miqa_worker.fusion`): the indicator's probability from
               the network alone, the fused one (also in ``artifacts``), and the background
               metrics it used; the tile map keeps the network's per-tile probabilities
    penalties  {family: points}: the quality points each simulated artifact family is
               estimated to cost (0..its penalty), blended at the quality's share; present
               when model.json has ``postprocessing.penalty_families`` (outputs after the 11)
    scope      {in_scope, contrast, reason, source}: whether the scan is in the model's domain
               (``spec.domain``; :mod:`miqa_worker.scope`): contrast one of T1w, T2w, FLAIR, PD,
               dwi, bold, asl, unknown, found from the file name, the JSON sidecar, DICOM tags or
               the image; out-of-scope scans keep their scores, flagged
    acquisition {parameters, sources, problems}: the acquisition parameters (BIDS keys and
               units, None when unknown) from DICOM tags, the sidecar and the image header, where
               each came from, and why a sidecar was not used (:mod:`miqa_worker.acquisition`)
    timings    {read, preprocess, inference, fusion (with a fusion), metrics, total} seconds;
               the metrics run beside preprocessing on a second thread (``Assessor.beside``):
               theirs is their own time, ``total`` the wall-clock time from the read on
               (the scope test's and the acquisition headers' few ms count in the total only)
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from .acquisition import acquisition_parameters
from .constants import (
    ARTIFACT_KEYS,
    DEFAULT_MODEL,
    NUM_OUTPUTS,
    QUALITY_MAX,
    QUALITY_MIN,
    TILE_SIZE,
)
from .fusion import Fusion
from .image_io import ScanVolume, read_volume, usable_cores, warm_up_itk
from .model_spec import (
    OUTPUT_NAMES,
    Calibration,
    FusionSpec,
    ModelSpec,
    ModelSpecError,
    Postprocessing,
    TileSpec,
    ViewSpec,
)
from .preprocessing import intensity_range, rescale_into, usable_range
from .quality_metrics import compute_quality_metrics, subsample
from .scope import assess_scope
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
    volume's ``intensity_range``), and each tile is rescaled in place right after it is
    copied, while it is in the cache, rather than over a full copy of the volume (one thread:
    the image metrics run beside it, ``Assessor.beside``). Returns (tiles [N, t, t, t] float32,
    starts [N, 3], grid shape, padded shape).
    """
    low, high = value_range or intensity_range(array)
    if any(s < tile for s in array.shape):
        volume = pad_to_tile(rescale_into(np.array(array, dtype=np.float32, copy=True),
                                          low, high), tile)
        low = high = None
    else:
        volume = array
    grid = tile_grid(volume.shape, tile)
    starts = np.array([(i, j, k) for i in grid[0] for j in grid[1] for k in grid[2]],
                      dtype=np.int64).reshape(-1, 3)
    tiles = np.empty((len(starts), tile, tile, tile), dtype=np.float32)

    for n, (i, j, k) in enumerate(starts):
        tiles[n] = volume[i:i + tile, j:j + tile, k:k + tile]
        if low is not None:
            rescale_into(tiles[n], low, high)
    shape = tuple(int(s) for s in volume.shape)
    return tiles, starts, (len(grid[0]), len(grid[1]), len(grid[2])), shape  # type: ignore


def whole_view(volume: ScanVolume, value_range: tuple[float, float] | None = None
               ) -> np.ndarray:
    """The normalised whole volume as one 64^3 view (``tiling.global_view``), as in training.

    Clips as it averages and rescales the small view, not every voxel (the same view, no
    copy of the volume: ``tiling.global_view``'s ``clip``).
    """
    low, high = value_range or intensity_range(volume.array)
    if not usable_range(low, high):
        return np.zeros((TILE_SIZE,) * 3, dtype=np.float32)  # as rescale_into: all zeros
    return global_view(volume.array, volume.spacing, value_range=(float(low), float(high)),
                       clip=True)


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
    output at ``weight``: one share for all eleven outputs, or one per output
    (``ViewSpec.shares()``). Training evaluation calls this too, so its figures are the worker's.
    """
    tiles = np.asarray(tile_outputs, dtype=np.float64)
    result = np.concatenate([tiles[:, :1], _sigmoid(tiles[:, 1:])], axis=1).mean(axis=0)
    if view_output is not None and np.any(weight):
        view = np.asarray(view_output, dtype=np.float64)
        result = mix(result, np.concatenate([view[:1], _sigmoid(view[1:])]), weight)
    return result


#: The mirror images of the whole-volume view, in the order ``view.flips`` takes them: the
#: view itself, then flipped along one, two and all three axes (training flips views too).
FLIPS: tuple[tuple[int, ...], ...] = ((), (0,), (1,), (2,), (0, 1), (0, 2), (1, 2), (0, 1, 2))


def mirrored(view: np.ndarray, count: int) -> np.ndarray:
    """The first ``count`` of :data:`FLIPS` applied to a 3D view: ``[count, *view.shape]``."""
    return np.stack([np.flip(view, axes) if axes else view for axes in FLIPS[:count]])


def view_weights(info: dict[str, Any]) -> np.ndarray:
    """The view's share in each of the 11 outputs from an older-format dict
    (``view_weights`` per output, the rest ``global_view_weight``); ValueError with the reason.
    Kept for the training pipeline until it builds a ``ViewSpec``: ``spec.view.shares()``."""
    try:
        view = ViewSpec.parse({'weight': info.get('global_view_weight') or 0.0,
                               'weights': info.get('view_weights') or {}, 'flips': 1},
                              'view weights')
    except ModelSpecError as exc:
        raise ValueError(str(exc)) from None
    return np.array(view.shares())


# ---- the stages: tiles, view, blend, post-processing ----


def _even_batches(start: int, stop: int, count: int) -> list[tuple[int, int]]:
    """``start..stop`` cut into ``count`` (fewer if there are fewer items) index ranges whose
    sizes differ by at most one."""
    size = stop - start
    parts = max(1, min(count, size))
    edges = [start + size * i // parts for i in range(parts + 1)]
    return [(a, b) for a, b in zip(edges, edges[1:], strict=False) if b > a]


class Networks:
    """The model's networks on their device, run in batches: the main network (tiles and
    view) and the view members (the same network trained with other seeds; view only).

    Args:
        main: the main network (eval mode).
        members: networks whose view outputs are averaged with the main network's.
        batch_size: inputs per forward pass (bounds memory).
        threads: torch threads to run with.
        fast: run as the worker does (loaded networks, not ones still being trained): each
            network as its :func:`inference.for_inference` copy (the same outputs, ~17 % less
            CPU per pass), and on the CPU the batches split over ``threads`` streams of one
            torch thread each (no OpenMP barriers between the small convolutions).
        precision: ``float32``, ``bfloat16`` or ``auto`` (:func:`inference.resolve_precision`;
            default ``MIQA_PRECISION``, else auto with ``fast``, float32 without).
    """

    def __init__(self, main, members: list | tuple = (), batch_size: int = DEFAULT_BATCH_SIZE,
                 threads: int | None = None, fast: bool = False, precision: str | None = None):
        import torch

        from .inference import resolve_precision

        # Plain (contiguous) memory: with torch 2.13 and the shipped widths (4..64 channels)
        # channels-last 3D cost 15-30% more CPU per pass, as every instance norm converted the
        # activations back and forth (benchmarks/bench_inference.py); the outputs are the same.
        self.main = main.to(memory_format=torch.contiguous_format)
        self.device = next(self.main.parameters()).device
        self.members = [m.to(self.device, memory_format=torch.contiguous_format)
                        for m in members]
        self.batch_size = max(1, int(batch_size))
        self.threads = threads or torch.get_num_threads()
        self._lock = threading.Lock()
        self._fast: dict[int, Any] = {}
        self.streams = 1
        self.precision = resolve_precision(precision if precision or fast else 'float32',
                                           self.device)
        if fast:
            from .inference import for_inference  # torch: imported with the network only

            self._fast = {id(n): for_inference(n, self.precision)
                          for n in (self.main, *self.members)}
            self.streams = self.threads if self.device.type == 'cpu' else 1
        self._pool: ThreadPoolExecutor | None = None
        self._pool_pid = os.getpid()

    def predict(self, inputs: np.ndarray, network=None) -> np.ndarray:
        """Outputs ``[N, 11 + penalty outputs]`` (float32) of normalised inputs
        ``[N, 64, 64, 64]`` (of ``network``: default the main one)."""
        import torch

        network = network if network is not None else self.main
        network = self._fast.get(id(network), network)
        batch = torch.from_numpy(np.ascontiguousarray(inputs, dtype=np.float32)).unsqueeze(1)
        count = batch.shape[0]
        streams = min(self.streams, count)
        if streams <= 1:
            plan = [[(a, min(a + self.batch_size, count))
                     for a in range(0, count, self.batch_size)]]
        else:  # each stream a contiguous share, in as many batches within one of each other
            plan = [_even_batches(count * k // streams, count * (k + 1) // streams,
                                  -(-count // (streams * self.batch_size)))
                    for k in range(streams)]  # 48 tiles, batch 16, 2 streams: 12+12 | 12+12

        def run(part: Sequence[tuple[int, int]]) -> list[Any]:
            if torch.get_num_threads() != (1 if streams > 1 else self.threads):
                torch.set_num_threads(1 if streams > 1 else self.threads)
            with torch.inference_mode(), torch.autocast(
                    self.device.type, torch.bfloat16, enabled=self.precision == 'bfloat16'):
                return [network(batch[a:b].to(self.device)).float().cpu() for a, b in part]

        with self._lock:
            if len(plan) == 1:
                outputs = run(plan[0])
            else:
                outputs = [out for part in self._stream_pool().map(run, plan) for out in part]
        return torch.cat(outputs).numpy()

    def _stream_pool(self) -> ThreadPoolExecutor:
        """The threads the streams run on (made again in a forked child, as ``beside``)."""
        if self._pool is None or self._pool_pid != os.getpid():
            self._pool = ThreadPoolExecutor(self.streams, thread_name_prefix='miqa-stream')
            self._pool_pid = os.getpid()
        return self._pool


@dataclass(frozen=True)
class Tiles:
    """A volume's normalised tiles (stage 1 input) and where they lie."""

    images: np.ndarray  # [N, t, t, t] float32, 0..1
    starts: np.ndarray  # [N, 3] voxel indices, C order of the grid
    grid: tuple[int, int, int]
    shape: tuple[int, int, int]  # the padded volume

    @classmethod
    def of(cls, array: np.ndarray, value_range: tuple[float, float],
           spec: TileSpec = TileSpec()) -> Tiles:
        """Preprocess and tile as the spec says (``make_tiles``)."""
        return cls(*make_tiles(array, spec.size, value_range))


def run_tiles(networks: Networks, images: np.ndarray) -> np.ndarray:
    """Stage 1, tiles: the main network's raw outputs of each tile ``[N, 11+]`` (float64)."""
    return networks.predict(images).astype(np.float64)


def view_outputs(networks: Networks, view: np.ndarray, spec: ViewSpec) -> np.ndarray:
    """The raw outputs ``[networks x flips, 11+]`` of a whole-volume view: its ``spec.flips``
    mirror images in the main network, then in each member (their spread is the quality
    interval's, :func:`postprocess`)."""
    images = mirrored(view, spec.flips)
    outputs = [networks.predict(images)] + [networks.predict(images, m)
                                            for m in networks.members]
    return np.concatenate(outputs)


def run_view(networks: Networks, view: np.ndarray, spec: ViewSpec) -> np.ndarray:
    """Stage 2, view: the raw outputs ``[11+]`` (float64) of a whole-volume view, averaged over
    its ``spec.flips`` mirror images in the main network and every member."""
    return view_outputs(networks, view, spec).mean(axis=0, dtype=np.float64)


@dataclass(frozen=True)
class Blend:
    """Stage 3's result: tiles and view blended per output (quality not yet clipped)."""

    scan: np.ndarray  # [11]: quality, then the ten probabilities
    tile_quality: np.ndarray  # [N], clipped to 0..10
    tile_probabilities: np.ndarray  # [N, 10]
    view: np.ndarray | None  # [11] the view's raw outputs (None: tiles only)
    points: np.ndarray | None  # [families] the penalty outputs blended (None: no families)
    shares: np.ndarray  # [11] the view's share in each output


def blend(tile_outputs: np.ndarray, view_output: np.ndarray | None, shares: np.ndarray,
          penalty_outputs: int = 0) -> Blend:
    """Stage 3, blend: the mean over tiles of quality and of each probability, mixed with the
    view's at its share per output; penalty outputs (after the 11) at the quality's share."""
    tiles = np.asarray(tile_outputs, dtype=np.float64)
    points = None
    if penalty_outputs:
        points = tiles[:, NUM_OUTPUTS:].mean(axis=0)
        if view_output is not None:
            points = mix(points, view_output[NUM_OUTPUTS:], shares[0])
        tiles = tiles[:, :NUM_OUTPUTS]
    view = view_output[:NUM_OUTPUTS] if view_output is not None else None
    return Blend(scan=blend_outputs(tiles, view, shares),
                 tile_quality=np.clip(tiles[:, 0], QUALITY_MIN, QUALITY_MAX),
                 tile_probabilities=_sigmoid(tiles[:, 1:]), view=view, points=points,
                 shares=np.asarray(shares, dtype=np.float64))


@dataclass(frozen=True)
class Scores:
    """Stage 4's result: what the scan's assessment reports."""

    quality: float
    artifacts: dict[str, float]
    penalties: dict[str, float] | None
    fusion: dict[str, Any] | None
    quality_interval: list[float] | None = None  # [low, high], with a calibration's interval
    calibrated: bool = False  # the trained indicators went through the spec's calibration
    quality_spread: float | None = None  # sd of the quality over the view's networks x flips


def postprocess(blended: Blend, families: Sequence[str], fusion: Fusion | None = None,
                array: np.ndarray | None = None,
                value_range: tuple[float, float] | None = None,
                features: dict[str, float] | None = None,
                calibration: Calibration | None = None,
                view_qualities: np.ndarray | None = None) -> Scores:
    """Stage 4, post-processing: quality clipped to 0..10, each family's quality points
    (at least 0), and the fused indicator decided with the background metrics of ``array``
    (``features``: those metrics, when :func:`fusion_features` found them already); then
    ``calibration`` (``spec.postprocessing.calibration``) maps each indicator it names to its
    calibrated probability and gives the quality interval from the spread of the quality
    blended with each of ``view_qualities`` (the view's raw quality per network x flip)."""
    quality = float(np.clip(blended.scan[0], QUALITY_MIN, QUALITY_MAX))
    artifacts = {key: float(p) for key, p in zip(ARTIFACT_KEYS, blended.scan[1:], strict=True)}
    penalties = None
    if blended.points is not None:
        penalties = {family: float(max(p, 0.0))
                     for family, p in zip(families, blended.points, strict=True)}
    fused = None
    if fusion is not None:
        fused = fused_indicator(fusion, array, value_range, artifacts[fusion.indicator],
                                features)
        artifacts[fusion.indicator] = fused['probability']
    if calibration is None:
        return Scores(quality, artifacts, penalties, fused)
    artifacts = {key: float(calibration.probability(key, p)) for key, p in artifacts.items()}
    interval, spread = None, None
    if calibration.quality_interval is not None:
        spread = 0.0
        if view_qualities is not None and len(view_qualities) > 1:
            spread = float(blended.shares[0] * np.std(np.asarray(view_qualities, np.float64)))
        half = calibration.quality_interval.half_width(spread)
        interval = [float(np.clip(quality - half, QUALITY_MIN, QUALITY_MAX)),
                    float(np.clip(quality + half, QUALITY_MIN, QUALITY_MAX))]
    return Scores(quality, artifacts, penalties, fused, interval, True, spread)


def fusion_features(fusion: Fusion, array: np.ndarray, value_range: tuple[float, float]
                    ) -> dict[str, float]:
    """The background metrics the fusion reads, of the volume as training saw it: subsampled
    by stride, mapped to 0..1 by the scan's own range and put on 256 levels."""
    low, high = value_range
    part, _ = subsample(array, fusion.max_voxels)
    return fusion.features(rescale_into(np.array(part, dtype=np.float32, copy=True), low, high))


def fused_indicator(fusion: Fusion, array: np.ndarray, value_range: tuple[float, float],
                    network_probability: float, features: dict[str, float] | None = None
                    ) -> dict[str, Any]:
    """The fusion's probability for its indicator, with its inputs (the result's ``fusion``);
    ``features``: :func:`fusion_features` of ``array``, when found already."""
    if features is None:
        features = fusion_features(fusion, array, value_range)
    return {'indicator': fusion.indicator, 'network': float(network_probability),
            'probability': fusion.probability(network_probability, features),
            'metrics': features}


class Stopwatch:
    """Seconds spent per step of an assessment (the result's ``timings``)."""

    def __init__(self, earlier: dict[str, float] | None = None):
        self.laps = {'read': 0.0, **(earlier or {})}
        self.start = self.last = time.perf_counter()

    def lap(self, step: str) -> None:
        now = time.perf_counter()
        self.laps[step] = now - self.last
        self.last = now

    def timings(self, without: Sequence[str] = ()) -> dict[str, float]:
        """The laps (but ``without``) and their ``total`` with the read."""
        out = {step: float(t) for step, t in self.laps.items() if step not in without}
        out['total'] = float(self.laps['read'] + (self.last - self.start))
        return out


def assessment_result(volume: ScanVolume, tiles: Tiles, blended: Blend, scores: Scores,
                      view: ViewSpec, networks: int,
                      trained: Sequence[str] = OUTPUT_NAMES) -> dict[str, Any]:
    """The result of one scan (the module docstring), less ``metrics``, ``model`` and
    ``timings``, in the order the worker has always reported its keys.

    ``trained`` (``spec.outputs.trained``): only these indicators are reported as probabilities
    (``artifacts``, ``globalView.artifacts``, ``tileMap.artifacts``); the untrained ones are
    meaningless and left out. ``trainedOutputs`` names the trained outputs.
    """
    keep = [key for key in ARTIFACT_KEYS if key in trained]
    result: dict[str, Any] = {'quality': scores.quality,
                              **({'qualityInterval': scores.quality_interval}
                                 if scores.quality_interval is not None else {}),
                              'artifacts': {k: scores.artifacts[k] for k in keep},
                              **({'calibrated': True} if scores.calibrated else {}),
                              'tileMap': _tile_map(tiles, blended, keep),
                              'trainedOutputs': [n for n in OUTPUT_NAMES if n in trained]}
    if scores.penalties is not None:
        result['penalties'] = scores.penalties
    if blended.view is not None:
        result['globalView'] = _view_report(blended, view.flips, networks, keep)
        if scores.quality_spread is not None:
            result['globalView']['qualitySpread'] = scores.quality_spread
    if scores.fusion is not None:
        result['fusion'] = scores.fusion
    return result


def _view_report(blended: Blend, flips: int, networks: int,
                 keep: Sequence[str] = ARTIFACT_KEYS) -> dict[str, Any]:
    """The result's ``globalView`` (the indicators in ``keep`` only)."""
    view = blended.view
    return {'weight': float(blended.shares[0]),
            'weights': dict(zip(OUTPUT_NAMES, map(float, blended.shares), strict=True)),
            'flips': flips, 'networks': networks,
            'quality': float(np.clip(view[0], QUALITY_MIN, QUALITY_MAX)),
            'artifacts': {key: float(p) for key, p in zip(ARTIFACT_KEYS, _sigmoid(view[1:]),
                                                           strict=True) if key in keep}}


def _tile_map(tiles: Tiles, blended: Blend,
              keep: Sequence[str] = ARTIFACT_KEYS) -> dict[str, Any]:
    """The result's ``tileMap`` (the indicators in ``keep`` only)."""
    return {'grid': [int(g) for g in tiles.grid], 'starts': tiles.starts.tolist(),
            'tileSize': int(tiles.images.shape[1]), 'shape': list(tiles.shape),
            'quality': [float(q) for q in blended.tile_quality],
            'artifacts': {key: [float(p) for p in blended.tile_probabilities[:, i]]
                          for i, key in enumerate(ARTIFACT_KEYS) if key in keep}}


def _volume_report(volume: ScanVolume) -> dict[str, Any]:
    """The result's ``volume``."""
    return {'shape': list(volume.shape), 'spacing': [float(s) for s in volume.spacing],
            'orientation': volume.original_orientation, 'note': volume.note,
            'format': volume.source_format}


def in_memory_spec(global_view_weight: float = 0.0, weights: dict[str, float] | None = None,
                   flips: int = 1, fusion: Fusion | None = None,
                   penalty_families: Sequence[str] | None = None) -> ModelSpec:
    """The spec of a network in memory (training evaluation), validated as a file would be."""
    return ModelSpec(
        name='in-memory', version='-', description='a network in memory',
        created='1970-01-01T00:00:00+00:00',
        view=ViewSpec(global_view_weight or 0.0, dict(weights or {}), flips),
        postprocessing=Postprocessing(tuple(penalty_families or ())),
        fusion=FusionSpec(fusion.indicator) if fusion is not None else None).checked()


def _silent(current: int, total: int, message: str) -> None:
    """A progress callback that reports nothing."""


class Assessor:
    """A loaded model that assesses scans; create once per process (see :func:`get_assessor`).

    Args:
        model: a model name (searched as ``model_store.find_model`` does) or folder.
        batch_size: inputs per forward pass.
        threads: torch threads (default :func:`available_cores`).
        max_voxels: the largest volume read (``image_io.read_volume``).
        precision: the network passes' precision, ``auto`` (bfloat16 on a CPU that has it,
            else float32), ``float32`` or ``bfloat16`` (default ``MIQA_PRECISION``, else auto;
            an in-memory network under training: float32). Results say which in ``inference``.
    """

    def __init__(self, model: str | os.PathLike = DEFAULT_MODEL, batch_size: int =
                 DEFAULT_BATCH_SIZE, threads: int | None = None, max_voxels: int | None = None,
                 precision: str | None = None,
                 _loaded: tuple[Any, ModelSpec, dict[str, Any]] | None = None):
        import torch

        from .model_store import load_folder

        self.threads = threads or available_cores()
        torch.set_num_threads(self.threads)
        network, self.spec, self.info, self.fusion, members = (
            load_folder(model) if _loaded is None else (*_loaded, None, []))
        self.networks = Networks(network, members, batch_size, self.threads,
                                 fast=_loaded is None, precision=precision)
        self.max_voxels = max_voxels
        self._beside: ThreadPoolExecutor | None = None  # see beside()
        self._beside_pid = os.getpid()

    @classmethod
    def from_network(cls, network, global_view_weight: float = 0.0, threads: int | None = None,
                     weights: dict[str, float] | None = None, flips: int = 1,
                     fusion: Fusion | None = None, penalty_families: list[str] | None = None,
                     members: list | tuple = (), **kwargs: Any) -> Assessor:
        """An Assessor of a network in memory (training evaluates its models this way);
        ``members``: more networks whose view outputs are averaged with its own."""
        import torch

        from .model_store import ModelError

        try:
            spec = in_memory_spec(global_view_weight, weights, flips, fusion, penalty_families)
        except ModelSpecError as exc:
            raise ModelError(f'model in-memory: {exc}') from None
        info = {'name': spec.name, 'version': spec.version, 'sha256': '-'}
        assessor = cls(batch_size=kwargs.pop('batch_size', DEFAULT_BATCH_SIZE),
                       threads=threads or torch.get_num_threads(),
                       _loaded=(network, spec, info), **kwargs)
        assessor.fusion = fusion
        assessor.members = list(members)
        return assessor

    # the networks, and what the spec says, under the names the worker has always used
    network = property(lambda self: self.networks.main, doc='The main network.')
    device = property(lambda self: self.networks.device)
    batch_size = property(lambda self: self.networks.batch_size)
    view_flips = property(lambda self: self.spec.view.flips)
    uses_view = property(lambda self: self.spec.view.used)
    penalty_families = property(lambda self: list(self.spec.postprocessing.penalty_families))
    view_weights = property(lambda self: np.array(self.spec.view.shares(), dtype=np.float64),
                            doc="The view's share in each of the 11 outputs.")

    @property
    def members(self) -> list:
        """The view members' networks."""
        return self.networks.members

    @members.setter
    def members(self, networks: list) -> None:
        self.networks.members = list(networks)

    @property
    def model(self) -> dict[str, str]:
        """``{name, version, sha256}`` of the loaded weights."""
        return {'name': str(self.info['name']), 'version': str(self.info['version']),
                'sha256': str(self.info['sha256'])}

    def predict_tiles(self, tiles: np.ndarray, network=None) -> np.ndarray:
        """Network outputs ``[N, 11 + penalty outputs]`` (float32) for normalised tiles
        ``[N, 64, 64, 64]`` (of ``network``: default the model's own)."""
        return self.networks.predict(tiles, network)

    def predict_with_view(self, tiles: np.ndarray, view: np.ndarray | None
                          ) -> tuple[np.ndarray, np.ndarray | None]:
        """Raw outputs of normalised tiles ``[N, 11+]`` and of a whole-volume view ``[11+]``
        (stages 1 and 2: :func:`run_tiles`, :func:`run_view`). ``view`` None: tiles only."""
        outputs = self.networks.predict(tiles)
        return outputs, None if view is None else run_view(self.networks, view, self.spec.view)

    def beside(self, wanted: bool, fn: Callable[..., Any], *args: Any) -> Future | None:
        """Start ``fn(*args)`` on a second thread when ``wanted``: a future of (its result, its
        seconds); None otherwise.

        The image metrics and the fusion's background metrics run beside preprocessing this
        way, one after the other on the other core (numpy and scipy release the GIL in their
        loops); the metrics are collected before the network's threads start.
        """
        if not wanted:
            return None
        if self._beside is None or self._beside_pid != os.getpid():  # none, or lost in a fork
            self._beside = ThreadPoolExecutor(1, thread_name_prefix='miqa-beside')
            self._beside_pid = os.getpid()

        def timed() -> tuple[Any, float]:
            began = time.perf_counter()
            return fn(*args), time.perf_counter() - began

        return self._beside.submit(timed)

    def assess_volume(self, volume: ScanVolume, progress: Progress | None = None,
                      metrics: bool = True, _timings: dict[str, float] | None = None,
                      source: str | os.PathLike | None = None, sidecar: Any = None
                      ) -> dict[str, Any]:
        """Assess a volume already read (see the module docstring for the result).

        ``source`` (the file as uploaded: its name is read) and ``sidecar`` (its JSON sidecar:
        object, text or None) tell the scan's contrast for ``scope`` (:mod:`.scope`).
        """
        report, clock = progress or _silent, Stopwatch(_timings)
        report(2, PROGRESS_TOTAL, 'normalising and tiling; image quality metrics')
        pending = self.beside(metrics, compute_quality_metrics, volume.array, volume.spacing)
        value_range = intensity_range(volume.array)
        background = self.beside(self.fusion is not None, fusion_features, self.fusion,
                                 volume.array, value_range)  # after the metrics, beside too
        tiles = Tiles.of(volume.array, value_range, self.spec.tiles)
        view = whole_view(volume, value_range) if self.uses_view else None
        clock.lap('preprocess')
        # collected before the network's threads start, so that they have both cores
        iqms, seconds = pending.result() if pending else ({}, 0.0)
        clock.lap('metrics')
        clock.laps['metrics'] = seconds  # its own time (beside preprocessing); total: wall
        report(3, PROGRESS_TOTAL, f'running the model on {len(tiles.images)} tiles')
        tile_outputs = run_tiles(self.networks, tiles.images)
        view_rows = None if view is None else view_outputs(self.networks, view, self.spec.view)
        view_output = None if view_rows is None else view_rows.mean(axis=0, dtype=np.float64)
        clock.lap('inference')
        blended = blend(tile_outputs, view_output, self.view_weights,
                        len(self.penalty_families))
        scores = postprocess(blended, self.penalty_families, self.fusion, volume.array,
                             value_range, background.result()[0] if background else None,
                             self.spec.postprocessing.calibration,
                             None if view_rows is None else view_rows[:, 0])
        clock.lap('fusion')
        report(4, PROGRESS_TOTAL, 'post-processing and scope')
        scope = assess_scope(self.spec.domain, source, volume, sidecar)
        clock.lap('scope')
        acquisition = acquisition_parameters(source, sidecar, volume)  # headers only
        clock.lap('acquisition')
        hidden = ('scope', 'acquisition') if scores.fusion else (
            'fusion', 'scope', 'acquisition')  # keys as they were
        report(PROGRESS_TOTAL, PROGRESS_TOTAL, f'quality {scores.quality:.2f}/10')
        return {**assessment_result(volume, tiles, blended, scores, self.spec.view,
                                    1 + len(self.members), self.spec.outputs.trained),
                'scope': scope, 'acquisition': acquisition, 'metrics': iqms,
                'model': self.model,
                'inference': {'device': self.device.type,
                              'precision': self.networks.precision},
                'volume': _volume_report(volume),
                'timings': clock.timings(without=hidden)}

    def assess_file(self, path: str | os.PathLike, progress: Progress | None = None,
                    metrics: bool = True, sidecar: Any = None) -> dict[str, Any]:
        """Read and assess a scan file; ImageError (one line) when it cannot be assessed.
        ``sidecar``: its JSON sidecar (object, text or None) for ``scope``."""
        if progress:
            progress(1, PROGRESS_TOTAL, 'reading the image')
        t0 = time.perf_counter()
        volume = read_volume(path, max_voxels=self.max_voxels)
        read = time.perf_counter() - t0
        return self.assess_volume(volume, progress, metrics=metrics, _timings={'read': read},
                                  source=path, sidecar=sidecar)


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
