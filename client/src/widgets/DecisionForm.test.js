import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import {
  acceptSuggestions, allowedDecisions, badRuleMet, decisionBody, decisionProblem, initialForm,
  locationText, nextArtifactValue,
} from './DecisionForm.js';

// The shape of GET /miqa/rules (girder_miqa/rest/rules.py).
const RULES = {
  tiers: { 1: { decisions: ['good', 'questionable'], reviews: 'unreviewed' },
    2: { decisions: ['good', 'bad'], reviews: 'questionable' } },
  badRule: { decision: 'bad', needsOneOf: ['artifactPresent', 'comment'], summary: 'Bad needs at least one artifact marked present, or a comment.', description: '...' },
  artifacts: [{ key: 'lesion', label: 'lesion' }],
  imageExtensions: ['.nii', '.nii.gz'],
};
const VOCAB = [{ key: 'lesion', label: 'lesion' }, { key: 'wraparound', label: 'wraparound' },
  { key: 'ghosting_motion', label: 'ghosting/motion' }];

const form = (over = {}) => ({ artifacts: {}, suggested: {}, accepted: {}, probs: {}, comment: '', location: null, confidence: null, ...over });

describe('decision rules', () => {
  it('each tier may record the decisions the rules give it', () => {
    assert.deepEqual(allowedDecisions(RULES, 1), ['good', 'questionable']);
    assert.deepEqual(allowedDecisions(RULES, 2), ['good', 'bad']);
    assert.deepEqual(allowedDecisions(RULES, 3), []);
    assert.equal(decisionProblem(form(), 'good', 1, RULES), null);
    assert.equal(decisionProblem(form(), 'bad', 1, RULES).message, 'At tier 1 a scan can be marked good or questionable.');
    assert.equal(decisionProblem(form(), 'questionable', 2, RULES).rule, false);
  });

  it('bad needs an artifact marked present or a comment', () => {
    assert.equal(badRuleMet(form(), RULES), false);
    assert.equal(badRuleMet(form({ comment: '   ' }), RULES), false);
    assert.equal(badRuleMet(form({ artifacts: { lesion: 'absent' } }), RULES), false);
    assert.equal(badRuleMet(form({ artifacts: { lesion: 'present' } }), RULES), true);
    assert.equal(badRuleMet(form({ comment: 'spike' }), RULES), true);
    assert.deepEqual(decisionProblem(form(), 'bad', 2, RULES), { message: RULES.badRule.summary, rule: true });
    assert.equal(decisionProblem(form({ comment: 'spike' }), 'bad', 2, RULES), null);
  });

  it('follows the rules it is given, not a copy', () => {
    const commentOnly = { ...RULES, badRule: { ...RULES.badRule, needsOneOf: ['comment'] } };
    assert.equal(badRuleMet(form({ artifacts: { lesion: 'present' } }), commentOnly), false);
  });
});

describe('the form', () => {
  it('suggests likely trained indicators without stating them; untrained ones not at all', () => {
    const trainedOutputs = ['quality', 'wraparound', 'ghosting_motion'];
    const state = { assessment: { status: 'done', trainedOutputs, artifacts: { lesion: 0.9, wraparound: { probability: 0.2 }, ghosting_motion: { prob: 0.5 } } } };
    const f = initialForm(VOCAB, state, 1);
    assert.deepEqual(f.artifacts, {}); // nothing pre-filled: G right away states no artifact
    assert.deepEqual(f.suggested, { ghosting_motion: true });
    assert.deepEqual(f.probs, { wraparound: 0.2, ghosting_motion: 0.5 }); // no lesion
    assert.deepEqual(decisionBody(f, 'good', 1, 1).artifacts, {});
    // an older result without trainedOutputs: only the legacy trained indicators
    assert.deepEqual(initialForm(VOCAB, { assessment: { status: 'done', artifacts: { lesion: 0.9, wraparound: 0.6 } } }, 1).suggested, { wraparound: true });
    assert.deepEqual(initialForm(VOCAB, { assessment: { status: 'running', artifacts: { wraparound: 0.9 } } }, 1).suggested, {});
    assert.deepEqual(initialForm(VOCAB, state, 1, 0.6).suggested, {}); // the server's threshold
  });

  it('S accepts the shown suggestions and the body records them; a change makes them the reviewer\'s', () => {
    const state = { assessment: { status: 'done', trainedOutputs: ['quality', 'wraparound', 'ghosting_motion'], artifacts: { wraparound: 0.7, ghosting_motion: 0.8 } } };
    const f = initialForm(VOCAB, state, 1);
    assert.equal(acceptSuggestions(f), 2);
    assert.deepEqual(f.artifacts, { wraparound: 'present', ghosting_motion: 'present' });
    assert.deepEqual(decisionBody(f, 'questionable', 1, 2).acceptedSuggestions, ['wraparound', 'ghosting_motion']);
    delete f.accepted.wraparound; // what setArtifact does
    f.artifacts.ghosting_motion = 'absent';
    assert.equal(decisionBody(f, 'questionable', 1, 2).acceptedSuggestions, undefined);
  });

  it('tier 2 starts from what tier 1 stated', () => {
    const state = { assessment: { status: 'done', artifacts: { ghosting_motion: 0.9 } }, latestDecision: { artifacts: { lesion: 'absent', wraparound: 'present' } } };
    assert.deepEqual(initialForm(VOCAB, state, 2).artifacts, { lesion: 'absent', wraparound: 'present' });
    assert.deepEqual(initialForm(VOCAB, state, 2).accepted, {});
    assert.deepEqual(initialForm(VOCAB, state, 1).artifacts, {});
  });

  it('artifacts cycle not stated → present → absent → not stated', () => {
    assert.equal(nextArtifactValue(undefined), 'present');
    assert.equal(nextArtifactValue('present'), 'absent');
    assert.equal(nextArtifactValue('absent'), undefined);
  });

  it('the body carries the form, the tier and the seconds to 0.1 s', () => {
    const loc = { ijk: [1, 2, 3], world: [0.5, -1.25, 2] };
    const body = decisionBody(form({ artifacts: { lesion: 'present' }, comment: ' odd  ', confidence: 4, location: loc }), 'bad', 2, 12.345);
    assert.deepEqual(body, { decision: 'bad', tier: 2, artifacts: { lesion: 'present' }, comment: 'odd', seconds: 12.3, confidence: 4, location: loc });
    assert.deepEqual(Object.keys(decisionBody(form(), 'good', 1, 1)), ['decision', 'tier', 'artifacts', 'comment', 'seconds']);
    assert.equal(locationText(loc), 'voxel [1, 2, 3], 0.5, -1.3, 2.0 mm');
    assert.equal(locationText(null), '—');
  });
});
