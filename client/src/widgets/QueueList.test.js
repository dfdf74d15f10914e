import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { ROW_REASONS, queueRow } from './QueueList.js';

describe('queueRow', () => {
  it('shows the site, the quality and the first reasons, heaviest first', () => {
    const reasons = [1, 4, 2, 3].map((w) => ({ source: 'metrics', severity: 'warning', text: `r${w}`, weight: w }));
    const r = queueRow({
      _id: 'i1', name: 'sub-01_T1w.nii.gz', path: 'site-b/sub-01', site: 'site-b', reasons,
      miqa: { state: 'unreviewed', assessment: { status: 'done', quality: 3.2 } },
    });
    assert.equal(ROW_REASONS, 3);
    assert.deepEqual([r.id, r.site, r.quality, r.state, r.more], ['i1', 'site-b', 3.2, 'unreviewed', 1]);
    assert.deepEqual(r.reasons.map((x) => x.text), ['r4', 'r3', 'r2']);
  });

  it('falls back on the reasons stored in miqa, and has no quality before the assessment', () => {
    const r = queueRow({ _id: 'i2', name: 'x', miqa: { reasons: [{ source: 'protocol', severity: 'exclude', text: 'TR' }], assessment: { status: 'queued' } } });
    assert.deepEqual([r.quality, r.site, r.reasons.length, r.more], [null, '', 1, 0]);
  });
});
