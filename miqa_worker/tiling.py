"""Cover a volume with 64^3 tiles using the fewest tiles, hence the least overlap."""

import math

import numpy as np

from .constants import TILE_SIZE


def tile_starts(size: int, tile: int = TILE_SIZE) -> list[int]:
    """Tile start indices along one axis, spread evenly from 0 to ``size - tile``.

    An axis no longer than a tile gets a single start at 0 (the volume is padded).
    """
    if size <= tile:
        return [0]
    count = math.ceil(size / tile)
    return [int(round(s)) for s in np.linspace(0, size - tile, count)]


def pad_to_tile(volume: np.ndarray, tile: int = TILE_SIZE) -> np.ndarray:
    """Pad (at the end, with zeros) every axis shorter than a tile up to the tile size."""
    pad = [(0, max(0, tile - s)) for s in volume.shape]
    if any(after for _, after in pad):
        volume = np.pad(volume, pad, mode='constant')
    return volume


def tile_grid(shape: tuple[int, int, int], tile: int = TILE_SIZE) -> list[list[int]]:
    """Per-axis tile starts for a volume shape (after padding)."""
    return [tile_starts(max(s, tile), tile) for s in shape]


def extract_tiles(volume: np.ndarray, tile: int = TILE_SIZE) -> tuple[np.ndarray, np.ndarray,
                                                                     tuple[int, int, int]]:
    """Split a 3D volume into tiles.

    Returns ``(tiles, starts, grid_shape)``: tiles as an array ``[N, tile, tile, tile]``, the
    start index of each tile ``[N, 3]`` and the number of tiles along each axis, in C order
    (so ``tiles.reshape(*grid_shape, ...)`` gives the coarse map).
    """
    if volume.ndim != 3:
        raise ValueError(f'expected a 3D volume, got {volume.ndim} dimensions')
    volume = pad_to_tile(volume, tile)
    grid = tile_grid(volume.shape, tile)
    starts = np.array([(i, j, k) for i in grid[0] for j in grid[1] for k in grid[2]],
                      dtype=np.int64)
    tiles = np.stack([volume[i:i + tile, j:j + tile, k:k + tile] for i, j, k in starts])
    return tiles, starts, (len(grid[0]), len(grid[1]), len(grid[2]))


#: Rows (along the first axis) of the slabs :func:`global_view` clips at a time: ~3 MiB.
_VIEW_SLAB_ROWS = 16


def _clipped_pool(volume: np.ndarray, factors: list[int], low: float, high: float):
    """``avg_pool3d(clip(volume, low, high), factors)`` (a torch tensor) without a clipped copy
    of the volume: slab by slab along the first axis, each clipped into one small buffer.

    The first axis's length is a multiple of its factor, so no window spans two slabs; each
    window's mean is the one ``adaptive_avg_pool3d`` of the clipped volume gives.
    """
    import torch
    import torch.nn.functional as F

    rows = factors[0] * max(1, -(-_VIEW_SLAB_ROWS // factors[0]))
    buffer = np.empty((min(rows, volume.shape[0]), *volume.shape[1:]), dtype=np.float32)
    parts = []
    for start in range(0, volume.shape[0], rows):
        slab = volume[start:start + rows]
        part = buffer[:slab.shape[0]]
        np.clip(slab, np.float32(low), np.float32(high), out=part)
        parts.append(F.avg_pool3d(torch.from_numpy(part)[None, None], factors)[0, 0])
    return torch.cat(parts)[None, None]


def global_view(volume: np.ndarray, spacing, tile: int = TILE_SIZE,
                value_range: tuple[float, float] | None = None,
                clip: bool = False) -> np.ndarray:
    """The whole volume as one ``tile``^3 view: isotropic voxels, centred, zero-padded.

    Tiles see 64 voxels of the scan; artifacts that span the head (a bias field, a cut field of
    view, wraparound) need the whole of it at once. The longest physical side fits the view;
    axes are averaged down (area) where they shrink and linearly interpolated where they grow.
    With ``value_range`` (low < high) the volume must be clipped to it already, and the view is
    mapped to 0..1 after resizing: the map is affine, so this equals the view of the rescaled
    volume without rescaling every voxel of it. With ``clip`` the volume is clipped to
    ``value_range`` here: where every axis shrinks by a whole factor (a 256x256x176 scan of
    1 mm voxels: 4), slab by slab (:func:`_clipped_pool`, the same view, no clipped copy).
    """
    import torch
    import torch.nn.functional as F

    spacing = np.asarray(spacing, dtype=np.float64)
    extent = np.asarray(volume.shape) * spacing
    step = float(extent.max()) / tile
    size = [int(min(tile, max(1, round(e / step)))) for e in extent]
    down = [min(s, n) for s, n in zip(size, volume.shape, strict=True)]
    factors = [n // d for n, d in zip(volume.shape, down, strict=True)]
    whole = all(f * d == n for f, d, n in zip(factors, down, volume.shape, strict=True))
    if clip and value_range is not None and whole and down == size:
        data = _clipped_pool(volume, factors, *value_range)
    else:
        if clip and value_range is not None:
            volume = np.clip(volume, np.float32(value_range[0]), np.float32(value_range[1]))
        data = torch.from_numpy(np.ascontiguousarray(volume, dtype=np.float32))[None, None]
        if down != list(volume.shape):
            data = F.adaptive_avg_pool3d(data, down)
    if down != size:
        data = F.interpolate(data, size=size, mode='trilinear', align_corners=False)
    if value_range is not None:
        low, high = value_range
        data = (data - low) * (1.0 / (high - low))
    out = np.zeros((tile, tile, tile), dtype=np.float32)
    lo = [(tile - s) // 2 for s in size]
    out[lo[0]:lo[0] + size[0], lo[1]:lo[1] + size[1], lo[2]:lo[2] + size[2]] = data[0, 0].numpy()
    return out
