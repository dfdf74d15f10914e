// A small NIfTI-1 / NIfTI-2 reader (single-file .nii, gzipped or not): header, affine and the
// first 3D volume, as a typed array in file order (i fastest).

const NIFTI1_SIZE = 348;
const NIFTI2_SIZE = 540;

const TYPES = {
  2: Uint8Array,
  4: Int16Array,
  8: Int32Array,
  16: Float32Array,
  64: Float64Array,
  256: Int8Array,
  512: Uint16Array,
  768: Uint32Array,
  1024: BigInt64Array,
  1280: BigUint64Array,
};

export function isGzip(buffer) {
  const u8 = new Uint8Array(buffer, 0, Math.min(2, buffer.byteLength));
  return u8[0] === 0x1f && u8[1] === 0x8b;
}

/** Gunzip with the browser's native DecompressionStream (fast, no library). */
export async function gunzip(buffer) {
  const stream = new Blob([buffer]).stream().pipeThrough(new DecompressionStream('gzip'));
  return new Response(stream).arrayBuffer();
}

export function looksLikeNifti(buffer) {
  if (buffer.byteLength < NIFTI1_SIZE) {
    return false;
  }
  const view = new DataView(buffer);
  const le = view.getInt32(0, true);
  const be = view.getInt32(0, false);
  return [NIFTI1_SIZE, NIFTI2_SIZE].includes(le) || [NIFTI1_SIZE, NIFTI2_SIZE].includes(be);
}

function quaternionAffine(b, c, d, qx, qy, qz, pixdim, qfac) {
  let a = 1 - (b * b + c * c + d * d);
  a = a < 1e-7 ? 0 : Math.sqrt(a);
  const R = [
    [a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)],
    [2 * (b * c + a * d), a * a + c * c - b * b - d * d, 2 * (c * d - a * b)],
    [2 * (b * d - a * c), 2 * (c * d + a * b), a * a + d * d - c * c - b * b],
  ];
  const s = [pixdim[1] || 1, pixdim[2] || 1, (pixdim[3] || 1) * qfac];
  return [
    [R[0][0] * s[0], R[0][1] * s[1], R[0][2] * s[2], qx],
    [R[1][0] * s[0], R[1][1] * s[1], R[1][2] * s[2], qy],
    [R[2][0] * s[0], R[2][1] * s[1], R[2][2] * s[2], qz],
    [0, 0, 0, 1],
  ];
}

function readHeader(view) {
  let le = true;
  let size = view.getInt32(0, true);
  if (size !== NIFTI1_SIZE && size !== NIFTI2_SIZE) {
    le = false;
    size = view.getInt32(0, false);
  }
  const h = { littleEndian: le, version: size === NIFTI2_SIZE ? 2 : 1 };
  const i16 = (o) => view.getInt16(o, le);
  const i32 = (o) => view.getInt32(o, le);
  const f32 = (o) => view.getFloat32(o, le);
  const f64 = (o) => view.getFloat64(o, le);
  const i64 = (o) => Number(view.getBigInt64(o, le));
  if (h.version === 1) {
    h.dim = Array.from({ length: 8 }, (_, k) => i16(40 + 2 * k));
    h.datatype = i16(70);
    h.pixdim = Array.from({ length: 8 }, (_, k) => f32(76 + 4 * k));
    h.voxOffset = Math.max(NIFTI1_SIZE, Math.round(f32(108)));
    h.sclSlope = f32(112);
    h.sclInter = f32(116);
    h.qformCode = i16(252);
    h.sformCode = i16(254);
    h.quatern = [f32(256), f32(260), f32(264)];
    h.qoffset = [f32(268), f32(272), f32(276)];
    h.srow = [0, 1, 2].map((r) => [0, 1, 2, 3].map((c) => f32(280 + 16 * r + 4 * c)));
  } else {
    h.datatype = i16(12);
    h.dim = Array.from({ length: 8 }, (_, k) => i64(16 + 8 * k));
    h.pixdim = Array.from({ length: 8 }, (_, k) => f64(104 + 8 * k));
    h.voxOffset = Math.max(NIFTI2_SIZE, i64(168));
    h.sclSlope = f64(176);
    h.sclInter = f64(184);
    h.qformCode = i32(344);
    h.sformCode = i32(348);
    h.quatern = [f64(352), f64(360), f64(368)];
    h.qoffset = [f64(376), f64(384), f64(392)];
    h.srow = [0, 1, 2].map((r) => [0, 1, 2, 3].map((c) => f64(400 + 32 * r + 8 * c)));
  }
  return h;
}

