import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { PLOT, hitTest, stripLayout, ticks, unitHash } from './StripPlot.js';

const POINTS = [
  { itemId: 'a1', name: 'a1.nii.gz', site: 'site-a', scanType: 'T1w', value: 10, outlier: false },
  { itemId: 'a2', name: 'a2.nii.gz', site: 'site-a', scanType: 'T1w', value: 12, outlier: false },
  { itemId: 'a3', name: 'a3.nii.gz', site: 'site-a', scanType: 'T1w', value: 30, outlier: true },
  { itemId: 'b1', name: 'b1.nii.gz', site: 'site-b', scanType: 'T1w', value: 11, outlier: false },
  { itemId: 'bx', name: 'bx.nii.gz', site: 'site-b', scanType: 'T1w', value: null, outlier: false },
];

describe('stripLayout', () => {
  it('puts each site in its band, higher values higher, and the median per site', () => {
    const l = stripLayout(POINTS);
    assert.deepEqual(l.sites.map((s) => [s.site, s.n, s.median]), [['site-a', 3, 12], ['site-b', 1, 11]]);
    assert.equal(l.width, PLOT.left + PLOT.right + 2 * PLOT.band);
    assert.equal(l.points.length, 4); // the null value is left out
    const at = (id) => l.points.find((p) => p.itemId === id);
    l.points.forEach((p) => {
      const band = l.sites.find((s) => s.site === p.site);
      assert.ok(p.x > band.x0 && p.x < band.x1, `${p.itemId} inside its band`);
      assert.ok(p.y > PLOT.top && p.y < PLOT.height - PLOT.bottom, `${p.itemId} inside the plot`);
    });
    assert.ok(at('a3').y < at('a2').y && at('a2').y < at('a1').y);
    assert.equal(at('a3').outlier, true);
    assert.deepEqual(stripLayout(POINTS).points, l.points); // the jitter is the same every time
    assert.ok(l.yTicks.length >= 2 && l.yTicks.every((t) => t.value >= l.lo && t.value <= l.hi));
  });

  it('copes with one value and with nothing', () => {
    const one = stripLayout([{ itemId: 'x', site: 's', value: 5 }]);
    assert.ok(one.hi > 5 && one.lo < 5);
    assert.deepEqual(stripLayout(undefined).points, []);
  });
});

describe('hitTest', () => {
  it('finds the dot under the pointer, and nothing away from the dots', () => {
    const l = stripLayout(POINTS);
    const b1 = l.points.find((p) => p.itemId === 'b1');
    assert.equal(hitTest(l, b1.x + 2, b1.y - 2).itemId, 'b1');
    assert.equal(hitTest(l, 1, 1), null);
  });
});

describe('helpers', () => {
  it('hashes stably into [0, 1) and makes round ticks', () => {
    assert.equal(unitHash('abc'), unitHash('abc'));
    assert.ok(unitHash('abc') >= 0 && unitHash('abc') < 1 && unitHash('abc') !== unitHash('abd'));
    assert.deepEqual(ticks(0, 10), [0, 5, 10]);
    assert.deepEqual(ticks(0.12, 0.5), [0.2, 0.3, 0.4, 0.5]);
    assert.deepEqual(ticks(3, 3), [3]);
  });
});
