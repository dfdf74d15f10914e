import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import {
  doneAssessment, probability, qualityInterval, qualityText, scopeNotice, suggestedKeys, summarize,
  tileLayers, trainedKeys,
} from './AssessmentPanel.js';

describe('AssessmentPanel logic', () => {
  it('reads probabilities stored as numbers or objects', () => {
    assert.equal(probability(0.3), 0.3);
    assert.equal(probability({ probability: 0.4 }), 0.4);
    assert.equal(probability({ prob: 0.6 }), 0.6);
  });

  it('summarizes a done assessment: most probable artifacts and costliest families first', () => {
    const s = summarize({
      status: 'done', quality: 6.5, model: { name: 'miqa-default', version: '2' },
      artifacts: { lesion: 0.1, wraparound: { probability: 0.8 } },
      metrics: { snr: 12.5, nested: { a: 1 } },
      penalties: { motion: 0.4, noise: 1.2, bogus: 'x' },
      fusion: { indicator: 'wraparound', network: 0.6, probability: 0.8, metrics: { air: 0.1, note: 'x' } },
    });
    assert.equal(s.quality, 6.5);
    assert.deepEqual(s.artifacts, [['wraparound', 0.8]]); // lesion: untrained (older result)
    assert.equal(s.scope, null);
    assert.equal(s.interval, null);
    assert.deepEqual(s.metrics, [['snr', 12.5]]);
    assert.deepEqual(s.penalties, [['noise', 1.2], ['motion', 0.4]]);
    assert.ok(Math.abs(s.lost - 1.6) < 1e-9);
    assert.deepEqual(s.airMetrics, [['air', 0.1]]);
  });

  it('has tile layers only for a done assessment with a map', () => {
    assert.equal(doneAssessment({ status: 'queued' }), null);
    assert.deepEqual(tileLayers({ status: 'done', tileMap: { artifacts: { lesion: [], wraparound: [] } } }).layers,
      ['quality', 'wraparound']);
    assert.deepEqual(tileLayers({ status: 'done', trainedOutputs: ['quality', 'lesion'], tileMap: { artifacts: { lesion: [], wraparound: [] } } }).layers,
      ['quality', 'lesion']);
    assert.deepEqual(tileLayers({ status: 'done' }), { map: null, layers: [] });
    assert.deepEqual(tileLayers(null), { map: null, layers: [] });
  });

  it('shows only trained indicators, suggests those at or above the threshold', () => {
    const a = { status: 'done', quality: 5, trainedOutputs: ['quality', 'ghosting_motion', 'inhomogeneity'], artifacts: { ghosting_motion: 0.6, inhomogeneity: 0.4, lesion: 0.99, truncation: 0.7 } };
    assert.deepEqual(trainedKeys(a), ['ghosting_motion', 'inhomogeneity']);
    assert.deepEqual(summarize(a).artifacts, [['ghosting_motion', 0.6], ['inhomogeneity', 0.4]]);
    assert.deepEqual(suggestedKeys(a), ['ghosting_motion']);
    assert.deepEqual(suggestedKeys({ ...a, status: 'queued' }), []);
  });

  it('flags a scan outside the model\'s domain, and reads a quality interval when there is one', () => {
    const scope = { in_scope: false, contrast: 'T2w', reason: 'BIDS suffix T2w', source: 'name' };
    assert.deepEqual(scopeNotice({ scope }), { text: 'Outside the model\'s domain (T2w): scores not meaningful', reason: 'BIDS suffix T2w' });
    assert.equal(scopeNotice({ scope: { ...scope, in_scope: true } }), null);
    assert.equal(scopeNotice({}), null);
    assert.deepEqual(qualityInterval({ memberQuality: [6.5, 5.9] }), [5.9, 6.5]);
    assert.equal(qualityInterval({ quality: 6 }), null);
  });

  it('shows quality with its calibrated interval, not as a bare number', () => {
    const a = { status: 'done', quality: 7.23, qualityInterval: [6.41, 7.94], calibrated: true, artifacts: {} };
    const s = summarize(a);
    assert.deepEqual(s.interval, [6.41, 7.94]);
    assert.equal(s.calibrated, true);
    assert.equal(qualityText(s.quality, s.interval), '7.2 / 10 (6.4–7.9)');
    assert.equal(qualityText(7.23, null), '7.2 / 10'); // an older result: the bare score
    assert.deepEqual(qualityInterval({ qualityInterval: [8, 'x'] }), null); // one bad end: none
    assert.equal(summarize({ ...a, calibrated: undefined }).calibrated, false);
  });
});
