// Download a scan's image file from Girder and turn it into a displayed (RAS) volume.
import { apiUrl, authHeaders, loadRules, rest, staticRoot } from '../api';
import { gunzip, isGzip, looksLikeNifti, parseNifti } from './nifti';
import { intensityStats, toCanonical } from './orient';

/** Whether a file name has one of the image endings (the rules' imageExtensions, lower case). */
export function isImageName(name, extensions) {
  const lower = (name || '').toLowerCase();
  return extensions.some((ext) => lower.endsWith(ext));
}

/** The item's image file (the newest one with an image name, as the server picks it) and all files. */
export async function imageFile(itemId) {
  const [files, rules] = await Promise.all([
    rest({ url: `item/${itemId}/files`, data: { limit: 0 } }), loadRules()]);
  const images = files.filter((f) => isImageName(f.name, rules.imageExtensions));
  images.sort((a, b) => String(b.created).localeCompare(String(a.created)));
  if (!images.length) {
    throw new Error('This item has no image file.');
  }
  images[0].siblings = files;
  return images[0];
}

const encoder = new TextEncoder();

function concat(head, data) {
  const out = new Uint8Array(head.length + data.byteLength);
  out.set(head, 0);
  out.set(new Uint8Array(data), head.length);
  return out.buffer;
}

/**
 * A MetaImage (.mhd) or NRRD (.nhdr) header with its data in another file of the same item:
 * fetch that file and make the single-file form (.mha / .nrrd) that itk-wasm reads.
 */
async function attachDetachedData(file, buffer) {
  const lower = file.name.toLowerCase();
  const text = new TextDecoder().decode(buffer);
  const lines = text.split(/\r?\n/);
  const isMeta = lower.endsWith('.mhd');
  const pattern = isMeta ? /^\s*ElementDataFile\s*=\s*(.+?)\s*$/i : /^\s*data ?file\s*:\s*(.+?)\s*$/i;
  const index = lines.findIndex((line) => pattern.test(line));
  if (index < 0) {
    throw new Error(`${file.name} names no data file.`);
  }
  const dataName = lines[index].match(pattern)[1];
  if (isMeta && dataName.toUpperCase() === 'LOCAL') {
    return { buffer, name: `${file.name.slice(0, -4)}.mha` };
  }
  if (/^LIST\b/i.test(dataName) || /%/.test(dataName) || dataName.includes(' ')) {
    throw new Error(`${file.name}: data split over several files cannot be shown in the browser.`);
  }
  const base = dataName.split(/[\\/]/).pop();
  const dataFile = (file.siblings || []).find((f) => f.name === base);
  if (!dataFile) {
    throw new Error(`${file.name} needs ${base}, which is not in this item.`);
  }
  const { buffer: data } = await download({ ...dataFile, name: '' });
  if (isMeta) {
    const header = lines.filter((line, i) => i !== index && line.trim()).concat(['ElementDataFile = LOCAL', '']).join('\n');
    return { buffer: concat(encoder.encode(header), data), name: `${file.name.slice(0, -4)}.mha` };
  }
  const blank = lines.findIndex((line, i) => i > 0 && !line.trim());
  const header = lines.slice(0, blank < 0 ? lines.length : blank)
    .filter((line, i) => i !== index && line.trim()).concat(['', '']).join('\n');
  return { buffer: concat(encoder.encode(header), data), name: `${file.name.slice(0, -5)}.nrrd` };
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
    const { readDicomZip } = await import('./itk');
    raw = await readDicomZip(buffer, staticRoot());
  } else if (lower.endsWith('.nii') || lower.endsWith('.nii.gz')) {
    if (!decompressed && isGzip(buffer)) {
      buffer = await gunzip(buffer);
    }
    if (!looksLikeNifti(buffer)) {
      throw new Error(`${file.name} is not a NIfTI file.`);
    }
    raw = parseNifti(buffer);
  } else {
    const { readWithItk } = await import('./itk');
    let name = file.name;
    if (lower.endsWith('.mhd') || lower.endsWith('.nhdr')) {
      ({ buffer, name } = await attachDetachedData(file, buffer));
    }
    raw = await readWithItk(buffer, name, staticRoot());
  }
  const volume = toCanonical(raw);
  volume.stats = intensityStats(volume.data);
  volume.file = file;
  volume.timings = { downloadMs: tDownload - t0, parseMs: performance.now() - tDownload };
  return volume;
}
