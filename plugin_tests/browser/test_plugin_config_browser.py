"""The plugin's configuration page in a real browser: linked from Girder's plugin list, it shows
the settings' values, saves changes and shows a validator's refusal beside its field."""

import json
import os
import subprocess

import pytest

from .helpers import CHROMIUM, CLIENT, skip_reason

SCRIPT = r"""
const { createRequire } = require('node:module');
const { chromium } = createRequire(process.env.CLIENT_PKG)('playwright-core');
const BASE = process.env.MIQA_URL;
const TIMEOUT = 30000;
const out = {};

(async () => {
  const browser = await chromium.launch({ executablePath: process.env.CHROMIUM,
                                          args: ['--no-sandbox'] });
  const page = await browser.newPage();
  try {
    await page.goto(BASE);
    await page.waitForFunction(() => window.girder && window.girder.plugins
                                     && window.girder.plugins.miqa, null, { timeout: TIMEOUT });
    await page.locator('.g-login').click();
    await page.locator('#g-login').waitFor({ state: 'visible' });
    await page.waitForFunction(() => document.activeElement === document.querySelector('#g-login'));
    await page.locator('#g-login').fill('admin');
    await page.locator('#g-password').fill('password');
    await page.locator('#g-login-button').click();
    await page.locator('.g-user-dropdown-link').waitFor({ state: 'visible', timeout: TIMEOUT });
    await page.locator('#g-dialog-container').waitFor({ state: 'hidden' });

    await page.goto(BASE + '#plugins');
    const link = page.locator('a.g-plugin-config-link[g-route="plugins/miqa/config"]');
    await link.first().waitFor({ state: 'visible', timeout: TIMEOUT });
    await link.first().click();
    await page.locator('.g-config-breadcrumb-container .breadcrumb').waitFor({ timeout: TIMEOUT });
    out.hash = await page.evaluate(() => window.location.hash);
    const lock = page.locator('input[data-key="miqa.lock_seconds"]');
    await lock.waitFor({ state: 'visible', timeout: TIMEOUT });
    const value = (key) => page.locator(`input[data-key="${key}"]`).inputValue();
    out.initial = {
      lock: await lock.inputValue(),
      quality: await value('miqa.suspicion_thresholds.quality'),
      model: await value('miqa.default_model'),
    };

    await lock.fill('120');
    await page.locator('input[data-key="miqa.suspicion_thresholds.quality"]').fill('6');
    await page.locator('.miqa-save-config').click();
    await page.waitForFunction(() => /Saved/.test(
      (document.querySelector('.miqa-config-message') || {}).textContent || ''), null,
      { timeout: TIMEOUT });
    out.saved = await page.locator('.miqa-config-message').textContent();

    await page.locator('input[data-key="miqa.lock_seconds"]').fill('0');
    await page.locator('.miqa-save-config').click();
    await page.locator('.miqa-config-error').first().waitFor({ state: 'visible',
                                                               timeout: TIMEOUT });
    out.error = await page.locator('.has-error .miqa-config-error').first().textContent();
    out.errorField = await page.locator('.has-error input').first().getAttribute('data-key');
  } catch (err) {
    out.failure = String(err && err.stack || err);
    await page.screenshot({ path: process.env.SHOT }).catch(() => {});
  } finally {
    await browser.close();
    console.log(JSON.stringify(out));
  }
})();
"""


@pytest.mark.plugin('miqa')
@pytest.mark.timeout(180)
def test_plugin_config_page(miqa_browser_server, admin, tmp_path):
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    from girder.models.setting import Setting

    from girder_miqa.constants import PluginSettings

    script = tmp_path / 'config.e2e.cjs'
    script.write_text(SCRIPT)
    env = {**os.environ, 'MIQA_URL': f'http://127.0.0.1:{miqa_browser_server.boundPort}/',
           'CHROMIUM': str(CHROMIUM), 'CLIENT_PKG': str(CLIENT / 'package.json'),
           'SHOT': str(tmp_path / 'failure.png')}
    proc = subprocess.run(['node', str(script)], cwd=CLIENT, env=env, capture_output=True,
                          text=True, timeout=150)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert 'failure' not in out, out['failure']
    assert out['hash'] == '#plugins/miqa/config'
    assert out['initial'] == {'lock': '300', 'quality': '5', 'model': ''}
    assert out['saved'].startswith('Saved (2 changed)')
    assert out['errorField'] == 'miqa.lock_seconds'
    assert 'miqa.lock_seconds must be a number from 1 to 86400 seconds' in out['error']
    assert Setting().get(PluginSettings.LOCK_SECONDS) == 120.0
    assert Setting().get(PluginSettings.SUSPICION_THRESHOLDS) == {'quality': 6.0,
                                                                  'probability': 0.5}
