#!/usr/bin/env node
// End-to-end test of the MIQA review pages in a real browser (Debian's chromium via
// playwright-core) against a real Girder with the plugin. Started by
// plugin_tests/browser/test_review_browser.py, which creates the users, groups, project and scans
// and passes them in the environment:
//
//   MIQA_URL             Girder's web client, e.g. http://127.0.0.1:8080/
//   MIQA_TIER1 / MIQA_TIER2   "login:password" of a tier-1 and a tier-2 reviewer
//   MIQA_ADMIN           "login:password" of an admin (project settings)
//   MIQA_PROJECT_ID      the project (folder) id
//   MIQA_SCAN_ID         the 256^3 .nii.gz scan with an assessment (first in the tier-1 queue)
//   MIQA_SCAN2_ID        a second scan (NRRD, read through itk-wasm) further down the queue,
//                        assessed as outside the model's domain (T2w)
//   MIQA_ARTIFACT_DIR    where screenshots and result.json go
//   CHROMIUM             the browser (default /usr/bin/chromium)
//
// Exit status 0 when every check passed; result.json holds the measured timings.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { BASE, check, env, main, OUT, result, run, signedIn, TIMEOUT } from './harness.mjs';

const [T1_LOGIN, T1_PASSWORD] = (env.MIQA_TIER1 || 'reviewer1:password').split(':');
const [T2_LOGIN, T2_PASSWORD] = (env.MIQA_TIER2 || 'reviewer2:password').split(':');
const [ADMIN_LOGIN, ADMIN_PASSWORD] = (env.MIQA_ADMIN || 'admin:password').split(':');
const PROJECT = env.MIQA_PROJECT_ID;
const WINDOW = { viewport: { width: 1600, height: 1000 } }; // each reviewer's browser window
const SCAN = env.MIQA_SCAN_ID;
const SCAN2 = env.MIQA_SCAN2_ID;

async function shot(page, name, locator = null) {
  const path = join(OUT, `${name}.png`);
  if (locator) await locator.screenshot({ path });
  else await page.screenshot({ path });
  return path;
}

/**
 * Pixel statistics of an element screenshot, decoded in the page with a 2D canvas (reading a
 * vtk.js WebGL canvas directly with toDataURL gives black: its buffer is not preserved).
 */
async function pixelStats(page, locator) {
  const png = await locator.screenshot();
  return page.evaluate(async (b64) => {
    const img = new Image();
    img.src = `data:image/png;base64,${b64}`;
    await img.decode();
    const c = document.createElement('canvas');
    c.width = img.width;
    c.height = img.height;
    const ctx = c.getContext('2d');
    ctx.drawImage(img, 0, 0);
    const { data, width, height } = ctx.getImageData(0, 0, c.width, c.height);
    let gray = 0;
    let lit = 0;
    let red = 0;
    const levels = new Set();
    const bright = [0, 0]; // left half, right half
    for (let y = 0; y < height; y += 1) {
      for (let x = 0; x < width; x += 1) {
        const o = (y * width + x) * 4;
        const r = data[o];
        const g = data[o + 1];
        const b = data[o + 2];
        if (r > g + 60 && r > b + 60) red += 1;
        if (Math.abs(r - g) < 6 && Math.abs(g - b) < 6) {
          gray += 1;
          levels.add(r);
          if (r > 20) lit += 1;
          if (r > 235) bright[x < width / 2 ? 0 : 1] += 1;
        }
      }
    }
    const n = width * height;
    return { width, height, litFraction: lit / n, grayFraction: gray / n, levels: levels.size, red, brightLeft: bright[0], brightRight: bright[1] };
  }, png.toString('base64'));
}

/** From the projects page, open a tier's queue; resolves with ms until the slices rendered. */
async function openQueue(page, tier) {
  const row = page.locator(`.miqa-project-row[data-project-id="${PROJECT}"]`);
  if (!await row.isVisible()) {
    await page.locator('.g-nav-link[g-target="miqa"]').click();
  }
  await row.waitFor({ state: 'visible', timeout: TIMEOUT });
  const link = row.locator(`.miqa-queue-link[data-tier="${tier}"]`);
  const t0 = Date.now();
  await link.click();
  await page.locator('.miqa-viewer[data-rendered="true"]').waitFor({ timeout: TIMEOUT });
  return Date.now() - t0;
}

