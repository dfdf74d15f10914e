// Unit specs of the review session, against fakes of the API calls and the scan loader (the
// real server and browser are covered by plugin_tests/browser).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { ReviewSession, lockedByOther } from './session.js';

const ME = { _id: 'me' };

/** A fake of the three API calls over an in-memory queue and lock table. */
function fakeApi(items, { states = {}, refuse = {} } = {}) {
  const calls = [];
  const locks = new Map();
  return {
    calls,
    locks,
    items,
    async queue({ projectId, tier, limit }) {
      calls.push(['queue', projectId, tier, limit]);
      return { total: items.length, items: items.slice(0, limit) };
    },
    async lock(itemId) {
      calls.push(['lock', itemId]);
      if (refuse[itemId]) {
        const err = new Error(refuse[itemId]);
        err.status = 409;
        throw err;
      }
      locks.set(itemId, ME._id);
      return { state: states[itemId] || 'unreviewed', lock: { userId: ME._id } };
    },
    async unlock(itemId) {
      calls.push(['unlock', itemId]);
      locks.delete(itemId);
      return {};
    },
  };
}

/** A clock whose intervals run only when tick() is called. */
function fakeClock() {
  const timers = new Map();
  let next = 1;
  let t = 0;
  return {
    timers,
    now: () => (t += 5),
    setInterval(fn, ms) { timers.set(next, { fn, ms }); return next++; },
    clearInterval(id) { timers.delete(id); },
    tick() { timers.forEach(({ fn }) => fn()); },
  };
}

function session(api, extra = {}) {
  const loads = [];
  const s = new ReviewSession({
    api,
    loadScan: (id) => { loads.push(id); return Promise.resolve({ id }); },
    projectId: 'p1',
    tier: 1,
    me: ME,
    reviews: 'unreviewed',
    clock: fakeClock(),
    ...extra,
  });
  s.loads = loads;
  return s;
}

const settle = () => new Promise((resolve) => { setTimeout(resolve, 0); });

describe('lockedByOther', () => {
  it('is true only for an unexpired lock of another user', () => {
    const now = Date.parse('2026-01-01T00:00:00Z');
    assert.equal(lockedByOther({ lock: { userId: 'u2', expires: '2026-01-01T00:01:00Z' } }, ME, now), true);
    assert.equal(lockedByOther({ lock: { userId: 'u2', expires: '2025-12-31T23:59:00Z' } }, ME, now), false);
    assert.equal(lockedByOther({ lock: { userId: 'me' } }, ME, now), false);
    assert.equal(lockedByOther({ lock: null }, ME, now), false);
    assert.equal(lockedByOther(null, ME, now), false);
  });
});

