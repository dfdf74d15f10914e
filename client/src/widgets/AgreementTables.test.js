import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import {
  PLOT, agreementTables, artifactRows, figureText, summaryRows, timelineLayout, timelineSvg,
} from './AgreementTables.js';

const FIG = (value, low = null, high = null, n = 6) => ({ value, low, high, n });
const AGREEMENT = {
  fleiss: FIG(1 / 6, -0.2, 0.5, 10),
  tier1VsTier2: { kappa: FIG(2 / 3, 0.1, 1, 6) },
  humansVsModel: { kappa: FIG(null, null, null, 0) },
  gold: { agreement: FIG(0.5, null, null, 2) },
  pairs: [{ raters: ['tierone', 'Reviewer 2'], kappa: FIG(0.25, -0.3, 0.8, 6) }],
  artifacts: [{ key: 'ghosting_motion', label: 'Ghosting', kappa: FIG(2 / 3), agreement: FIG(5 / 6) },
    { key: 'lesion', label: 'Lesion', kappa: FIG(null, null, null, 0), agreement: FIG(null, null, null, 0) }],
  reviewers: [
    { reviewer: 'tierone', name: 'Tierone Tester', decisions: 6, goldReads: 2, seconds: { median: 10 }, confidence: { mean: 4 },
      gold: { agreement: FIG(0.5, null, null, 2), timeline: [{ created: '2026-12-01T10:00:00Z', cumulative: 1 }, { created: '2026-12-03T10:00:00Z', cumulative: 0.5 }] },
      tier2Agreement: FIG(1, null, null, 2) },
    { reviewer: 'Reviewer 2', decisions: 3, goldReads: 0, seconds: { median: null }, confidence: { mean: null },
      gold: { agreement: FIG(null, null, null, 0), timeline: [] }, tier2Agreement: FIG(null, null, null, 0) },
  ],
  arms: { shown: { reads: 4, seconds: FIG(12.5), tier2Agreement: FIG(0.75), caught: FIG(0.5) },
    hidden: { reads: 2, seconds: FIG(30), tier2Agreement: FIG(1), caught: FIG(1) } },
};

describe('figureText', () => {
  it('gives the value and its interval, or a dash when undefined', () => {
    assert.equal(figureText(FIG(0.25, -0.3, 0.8)), '0.25 [-0.30, 0.80]');
    assert.equal(figureText(FIG(0.5)), '0.50');
    assert.equal(figureText(FIG(null)), '—');
    assert.equal(figureText(undefined), '—');
  });
});

describe('agreementTables', () => {
  it('lists the project measures, each pair, the stated artifacts, reviewers and arms', () => {
    assert.deepEqual(summaryRows(AGREEMENT).map(([label]) => label).slice(-1), ["Cohen's kappa tierone / Reviewer 2"]);
    assert.deepEqual(artifactRows(AGREEMENT).map(([label]) => label), ['Ghosting']);
    const html = agreementTables(AGREEMENT);
    assert.match(html, /0\.17 \[-0\.20, 0\.50\]/);
    assert.match(html, /Tierone Tester/);
    assert.match(html, /Reviewer 2/);
    assert.match(html, /miqa-arm-hidden/);
    assert.equal((html.match(/miqa-reviewer-row/g) || []).length, 2);
  });
  it('escapes names', () => {
    const html = agreementTables({ ...AGREEMENT, reviewers: [{ ...AGREEMENT.reviewers[0], name: '<b>x</b>' }] });
    assert.ok(!html.includes('<b>x</b>') && html.includes('&lt;b&gt;x&lt;/b&gt;'));
  });
});

describe('timelineLayout', () => {
  it('draws a line per reviewer with gold reads, earlier left, higher agreement higher', () => {
    const l = timelineLayout(AGREEMENT.reviewers);
    assert.equal(l.lines.length, 1);
    const [a, b] = l.lines[0].points;
    assert.ok(a.x < b.x && a.y < b.y);
    assert.equal(a.x, PLOT.left);
    assert.equal(b.x, PLOT.width - PLOT.right);
    assert.equal(a.y, PLOT.top);
    const svg = timelineSvg(l);
    assert.match(svg, /^<svg class="miqa-timeline"/);
    assert.equal((svg.match(/<circle/g) || []).length, 2);
  });
  it('says so when nobody re-read a gold scan', () => {
    assert.match(timelineSvg(timelineLayout([AGREEMENT.reviewers[1]])), /No gold re-reads yet/);
  });
});