async function sliceLabels(page) {
  return page.$$eval('.miqa-view .miqa-view-slice', (els) => els.map((e) => e.textContent));
}

// A fresh browser context signed in as one user; its page becomes the one screenshots are taken of.
async function tier1(browser) {
  run.step = 'tier 1: login';
  const { context, page } = await signedIn(browser, T1_LOGIN, T1_PASSWORD, WINDOW);

  run.step = 'tier 1: projects page';
  await page.locator('.g-nav-link[g-target="miqa"]').click();
  const row = page.locator(`.miqa-project-row[data-project-id="${PROJECT}"]`);
  await row.waitFor({ timeout: TIMEOUT });
  check(await row.locator('svg.miqa-chart rect').count() >= 1, 'the project row has a progress chart');
  check((await row.locator('.miqa-count-unreviewed').innerText()).trim() === '2', 'two scans are unreviewed');
  check(await row.locator('.miqa-queue-link[data-tier="1"]').count() === 1, 'a tier-1 reviewer gets a link to the tier-1 queue');
  await shot(page, '01-projects');

  run.step = 'tier 1: export without the token in a URL';
  const tokenUrls = [];
  page.on('request', (req) => { if (/[?&]token=/.test(req.url())) tokenUrls.push(req.url()); });
  const hrefs = await page.locator('a[href]').evaluateAll((links) => links.map((a) => a.href));
  check(!hrefs.some((href) => /[?&]token=/.test(href)), 'no link on the projects page carries the session token',
    hrefs.filter((href) => /token=/.test(href)));
  const [download] = await Promise.all([
    page.waitForEvent('download', { timeout: TIMEOUT }),
    row.locator('.miqa-export-link[data-format="csv"]').click(),
  ]);
  const csv = readFileSync(await download.path(), 'utf8');
  check(csv.startsWith('path,') && csv.split('\n').length >= 3, 'the CSV link downloads the export (a header and two scans)', csv.slice(0, 80));
  check(download.suggestedFilename().endsWith('.csv'), 'the download is saved as a .csv file', download.suggestedFilename());
  check(tokenUrls.length === 0, 'no request put the token in its URL', tokenUrls);

  run.step = 'tier 1: open the queue';
  const ttfs = await openQueue(page, 1);
  const timings = await page.evaluate(() => window.miqaTimings);
  result.timeToFirstSlicesMs = ttfs;
  result.timeToFirstSlicesInPageMs = Math.round(timings.firstSlicesMs);
  result.firstVolume = timings.firstVolume;
  console.log(`  time to first rendered slices of the 256^3 .nii.gz: ${ttfs} ms from the click (${Math.round(timings.firstSlicesMs)} ms in the page; download+gunzip ${Math.round(timings.firstVolume.downloadMs)} ms, parse+reorient ${Math.round(timings.firstVolume.parseMs)} ms; goal <= 1500 ms)`);
  const review = page.locator('.miqa-review');
  check(await review.getAttribute('data-item-id') === SCAN, 'the most suspicious scan opens first', await review.getAttribute('data-item-id'));
  await shot(page, '02-tier1-review');

  run.step = 'tier 1: rendered slices';
  for (const name of ['axial', 'coronal', 'sagittal']) {
    const canvas = page.locator(`.miqa-view[data-view="${name}"] .miqa-view-gl canvas`);
    const stats = await pixelStats(page, canvas);
    await shot(page, `03-view-${name}`, canvas);
    check(stats.litFraction > 0.05 && stats.levels > 20, `the ${name} view shows the scan`, stats);
  }
  // Full-range window: only the marker (the brightest structure) saturates.
  await page.locator('.miqa-preset').selectOption(String(4));
  await page.waitForTimeout(100);
  for (const name of ['axial', 'coronal']) {
    const stats = await pixelStats(page, page.locator(`.miqa-view[data-view="${name}"] .miqa-view-gl canvas`));
    {
      // The bright marker sits in the patient's LEFT hemisphere (the file is stored LAS):
      // radiological display puts it on the screen's right.
      check(stats.brightRight > 30 && stats.brightRight > 3 * stats.brightLeft, `the ${name} view shows the left-side marker on the right`, stats);
    }
  }
  await page.locator('.miqa-preset').selectOption('0');
  const orient = await page.$$eval('.miqa-view[data-view="axial"] .miqa-orient', (els) => els.map((e) => e.textContent).join(''));
  check(orient === 'RLAP', 'axial orientation labels: R left, L right, A top, P bottom', orient);
  const coronal = await page.$$eval('.miqa-view[data-view="coronal"] .miqa-orient', (els) => els.map((e) => e.textContent).join(''));
  check(coronal === 'RLSI', 'coronal orientation labels', coronal);

  run.step = 'tier 1: viewer interaction';
  const before = await sliceLabels(page);
  const axial = page.locator('.miqa-view[data-view="axial"]');
  const box = await axial.boundingBox();
  await page.mouse.click(box.x + box.width * 0.3, box.y + box.height * 0.35);
  await page.waitForTimeout(150);
  const afterClick = await sliceLabels(page);
  check(afterClick[0] === before[0] && afterClick[1] !== before[1] && afterClick[2] !== before[2],
    'a click in the axial view moves the coronal and sagittal slices', { before, afterClick });
  await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
  await page.mouse.wheel(0, -100);
  await page.waitForTimeout(100);
  const afterWheel = await sliceLabels(page);
  check(afterWheel[0] !== afterClick[0], 'the mouse wheel changes the axial slice', afterWheel);
  await page.keyboard.press('ArrowUp');
  await page.waitForTimeout(50);
  check((await sliceLabels(page))[0] !== afterWheel[0], 'the arrow keys change the slice');
  const wl = await page.locator('.miqa-wl').innerText();
  await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
  await page.mouse.down({ button: 'right' });
  await page.mouse.move(box.x + box.width / 2 + 80, box.y + box.height / 2 + 40, { steps: 4 });
  await page.mouse.up({ button: 'right' });
  check(await page.locator('.miqa-wl').innerText() !== wl, 'right-dragging changes window/level');
  await page.keyboard.press('p');
  check(await page.locator('.miqa-preset').inputValue() === '1', 'P selects the next window/level preset');
  await page.keyboard.press('+');
  await page.keyboard.press('r');
  await page.waitForTimeout(100);
  check(JSON.stringify(await sliceLabels(page)) === JSON.stringify(before), 'R resets the view to the centre', await sliceLabels(page));

  run.step = 'tier 1: assessment';
  check((await page.locator('.miqa-quality-value').innerText()).replace(/\s+/g, ' ').trim() === '3.2 / 10 (2.5–4.1)',
    'the quality is shown with its interval, not as a bare number', await page.locator('.miqa-quality-value').innerText());
  const bars = await page.locator('.miqa-artifact-bars .miqa-bar-row').evaluateAll((rows) => rows.map((r) => r.dataset.key).sort());
  check(JSON.stringify(bars) === JSON.stringify(['ghosting_motion', 'incomplete_coverage', 'inhomogeneity', 'wraparound']),
    'only the four trained indicators have probability bars (no untrained output shown)', bars);
  check(await page.locator('.miqa-artifact-bars .miqa-above[data-key="ghosting_motion"] .miqa-suggested').count() === 1, 'ghosting/motion is above the threshold and suggested');
  check(await page.locator('.miqa-out-of-scope').count() === 0, 'an in-domain scan has no out-of-scope banner');
  check(await page.locator('.miqa-metric-panel .miqa-metric-row').count() >= 3, 'the image quality metrics are listed (in the metrics panel)');
  check(await page.locator('section.miqa-assessment details.miqa-metrics:not(.miqa-penalties):not(.miqa-air-metrics)').count() === 0, 'no raw metrics table beside the metrics panel');
  const fused = page.locator('.miqa-artifact-bars .miqa-fused[data-key="ghosting_motion"]');
  check(await fused.count() === 1 && (await fused.getAttribute('title')).includes('Network alone: 41%'),
    'the fused indicator shows the network\'s own probability');
  check(await page.locator('.miqa-air-metrics tr').count() === 3, 'the air statistics behind it are listed');
  const points = page.locator('.miqa-penalties tr');
  check(await points.count() === 7 && await points.first().getAttribute('data-family') === 'motion'
    && await page.locator('.miqa-penalties tr.miqa-above').count() === 1
    && (await page.locator('.miqa-penalties summary').innerText()).includes('3.6 in all'),
  'the quality points each family costs are listed, the costliest first', await page.locator('.miqa-penalties').innerText());
  const states = await page.locator('.miqa-artifacts .miqa-artifact').evaluateAll((rows) => rows.map((r) => r.dataset.state));
  check(states.length === 10 && states.every((v) => v === 'not_stated'), 'nothing is pre-filled: every artifact is not stated', states);
  check(await page.locator('.miqa-artifact[data-key="ghosting_motion"] .miqa-suggested').innerText() === 'suggested', 'the form marks ghosting/motion suggested');
  check(await page.locator('.miqa-artifact[data-key="lesion"] .miqa-suggested').count() === 0
    && !(await page.locator('.miqa-artifact[data-key="lesion"]').innerText()).includes('%'), 'the untrained lesion output is neither suggested nor shown as a probability');
  const layers = await page.locator('.miqa-tile-layer option').evaluateAll((opts) => opts.map((o) => o.value));
  check(!layers.includes('lesion') && layers.includes('ghosting_motion'), 'the tile overlay offers no untrained layer', layers);
  await page.locator('.miqa-tile-layer').selectOption('ghosting_motion');
  await page.waitForTimeout(100);
  const tiles = await pixelStats(page, page.locator('.miqa-view[data-view="axial"]'));
  check(tiles.red > 500, 'the tile-map overlay shades the axial view', { red: tiles.red });
  await shot(page, '04-tile-overlay');
  await page.locator('.miqa-tile-layer').selectOption('');

  run.step = 'tier 1: decision form';
  check(await page.locator('.miqa-decide-bad').count() === 0, 'tier 1 has no Bad button');
  check(await page.locator('.miqa-decide-questionable').count() === 1, 'tier 1 has a Questionable button');
  await page.locator('body').click({ position: { x: 5, y: 5 } });
  await page.keyboard.press('s'); // accept the shown suggestions
  check(await page.locator('.miqa-artifact[data-key="ghosting_motion"]').getAttribute('data-state') === 'present'
    && await page.locator('.miqa-artifact[data-key="ghosting_motion"] .miqa-suggested').innerText() === 'accepted', 'S accepts the suggestion: ghosting/motion present, marked accepted');
  await page.keyboard.press('5'); // wraparound: not stated -> present
  check(await page.locator('.miqa-artifact[data-key="wraparound"]').getAttribute('data-state') === 'present', 'key 5 marks wraparound present');
  await page.keyboard.press('c');
  await page.keyboard.type('Ghosting over the frontal lobe');
  await page.keyboard.press('Escape');
  await page.mouse.click(box.x + box.width * 0.6, box.y + box.height * 0.4);
  await page.keyboard.press('l');
  check((await page.locator('.miqa-location').innerText()).startsWith('voxel ['), 'L takes the location from the crosshairs');
  await page.keyboard.press('Shift+Digit4');
  check(await page.locator('.miqa-confidence button.active').innerText() === '4', 'Shift+4 sets confidence 4');
  await page.keyboard.press('?');
  check(await page.locator('.miqa-help:not(.hidden) tr').count() >= 15, 'the help dialog lists the shortcuts');
  await shot(page, '05-help');
  await page.keyboard.press('Escape');
  check(await page.locator('.miqa-help.hidden').count() === 1, 'Esc closes the help');

  run.step = 'tier 1: decide questionable';
  await page.waitForFunction((id) => window.miqaTimings.prefetched === id, SCAN2, { timeout: TIMEOUT });
  await shot(page, '06-tier1-before-decision');
  await page.keyboard.press('q');
  await page.locator(`.miqa-review[data-item-id="${SCAN2}"]`).waitFor({ timeout: TIMEOUT });
  await page.waitForFunction(() => window.miqaTimings.lastTransitionMs !== undefined);
  result.transitionMs = Math.round(await page.evaluate(() => window.miqaTimings.lastTransitionMs));
  console.log(`  moving on to the prefetched next scan took ${result.transitionMs} ms (goal < 200 ms)`);
  const decision = await page.evaluate(() => window.miqaTimings.lastDecision);
  check(decision.seconds > 0, 'the time spent is sent with the decision', decision.seconds);
  check(JSON.stringify(decision.acceptedSuggestions) === JSON.stringify(['ghosting_motion']), 'the decision records the accepted suggestion (not the reviewer\'s own wraparound)', decision.acceptedSuggestions);

  run.step = 'tier 1: second scan (NRRD via itk-wasm)';
  const axial2 = page.locator('.miqa-view[data-view="axial"] .miqa-view-gl canvas');
  let stats2 = await pixelStats(page, axial2);
  await shot(page, '07-tier1-second-scan');
  check(stats2.litFraction > 0.03 && stats2.levels > 10, 'the NRRD scan renders (read with itk-wasm)', stats2);
  await page.locator('.miqa-preset').selectOption(String(4));
  await page.waitForTimeout(100);
  stats2 = await pixelStats(page, axial2);
  check(stats2.brightRight > 10 && stats2.brightRight > 3 * stats2.brightLeft, 'the NRRD marker (patient left) is on the right', stats2);

  run.step = 'tier 1: an out-of-scope scan, decided good at once';
  const banner = page.locator('.miqa-out-of-scope');
  check(await banner.count() === 1 && (await banner.innerText()).includes("Outside the model's domain (T2w): scores not meaningful"),
    'the out-of-scope scan shows the banner', await banner.count() ? await banner.innerText() : null);
  check(await page.locator('.miqa-artifact[data-key="ghosting_motion"] .miqa-suggested').count() === 1
    && await page.locator('.miqa-artifact[data-state="present"]').count() === 0, 'its suggestion is shown, nothing is pre-filled');
  await shot(page, '07b-out-of-scope');
  await page.locator('body').click({ position: { x: 5, y: 5 } });
  await page.keyboard.press('g');
  await page.waitForFunction((id) => {
    const d = window.miqaTimings.lastDecision;
    return d && d.itemId === id && d.decision === 'good';
  }, SCAN2, { timeout: TIMEOUT });
  const good = await page.evaluate(() => window.miqaTimings.lastDecision);
  check(JSON.stringify(good.artifacts) === '{}' && good.acceptedSuggestions === undefined, 'G right away records good with no artifact present', good);
  await context.close();
}

