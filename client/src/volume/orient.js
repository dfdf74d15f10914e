// Reorient a volume to the closest canonical RAS voxel order (as nibabel's as_closest_canonical
// and torchio's ToCanonical do), so that display axis 0 runs left->right, 1 posterior->anterior,
// 2 inferior->superior. The tile map of the assessment is in voxel indices of this volume.

const DISPLAY_TYPES = [Uint8Array, Int8Array, Int16Array, Uint16Array, Float32Array];

/** For each world axis (R, A, S): the file axis closest to it and whether it runs backwards. */
export function closestAxes(affine) {
  const M = [0, 1, 2].map((r) => [0, 1, 2].map((c) => affine[r][c]));
  // Normalise the columns so that voxel size does not bias the choice.
  for (let c = 0; c < 3; c += 1) {
    const len = Math.hypot(M[0][c], M[1][c], M[2][c]) || 1;
    for (let r = 0; r < 3; r += 1) {
      M[r][c] /= len;
    }
  }
  const usedRows = new Set();
  const usedCols = new Set();
  const axisForWorld = [null, null, null];
  for (let step = 0; step < 3; step += 1) {
    let best = null;
    for (let r = 0; r < 3; r += 1) {
      for (let c = 0; c < 3; c += 1) {
        if (usedRows.has(r) || usedCols.has(c)) {
          continue;
        }
        if (!best || Math.abs(M[r][c]) > Math.abs(M[best[0]][best[1]])) {
          best = [r, c];
        }
      }
    }
    const [r, c] = best;
    usedRows.add(r);
    usedCols.add(c);
    axisForWorld[r] = { axis: c, flip: M[r][c] < 0 };
  }
  return axisForWorld;
}

function displayType(data) {
  return DISPLAY_TYPES.some((T) => data instanceof T) ? data.constructor : Float32Array;
}

/**
 * Build the displayed volume: data in RAS voxel order, voxel sizes, and the mapping back to the
 * file's voxel indices and world (RAS mm) coordinates.
 */
export function toCanonical({ dims, affine, data, format }) {
  const axes = closestAxes(affine);
  const strides = [1, dims[0], dims[0] * dims[1]];
  const outDims = axes.map(({ axis }) => dims[axis]);
  const spacing = axes.map(({ axis }) => Math.hypot(affine[0][axis], affine[1][axis], affine[2][axis]) || 1);
  const identity = axes.every(({ axis, flip }, w) => axis === w && !flip);
  const OutType = displayType(data);
  let out;
  if (identity && OutType === data.constructor) {
    out = data;
  } else {
    out = new OutType(outDims[0] * outDims[1] * outDims[2]);
    const s = axes.map(({ axis, flip }) => (flip ? -strides[axis] : strides[axis]));
    let base = 0;
    axes.forEach(({ axis, flip }) => {
      if (flip) {
        base += (dims[axis] - 1) * strides[axis];
      }
    });
    const [nx, ny, nz] = outDims;
    let o = 0;
    for (let c = 0; c < nz; c += 1) {
      for (let b = 0; b < ny; b += 1) {
        let src = base + b * s[1] + c * s[2];
        for (let a = 0; a < nx; a += 1, src += s[0]) {
          out[o++] = data[src];
        }
      }
    }
  }
  return {
    dims: outDims,
    spacing,
    data: out,
    format,
    fileDims: dims,
    affine,
    axes,
    /** Voxel indices in the file for displayed (RAS) voxel indices. */
    toFileIjk(ras) {
      const ijk = [0, 0, 0];
      axes.forEach(({ axis, flip }, w) => {
        ijk[axis] = flip ? dims[axis] - 1 - ras[w] : ras[w];
      });
      return ijk;
    },
    /** World coordinates (RAS mm, from the file's affine) of displayed voxel indices. */
    toWorld(ras) {
      const ijk = this.toFileIjk(ras);
      return [0, 1, 2].map((r) => affine[r][0] * ijk[0] + affine[r][1] * ijk[1] + affine[r][2] * ijk[2] + affine[r][3]);
    },
  };
}

/** Robust display range: percentiles of the non-zero voxels from a strided sample. */
export function intensityStats(data) {
  const n = data.length;
  const step = Math.max(1, Math.floor(n / 400000));
  let min = Infinity;
  let max = -Infinity;
  const sample = [];
  for (let k = 0; k < n; k += step) {
    const v = data[k];
    if (!Number.isFinite(v)) {
      continue;
    }
    if (v < min) min = v;
    if (v > max) max = v;
    if (v !== 0) sample.push(v);
  }
  if (!Number.isFinite(min)) {
    min = 0;
    max = 1;
  }
  const sorted = Float64Array.from(sample.length ? sample : [min, max]).sort();
  const pct = (p) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.round((p / 100) * (sorted.length - 1))))];
  return { min, max, pct };
}
