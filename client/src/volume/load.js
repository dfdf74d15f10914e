// Download a scan's image file from Girder and turn it into a displayed (RAS) volume.
import { apiUrl, authHeaders, rest, staticRoot } from '../api';
import { gunzip, isGzip, looksLikeNifti, parseNifti } from './nifti';
import { intensityStats, toCanonical } from './orient';

export const IMAGE_EXTENSIONS = ['.nii', '.nii.gz', '.nrrd', '.nhdr', '.mha', '.mhd', '.mgz', '.mgh', '.zip'];

export function isImageName(name) {
  const lower = (name || '').toLowerCase();
  return IMAGE_EXTENSIONS.some((ext) => lower.endsWith(ext));
}

/** The item's image file: the newest one with an image name (as the server picks it). */
export async function imageFile(itemId) {
  const files = await rest({ url: `item/${itemId}/files`, data: { limit: 0 } });
  const images = files.filter((f) => isImageName(f.name));
  images.sort((a, b) => String(b.created).localeCompare(String(a.created)));
  if (!images.length) {
    throw new Error('This item has no image file.');
  }
  return images[0];
}

async function download(file, signal) {
  const resp = await fetch(apiUrl(`file/${file._id}/download`), { headers: authHeaders(), signal });
  if (!resp.ok) {
    throw new Error(`Download of ${file.name} failed: HTTP ${resp.status}`);
  }
  if (file.name.toLowerCase().endsWith('.gz') && resp.body && typeof DecompressionStream !== 'undefined') {
    // Decompress while downloading.
    const stream = resp.body.pipeThrough(new DecompressionStream('gzip'));
    return { buffer: await new Response(stream).arrayBuffer(), decompressed: true };
  }
  return { buffer: await resp.arrayBuffer(), decompressed: false };
}

/** Download and parse an item's scan. Resolves to the displayed volume (see orient.js). */
export async function loadScan(itemId, { signal } = {}) {
  const t0 = performance.now();
  const file = await imageFile(itemId);
  let { buffer, decompressed } = await download(file, signal);
  const tDownload = performance.now();
  const lower = file.name.toLowerCase();
  let raw;
  if (lower.endsWith('.zip')) {
    throw new Error('Zipped DICOM series cannot be shown in the browser yet; download the file to review it.');
  }
  if (lower.endsWith('.nii') || lower.endsWith('.nii.gz')) {
    if (!decompressed && isGzip(buffer)) {
      buffer = await gunzip(buffer);
    }
    if (!looksLikeNifti(buffer)) {
      throw new Error(`${file.name} is not a NIfTI file.`);
    }
    raw = parseNifti(buffer);
  } else {
    const { readWithItk } = await import('./itk');
    raw = await readWithItk(buffer, file.name, staticRoot());
  }
  const volume = toCanonical(raw);
  volume.stats = intensityStats(volume.data);
  volume.file = file;
  volume.timings = { downloadMs: tDownload - t0, parseMs: performance.now() - tDownload };
  return volume;
}
