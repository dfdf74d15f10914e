#!/usr/bin/env node
// End-to-end test of reviewer calibration in a real browser (Debian's chromium via
// playwright-core) against a real Girder with the plugin. Started by
// plugin_tests/browser/test_reviewers_browser.py, which makes a project whose scans are all
// double reads and passes, in the environment:
//
//   MIQA_URL            Girder's web client, e.g. http://127.0.0.1:8080/
//   MIQA_READERS        "login:password:g,g,q,..." for each of two tier-1 reviewers, separated
//                       by spaces: the decisions each makes on the scans, in order
//   MIQA_ADMIN          "login:password" of an admin (the Reviewers page with names)
//   MIQA_PROJECT_ID     the project id
//   MIQA_SCANS          the scans' item ids, comma separated
//   MIQA_EXPECT_KAPPA   the pair's Cohen's kappa as the page should print it (e.g. "0.62")
//   MIQA_ARTIFACT_DIR   where screenshots and result.json go
//   CHROMIUM            the browser (default /usr/bin/chromium)
//
// Both reviewers decide every scan on its review page (G or Q); the admin then opens
// #miqa/project/:id/reviewers and reads the pair's kappa. Exit status 0 when every check passed.
import { join } from 'node:path';

import { BASE, check, env, main, OUT, result, run, signedIn, TIMEOUT } from './harness.mjs';

const READERS = (env.MIQA_READERS || '').split(' ').filter(Boolean).map((r) => {
  const [login, password, decisions] = r.split(':');
  return { login, password, decisions: decisions.split(',') };
});
const [ADMIN_LOGIN, ADMIN_PASSWORD] = (env.MIQA_ADMIN || 'admin:password').split(':');
const PROJECT = env.MIQA_PROJECT_ID;
const WINDOW = { viewport: { width: 1400, height: 900 } }; // each reviewer's browser window
const SCANS = (env.MIQA_SCANS || '').split(',');

/** Open one scan's review page and decide it with the key of `decision` (g or q). */
async function decide(page, itemId, decision) {
  await page.goto(`${BASE}#miqa/item/${itemId}`);
  await page.locator(`.miqa-review[data-item-id="${itemId}"]`).waitFor({ timeout: TIMEOUT });
  await page.locator('.miqa-viewer[data-rendered="true"]').waitFor({ timeout: TIMEOUT });
  await page.locator('body').click({ position: { x: 5, y: 5 } });
  await page.keyboard.press(decision);
  const word = decision === 'g' ? 'good' : 'questionable';
  await page.waitForFunction(([id, w]) => {
    const d = window.miqaTimings && window.miqaTimings.lastDecision;
    return d && d.itemId === id && d.decision === w;
  }, [itemId, word], { timeout: TIMEOUT });
}

async function reader(browser, r, index) {
  run.step = `reader ${r.login}: login`;
  const { context, page } = await signedIn(browser, r.login, r.password, WINDOW);
  for (let i = 0; i < SCANS.length; i += 1) {
    run.step = `reader ${r.login}: scan ${i + 1}`;
    await decide(page, SCANS[i], r.decisions[i]);
  }
  check(true, `reviewer ${index + 1} (${r.login}) decided ${SCANS.length} scans in the browser`);
  await context.close();
}

async function reviewersPage(browser) {
  run.step = 'admin: the Reviewers page';
  const { context, page } = await signedIn(browser, ADMIN_LOGIN, ADMIN_PASSWORD, WINDOW);
  const t0 = Date.now();
  await page.goto(`${BASE}#miqa/project/${PROJECT}/reviewers`);
  await page.locator('.miqa-reviewers .miqa-agreement-summary').waitFor({ timeout: TIMEOUT });
  result.pageMs = Date.now() - t0;
  const rows = await page.$$eval('.miqa-agreement-summary tbody tr', (trs) => trs.map((tr) => [...tr.children].map((td) => td.textContent.trim())));
  const [a, b] = READERS.map((r) => r.login);
  const pair = rows.find((cells) => cells[0].includes("Cohen's kappa") && cells[0].includes(a) && cells[0].includes(b));
  check(pair, 'the Reviewers page lists the pair of readers', rows);
  check(pair[1].startsWith(env.MIQA_EXPECT_KAPPA), `it shows their kappa ${env.MIQA_EXPECT_KAPPA}`, pair);
  check(pair[2] === String(SCANS.length), 'over every scan both read', pair[2]);
  const reviewers = await page.locator('.miqa-reviewer-row').count();
  check(reviewers === 2, 'a row per reviewer', reviewers);
  check(await page.locator('.miqa-reviewers[data-named="true"]').count() === 1, 'named for an admin');
  await page.screenshot({ path: join(OUT, 'reviewers.png'), fullPage: true });
  await context.close();
}

main(async (browser) => {
  for (const [i, r] of READERS.entries()) await reader(browser, r, i);
  await reviewersPage(browser);
});