function headerAffine(h) {
  if (h.sformCode > 0) {
    return [...h.srow.map((row) => row.slice()), [0, 0, 0, 1]];
  }
  if (h.qformCode > 0) {
    const qfac = h.pixdim[0] < 0 ? -1 : 1;
    return quaternionAffine(...h.quatern, ...h.qoffset, h.pixdim, qfac);
  }
  // ANALYZE-style: scaling only (nibabel flips x for this case as well).
  const p = h.pixdim;
  return [[-(p[1] || 1), 0, 0, 0], [0, p[2] || 1, 0, 0], [0, 0, p[3] || 1, 0], [0, 0, 0, 1]];
}

function swapBytes(u8, size) {
  for (let o = 0; o < u8.length; o += size) {
    for (let a = o, b = o + size - 1; a < b; a += 1, b -= 1) {
      const t = u8[a];
      u8[a] = u8[b];
      u8[b] = t;
    }
  }
}

/**
 * Parse a (decompressed) NIfTI buffer into {dims, affine (voxel -> RAS mm), data}.
 * Only the first 3D volume of a 4D file is kept; scaled data become Float32.
 */
export function parseNifti(buffer) {
  const view = new DataView(buffer);
  const h = readHeader(view);
  const ndim = h.dim[0];
  if (ndim < 2 || ndim > 7) {
    throw new Error(`Unsupported NIfTI: ${ndim} dimensions.`);
  }
  const dims = [h.dim[1], ndim >= 2 ? h.dim[2] : 1, ndim >= 3 ? h.dim[3] : 1].map((d) => Math.max(1, d));
  const Type = TYPES[h.datatype];
  if (!Type) {
    throw new Error(`Unsupported NIfTI data type ${h.datatype} (RGB and complex images are not shown).`);
  }
  const n = dims[0] * dims[1] * dims[2];
  const bytes = n * Type.BYTES_PER_ELEMENT;
  if (h.voxOffset + bytes > buffer.byteLength) {
    throw new Error('The NIfTI file is shorter than its header says (truncated download?).');
  }
  let data;
  if (h.voxOffset % Type.BYTES_PER_ELEMENT === 0 && h.littleEndian) {
    data = new Type(buffer, h.voxOffset, n);
  } else {
    const copy = new Uint8Array(buffer.slice(h.voxOffset, h.voxOffset + bytes));
    if (!h.littleEndian && Type.BYTES_PER_ELEMENT > 1) {
      swapBytes(copy, Type.BYTES_PER_ELEMENT);
    }
    data = new Type(copy.buffer);
  }
  const slope = Number.isFinite(h.sclSlope) && h.sclSlope !== 0 ? h.sclSlope : 1;
  const inter = Number.isFinite(h.sclInter) ? h.sclInter : 0;
  if (data instanceof BigInt64Array || data instanceof BigUint64Array || slope !== 1 || inter !== 0
      || data instanceof Float64Array) {
    const out = new Float32Array(n);
    for (let k = 0; k < n; k += 1) {
      out[k] = Number(data[k]) * slope + inter;
    }
    data = out;
  }
  return { dims, affine: headerAffine(h), data, format: `NIfTI-${h.version}` };
}