describe('ReviewSession', () => {
  it('opens the first queue entry, locks it and loads its volume', async () => {
    const api = fakeApi([{ _id: 'a' }, { _id: 'b' }]);
    const totals = [];
    const s = session(api, { onQueueTotal: (t) => totals.push(t) });
    const opened = await s.next();
    assert.equal(opened.item._id, 'a');
    assert.equal(opened.state.state, 'unreviewed');
    assert.deepEqual(await opened.volume, { id: 'a' });
    assert.deepEqual(api.calls, [['queue', 'p1', 1, 6], ['lock', 'a']]);
    assert.deepEqual(totals, [2]);
    assert.equal(s.current, opened);
  });

  it('leaves out scans locked by someone else', async () => {
    const far = new Date(Date.now() + 60_000).toISOString();
    const api = fakeApi([{ _id: 'a', miqa: { lock: { userId: 'other', expires: far } } }, { _id: 'b' }]);
    const opened = await session(api).next();
    assert.equal(opened.item._id, 'b');
  });

  it('skips a scan whose lock is refused and reports why', async () => {
    const api = fakeApi([{ _id: 'a' }, { _id: 'b' }], { refuse: { a: 'Locked by Tier One' } });
    const refused = [];
    const s = session(api, { onRefused: (m) => refused.push(m) });
    const opened = await s.next();
    assert.equal(opened.item._id, 'b');
    assert.deepEqual(refused, ['Locked by Tier One']);
    assert.ok(s.skipped.has('a'));
  });

  it('a refused lock on a scan asked for by id is an error', async () => {
    const api = fakeApi([], { refuse: { a: 'Locked' } });
    await assert.rejects(session(api).open({ _id: 'a' }, null, 'item'), { status: 409 });
  });

  it('drops a scan decided since the queue was read, releasing its lock', async () => {
    const api = fakeApi([{ _id: 'a' }, { _id: 'b' }], { states: { a: 'questionable' } });
    const s = session(api);
    const opened = await s.next();
    await settle();
    assert.equal(opened.item._id, 'b');
    assert.ok(api.calls.some(([call, id]) => call === 'unlock' && id === 'a'));
    assert.equal(api.locks.has('a'), false);
  });

  it('renews the open scan\'s lock and stops once it is decided', async () => {
    const api = fakeApi([{ _id: 'a' }]);
    const s = session(api);
    await s.next();
    assert.equal(s.clock.timers.size, 1);
    assert.equal([...s.clock.timers.values()][0].ms, 120_000);
    s.clock.tick();
    s.clock.tick();
    assert.equal(api.calls.filter(([call]) => call === 'lock').length, 3);
    s.markDecided();
    assert.equal(s.clock.timers.size, 0);
  });

  it('releases the previous scan when opening the next unless it was decided', async () => {
    const api = fakeApi([{ _id: 'a' }, { _id: 'b' }, { _id: 'c' }]);
    const s = session(api);
    await s.next();
    s.markDecided();
    api.items.shift(); // a decided scan leaves the queue
    await s.next(); // b
    await settle();
    assert.equal(api.calls.some(([call, id]) => call === 'unlock' && id === 'a'), false);
    const opened = await s.skip(); // b skipped: released
    await settle();
    assert.equal(opened.item._id, 'c');
    assert.ok(api.calls.some(([call, id]) => call === 'unlock' && id === 'b'));
    assert.equal(s.clock.timers.size, 1, 'only the open scan is renewed');
  });

  it('an empty queue leaves no scan open and no lock held', async () => {
    const api = fakeApi([{ _id: 'a' }]);
    const s = session(api);
    await s.next();
    assert.equal(await s.skip(), null);
    await settle();
    assert.equal(s.current, null);
    assert.equal(api.locks.size, 0);
    assert.equal(s.clock.timers.size, 0);
  });

  it('prefetches the next scan and opens it without loading it again', async () => {
    const api = fakeApi([{ _id: 'a' }, { _id: 'b' }]);
    const prefetched = [];
    const s = session(api, { onPrefetched: (id) => prefetched.push(id) });
    await s.next();
    await s.prefetch();
    await settle();
    assert.deepEqual(prefetched, ['b']);
    assert.deepEqual(s.loads, ['a', 'b']);
    await s.prefetch(); // the same next scan: not loaded twice
    s.markDecided();
    api.items.shift();
    const opened = await s.next();
    assert.equal(opened.item._id, 'b');
    assert.deepEqual(s.loads, ['a', 'b']);
    assert.equal(s.prefetched, null);
  });

  it('does not use a prefetched scan that was skipped since', async () => {
    const api = fakeApi([{ _id: 'a' }, { _id: 'b' }, { _id: 'c' }]);
    const s = session(api);
    await s.next();
    await s.prefetch();
    s.skipped.add('b');
    const opened = await s.skip();
    assert.equal(opened.item._id, 'c');
  });

  it('a failing prefetch is dropped, not thrown', async () => {
    const api = fakeApi([{ _id: 'a' }]);
    const s = session(api);
    await s.next();
    api.queue = async () => { throw new Error('network down'); };
    await s.prefetch();
    assert.equal(s.prefetched, null);
  });

  it('destroy releases the open scan and stops renewing it', async () => {
    const api = fakeApi([{ _id: 'a' }]);
    const s = session(api);
    await s.next();
    s.destroy();
    await settle();
    assert.equal(api.locks.size, 0);
    assert.equal(s.clock.timers.size, 0);
    await s.prefetch();
    assert.equal(s.prefetched, null);
  });
});
