// The review page: opens the next scan of the reviewer's tier queue (taking its lock), shows it in
// the three-view viewer with the automatic assessment, records the decision and moves on. The
// next scan is downloaded and parsed ahead, so moving on only swaps the volume.
import { alertMessage, currentUser, escapeHtml, listOf, rest, restJson } from '../api';
import { SHORTCUTS } from '../shortcuts';
import SliceViewer, { PRESETS } from '../viewer/SliceViewer';
import { loadScan } from '../volume/load';

const TIER_DECISIONS = { 1: ['good', 'questionable'], 2: ['good', 'bad'] };
const TIER_STATE = { 1: 'unreviewed', 2: 'questionable' };
const DECISION_KEYS = { good: 'G', questionable: 'Q', bad: 'B' };
const SUGGEST_THRESHOLD = 0.5;
const LOCK_RENEW_MS = 120 * 1000;
const BAD_RULE_TEXT = 'Bad needs at least one artifact marked present, or a comment.';

// Timings of this page, for people and for the browser tests.
window.miqaTimings = window.miqaTimings || {};

function fmt(value, digits = 2) {
  if (typeof value !== 'number' || !Number.isFinite(value)) return escapeHtml(value ?? '—');
  if (Math.abs(value) >= 1000 || Number.isInteger(value)) return String(Math.round(value * 100) / 100);
  return value.toFixed(digits);
}

function fmtDate(value) {
  if (!value) return '';
  const d = new Date(value);
  return Number.isNaN(d.getTime()) ? escapeHtml(value) : d.toLocaleString();
}

function lockedByOther(miqa, me) {
  const lock = miqa && miqa.lock;
  if (!lock || !me) return false;
  if (lock.expires && new Date(lock.expires).getTime() < Date.now()) return false;
  return String(lock.userId) !== String(me._id);
}