async function tier2(browser) {
  run.step = 'tier 2: login';
  const { context, page } = await signedIn(browser, T2_LOGIN, T2_PASSWORD, WINDOW);
  run.step = 'tier 2: open the queue';
  await openQueue(page, 2);
  check(await page.locator('.miqa-review').getAttribute('data-item-id') === SCAN, 'the questionable scan is in the tier-2 queue');
  await page.locator('.miqa-history-entry').first().waitFor({ timeout: TIMEOUT });
  check((await page.locator('.miqa-history-entry').first().innerText()).includes('questionable'), 'the history shows the tier-1 decision');
  check(await page.locator('.miqa-decide-questionable').count() === 0 && await page.locator('.miqa-decide-bad').count() === 1, 'tier 2 decides good or bad');
  check(await page.locator('.miqa-artifact[data-key="ghosting_motion"]').getAttribute('data-state') === 'present'
    && await page.locator('.miqa-artifact[data-key="wraparound"]').getAttribute('data-state') === 'present'
    && await page.locator('.miqa-artifact[data-state="present"]').count() === 2, 'tier 1\'s artifacts are pre-filled, the model\'s are not');
  await shot(page, '08-tier2-review');

  run.step = 'tier 2: the bad rule';
  for (const key of ['ghosting_motion', 'wraparound']) {
    await page.locator(`.miqa-artifact-state[data-key="${key}"][data-state="not_stated"]`).click();
  }
  check(await page.locator('.miqa-rule.miqa-rule-violated').isVisible(), 'the bad rule is shown as not met before submitting');
  await page.locator('body').click({ position: { x: 5, y: 5 } });
  await page.keyboard.press('b');
  await page.waitForTimeout(300);
  check((await page.locator('.miqa-form-message').innerText()).includes('Bad needs'), 'B without artifact or comment is refused with the rule');
  check(await page.locator('.miqa-review').getAttribute('data-item-id') === SCAN, 'the scan is still open');
  await shot(page, '09-tier2-rule');
  await page.keyboard.press('6'); // ghosting/motion -> present
  check(await page.locator('.miqa-rule.miqa-rule-ok').isVisible(), 'the rule is met once an artifact is present');

  run.step = 'tier 2: decide bad';
  await page.keyboard.press('b');
  await page.locator('.miqa-review-header').waitFor();
  await page.waitForFunction((id) => {
    const d = window.miqaTimings.lastDecision;
    return d && d.itemId === id && d.decision === 'bad';
  }, SCAN, { timeout: TIMEOUT });
  await page.waitForFunction(() => document.querySelector('[data-queue-empty="true"]'), null, { timeout: TIMEOUT });
  check((await page.locator('.miqa-status').innerText()).includes('queue is empty'), 'the tier-2 queue is empty afterwards');
  await shot(page, '10-tier2-done');

  run.step = 'tier 2: the Review button on the item page';
  await page.goto(`${BASE}#item/${SCAN}`);
  const button = page.locator('.g-miqa-review-item');
  await button.waitFor({ timeout: TIMEOUT });
  check((await button.innerText()).includes('bad'), 'the item page has a Review button showing the state', await button.innerText());
  await shot(page, '11-item-page');
  await button.click();
  await page.locator(`.miqa-review[data-item-id="${SCAN}"] .miqa-viewer[data-rendered="true"]`).waitFor({ timeout: TIMEOUT });
  check(await page.locator('.miqa-history-entry').count() === 2, 'the scan opened from its item page shows both decisions');
  await shot(page, '12-review-from-item');
  await context.close();
}

