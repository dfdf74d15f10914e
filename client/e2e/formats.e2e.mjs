#!/usr/bin/env node
// Open scans of every format the server accepts in a real browser, through the plugin's own
// loader (girder.plugins.miqa.loadScan), render each in the viewer, and report what was read.
// Started by plugin_tests/browser/test_formats_browser.py, which compares the voxels with what
// nibabel / ITK read from the same files.
//
//   MIQA_URL, MIQA_LOGIN ("login:password"), MIQA_ARTIFACT_DIR
//   MIQA_FORMATS_INPUT   JSON: [{itemId, name, indices: [[i, j, k], ...]}] (indices in RAS order)
//   writes MIQA_ARTIFACT_DIR/formats.json: [{itemId, name, dims, spacing, format, values, error}]
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { chromium } from 'playwright-core';

const env = process.env;
const BASE = (env.MIQA_URL || 'http://127.0.0.1:8080/').replace(/\/?$/, '/');
const OUT = env.MIQA_ARTIFACT_DIR || 'test-artifacts';
const [LOGIN, PASSWORD] = (env.MIQA_LOGIN || 'admin:password').split(':');
const scans = JSON.parse(readFileSync(env.MIQA_FORMATS_INPUT, 'utf8'));
mkdirSync(OUT, { recursive: true });

const browser = await chromium.launch({
  executablePath: env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--no-first-run'],
});
let status = 0;
try {
  const page = await browser.newPage({ viewport: { width: 1200, height: 800 } });
  page.on('pageerror', (err) => console.log('  [page error]', err.message));
  await page.goto(BASE);
  await page.waitForFunction(() => window.girder && window.girder.plugins && window.girder.plugins.miqa
    && window.girder.rest.getApiRoot());
  // Log in through the API helper (the review test covers the login dialog).
  await page.evaluate(([l, p]) => window.girder.auth.login(l, p), [LOGIN, PASSWORD]);
  const results = [];
  for (const scan of scans) {
    const t0 = Date.now();
    const result = await page.evaluate(async ({ itemId, indices }) => {
      const { loadScan, SliceViewer } = window.girder.plugins.miqa;
      try {
        const v = await loadScan(itemId);
        const [nx, ny] = v.dims;
        const values = indices.map(([i, j, k]) => Number(v.data[i + nx * (j + ny * k)]));
        // Render it, as the review page would.
        let host = document.getElementById('miqa-format-host');
        if (!host) {
          host = document.createElement('div');
          host.id = 'miqa-format-host';
          host.style.cssText = 'position:fixed;left:0;top:0;width:1200px;height:800px;z-index:9999;background:#000';
          document.body.appendChild(host);
        }
        if (!window.formatViewer) window.formatViewer = new SliceViewer(host);
        window.formatViewer.setVolume(v);
        window.formatViewer.renderNow();
        return { dims: v.dims, spacing: v.spacing, format: v.format, values, file: v.file.name };
      } catch (err) {
        return { error: String(err && err.message ? err.message : err) };
      }
    }, scan);
    result.itemId = scan.itemId;
    result.name = scan.name;
    result.ms = Date.now() - t0;
    if (!result.error) {
      await page.waitForTimeout(50);
      await page.screenshot({ path: join(OUT, `format-${scan.name.replace(/[^A-Za-z0-9._-]/g, '_')}.png`) });
    }
    console.log(`  ${result.error ? 'ERR' : 'ok '} ${scan.name}: ${result.error || `${result.dims.join('x')} (${result.format}) in ${result.ms} ms`}`);
    results.push(result);
  }
  writeFileSync(join(OUT, 'formats.json'), JSON.stringify(results, null, 2));
} catch (err) {
  console.error(`formats e2e FAILED: ${err.stack || err}`);
  status = 1;
} finally {
  await browser.close();
}
process.exit(status);
