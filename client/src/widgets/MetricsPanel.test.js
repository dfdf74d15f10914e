import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { fmtZ, groupSite, metricRows } from './MetricsPanel.js';

const RAW = { snr_wm: 4.1, cjv: 0.51, efc: 0.47, note: 'text', nested: { a: 1 } };

describe('metricRows', () => {
  it('lists percentiles with the outliers first, then by |z|', () => {
    const stats = {
      group: 'site-b / T1w', peers: 14, minimumPeers: 8, enough: true,
      percentiles: { snr_wm: 2, cjv: 60, efc: 97 }, z: { snr_wm: -3.4, cjv: 0.2, efc: 2.1 }, outliers: ['snr_wm'],
    };
    const { mode, note, rows } = metricRows(RAW, stats);
    assert.equal(mode, 'percentiles');
    assert.equal(note, 'Percentile among 14 scans of site-b / T1w');
    assert.deepEqual(rows.map((r) => [r.name, r.percentile, r.z, r.outlier]), [
      ['snr_wm', 2, -3.4, true], ['efc', 97, 2.1, false], ['cjv', 60, 0.2, false]]);
    assert.equal(rows[0].value, 4.1);
    const fallback = metricRows(RAW, { ...stats, group: 'all sites / T1w', note: 'site-c has 3 T1w scan(s), fewer than 8: compared with the project\'s 14 T1w scans' });
    assert.equal(fallback.note, 'Percentile among 14 scans of all sites / T1w (site-c has 3 T1w scan(s), fewer than 8: compared with the project\'s 14 T1w scans)');
  });

  it('says there are too few peers at the site and shows the raw values by name', () => {
    const { mode, note, rows } = metricRows(RAW, { group: 'site-c / T1w', peers: 3, minimumPeers: 8, enough: false, percentiles: {} });
    assert.equal(mode, 'too-few');
    assert.equal(note, 'Too few peers (3) at site-c for percentiles; at least 8 needed: raw values.');
    assert.deepEqual(rows.map((r) => [r.name, r.value, r.percentile]), [['cjv', 0.51, null], ['efc', 0.47, null], ['snr_wm', 4.1, null]]);
  });

  it('shows raw values when nothing was computed', () => {
    assert.equal(metricRows(RAW, undefined).mode, 'raw');
    assert.deepEqual(metricRows(undefined, undefined).rows, []);
  });
});

describe('helpers', () => {
  it('reads the site of a group and writes z with a minus sign', () => {
    assert.equal(groupSite('site-b / T1w'), 'site-b');
    assert.equal(groupSite(''), 'this site');
    assert.equal(fmtZ(-3.44), 'z = −3.4');
    assert.equal(fmtZ(2), 'z = 2.0');
    assert.equal(fmtZ(null), '');
  });
});
