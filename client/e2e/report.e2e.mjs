#!/usr/bin/env node
// End-to-end test of triage with reasons (issue #22) in a real browser (Debian's chromium via
// playwright-core) against a real Girder with the plugin. Started by
// plugin_tests/browser/test_report_browser.py, which makes a project with scans at three sites,
// stores their assessments (the server computes deviations, percentiles and reasons) and passes
// in the environment:
//
//   MIQA_URL             Girder's web client, e.g. http://127.0.0.1:8080/
//   MIQA_ADMIN           "login:password" of an admin
//   MIQA_PROJECT_ID      the project (folder) id
//   MIQA_TR_SCAN         a site-b scan acquired with another TR than its site's others
//   MIQA_SNR_SCAN        a site-b scan whose snr_wm is an outlier among site-b's scans
//   MIQA_GHOST_SCAN      a site-a scan the network finds ghosting in
//   MIQA_T2_SCAN         the project's only T2w scan (site-c): too few peers for percentiles
//   MIQA_SIDECAR_SCAN    a site-a scan whose sidecar was broken; MIQA_SIDECAR_PROBLEM: the text
//   MIQA_SCAN_COUNT      how many scans the project has
//   MIQA_T1W_COUNT       how many of them are T1w (the report plots the commonest type first)
//   MIQA_ARTIFACT_DIR    where screenshots, downloads and result.json go
//   CHROMIUM             the browser (default /usr/bin/chromium)
//
// Exit status 0 when every check passed.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { BASE, check, env, main, OUT, result, run, signedIn, TIMEOUT } from './harness.mjs';

const [ADMIN_LOGIN, ADMIN_PASSWORD] = (env.MIQA_ADMIN || 'admin:password').split(':');
const PROJECT = env.MIQA_PROJECT_ID;
const TR_SCAN = env.MIQA_TR_SCAN;
const SNR_SCAN = env.MIQA_SNR_SCAN;
const GHOST_SCAN = env.MIQA_GHOST_SCAN;
const T2_SCAN = env.MIQA_T2_SCAN;
const SIDECAR_SCAN = env.MIQA_SIDECAR_SCAN;
const SIDECAR_PROBLEM = env.MIQA_SIDECAR_PROBLEM || '';
const SCAN_COUNT = Number(env.MIQA_SCAN_COUNT || 0);
const T1W_COUNT = Number(env.MIQA_T1W_COUNT || 0);

async function shot(page, name, locator = null) {
  const path = join(OUT, `${name}.png`);
  if (locator) await locator.screenshot({ path });
  else await page.screenshot({ path, fullPage: true });
  return path;
}

/**
 * Pixels of an element screenshot that are not the white background, and those of the dots'
 * colours (blue for scans, red for outliers), decoded in the page with a 2D canvas; with
 * `at` ({x, y} in the element), the colour there.
 */
async function plotPixels(page, locator, at = null) {
  const png = await locator.screenshot();
  return page.evaluate(async ({ b64, spot }) => {
    const img = new Image();
    img.src = `data:image/png;base64,${b64}`;
    await img.decode();
    const c = document.createElement('canvas');
    c.width = img.width;
    c.height = img.height;
    const ctx = c.getContext('2d');
    ctx.drawImage(img, 0, 0);
    const { data, width, height } = ctx.getImageData(0, 0, c.width, c.height);
    let ink = 0;
    let blue = 0;
    let red = 0;
    for (let o = 0; o < data.length; o += 4) {
      const [r, g, b] = [data[o], data[o + 1], data[o + 2]];
      if (r < 245 || g < 245 || b < 245) ink += 1;
      if (b > r + 60 && b > 120) blue += 1;
      if (r > g + 80 && r > b + 80) red += 1;
    }
    let colour = null;
    if (spot) {
      const o = (Math.round(spot.y) * width + Math.round(spot.x)) * 4;
      colour = [data[o], data[o + 1], data[o + 2]];
    }
    return { width, height, ink, blue, red, colour };
  }, { b64: png.toString('base64'), spot: at });
}

/** Open a scan's review page and wait until its reasons and slices are shown. */
async function openScan(page, itemId) {
  await page.goto(`${BASE}#miqa/item/${itemId}`);
  await page.locator(`.miqa-review[data-item-id="${itemId}"]`).waitFor({ timeout: TIMEOUT });
  await page.locator('.miqa-reasons h4').waitFor({ timeout: TIMEOUT });
  await page.locator('.miqa-viewer[data-rendered="true"]').waitFor({ timeout: TIMEOUT });
}