async function projectAdmin(browser) {
  run.step = 'admin: settings';
  const { context, page } = await signedIn(browser, ADMIN_LOGIN, ADMIN_PASSWORD, { viewport: { width: 1400, height: 1000 } });
  await page.locator('.g-nav-link[g-target="miqa"]').click();
  const row = page.locator(`.miqa-project-row[data-project-id="${PROJECT}"]`);
  await row.waitFor({ timeout: TIMEOUT });
  check((await row.locator('.miqa-count-bad').innerText()).trim() === '1', 'the projects page counts the bad scan');
  await row.locator('.miqa-settings-link').click();
  await page.locator('.miqa-settings-form').waitFor({ timeout: TIMEOUT });
  check(await page.locator('.miqa-tier1-group option:checked').innerText() === 'MIQA tier 1', 'the tier-1 group is selected');
  check(await page.locator('.miqa-tier2-group option:checked').innerText() === 'MIQA tier 2', 'the tier-2 group is selected');
  check(await page.locator('.miqa-artifact-row').count() === 10, 'the ten artifacts of the vocabulary are listed');
  check(await page.locator('.miqa-reassess').isVisible(), 'a Re-assess all button');
  await page.locator('.miqa-auto-assess').check();
  check(await page.locator('.miqa-out-of-scope-band').inputValue() === 'last', 'out-of-scope scans rank last by default');
  await page.locator('.miqa-out-of-scope-band').selectOption('first');
  await page.locator('.miqa-add-artifact').click();
  await page.locator('.miqa-artifact-row').last().locator('.miqa-artifact-key-input').fill('chemical_shift');
  await page.locator('.miqa-artifact-row').last().locator('.miqa-artifact-label-input').fill('chemical shift');
  await page.locator('.miqa-save-settings').click();
  await page.locator('.miqa-settings-message', { hasText: 'Saved.' }).waitFor({ timeout: TIMEOUT });
  check(await page.locator('.miqa-artifact-row').count() === 11, 'the saved vocabulary has the new artifact');
  await shot(page, '13-settings');
  await context.close();
}

main(async (browser) => {
  await tier1(browser);
  await tier2(browser);
  await projectAdmin(browser);
});
