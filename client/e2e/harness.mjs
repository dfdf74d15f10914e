// What the browser tests share: where the server and the artifacts are (MIQA_URL,
// MIQA_ARTIFACT_DIR, CHROMIUM), the checks and their record (result.json), signing in through
// Girder's login dialog, and the run itself: Chromium as the project runs it, a screenshot of the
// page in use when a step fails, result.json written whatever happens, exit status 1 naming the
// step.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { chromium } from 'playwright-core';

export const env = process.env;
export const BASE = (env.MIQA_URL || 'http://127.0.0.1:8080/').replace(/\/?$/, '/');
export const OUT = env.MIQA_ARTIFACT_DIR || 'test-artifacts';
export const TIMEOUT = 30000;

mkdirSync(OUT, { recursive: true });

/** The run's record, written to result.json: every check, and what a script adds. */
export const result = { checks: [] };
/** The step under way (named in a failure) and the page a failure screenshot is taken of. */
export const run = { step: 'start', page: null };

/** Record a check; a failed one throws, which ends the run. */
export function check(condition, message, detail) {
  result.checks.push({ ok: !!condition, message, detail });
  if (!condition) {
    throw new Error(`check failed: ${message}${detail !== undefined ? ` (${JSON.stringify(detail)})` : ''}`);
  }
  console.log(`  ok  ${message}${detail !== undefined ? `  ${JSON.stringify(detail)}` : ''}`);
}

/** Sign in through Girder's login dialog, once the MIQA plugin has loaded. */
export async function login(page, user, password) {
  await page.goto(BASE);
  await page.locator('.g-login').waitFor({ state: 'visible', timeout: TIMEOUT });
  await page.waitForFunction(() => window.girder && window.girder.plugins && window.girder.plugins.miqa);
  await page.locator('.g-login').click();
  await page.locator('#g-login').waitFor({ state: 'visible' });
  await page.waitForFunction(() => document.activeElement === document.querySelector('#g-login'));
  await page.locator('#g-login').fill(user);
  await page.locator('#g-password').fill(password);
  await page.locator('#g-login-button').click();
  await page.locator('.g-user-dropdown-link').waitFor({ state: 'visible', timeout: TIMEOUT });
  await page.locator('#g-dialog-container').waitFor({ state: 'hidden' });
}

/**
 * A new browser context (Playwright `options`, e.g. its viewport) with a page signed in as
 * `user`; the page becomes the one a failure screenshot is taken of, and its errors are logged.
 */
export async function signedIn(browser, user, password, options) {
  const context = await browser.newContext(options);
  const page = await context.newPage();
  run.page = page;
  page.on('pageerror', (err) => console.log('  [page error]', err.message));
  await login(page, user, password);
  return { context, page };
}

function writeResult() {
  writeFileSync(join(OUT, 'result.json'), JSON.stringify(result, null, 2));
}

/** Run `steps(browser)` in a headless Chromium; exit status 0 when every check passed. */
export function main(steps) {
  (async () => {
    const browser = await chromium.launch({
      executablePath: env.CHROMIUM || '/usr/bin/chromium',
      headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking',
        '--disable-component-update', '--disable-sync', '--no-first-run'],
    });
    try {
      await steps(browser);
      result.ok = true;
    } catch (err) {
      if (run.page) await run.page.screenshot({ path: join(OUT, 'failure.png') }).catch(() => {});
      throw err;
    } finally {
      await browser.close();
      writeResult();
    }
  })().then(() => {
    console.log('e2e: all checks passed');
  }, (err) => {
    console.error(`e2e FAILED at step "${run.step}": ${err.stack || err}`);
    result.ok = false;
    result.error = `${run.step}: ${err.message}`;
    writeResult();
    process.exit(1);
  });
}