async function reasonsOf(page) {
  return page.locator('.miqa-reasons .miqa-reason').evaluateAll((els) => els.map((e) => ({
    source: e.dataset.source, kind: e.dataset.targetKind, key: e.dataset.targetKey, text: e.querySelector('.miqa-reason-text').textContent,
  })));
}

async function projectsAndQueue(page) {
  run.step = 'projects page';
  await page.locator('.g-nav-link[g-target="miqa"]').click();
  const row = page.locator(`.miqa-project-row[data-project-id="${PROJECT}"]`);
  await row.waitFor({ timeout: TIMEOUT });
  check(await row.locator('.miqa-report-link').count() === 1, 'the project row links to the group report');

  run.step = 'queue list';
  await row.locator('.miqa-queue-list-link[data-tier="1"]').click();
  await page.locator('.miqa-queue-row').first().waitFor({ timeout: TIMEOUT });
  const rows = await page.locator('.miqa-queue-row').evaluateAll((els) => els.map((e) => ({
    id: e.dataset.itemId, site: e.querySelector('.miqa-queue-site').textContent.trim(),
    reasons: [...e.querySelectorAll('.miqa-queue-reason .miqa-reason-text')].map((r) => r.textContent),
  })));
  check(rows.length === SCAN_COUNT, 'the tier-1 queue lists every scan', rows.length);
  const byId = Object.fromEntries(rows.map((r) => [r.id, r]));
  check(byId[TR_SCAN].site === 'site-b' && byId[SNR_SCAN].site === 'site-b' && byId[GHOST_SCAN].site === 'site-a',
    'each queue row shows the scan\'s site', [byId[TR_SCAN].site, byId[GHOST_SCAN].site]);
  check(byId[TR_SCAN].reasons.some((t) => t.includes('RepetitionTime')), 'the TR scan\'s row names its RepetitionTime deviation', byId[TR_SCAN].reasons);
  check(byId[SNR_SCAN].reasons.some((t) => t.includes('snr_wm low for site-b')), 'the snr scan\'s row names its outlier', byId[SNR_SCAN].reasons);
  check(byId[GHOST_SCAN].reasons.some((t) => t.includes('likely')), 'the ghosting scan\'s row names the network\'s reason', byId[GHOST_SCAN].reasons);
  const flagged = new Set([TR_SCAN, SNR_SCAN, GHOST_SCAN]);
  const firstPlain = rows.findIndex((r) => !r.reasons.length);
  check(firstPlain === -1 || rows.slice(firstPlain).every((r) => !flagged.has(r.id)),
    'the scans with reasons come before those without', rows.map((r) => r.reasons.length));
  await shot(page, '01-queue-list');
}

