// Formats other than NIfTI (NRRD, MetaImage, MGH/MGZ, ...) through itk-wasm's image-io, whose
// WebAssembly pipelines and worker the plugin serves from its own static directory.
import {
  readImageDicomFileSeries,
  setPipelinesBaseUrl as setDicomPipelinesBaseUrl,
  setPipelineWorkerUrl as setDicomPipelineWorkerUrl,
} from '@itk-wasm/dicom';
import { readImage, setPipelinesBaseUrl, setPipelineWorkerUrl } from '@itk-wasm/image-io';

import { unzip } from './zip';

let configuredFor = null;

function configure(staticRoot) {
  if (configuredFor === staticRoot) {
    return;
  }
  const base = new URL(staticRoot, window.location.href).href.replace(/\/$/, '');
  setPipelinesBaseUrl(`${base}/itk/pipelines`);
  setPipelineWorkerUrl(`${base}/itk/itk-wasm-pipeline.min.worker.js`);
  setDicomPipelinesBaseUrl(`${base}/itk/dicom-pipelines`);
  setDicomPipelineWorkerUrl(`${base}/itk/itk-wasm-pipeline.min.worker.js`);
  configuredFor = staticRoot;
}

/**
 * ITK image -> {dims, affine (voxel -> RAS mm), data}. ITK's physical space is LPS; itk-wasm
 * keeps the direction matrix row by row (direction[row * dim + col]; column c is index axis c).
 */
export function itkToVolume(image) {
  const dim = image.imageType.dimension;
  if (image.imageType.components !== 1) {
    throw new Error('Only single-component (grey-scale) images can be reviewed.');
  }
  const size = [0, 1, 2].map((k) => (k < dim ? Number(image.size[k]) : 1));
  const spacing = [0, 1, 2].map((k) => (k < dim ? image.spacing[k] : 1));
  const origin = [0, 1, 2].map((k) => (k < dim ? image.origin[k] : 0));
  const D = (r, c) => (r < dim && c < dim ? image.direction[r * dim + c] : (r === c ? 1 : 0));
  const lpsToRas = [-1, -1, 1];
  const affine = [0, 1, 2].map((r) => [
    lpsToRas[r] * D(r, 0) * spacing[0],
    lpsToRas[r] * D(r, 1) * spacing[1],
    lpsToRas[r] * D(r, 2) * spacing[2],
    lpsToRas[r] * origin[r],
  ]);
  affine.push([0, 0, 0, 1]);
  let data = image.data;
  const n = size[0] * size[1] * size[2];
  if (data.length > n) {
    data = data.subarray(0, n); // a 4D image: its first volume
  }
  return { dims: size, affine, data, format: 'itk-wasm' };
}

export async function readWithItk(buffer, fileName, staticRoot) {
  configure(staticRoot);
  const { image } = await readImage({ path: fileName, data: new Uint8Array(buffer) }, {});
  return itkToVolume(image);
}

/** A zipped DICOM series: unzip in the browser, then itk-wasm's DICOM series reader. */
export async function readDicomZip(buffer, staticRoot) {
  configure(staticRoot);
  const files = await unzip(buffer);
  if (!files.length) {
    throw new Error('The ZIP archive is empty.');
  }
  const { outputImage, webWorkerPool } = await readImageDicomFileSeries({
    inputImages: files, singleSortedSeries: false,
  });
  if (webWorkerPool && webWorkerPool.terminateWorkers) {
    webWorkerPool.terminateWorkers();
  }
  return itkToVolume(outputImage);
}
