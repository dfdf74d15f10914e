#!/usr/bin/env bash
# Build the MIQA web client into girder_miqa/web_client/dist (what registerPluginStaticContent
# serves): the UMD bundle, style.css, and the itk-wasm reader pipelines the viewer loads from
# there for formats other than NIfTI. Run from anywhere; needs node >= 18.18 (Debian 12's 18.20
# builds it: Vite 6) and npm.
set -euo pipefail
cd "$(dirname "$0")"
DIST=../girder_miqa/web_client/dist

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund || npm install --no-audit --no-fund
fi
npx vite build

# itk-wasm: the image readers (not the writers) and the pipeline web worker, served by Girder.
mkdir -p "$DIST/itk/pipelines"
cp node_modules/@itk-wasm/image-io/dist/pipelines/*-read-image.* "$DIST/itk/pipelines/"
cp node_modules/itk-wasm/dist/pipeline/web-workers/bundles/itk-wasm-pipeline.min.worker.js \
   "$DIST/itk/"
# zipped DICOM series: the series reader only
mkdir -p "$DIST/itk/dicom-pipelines"
cp node_modules/@itk-wasm/dicom/dist/pipelines/read-image-dicom-file-series.* "$DIST/itk/dicom-pipelines/"
echo "built $(cd "$DIST" && pwd)"