async function reviewPage(page) {
  run.step = 'review page: metric outlier';
  await openScan(page, SNR_SCAN);
  let reasons = await reasonsOf(page);
  check(reasons.length >= 1 && reasons[0].source === 'metrics' && reasons[0].text.includes('snr_wm low for site-b'),
    'the snr scan\'s reasons are at the top of the review page, the outlier first', reasons);
  check((await page.locator('.miqa-reasons h4').innerText()).includes('site-b'), 'the reasons name the scan\'s site');
  const metricRows = page.locator('.miqa-metric-panel .miqa-metric-row');
  check(await page.locator('.miqa-metric-details').getAttribute('data-mode') === 'percentiles', 'the metrics are shown as percentiles among the site\'s scans');
  check(await metricRows.first().getAttribute('data-metric') === 'snr_wm'
    && (await metricRows.first().getAttribute('class')).includes('miqa-outlier'), 'the outlier metric is listed first');
  const first = await metricRows.first().innerText();
  check(/p\d+/.test(first) && first.includes('z = −'), 'it shows its percentile and (negative) z', first);
  check(await metricRows.count() >= 5, 'every metric has a percentile row', await metricRows.count());
  await page.locator('.miqa-reason[data-target-kind="metric"]').first().click();
  const target = page.locator('.miqa-metric-row[data-metric="snr_wm"]');
  check((await target.getAttribute('class')).includes('miqa-highlight'), 'clicking the reason highlights the metric row');
  check(await target.isVisible(), 'and the row is in view');
  await shot(page, '02-review-metric-reason');

  run.step = 'review page: protocol deviation';
  await openScan(page, TR_SCAN);
  reasons = await reasonsOf(page);
  const tr = reasons.find((r) => r.kind === 'parameter' && r.key === 'RepetitionTime');
  check(tr && tr.source === 'protocol', 'the TR scan has a protocol reason about RepetitionTime', reasons);
  const trRow = page.locator('.miqa-acq-row[data-key="RepetitionTime"]');
  check((await trRow.getAttribute('class')).includes('miqa-deviation'), 'its acquisition row is marked as a deviation');
  const trText = await trRow.innerText();
  check(trText.includes('2900 ms') && trText.includes('2300 ms'), 'the row shows the value found and the reference', trText);
  check((await page.locator('.miqa-acq-row[data-key="ReceiveCoilName"] .miqa-acq-value').innerText()) === 'unknown', 'a parameter the headers lack is "unknown"');
  await page.locator('.miqa-reason[data-target-key="RepetitionTime"]').click();
  check((await trRow.getAttribute('class')).includes('miqa-highlight'), 'clicking the reason highlights the parameter row');
  await shot(page, '03-review-protocol-reason');

  run.step = 'review page: network reason';
  await openScan(page, GHOST_SCAN);
  reasons = await reasonsOf(page);
  check(reasons.some((r) => r.source === 'network' && r.kind === 'indicator' && r.key === 'ghosting_motion'), 'the ghosting scan has a network reason', reasons);
  await page.locator('.miqa-reason[data-target-key="ghosting_motion"]').click();
  check((await page.locator('.miqa-assessment .miqa-bar-row[data-key="ghosting_motion"]').getAttribute('class')).includes('miqa-highlight'),
    'clicking it highlights the indicator bar');

  run.step = 'review page: a broken sidecar';
  await openScan(page, SIDECAR_SCAN);
  const problem = page.locator('.miqa-acquisition .miqa-acq-problem');
  check((await problem.innerText()).includes(SIDECAR_PROBLEM), 'the problem reading the parameters is shown', await problem.innerText());
  await page.locator('.miqa-reason[data-target-key="acquisition"]').click();
  check((await problem.getAttribute('class')).includes('miqa-highlight'), 'its reason links to it');

  run.step = 'review page: too few peers';
  await openScan(page, T2_SCAN);
  check(await page.locator('.miqa-metric-details').getAttribute('data-mode') === 'too-few', 'the lone T2w scan has no percentiles');
  await page.locator('.miqa-metric-details summary').click();
  const note = await page.locator('.miqa-metric-note').innerText();
  check(note.includes('Too few peers (1) at site-c for percentiles'), 'it says there are too few peers at its site', note);
  check(await page.locator('.miqa-metric-panel tr.miqa-metric-row').count() >= 5, 'and shows the raw values');
}

