import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import {
  complianceRows, ofScanType, plottedMetrics, reasonSites, scanTypes,
} from './groupReport.js';

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

describe('scanTypes and ofScanType', () => {
  const metrics = {
    snr: [{ itemId: 'a', scanType: 'T1w', value: 1 }, { itemId: 'b', scanType: 'T1w', value: 2 }, { itemId: 'c', scanType: 'T2w', value: 3 }],
    cjv: [{ itemId: 'a', scanType: 'T1w', value: 1 }, { itemId: 'd', value: 2 }, { itemId: 'e', value: 2 }, { itemId: 'f', value: 2 }],
  };
  it('lists the scan types, the most common first, and filters the points by one', () => {
    assert.deepEqual(scanTypes(metrics), ['unknown', 'T1w', 'T2w']); // 3 scans, 2 (a counts once), 1
    assert.deepEqual(Object.keys(ofScanType(metrics, 'T2w')), ['snr']);
    assert.deepEqual(ofScanType(metrics, 'T1w').snr.map((p) => p.itemId), ['a', 'b']);
    assert.equal(ofScanType(metrics, null), metrics);
    assert.deepEqual(scanTypes(undefined), []);
  });
});