const ReviewView = girder.views.View.extend({
  events: {
    'click .miqa-decide': function (e) { this.decide(e.currentTarget.dataset.decision); },
    'click .miqa-artifact-state': function (e) {
      const { key, state } = e.currentTarget.dataset;
      this.setArtifact(key, state === 'not_stated' ? undefined : state);
    },
    'input .miqa-comment': function (e) { this.form.comment = e.currentTarget.value; this.renderRule(); },
    'click .miqa-use-location': function () { this.useLocation(); },
    'click .miqa-clear-location': function () { this.clearLocation(); },
    'click .miqa-confidence button': function (e) { this.setConfidence(Number(e.currentTarget.dataset.value)); },
    'click .miqa-skip': function () { this.skip(); },
    'click .miqa-help-toggle': function () { this.toggleHelp(); },
    'click .miqa-help-close': function () { this.toggleHelp(false); },
    'change .miqa-preset': function (e) { this.viewer.applyPreset(Number(e.currentTarget.value)); },
    'change .miqa-tile-layer': function (e) { this.setTileLayer(e.currentTarget.value || null); },
    'click .miqa-reset-view': function () { this.viewer.resetView(); },
    'click .miqa-zoom-in': function () { this.viewer.zoomBy(1.25); },
    'click .miqa-zoom-out': function () { this.viewer.zoomBy(1 / 1.25); },
    'click .miqa-toggle-crosshair': function () { this.viewer.toggleCrosshair(); },
  },

  initialize(settings) {
    this.pageStart = performance.now();
    this.projectId = settings.projectId || null;
    this.tier = settings.tier ? Number(settings.tier) : null;
    this.itemId = settings.itemId || null;
    this.me = currentUser();
    this.skipped = new Set();
    this.current = null;
    this.prefetched = null;
    this.busy = false;
    this.destroyed = false;
    this.tileLayer = null;
    this.onKey = (e) => this.handleKey(e);
    document.addEventListener('keydown', this.onKey);
    this.start().catch((err) => this.fail(err));
  },

  async start() {
    if (!this.me) {
      this.$el.html('<div class="miqa-page"><p>Log in to review scans.</p></div>');
      girder.events.trigger('g:loginUi');
      return;
    }
    if (this.itemId && !this.projectId) {
      const state = await rest({ url: `item/${this.itemId}/miqa` });
      this.projectId = state.projectId;
      this.startState = state;
    }
    this.project = await rest({ url: `miqa/project/${this.projectId}` });
    const tiers = this.project.myTiers || [];
    if (!this.tier) {
      const state = this.startState && this.startState.state;
      this.tier = state === 'questionable' && tiers.includes(2) ? 2 : (tiers.includes(1) ? 1 : tiers[0]);
    }
    if (!tiers.includes(this.tier)) {
      throw new Error(`You are not a tier-${this.tier || '?'} reviewer in ${this.project.name}.`);
    }
    this.vocabulary = this.project.settings.artifacts || [];
    this.render();
    if (this.itemId) {
      await this.open({ _id: this.itemId }, null, 'item');
    } else {
      await this.next();
    }
  },

  render() {
    if (!this.project) {
      this.$el.html('<div class="miqa-page">Loading…</div>');
      return this;
    }
    const allowed = TIER_DECISIONS[this.tier];
    this.$el.html(`
      <div class="miqa-review" data-tier="${this.tier}">
        <div class="miqa-review-header">
          <a href="#miqa">MIQA projects</a> /
          <span class="miqa-project-name">${escapeHtml(this.project.name)}</span> /
          <span>Tier ${this.tier} queue</span>
          <span class="miqa-queue-left"></span>
          <span class="miqa-scan-name"></span>
          <span class="miqa-header-actions">
            <button class="btn btn-xs btn-default miqa-skip" title="Skip (N)">Skip</button>
            <button class="btn btn-xs btn-default miqa-help-toggle" title="Keyboard shortcuts (?)">? Help</button>
          </span>
        </div>
        <div class="miqa-review-body">
          <div class="miqa-review-main">
            <div class="miqa-toolbar">
              <label>W/L <select class="miqa-preset">${PRESETS.map((p, i) => `<option value="${i}">${escapeHtml(p.name)}</option>`).join('')}</select></label>
              <span class="miqa-wl"></span>
              <button class="btn btn-xs btn-default miqa-zoom-in" title="Zoom in (+)">+</button>
              <button class="btn btn-xs btn-default miqa-zoom-out" title="Zoom out (−)">−</button>
              <button class="btn btn-xs btn-default miqa-reset-view" title="Reset (R)">Reset</button>
              <button class="btn btn-xs btn-default miqa-toggle-crosshair" title="Crosshairs (X)">Crosshairs</button>
              <label>Tile map <select class="miqa-tile-layer"><option value="">off</option></select></label>
              <span class="miqa-cursor-info"></span>
            </div>
            <div class="miqa-viewer-host"></div>
            <div class="miqa-status"></div>
          </div>
          <div class="miqa-side">
            <section class="miqa-assessment"></section>
            <section class="miqa-decision-form">
              <h4>Decision <small>tier ${this.tier}</small></h4>
              <div class="miqa-artifacts"></div>
              <textarea class="miqa-comment form-control" rows="2" placeholder="Comment (C)"></textarea>
              <div class="miqa-location-row">
                Location: <span class="miqa-location">—</span>
                <button class="btn btn-xs btn-default miqa-use-location" title="Use the crosshairs (L)">Use crosshairs</button>
                <button class="btn btn-xs btn-link miqa-clear-location" title="Shift+L">clear</button>
              </div>
              <div class="miqa-confidence">Confidence:
                ${[1, 2, 3, 4, 5].map((v) => `<button class="btn btn-xs btn-default" data-value="${v}" title="Shift+${v}">${v}</button>`).join('')}
              </div>
              ${allowed.includes('bad') ? `<div class="miqa-rule">${BAD_RULE_TEXT}</div>` : ''}
              <div class="miqa-decision-buttons">
                ${allowed.map((d) => `<button class="btn miqa-decide miqa-decide-${d}" data-decision="${d}">${d[0].toUpperCase()}${d.slice(1)} <kbd>${DECISION_KEYS[d]}</kbd></button>`).join('')}
              </div>
              <div class="miqa-form-message"></div>
            </section>
            <section class="miqa-history"><h4>History</h4><div class="miqa-history-list">—</div></section>
          </div>
        </div>
        <div class="miqa-help hidden">
          <div class="miqa-help-dialog">
            <button class="close miqa-help-close">&times;</button>
            <h3>Keyboard shortcuts</h3>
            <table class="table table-condensed">${SHORTCUTS.map((s) => `<tr><td>${s.group}</td><td>${s.keys.map((k) => `<kbd>${escapeHtml(k)}</kbd>`).join(' ')}</td><td>${escapeHtml(s.text)}</td></tr>`).join('')}</table>
            <p>Artifacts: ${this.vocabulary.slice(0, 10).map((a, i) => `<kbd>${(i + 1) % 10}</kbd> ${escapeHtml(a.label)}`).join(', ')}</p>
          </div>
        </div>
      </div>`);
    this.viewer = new SliceViewer(this.$('.miqa-viewer-host')[0], {
      onCursor: (cursor) => this.showCursor(cursor),
      onRendered: () => this.onRendered(),
    });
    this.viewer.el.addEventListener('miqa:windowlevel', (e) => {
      this.$('.miqa-wl').text(`W ${fmt(e.detail.window, 1)} L ${fmt(e.detail.level, 1)}`);
    });
    return this;
  },

  status(text, kind = 'info') {
    this.$('.miqa-status').attr('class', `miqa-status miqa-status-${kind}`).text(text || '');
  },

  fail(err) {
    console.error(err);
    if (!this.project) {
      this.$el.html(`<div class="miqa-page miqa-error">${escapeHtml(err.message || err)}</div>`);
    } else {
      this.status(err.message || String(err), 'error');
    }
  },

  // -- queue ------------------------------------------------------------------------------------
  async candidates(limit = 6) {
    const resp = await rest({ url: `miqa/project/${this.projectId}/queue`, data: { tier: this.tier, limit, offset: 0 } });
    this.$('.miqa-queue-left').text(`(${resp.total ?? listOf(resp).length} in queue)`);
    return listOf(resp).filter((item) => (!this.current || item._id !== this.current.item._id)
      && !this.skipped.has(item._id) && !lockedByOther(item.miqa, this.me));
  },

  /** Start downloading and parsing the scan that comes after the current one. */
  async prefetch() {
    if (this.destroyed || this.itemId) return;
    try {
      const next = (await this.candidates())[0];
      if (!next || this.destroyed) {
        this.prefetched = null;
        return;
      }
      if (this.prefetched && this.prefetched.item._id === next._id) return;
      const volume = loadScan(next._id);
      volume.then(() => { window.miqaTimings.prefetched = next._id; }, () => {});
      this.prefetched = { item: next, volume };
    } catch (err) {
      this.prefetched = null;
    }
  },

  async next() {
    this.itemId = null;
    let candidate = null;
    let volume = null;
    if (this.prefetched && !this.skipped.has(this.prefetched.item._id)
        && (!this.current || this.prefetched.item._id !== this.current.item._id)) {
      ({ item: candidate, volume } = this.prefetched);
    }
    this.prefetched = null;
    if (!candidate) {
      candidate = (await this.candidates())[0];
    }
    if (!candidate) {
      this.showEmpty();
      return;
    }
    await this.open(candidate, volume, 'queue');
  },

  showEmpty() {
    this.current = null;
    this.$('.miqa-scan-name').text('');
    this.$el.find('.miqa-review').attr('data-item-id', '');
    this.$('.miqa-viewer-host').addClass('miqa-dimmed');
    this.status(`The tier-${this.tier} queue is empty. Thank you!`, 'done');
    this.$('.miqa-decide').prop('disabled', true);
    this.el.dataset.queueEmpty = 'true';
  },

  /** Take the scan's lock, then show it (with the volume already loading or loaded). */
  async open(item, volumePromise, source) {
    const t0 = performance.now();
    let state;
    try {
      state = await rest({ url: `item/${item._id}/miqa/lock`, method: 'POST' });
    } catch (err) {
      if (err.status === 409 || err.status === 403) {
        this.skipped.add(item._id);
        alertMessage(err.message, 'warning');
        if (source === 'queue') {
          return this.next();
        }
      }
      throw err;
    }
    if (source === 'queue' && state.state !== TIER_STATE[this.tier]) {
      // Decided by someone else since the queue was read.
      this.release(item._id);
      this.skipped.add(item._id);
      return this.next();
    }
    this.releaseCurrent();
    const volume = volumePromise || loadScan(item._id);
    this.current = { item: { ...item, miqa: state }, state, volume: null, openedAt: t0 };
    this.el.dataset.itemId = item._id;
    this.el.dataset.queueEmpty = 'false';
    this.$('.miqa-viewer-host').removeClass('miqa-dimmed');
    this.$('.miqa-review').attr('data-item-id', item._id);
    this.$('.miqa-scan-name').text(item.name ? `— ${item.name}` : '');
    if (!item.name) {
      rest({ url: `item/${item._id}` }).then((full) => {
        if (this.current && this.current.item._id === full._id) {
          this.current.item.name = full.name;
          this.$('.miqa-scan-name').text(`— ${full.name}`);
        }
      }).catch(() => {});
    }
    this.resetForm(state);
    this.renderAssessment(state.assessment);
    this.loadHistory(item._id);
    this.status('Loading the scan…');
    this.$('.miqa-decide').prop('disabled', true);
    this.renewTimer = setInterval(() => {
      rest({ url: `item/${item._id}/miqa/lock`, method: 'POST' }).catch(() => {});
    }, LOCK_RENEW_MS);
    let loaded;
    try {
      loaded = await volume;
    } catch (err) {
      this.status(`Cannot show this scan: ${err.message}`, 'error');
      this.$('.miqa-decide').prop('disabled', false);
      this.current.startedAt = performance.now();
      this.prefetch();
      return;
    }
    if (this.destroyed || !this.current || this.current.item._id !== item._id) return;
    this.current.volume = loaded;
    this.viewer.setVolume(loaded);
    this.$('.miqa-preset').val('0');
    this.applyTileMap(state.assessment);
    this.viewer.renderNow();
  },

  onRendered() {
    if (!this.current) return;
    const now = performance.now();
    this.current.startedAt = now;
    const timings = window.miqaTimings;
    timings.lastOpenMs = now - this.current.openedAt;
    if (timings.firstSlicesMs === undefined) {
      timings.firstSlicesMs = now - this.pageStart;
      timings.firstVolume = this.current.volume && this.current.volume.timings;
    }
    if (this.decidedAt) {
      timings.lastTransitionMs = now - this.decidedAt;
      timings.transitions = (timings.transitions || []).concat([timings.lastTransitionMs]);
      this.decidedAt = null;
    }
    const v = this.current.volume;
    this.status(`${v.file.name}: ${v.dims.join('×')} voxels, ${v.spacing.map((s) => fmt(s, 2)).join('×')} mm (${v.format})`);
    this.$('.miqa-decide').prop('disabled', false);
    this.renderRule();
    this.prefetch();
  },

  release(itemId) {
    rest({ url: `item/${itemId}/miqa/lock`, method: 'DELETE' }).catch(() => {});
  },

  releaseCurrent() {
    clearInterval(this.renewTimer);
    if (this.current && !this.current.decided) {
      this.release(this.current.item._id);
    }
  },

  async skip() {
    if (this.busy || !this.current) return;
    this.skipped.add(this.current.item._id);
    this.busy = true;
    try {
      await this.next();
    } catch (err) {
      this.fail(err);
    } finally {
      this.busy = false;
    }
  },

  // -- assessment -------------------------------------------------------------------------------
  label(key) {
    const entry = this.vocabulary.find((a) => a.key === key);
    return entry ? entry.label : key.replace(/_/g, ' ');
  },

  renderAssessment(assessment) {
    const el = this.$('.miqa-assessment');
    if (!assessment || assessment.status !== 'done') {
      const status = assessment ? assessment.status : 'none';
      el.html(`<h4>Automatic assessment</h4><p class="miqa-muted">Status: ${escapeHtml(status)}${assessment && assessment.reason ? ` — ${escapeHtml(assessment.reason)}` : ''}</p>`);
      return;
    }
    const quality = Number(assessment.quality);
    const artifacts = Object.entries(assessment.artifacts || {})
      .map(([key, p]) => [key, typeof p === 'object' && p !== null ? Number(p.probability ?? p.prob) : Number(p)])
      .sort((a, b) => b[1] - a[1]);
    const metrics = Object.entries(assessment.metrics || {}).filter(([, v]) => typeof v !== 'object' || v === null);
    // one indicator may be decided by the network together with statistics of the air (fusion.json)
    const fusion = assessment.fusion && typeof assessment.fusion === 'object' ? assessment.fusion : null;
    const fusedTitle = (key) => (fusion && fusion.indicator === key
      ? ` title="Network alone: ${Math.round(Number(fusion.network) * 100)}%; with the air statistics below: ${Math.round(Number(fusion.probability) * 100)}%"`
      : '');
    const airMetrics = fusion ? Object.entries(fusion.metrics || {}).filter(([, v]) => typeof v === 'number') : [];
    // the quality points each simulated artifact family is estimated to cost (model.json penalty_families)
    const penalties = Object.entries(assessment.penalties && typeof assessment.penalties === 'object' ? assessment.penalties : {})
      .map(([family, points]) => [family, Number(points)])
      .filter(([, points]) => Number.isFinite(points))
      .sort((a, b) => b[1] - a[1]);
    const lost = penalties.reduce((sum, [, points]) => sum + points, 0);
    const model = assessment.model || {};
    el.html(`
      <h4>Automatic assessment <small>${escapeHtml(model.name || model)}${model.version ? ` v${escapeHtml(model.version)}` : ''}</small></h4>
      <div class="miqa-bar-row miqa-quality-row" title="Predicted quality, 0 (unusable) to 10 (excellent)">
        <span class="miqa-bar-label">Quality</span>
        <span class="miqa-bar"><span class="miqa-bar-fill miqa-quality-fill" style="width:${Math.max(0, Math.min(100, quality * 10))}%"></span></span>
        <span class="miqa-bar-value miqa-quality-value">${fmt(quality, 1)} / 10</span>
      </div>
      <div class="miqa-artifact-bars">
        ${artifacts.map(([key, p]) => `
          <div class="miqa-bar-row ${p >= SUGGEST_THRESHOLD ? 'miqa-above' : ''} ${fusion && fusion.indicator === key ? 'miqa-fused' : ''}" data-key="${escapeHtml(key)}"${fusedTitle(key)}>
            <span class="miqa-bar-label">${escapeHtml(this.label(key))}${fusion && fusion.indicator === key ? ' <sup>*</sup>' : ''}</span>
            <span class="miqa-bar"><span class="miqa-bar-fill" style="width:${Math.round(p * 100)}%"></span><span class="miqa-threshold" style="left:${SUGGEST_THRESHOLD * 100}%"></span></span>
            <span class="miqa-bar-value">${Math.round(p * 100)}%</span>
          </div>`).join('')}
      </div>
      ${fusion ? `<p class="miqa-muted miqa-fusion-note"><sup>*</sup> ${escapeHtml(this.label(fusion.indicator))}: network alone ${Math.round(Number(fusion.network) * 100)}%, decided with the air statistics.</p>` : ''}
      ${penalties.length ? `<details class="miqa-metrics miqa-penalties"${lost >= 1 ? ' open' : ''}><summary>Quality points lost, by artifact family (estimated, ${fmt(lost, 1)} in all)</summary><table class="table table-condensed">${penalties.map(([family, points]) => `<tr data-family="${escapeHtml(family)}"${points >= 1 ? ' class="miqa-above"' : ''}><td>${escapeHtml(family)}</td><td>${fmt(points, 1)}</td></tr>`).join('')}</table></details>` : ''}
      ${airMetrics.length ? `<details class="miqa-metrics miqa-air-metrics"><summary>Air statistics (${escapeHtml(this.label(fusion.indicator))})</summary><table class="table table-condensed">${airMetrics.map(([k, v]) => `<tr><td>${escapeHtml(k)}</td><td>${fmt(v, 4)}</td></tr>`).join('')}</table></details>` : ''}
      ${metrics.length ? `<details class="miqa-metrics" open><summary>Image quality metrics</summary><table class="table table-condensed">${metrics.map(([k, v]) => `<tr><td>${escapeHtml(k)}</td><td>${fmt(v, 3)}</td></tr>`).join('')}</table></details>` : ''}`);
  },

  applyTileMap(assessment) {
    const map = assessment && assessment.status === 'done' ? assessment.tileMap : null;
    const select = this.$('.miqa-tile-layer');
    const layers = map ? ['quality', ...Object.keys(map.artifacts || {})] : [];
    select.html(`<option value="">off</option>${layers.map((l) => `<option value="${escapeHtml(l)}">${escapeHtml(l === 'quality' ? 'quality' : this.label(l))}</option>`).join('')}`);
    select.prop('disabled', !map);
    this.tileMap = map;
    this.tileLayers = layers;
    if (this.tileLayer && !layers.includes(this.tileLayer)) this.tileLayer = null;
    select.val(this.tileLayer || '');
    this.viewer.setTileOverlay(map, this.tileLayer);
  },

  setTileLayer(layer) {
    this.tileLayer = layer;
    this.$('.miqa-tile-layer').val(layer || '');
    this.viewer.setTileOverlay(this.tileMap, layer);
  },

  cycleTileLayer() {
    if (!this.tileLayers || !this.tileLayers.length) return;
    const order = [null, ...this.tileLayers];
    this.setTileLayer(order[(order.indexOf(this.tileLayer) + 1) % order.length]);
  },

  // -- the decision form ------------------------------------------------------------------------
  resetForm(state) {
    const assessment = state.assessment && state.assessment.status === 'done' ? state.assessment : null;
    const probs = {};
    Object.entries((assessment && assessment.artifacts) || {}).forEach(([key, p]) => {
      probs[key] = typeof p === 'object' && p !== null ? Number(p.probability ?? p.prob) : Number(p);
    });
    this.form = { artifacts: {}, suggested: {}, probs, comment: '', location: null, confidence: null };
    this.vocabulary.forEach(({ key }) => {
      if (probs[key] >= SUGGEST_THRESHOLD) {
        this.form.artifacts[key] = 'present';
        this.form.suggested[key] = true;
      }
    });
    // Tier 2 starts from what tier 1 stated.
    const latest = state.latestDecision;
    if (this.tier === 2 && latest && latest.artifacts) {
      Object.entries(latest.artifacts).forEach(([key, value]) => {
        this.form.artifacts[key] = value;
      });
    }
    this.$('.miqa-comment').val('');
    this.renderArtifacts();
    this.renderLocation();
    this.renderConfidence();
    this.renderRule();
    this.$('.miqa-form-message').text('');
  },

  renderArtifacts() {
    this.$('.miqa-artifacts').html(this.vocabulary.map(({ key, label }, i) => {
      const value = this.form.artifacts[key] || 'not_stated';
      const p = this.form.probs[key];
      const btn = (state, text) => `<button type="button" class="btn btn-xs miqa-artifact-state ${value === state ? 'active' : ''}" data-key="${escapeHtml(key)}" data-state="${state}">${text}</button>`;
      return `<div class="miqa-artifact miqa-artifact-${value}" data-key="${escapeHtml(key)}" data-state="${value}">
        <span class="miqa-artifact-key">${i < 10 ? `<kbd>${(i + 1) % 10}</kbd>` : ''}</span>
        <span class="miqa-artifact-label">${escapeHtml(label)}${this.form.suggested[key] ? ' <span class="miqa-suggested" title="Suggested by the automatic assessment">suggested</span>' : ''}${typeof p === 'number' && Number.isFinite(p) ? ` <small>${Math.round(p * 100)}%</small>` : ''}</span>
        <span class="btn-group">${btn('present', 'present')}${btn('absent', 'absent')}${btn('not_stated', '–')}</span>
      </div>`;
    }).join(''));
  },

  setArtifact(key, value) {
    if (value) this.form.artifacts[key] = value;
    else delete this.form.artifacts[key];
    this.renderArtifacts();
    this.renderRule();
  },

  cycleArtifact(index) {
    const entry = this.vocabulary[index];
    if (!entry) return;
    const order = [undefined, 'present', 'absent'];
    const now = this.form.artifacts[entry.key];
    this.setArtifact(entry.key, order[(order.indexOf(now) + 1) % order.length]);
  },

  useLocation() {
    if (!this.viewer || !this.viewer.volume) return;
    this.form.location = this.viewer.location();
    this.renderLocation();
  },

  clearLocation() {
    this.form.location = null;
    this.renderLocation();
  },

  renderLocation() {
    const loc = this.form.location;
    this.$('.miqa-location').text(loc ? `voxel [${loc.ijk.join(', ')}], ${loc.world.map((v) => v.toFixed(1)).join(', ')} mm` : '—');
  },

  setConfidence(value) {
    this.form.confidence = this.form.confidence === value ? null : value;
    this.renderConfidence();
  },

  renderConfidence() {
    this.$('.miqa-confidence button').each((_, b) => {
      b.classList.toggle('active', Number(b.dataset.value) === this.form.confidence);
    });
  },

  badAllowed() {
    return Object.values(this.form.artifacts).includes('present') || this.form.comment.trim().length > 0;
  },

  renderRule() {
    const rule = this.$('.miqa-rule');
    if (!rule.length || !this.form) return;
    const ok = this.badAllowed();
    rule.toggleClass('miqa-rule-ok', ok).toggleClass('miqa-rule-violated', !ok);
    this.$('.miqa-decide-bad').toggleClass('miqa-blocked', !ok).attr('title', ok ? 'Mark bad (B)' : BAD_RULE_TEXT);
  },

  showCursor(cursor) {
    const v = this.viewer && this.viewer.volume;
    if (!v) return;
    const idx = cursor[0] + v.dims[0] * (cursor[1] + v.dims[1] * cursor[2]);
    const value = v.data[idx];
    this.$('.miqa-cursor-info').text(`RAS voxel [${cursor.join(', ')}] = ${fmt(Number(value), 2)}`);
  },

  async decide(decision) {
    if (this.busy || !this.current || !this.form) return;
    const allowed = TIER_DECISIONS[this.tier];
    if (!allowed.includes(decision)) {
      this.$('.miqa-form-message').text(`At tier ${this.tier} a scan can be marked ${allowed.join(' or ')}.`);
      return;
    }
    if (decision === 'bad' && !this.badAllowed()) {
      this.$('.miqa-form-message').text(BAD_RULE_TEXT);
      this.$('.miqa-rule').addClass('miqa-rule-flash');
      setTimeout(() => this.$('.miqa-rule').removeClass('miqa-rule-flash'), 800);
      return;
    }
    const started = this.current.startedAt || this.current.openedAt;
    const body = {
      decision,
      tier: this.tier,
      artifacts: { ...this.form.artifacts },
      comment: this.form.comment.trim(),
      seconds: Math.round(((performance.now() - started) / 1000) * 10) / 10,
    };
    if (this.form.confidence) body.confidence = this.form.confidence;
    if (this.form.location) body.location = this.form.location;
    this.busy = true;
    this.$('.miqa-decide').prop('disabled', true);
    const itemId = this.current.item._id;
    const clickedAt = performance.now();
    try {
      await restJson('POST', `item/${itemId}/miqa/decision`, body);
      this.current.decided = true;
      window.miqaTimings.lastDecision = { itemId, ...body };
      this.$('.miqa-form-message').text('');
      if (this.itemId) {
        // Opened for one scan (from its item page): show the result, then go on with the queue.
        this.itemId = null;
      }
      this.decidedAt = clickedAt;
      clearInterval(this.renewTimer);
      await this.next();
    } catch (err) {
      this.$('.miqa-form-message').text(err.message);
      this.$('.miqa-decide').prop('disabled', false);
    } finally {
      this.busy = false;
    }
  },

  async loadHistory(itemId) {
    const el = this.$('.miqa-history-list');
    try {
      const history = listOf(await rest({ url: `item/${itemId}/miqa/history` }));
      if (!this.current || this.current.item._id !== itemId) return;
      if (!history.length) {
        el.html('<p class="miqa-muted">No decisions yet.</p>');
        return;
      }
      el.html(history.slice().reverse().map((d) => {
        const present = Object.entries(d.artifacts || {}).filter(([, v]) => v === 'present').map(([k]) => this.label(k));
        return `<div class="miqa-history-entry">
          <span class="miqa-badge miqa-badge-${escapeHtml(d.decision)}">${escapeHtml(d.decision)}</span>
          tier ${escapeHtml(d.tier)} · ${escapeHtml(d.userName || d.login || '')} · ${fmtDate(d.created)}
          ${present.length ? `<div>Artifacts: ${present.map(escapeHtml).join(', ')}</div>` : ''}
          ${d.comment ? `<div class="miqa-history-comment">“${escapeHtml(d.comment)}”</div>` : ''}
          <div class="miqa-muted">${d.confidence ? `confidence ${escapeHtml(d.confidence)} · ` : ''}${typeof d.seconds === 'number' ? `${fmt(d.seconds, 1)} s` : ''}${d.location && d.location.ijk ? ` · at [${d.location.ijk.join(', ')}]` : ''}</div>
        </div>`;
      }).join(''));
    } catch (err) {
      el.text(`History unavailable: ${err.message}`);
    }
  },

  // -- keys -------------------------------------------------------------------------------------
  toggleHelp(show) {
    const help = this.$('.miqa-help');
    const visible = show === undefined ? help.hasClass('hidden') : show;
    help.toggleClass('hidden', !visible);
  },

  handleKey(e) {
    if (!this.viewer || this.destroyed) return;
    const target = e.target;
    const typing = target && (target.tagName === 'TEXTAREA' || target.tagName === 'INPUT' || target.tagName === 'SELECT' || target.isContentEditable);
    if (typing) {
      if (e.key === 'Escape') target.blur();
      return;
    }
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    if (document.querySelector('.modal.in')) return; // a Girder dialog is open
    const key = e.key;
    const lower = key.length === 1 ? key.toLowerCase() : key;
    let handled = true;
    if (e.shiftKey && /^Digit[1-5]$/.test(e.code)) {
      this.setConfidence(Number(e.code.slice(5)));
    } else if (!e.shiftKey && /^[0-9]$/.test(key)) {
      this.cycleArtifact(key === '0' ? 9 : Number(key) - 1);
    } else if (key === '?') {
      this.toggleHelp();
    } else if (key === 'Escape') {
      this.toggleHelp(false);
    } else if (lower === 'g') {
      this.decide('good');
    } else if (lower === 'q') {
      this.decide('questionable');
    } else if (lower === 'b') {
      this.decide('bad');
    } else if (lower === 'c') {
      this.$('.miqa-comment').focus();
    } else if (lower === 'l') {
      if (e.shiftKey) this.clearLocation(); else this.useLocation();
    } else if (lower === 'n') {
      this.skip();
    } else if (key === 'ArrowUp') {
      this.viewer.moveSlice(null, 1);
    } else if (key === 'ArrowDown') {
      this.viewer.moveSlice(null, -1);
    } else if (key === 'PageUp') {
      this.viewer.moveSlice(null, 10);
    } else if (key === 'PageDown') {
      this.viewer.moveSlice(null, -10);
    } else if (lower === 'v') {
      this.viewer.activeView = (this.viewer.activeView + 1) % 3;
      this.viewer.views.forEach((view, i) => view.el.classList.toggle('miqa-view-active', i === this.viewer.activeView));
    } else if (lower === 'p') {
      this.viewer.nextPreset();
      this.$('.miqa-preset').val(String(this.viewer.presetIndex));
    } else if (key === '+' || key === '=') {
      this.viewer.zoomBy(1.25);
    } else if (key === '-' || key === '_') {
      this.viewer.zoomBy(1 / 1.25);
    } else if (lower === 'r') {
      this.viewer.resetView();
      this.$('.miqa-preset').val('0');
    } else if (lower === 'x') {
      this.viewer.toggleCrosshair();
    } else if (lower === 't') {
      this.cycleTileLayer();
    } else {
      handled = false;
    }
    if (handled) e.preventDefault();
  },

  destroy() {
    this.destroyed = true;
    document.removeEventListener('keydown', this.onKey);
    this.releaseCurrent();
    if (this.viewer) this.viewer.destroy();
    girder.views.View.prototype.destroy.call(this);
  },
});

export default ReviewView;