async function reportPage(page) {
  run.step = 'report page';
  const t0 = Date.now();
  await page.goto(`${BASE}#miqa/project/${PROJECT}/report`);
  await page.locator('.miqa-strip-canvas').first().waitFor({ timeout: TIMEOUT });
  result.reportMs = Date.now() - t0;
  result.plots = await page.locator('.miqa-strip-canvas').count();
  check(result.plots >= 5, 'a strip plot per metric', result.plots);
  const canvas = page.locator('.miqa-strip-canvas[data-metric="snr_wm"]');
  await canvas.scrollIntoViewIfNeeded();
  const info = await canvas.evaluate((c, ids) => {
    const plot = c.miqaPlot;
    const rect = c.getBoundingClientRect();
    const local = (id) => {
      const p = plot.layout.points.find((q) => q.itemId === id);
      return p ? { x: p.x, y: p.y, outlier: p.outlier, site: p.site } : null;
    };
    return { sites: plot.layout.sites.map((s) => s.site), points: plot.layout.points.length, snr: local(ids.snr), ghost: local(ids.ghost), rect: { w: rect.width, h: rect.height } };
  }, { snr: SNR_SCAN, ghost: GHOST_SCAN });
  check(JSON.stringify(info.sites) === JSON.stringify(['site-a', 'site-b', 'site-c']), 'the plot has a band per site', info.sites);
  check(await page.locator('.miqa-report-scan-type').inputValue() === 'T1w', 'the report plots the commonest scan type first (T1w)');
  check(info.points === T1W_COUNT, 'a dot per T1w scan', info.points);
  check(info.snr.outlier === true && info.snr.site === 'site-b', 'the snr scan is an outlier of site-b', info.snr);
  const empty = await plotPixels(page, canvas, { x: 3, y: info.rect.h / 2 });
  const atSnr = await plotPixels(page, canvas, info.snr);
  const atGhost = await plotPixels(page, canvas, info.ghost);
  result.dotPixels = atSnr.blue + atSnr.red;
  check(atSnr.ink > 500 && atSnr.blue > 150 && atSnr.red > 20, 'the canvas is drawn: blue dots and a red outlier', atSnr);
  check(atSnr.colour[0] > atSnr.colour[1] + 80, 'the pixel at the outlier\'s dot is red', atSnr.colour);
  check(atGhost.colour[2] > atGhost.colour[0] + 40, 'the pixel at an ordinary scan\'s dot is blue', atGhost.colour);
  check(empty.colour.every((v) => v > 240), 'the background beside the axis is white', empty.colour);
  await shot(page, '04-report-snr', canvas);
  await page.locator('.miqa-report-scan-type').selectOption('T2w');
  const t2 = await page.locator('.miqa-strip-canvas[data-metric="snr_wm"]').evaluate((c) => c.miqaPlot.layout.points.map((p) => p.itemId));
  check(JSON.stringify(t2) === JSON.stringify([T2_SCAN]), 'choosing T2w plots the T2w scan alone', t2);
  await page.locator('.miqa-report-scan-type').selectOption('T1w');

  run.step = 'report page: tables';
  const compliance = await page.locator('.miqa-compliance-row').evaluateAll((rows) => rows.map((r) => ({
    site: r.dataset.site, type: r.dataset.scanType, tr: r.querySelector('[data-parameter="RepetitionTime"]')?.textContent.trim(),
  })));
  check(compliance.some((r) => r.site === 'site-a' && r.type === 'T1w' && r.tr === '100 %'), 'site-a\'s T1w scans all comply on TR', compliance);
  check(compliance.some((r) => r.site === 'site-b' && r.type === 'T1w' && r.tr && r.tr !== '100 %'), 'site-b\'s do not all', compliance);
  const siteB = await page.locator('.miqa-report-site[data-site="site-b"]').innerText();
  check(siteB.includes('snr_wm') && siteB.includes('RepetitionTime'), 'site-b\'s most seen reasons are listed', siteB);
  await shot(page, '05-report');

  run.step = 'report page: downloads';
  const [csvDownload] = await Promise.all([page.waitForEvent('download', { timeout: TIMEOUT }), page.locator('.miqa-report-csv').click()]);
  const csvPath = join(OUT, 'report.csv');
  await csvDownload.saveAs(csvPath);
  const csv = readFileSync(csvPath, 'utf8');
  check(csv.split('\n').filter(Boolean).length >= 2 && csv.includes('snr_wm'), 'the CSV downloads', csv.slice(0, 120));
  check(csvDownload.suggestedFilename().endsWith('.csv'), 'as a .csv file', csvDownload.suggestedFilename());
  const [pngDownload] = await Promise.all([page.waitForEvent('download', { timeout: TIMEOUT }), page.locator('.miqa-report-png').click()]);
  const pngPath = join(OUT, 'report-plots.png');
  await pngDownload.saveAs(pngPath);
  const png = readFileSync(pngPath);
  check(png.subarray(1, 4).toString() === 'PNG' && png.length > 2000, 'the plots download as a PNG', png.length);

  run.step = 'report page: a dot opens its scan';
  const box = await canvas.boundingBox();
  await page.mouse.click(box.x + info.snr.x * (box.width / info.rect.w), box.y + info.snr.y * (box.height / info.rect.h));
  await page.waitForFunction((id) => window.location.hash === `#miqa/item/${id}`, SNR_SCAN, { timeout: TIMEOUT });
  await page.locator(`.miqa-review[data-item-id="${SNR_SCAN}"]`).waitFor({ timeout: TIMEOUT });
  check(true, 'clicking the outlier\'s dot opens that scan in the review page');
}

