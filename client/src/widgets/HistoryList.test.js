import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { historyEntry, pairedReadsHtml } from './HistoryList.js';

const VOCAB = [{ key: 'ghosting_motion', label: 'ghosting/motion' }];

describe('historyEntry', () => {
  it('names the artifacts marked present by their labels, and the reviewer', () => {
    const e = historyEntry({
      decision: 'bad', tier: 2, userName: 'Tier Two', login: 'tiertwo', created: '2026-01-01T00:00:00Z',
      artifacts: { ghosting_motion: 'present', lesion: 'absent', incomplete_coverage: 'present' },
      comment: 'spike', confidence: 4, seconds: 12.5, location: { ijk: [1, 2, 3], world: [0, 0, 0] },
    }, VOCAB);
    assert.deepEqual(e.present, ['ghosting/motion', 'incomplete coverage']);
    assert.equal(e.who, 'Tier Two');
    assert.deepEqual(e.ijk, [1, 2, 3]);
    assert.equal(e.seconds, 12.5);
    assert.deepEqual(e.accepted, []);
    const s = historyEntry({ decision: 'questionable', tier: 1, artifacts: { ghosting_motion: 'present' }, acceptedSuggestions: ['ghosting_motion'] }, VOCAB);
    assert.deepEqual(s.accepted, ['ghosting/motion']);
  });

  it('leaves out what a decision does not have', () => {
    const e = historyEntry({ decision: 'good', tier: 1, login: 'tierone' }, VOCAB);
    assert.deepEqual([e.who, e.present, e.comment, e.confidence, e.seconds, e.ijk], ['tierone', [], '', null, null, null]);
  });
});

describe('pairedReadsHtml', () => {
  const PAIR_VOCAB = [{ key: 'ghosting_motion', label: 'Ghosting' }];
  const read = (login, decision, artifacts) => ({ login, userName: login, decision, artifacts, created: '2026-12-03T10:00:00Z' });
  it('shows both reads of a disagreeing double read side by side', () => {
    const html = pairedReadsHtml({ agree: false, reads: 2, decisions: [read('ann', 'good', { ghosting_motion: 'present' }), read('bob', 'good', { ghosting_motion: 'absent' })] }, PAIR_VOCAB);
    assert.equal((html.match(/miqa-paired-read"/g) || []).length, 2);
    assert.match(html, /Ghosting: present/);
    assert.match(html, /Ghosting: absent/);
    assert.match(html, /ann/);
    assert.match(html, /bob/);
  });
  it('shows nothing for agreeing pairs or single reads', () => {
    assert.equal(pairedReadsHtml({ agree: true, decisions: [read('a', 'good', {}), read('b', 'good', {})] }, PAIR_VOCAB), '');
    assert.equal(pairedReadsHtml(null, PAIR_VOCAB), '');
  });
});
