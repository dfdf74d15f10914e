import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { complianceRows, plottedMetrics, reasonSites } from './groupReport.js';

describe('complianceRows', () => {
  it('gives one row per site and scan type, failing parameters first', () => {
    const { parameters, rows } = complianceRows({
      sites: {
        'site-b': { T1w: { scans: 4, compliant: 2, parameters: { RepetitionTime: 50, EchoTime: 100, SoftwareVersions: 100 } } },
        'site-a': {
          T1w: { scans: 5, compliant: 5, parameters: { RepetitionTime: 100, EchoTime: 100, SoftwareVersions: 100 } },
          T2w: { scans: 0, compliant: 0, parameters: {} },
        },
      },
    });
    assert.deepEqual(parameters, ['RepetitionTime', 'EchoTime', 'SoftwareVersions']);
    assert.deepEqual(rows.map((r) => [r.site, r.scanType, r.scans, r.compliant, r.percent]), [
      ['site-a', 'T1w', 5, 5, 100], ['site-a', 'T2w', 0, 0, null], ['site-b', 'T1w', 4, 2, 50]]);
  });

  it('reads a bare site mapping, and nothing at all', () => {
    assert.equal(complianceRows({ 'site-a': { T1w: { scans: 1, compliant: 1 } } }).rows.length, 1);
    assert.deepEqual(complianceRows(undefined), { parameters: [], rows: [] });
  });
});

describe('reasonSites', () => {
  it('lists each site\'s reasons most often seen first, at most limit', () => {
    const out = reasonSites({
      'site-b': [{ text: 'RepetitionTime 2900 ms, expected 2300 ms', source: 'protocol', count: 3 },
        { text: 'snr_wm low', source: 'metrics', count: 5 }, { text: '' }],
      'site-a': [],
    }, 1);
    assert.deepEqual(out, [
      { site: 'site-a', reasons: [] },
      { site: 'site-b', reasons: [{ text: 'snr_wm low', source: 'metrics', count: 5 }] }]);
  });
});

describe('plottedMetrics', () => {
  it('keeps the metrics with a numeric value, by name', () => {
    const out = plottedMetrics({ snr: [{ value: 3 }], cjv: [{ value: 0.4 }], empty: [], text: [{ value: 'x' }] });
    assert.deepEqual(out.map(([m]) => m), ['cjv', 'snr']);
    assert.deepEqual(plottedMetrics(null), []);
  });
});
