// The review session: the reviewer's tier queue, the lock on the open scan (taken, renewed,
// released), the scans skipped, and the next scan downloaded and parsed ahead. Plain JS with no
// DOM and no vtk: the API calls and the scan loader come in as arguments, so node can test it.

/** How often the open scan's lock is renewed (the server's lock lasts longer). */
export const LOCK_RENEW_MS = 120 * 1000;

/** How many queue entries are read to find the next scan not skipped or locked by another. */
export const CANDIDATES = 6;

/**
 * Whether a scan is locked by someone other than `me` (an expired lock counts as none).
 *
 * Args:
 *   miqa: the scan's review state ({lock: {userId, expires}}), or null.
 *   me: the current user ({_id}), or null.
 *   now: the time in ms since the epoch.
 */
export function lockedByOther(miqa, me, now = Date.now()) {
  const lock = miqa && miqa.lock;
  if (!lock || !me) return false;
  if (lock.expires && new Date(lock.expires).getTime() < now) return false;
  return String(lock.userId) !== String(me._id);
}

/** Items of a list answer, whether it is a bare list or {items: [...]}. */
function itemsOf(resp) {
  if (Array.isArray(resp)) return resp;
  return (resp && (resp.items || resp.results || resp.data)) || [];
}

export class ReviewSession {
  /**
   * Args:
   *   api: {queue({projectId, tier, limit}), lock(itemId), unlock(itemId)}, each a Promise; a
   *     refused lock rejects with an error whose `status` is 409 or 403.
   *   loadScan: itemId => Promise of the parsed volume (started early for the prefetch).
   *   projectId, tier: the queue; me: the current user ({_id}).
   *   reviews: the state the tier's queue holds (the rules' tiers[tier].reviews).
   *   onQueueTotal: total => void, each time the queue is read.
   *   onRefused: message => void, when a scan's lock is refused (someone else has it).
   *   onPrefetched: itemId => void, once the next scan is downloaded and parsed ahead.
   *   clock: {now(), setInterval, clearInterval}; performance.now and the global timers by default.
   *   renewMs: the lock renewal period.
   */
  constructor({
    api, loadScan, projectId, tier, me, reviews,
    onQueueTotal = () => {}, onRefused = () => {}, onPrefetched = () => {},
    clock = defaultClock(), renewMs = LOCK_RENEW_MS,
  }) {
    Object.assign(this, {
      api, loadScan, projectId, tier, me, reviews, onQueueTotal, onRefused, onPrefetched, clock, renewMs,
    });
    this.skipped = new Set();
    this.current = null;
    this.prefetched = null;
    this.renewTimer = null;
    this.destroyed = false;
  }

  /** The first queue entries that are not open, skipped or locked by someone else. */
  async candidates(limit = CANDIDATES) {
    const resp = await this.api.queue({ projectId: this.projectId, tier: this.tier, limit });
    const items = itemsOf(resp);
    this.onQueueTotal(resp && resp.total !== undefined ? resp.total : items.length);
    const now = Date.now();
    return items.filter((item) => (!this.current || item._id !== this.current.item._id)
      && !this.skipped.has(item._id) && !lockedByOther(item.miqa, this.me, now));
  }

  /** Start downloading and parsing the scan that comes after the open one (errors are dropped). */
  async prefetch() {
    if (this.destroyed) return;
    try {
      const next = (await this.candidates())[0];
      if (!next || this.destroyed) {
        this.prefetched = null;
        return;
      }
      if (this.prefetched && this.prefetched.item._id === next._id) return;
      const volume = this.loadScan(next._id);
      volume.then(() => this.onPrefetched(next._id), () => {});
      this.prefetched = { item: next, volume };
    } catch {
      this.prefetched = null;
    }
  }

  /**
   * Open the next scan of the queue (the prefetched one when still valid), or null when the
   * queue has nothing left for this reviewer (then no scan is open). Scans whose lock is
   * refused, or that were decided since the queue was read, are skipped.
   */
  async next() {
    for (;;) {
      let candidate = null;
      let volume = null;
      const pre = this.prefetched;
      if (pre && !this.skipped.has(pre.item._id) && (!this.current || pre.item._id !== this.current.item._id)) {
        ({ item: candidate, volume } = pre);
      }
      this.prefetched = null;
      if (!candidate) candidate = (await this.candidates())[0];
      if (!candidate) {
        // Nothing left: the open scan (decided or skipped) is let go.
        this.releaseCurrent();
        this.current = null;
        return null;
      }
      const opened = await this.open(candidate, volume, 'queue');
      if (opened) return opened;
    }
  }

  /**
   * Take a scan's lock and make it the open scan.
   *
   * Args:
   *   item: the scan ({_id, name?}); volume: its volume promise if already loading, or null.
   *   source: 'queue' (a refused or already decided scan is skipped: returns null) or 'item'
   *     (the reviewer asked for this scan: a refused lock throws).
   * Returns:
   *   {item, state, volume (a Promise), openedAt}, or null (queue only: take the next one).
   */
  async open(item, volume, source) {
    const openedAt = this.clock.now();
    let state;
    try {
      state = await this.api.lock(item._id);
    } catch (err) {
      if (err.status === 409 || err.status === 403) {
        this.skipped.add(item._id);
        this.onRefused(err.message);
        if (source === 'queue') return null;
      }
      throw err;
    }
    if (source === 'queue' && this.reviews && state.state !== this.reviews) {
      // Decided by someone else since the queue was read.
      this.release(item._id);
      this.skipped.add(item._id);
      return null;
    }
    this.releaseCurrent();
    this.current = {
      item: { ...item, miqa: state }, state, openedAt, decided: false,
      volume: volume || this.loadScan(item._id),
    };
    this.renewTimer = this.clock.setInterval(() => {
      this.api.lock(item._id).catch(() => {});
    }, this.renewMs);
    return this.current;
  }

  /** Release a scan's lock (errors are dropped: the lock expires anyway). */
  release(itemId) {
    Promise.resolve().then(() => this.api.unlock(itemId)).catch(() => {});
  }

  /** Stop renewing the open scan's lock and release it unless it was decided. */
  releaseCurrent() {
    this.stopRenewal();
    if (this.current && !this.current.decided) this.release(this.current.item._id);
  }

  stopRenewal() {
    if (this.renewTimer !== null) this.clock.clearInterval(this.renewTimer);
    this.renewTimer = null;
  }

  /** The open scan was decided: its lock is the server's to drop, so stop renewing it. */
  markDecided() {
    if (!this.current) return;
    this.current.decided = true;
    this.stopRenewal();
  }

  /** Skip the open scan for this session and open the next one (see next()). */
  async skip() {
    if (this.current) this.skipped.add(this.current.item._id);
    return this.next();
  }

  /** Leaving the page: release the open scan and drop the prefetch. */
  destroy() {
    this.destroyed = true;
    this.releaseCurrent();
    this.prefetched = null;
  }
}

function defaultClock() {
  return {
    now: () => (typeof performance !== 'undefined' ? performance.now() : Date.now()),
    setInterval: (fn, ms) => setInterval(fn, ms),
    clearInterval: (id) => clearInterval(id),
  };
}
