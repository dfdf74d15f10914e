// A minimal ZIP reader (stored and deflated entries, no ZIP64, no encryption) on the browser's
// native DecompressionStream, for zipped DICOM series.

function findEndOfCentralDirectory(view) {
  const min = Math.max(0, view.byteLength - 65557);
  for (let o = view.byteLength - 22; o >= min; o -= 1) {
    if (view.getUint32(o, true) === 0x06054b50) return o;
  }
  throw new Error('Not a ZIP file (no end of central directory).');
}

async function inflateRaw(bytes) {
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream('deflate-raw'));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/** The files of a ZIP archive: [{path, data: Uint8Array}], directories and macOS debris left out. */
export async function unzip(buffer) {
  const view = new DataView(buffer);
  const eocd = findEndOfCentralDirectory(view);
  const count = view.getUint16(eocd + 10, true);
  let offset = view.getUint32(eocd + 16, true);
  if (offset === 0xffffffff) throw new Error('ZIP64 archives are not supported.');
  const decoder = new TextDecoder();
  const entries = [];
  for (let n = 0; n < count; n += 1) {
    if (view.getUint32(offset, true) !== 0x02014b50) throw new Error('Corrupt ZIP central directory.');
    const method = view.getUint16(offset + 10, true);
    const compressedSize = view.getUint32(offset + 20, true);
    const nameLength = view.getUint16(offset + 28, true);
    const extraLength = view.getUint16(offset + 30, true);
    const commentLength = view.getUint16(offset + 32, true);
    const localOffset = view.getUint32(offset + 42, true);
    const path = decoder.decode(new Uint8Array(buffer, offset + 46, nameLength));
    offset += 46 + nameLength + extraLength + commentLength;
    if (path.endsWith('/') || path.startsWith('__MACOSX/') || path.split('/').pop().startsWith('.')) continue;
    const localNameLength = view.getUint16(localOffset + 26, true);
    const localExtraLength = view.getUint16(localOffset + 28, true);
    const start = localOffset + 30 + localNameLength + localExtraLength;
    const raw = new Uint8Array(buffer, start, compressedSize);
    let data;
    if (method === 0) data = raw.slice();
    else if (method === 8) data = await inflateRaw(raw);
    else throw new Error(`ZIP entry ${path} uses an unsupported compression method (${method}).`);
    entries.push({ path: path.replace(/\//g, '_'), data });
  }
  return entries;
}