async function protocolSettings(page) {
  run.step = 'settings: protocols';
  await page.goto(`${BASE}#miqa/project/${PROJECT}/settings`);
  await page.locator('.miqa-settings-form').waitFor({ timeout: TIMEOUT });
  check(await page.locator('.miqa-site-level').inputValue() === '1', 'the site level setting is shown (1)');
  const ref = page.locator('.miqa-protocol-ref[data-scan-type="T1w"][data-site="site-b"]');
  await ref.waitFor({ timeout: TIMEOUT });
  check(await ref.getAttribute('data-kind') === 'inferred', 'site-b\'s T1w reference is inferred');
  check(await ref.locator('.miqa-protocol-param[data-key="RepetitionTime"] .miqa-protocol-value').inputValue() === '2.3', 'inferred from the site\'s scans: TR 2.3 s');
  await ref.locator('.miqa-protocol-adopt').click();
  const tol = ref.locator('.miqa-protocol-param[data-key="RepetitionTime"] .miqa-protocol-tolerance');
  await tol.fill('a lot');
  await ref.locator('.miqa-protocol-save').click();
  check((await ref.locator('.miqa-protocol-error').innerText()).includes('tolerance'), 'a tolerance that is no number is refused at the field');
  await tol.fill('-1');
  await ref.locator('.miqa-protocol-save').click();
  const error = page.locator('.miqa-protocol-ref[data-site="site-b"] .miqa-protocol-error', { hasText: 'of RepetitionTime' });
  await error.waitFor({ timeout: TIMEOUT });
  const message = await error.innerText();
  check(message.includes('tolerance of RepetitionTime'), 'the server\'s 400 reason is shown', message);
  check((await page.locator('.miqa-protocol-ref[data-site="site-b"] .miqa-protocol-param[data-key="RepetitionTime"] .miqa-protocol-tolerance').getAttribute('class')).includes('miqa-field-error'),
    'at the field it names');
  await page.locator('.miqa-protocol-ref[data-site="site-b"] .miqa-protocol-param[data-key="RepetitionTime"] .miqa-protocol-tolerance').fill('0.7');
  await page.locator('.miqa-protocol-ref[data-site="site-b"] .miqa-protocol-save').click();
  await page.locator('.miqa-protocol-message', { hasText: 'References saved.' }).waitFor({ timeout: TIMEOUT });
  const saved = page.locator('.miqa-protocol-ref[data-scan-type="T1w"][data-site="site-b"][data-kind="set"]');
  check(await saved.count() === 1, 'site-b\'s T1w reference is now set');

  run.step = 'settings: protocols as CSV';
  const text = page.locator('.miqa-protocol-text');
  await text.fill('scanType,site,parameter,value,tolerance,severity\nT2w,site-c,FlipAngle,150,,urgent\n');
  await page.locator('.miqa-protocol-upload').click();
  const uploadError = page.locator('.miqa-protocol-upload-error', { hasText: 'row 2' });
  await uploadError.waitFor({ timeout: TIMEOUT });
  check((await uploadError.innerText()).includes('severity'), 'a CSV row with a bad severity is refused, naming the row and field', await uploadError.innerText());
  check((await text.getAttribute('class')).includes('miqa-field-error') && (await text.inputValue()).includes('urgent'), 'at the text, which keeps what was pasted');
  await text.fill('scanType,site,parameter,value,tolerance,severity\nT2w,site-c,FlipAngle,150,5,exclude\n');
  await page.locator('.miqa-protocol-upload').click();
  const t2ref = page.locator('.miqa-protocol-ref[data-scan-type="T2w"][data-site="site-c"][data-kind="set"]');
  await t2ref.waitFor({ timeout: TIMEOUT });
  check(await t2ref.locator('.miqa-protocol-param[data-key="FlipAngle"] .miqa-protocol-severity').inputValue() === 'exclude', 'the uploaded CSV reference is listed as set');
  await shot(page, '06-settings-protocol');
}

main(async (browser) => {
  run.step = 'login';
  const { context, page } = await signedIn(browser, ADMIN_LOGIN, ADMIN_PASSWORD,
    { viewport: { width: 1500, height: 1000 }, acceptDownloads: true });
  await projectsAndQueue(page);
  await reviewPage(page);
  await reportPage(page);
  await protocolSettings(page);
  await context.close();
});
