import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { doneAssessment, probability, summarize, tileLayers } from './AssessmentPanel.js';

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
    assert.deepEqual(s.artifacts, [['wraparound', 0.8], ['lesion', 0.1]]);
    assert.deepEqual(s.metrics, [['snr', 12.5]]);
    assert.deepEqual(s.penalties, [['noise', 1.2], ['motion', 0.4]]);
    assert.ok(Math.abs(s.lost - 1.6) < 1e-9);
    assert.deepEqual(s.airMetrics, [['air', 0.1]]);
  });

  it('has tile layers only for a done assessment with a map', () => {
    assert.equal(doneAssessment({ status: 'queued' }), null);
    assert.deepEqual(tileLayers({ status: 'done', tileMap: { artifacts: { lesion: [], wraparound: [] } } }).layers,
      ['quality', 'lesion', 'wraparound']);
    assert.deepEqual(tileLayers({ status: 'done' }), { map: null, layers: [] });
    assert.deepEqual(tileLayers(null), { map: null, layers: [] });
  });
});
