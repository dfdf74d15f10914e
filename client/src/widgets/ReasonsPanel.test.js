import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { cssString, reasonRows, targetSelector } from './ReasonsPanel.js';

const REASONS = [
  { source: 'metrics', severity: 'warning', text: 'snr_wm low for site-b (z = −3.4)', target: { kind: 'metric', key: 'snr_wm' }, weight: 1.5 },
  { source: 'protocol', severity: 'exclude', text: 'RepetitionTime 2.9 s, expected 2.3 s', target: { kind: 'parameter', key: 'RepetitionTime' }, weight: 3 },
  { source: 'network', severity: 'warning', text: 'ghosting/motion 83 %', target: { kind: 'indicator', key: 'ghosting_motion' }, weight: 1.5 },
];

describe('reasonRows', () => {
  it('lists the heaviest first and keeps the server\'s order among equals', () => {
    const rows = reasonRows(REASONS);
    assert.deepEqual(rows.map((r) => r.source), ['protocol', 'metrics', 'network']);
    assert.equal(rows[0].selector, '.miqa-acq-row[data-key="RepetitionTime"]');
    assert.equal(rows[1].selector, '.miqa-metric-row[data-metric="snr_wm"]');
    assert.equal(rows[2].selector, '.miqa-assessment .miqa-bar-row[data-key="ghosting_motion"]');
    assert.deepEqual(reasonRows(REASONS, 2).map((r) => r.weight), [3, 1.5]);
  });

  it('reads what it does not know as network / info, and drops entries without text', () => {
    const rows = reasonRows([{ source: 'astrology', severity: 'dire', text: 'x' }, { source: 'protocol' }, null, 'y']);
    assert.deepEqual(rows, [{ source: 'network', severity: 'info', text: 'x', target: null, weight: 0, selector: null }]);
    assert.deepEqual(reasonRows(undefined), []);
    assert.deepEqual(reasonRows({ not: 'a list' }), []);
  });
});

describe('targetSelector', () => {
  it('points at the quality row, and quotes keys safely', () => {
    assert.equal(targetSelector({ kind: 'indicator', key: 'quality' }), '.miqa-assessment .miqa-quality-row');
    assert.equal(targetSelector({ kind: 'metric', key: 'a"b' }), '.miqa-metric-row[data-metric="a\\"b"]');
    assert.equal(cssString('a\\b'), 'a\\\\b');
    assert.equal(targetSelector({ kind: 'indicator', key: 'scope' }), '.miqa-assessment .miqa-out-of-scope');
    assert.equal(targetSelector({ kind: 'parameter', key: 'acquisition' }), '.miqa-acquisition .miqa-acq-problem');
    assert.equal(targetSelector({ kind: 'file', key: 'x' }), null);
    assert.equal(targetSelector({ kind: 'metric' }), null);
    assert.equal(targetSelector(null), null);
  });
});
