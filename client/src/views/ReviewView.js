// The review page: composes the review session (queue, lock, prefetch), the three-view viewer,
// the assessment panel, the decision form and the keymap. It opens the next scan of the
// reviewer's tier queue, shows it, records the decision and moves on.
import { alertMessage, currentUser, escapeHtml, listOf, loadRules, rest, restJson, reviewApi } from '../api';
import { artifactLabel, fmt } from '../format';
import { SHORTCUTS, artifactKeys, isTyping, keyAction } from '../review/keymap';
import { ReviewSession } from '../review/session';
import SliceViewer, { PRESETS } from '../viewer/SliceViewer';
import { loadScan } from '../volume/load';
import { AcquisitionPanel } from '../widgets/AcquisitionPanel';
import { AssessmentPanel, tileLayers } from '../widgets/AssessmentPanel';
import { DecisionForm } from '../widgets/DecisionForm';
import { HistoryList } from '../widgets/HistoryList';
import { MetricsPanel } from '../widgets/MetricsPanel';
import { ReasonsPanel } from '../widgets/ReasonsPanel';

// Timings of this page, for people and for the browser tests.
window.miqaTimings = window.miqaTimings || {};

const ReviewView = girder.views.View.extend({
  events: {
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
    [this.project, this.rules] = await Promise.all([
      rest({ url: `miqa/project/${this.projectId}` }), loadRules()]);
    const tiers = this.project.myTiers || [];
    if (!this.tier) {
      const state = this.startState && this.startState.state;
      this.tier = state === this.rules.tiers['2'].reviews && tiers.includes(2) ? 2 : (tiers.includes(1) ? 1 : tiers[0]);
    }
    if (!tiers.includes(this.tier)) {
      throw new Error(`You are not a tier-${this.tier || '?'} reviewer in ${this.project.name}.`);
    }
    this.vocabulary = this.project.settings.artifacts || this.rules.artifacts;
    this.session = new ReviewSession({
      api: reviewApi,
      loadScan,
      projectId: this.projectId,
      tier: this.tier,
      me: this.me,
      reviews: this.rules.tiers[String(this.tier)].reviews,
      onQueueTotal: (total) => this.$('.miqa-queue-left').text(`(${total} in queue)`),
      onRefused: (message) => alertMessage(message, 'warning'),
      onPrefetched: (itemId) => { window.miqaTimings.prefetched = itemId; },
    });
    if (this.destroyed) {
      this.session.destroy();
      return;
    }
    this.render();
    if (this.itemId) {
      await this.show(await this.session.open({ _id: this.itemId }, null, 'item'));
    } else {
      await this.next();
    }
  },

  render() {
    if (!this.project) {
      this.$el.html('<div class="miqa-page">Loading…</div>');
      return this;
    }
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
            <section class="miqa-reasons"></section>
            <section class="miqa-assessment"></section>
            <section class="miqa-decision-form"></section>
            <section class="miqa-acquisition"></section>
            <section class="miqa-metric-panel"></section>
            <section class="miqa-history"><h4>History</h4><div class="miqa-history-list">—</div></section>
          </div>
        </div>
        <div class="miqa-help hidden">
          <div class="miqa-help-dialog">
            <button class="close miqa-help-close">&times;</button>
            <h3>Keyboard shortcuts</h3>
            <table class="table table-condensed">${SHORTCUTS.map((s) => `<tr><td>${s.group}</td><td>${s.keys.map((k) => `<kbd>${escapeHtml(k)}</kbd>`).join(' ')}</td><td>${escapeHtml(s.text)}</td></tr>`).join('')}</table>
            <p>Artifacts: ${artifactKeys(this.vocabulary).map((a) => `<kbd>${a.key}</kbd> ${escapeHtml(a.label)}`).join(', ')}</p>
          </div>
        </div>
      </div>`);
    this.assessment = new AssessmentPanel(this.$('.miqa-assessment')[0], { vocabulary: this.vocabulary, threshold: this.rules.suggestionThreshold });
    this.reasons = new ReasonsPanel(this.$('.miqa-reasons')[0], { root: this.el });
    this.acquisition = new AcquisitionPanel(this.$('.miqa-acquisition')[0]);
    this.metricPanel = new MetricsPanel(this.$('.miqa-metric-panel')[0]);
    this.history = new HistoryList(this.$('.miqa-history-list')[0], { vocabulary: this.vocabulary });
    if (this.form) this.form.destroy();
    this.form = new DecisionForm(this.$('.miqa-decision-form')[0], {
      rules: this.rules,
      tier: this.tier,
      vocabulary: this.vocabulary,
      onDecide: (decision) => this.decide(decision),
      onUseLocation: () => this.useLocation(),
    });
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

  label(key) {
    return artifactLabel(this.vocabulary, key);
  },

  // -- the queue (the session) and what the page shows of it -------------------------------------
  async next() {
    this.itemId = null;
    const opened = await this.session.next();
    if (opened) await this.show(opened);
    else this.showEmpty();
  },

  showEmpty() {
    this.$('.miqa-scan-name').text('');
    this.$el.find('.miqa-review').attr('data-item-id', '');
    this.$('.miqa-viewer-host').addClass('miqa-dimmed');
    this.showTriage({});
    this.status(`The tier-${this.tier} queue is empty. Thank you!`, 'done');
    this.form.setEnabled(false);
    this.el.dataset.queueEmpty = 'true';
  },

  /** Show the scan the session opened (its volume already loading or loaded). */
  async show(opened) {
    const { item, state } = opened;
    this.el.dataset.itemId = item._id;
    this.el.dataset.queueEmpty = 'false';
    this.$('.miqa-viewer-host').removeClass('miqa-dimmed');
    this.$('.miqa-review').attr('data-item-id', item._id);
    this.$('.miqa-scan-name').text(item.name ? `— ${item.name}` : '');
    if (!item.name) {
      rest({ url: `item/${item._id}` }).then((full) => {
        if (this.session.current && this.session.current.item._id === full._id) {
          this.session.current.item.name = full.name;
          this.$('.miqa-scan-name').text(`— ${full.name}`);
        }
      }).catch(() => {});
    }
    this.form.reset(state);
    this.assessment.render(state.assessment);
    if (state.assessmentHidden) { // the hidden-assessment arm (#23): tier 1 reads unaided
      this.$('.miqa-assessment').html('<p class="miqa-muted miqa-assessment-hidden">The automatic assessment is not shown for this scan.</p>');
    }
    this.showTriage(state);
    this.loadHistory(item._id, state.doubleRead);
    this.status('Loading the scan…');
    this.form.setEnabled(false);
    let loaded;
    try {
      loaded = await opened.volume;
    } catch (err) {
      this.status(`Cannot show this scan: ${err.message}`, 'error');
      this.form.setEnabled(true);
      opened.startedAt = performance.now();
      this.prefetch();
      return;
    }
    if (this.destroyed || this.session.current !== opened) return;
    opened.loaded = loaded;
    this.viewer.setVolume(loaded);
    this.$('.miqa-preset').val('0');
    this.applyTileMap(state.assessment);
    this.viewer.renderNow();
  },

  /** The scan's reasons, acquisition parameters against its protocol, and metric percentiles. */
  showTriage(state) {
    const assessment = state.assessment || {};
    // the hidden-assessment arm (#23) reads without the model: its reasons are left out too
    const reasons = state.assessmentHidden && Array.isArray(state.reasons)
      ? state.reasons.filter((r) => r && r.source !== 'network') : state.reasons;
    this.reasons.render(reasons, { site: state.site, scanType: state.scanType });
    this.acquisition.render(assessment.acquisition, state.protocol);
    this.metricPanel.render(assessment.metrics, state.metrics);
  },

  prefetch() {
    if (!this.destroyed && !this.itemId) this.session.prefetch();
  },

  onRendered() {
    const current = this.session && this.session.current;
    if (!current) return;
    const now = performance.now();
    current.startedAt = now;
    const timings = window.miqaTimings;
    timings.lastOpenMs = now - current.openedAt;
    if (timings.firstSlicesMs === undefined) {
      timings.firstSlicesMs = now - this.pageStart;
      timings.firstVolume = current.loaded && current.loaded.timings;
    }
    if (this.decidedAt) {
      timings.lastTransitionMs = now - this.decidedAt;
      timings.transitions = (timings.transitions || []).concat([timings.lastTransitionMs]);
      this.decidedAt = null;
    }
    const v = current.loaded;
    this.status(`${v.file.name}: ${v.dims.join('×')} voxels, ${v.spacing.map((s) => fmt(s, 2)).join('×')} mm (${v.format})`);
    this.form.setEnabled(true);
    this.form.renderRule();
    this.prefetch();
  },

  async skip() {
    if (this.busy || !this.session || !this.session.current) return;
    this.busy = true;
    try {
      this.itemId = null;
      const opened = await this.session.skip();
      if (opened) await this.show(opened);
      else this.showEmpty();
    } catch (err) {
      this.fail(err);
    } finally {
      this.busy = false;
    }
  },

  // -- the tile-map overlay ---------------------------------------------------------------------
  applyTileMap(assessment) {
    const { map, layers } = tileLayers(assessment);
    const select = this.$('.miqa-tile-layer');
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

  // -- the decision -----------------------------------------------------------------------------
  useLocation() {
    if (!this.viewer || !this.viewer.volume) return;
    this.form.setLocation(this.viewer.location());
  },

  showCursor(cursor) {
    const v = this.viewer && this.viewer.volume;
    if (!v) return;
    const idx = cursor[0] + v.dims[0] * (cursor[1] + v.dims[1] * cursor[2]);
    const value = v.data[idx];
    this.$('.miqa-cursor-info').text(`RAS voxel [${cursor.join(', ')}] = ${fmt(Number(value), 2)}`);
  },

  async decide(decision) {
    const current = this.session && this.session.current;
    if (this.busy || !current || !this.form || !this.form.values) return;
    const started = current.startedAt || current.openedAt;
    const body = this.form.submission(decision, (performance.now() - started) / 1000);
    if (!body) return;
    this.busy = true;
    this.form.setEnabled(false);
    const itemId = current.item._id;
    const clickedAt = performance.now();
    try {
      await restJson('POST', `item/${itemId}/miqa/decision`, body);
      this.session.markDecided();
      window.miqaTimings.lastDecision = { itemId, ...body };
      this.form.showMessage('');
      // Opened for one scan (from its item page): go on with the queue.
      this.itemId = null;
      this.decidedAt = clickedAt;
      await this.next();
    } catch (err) {
      this.form.showMessage(err.message);
      this.form.setEnabled(true);
    } finally {
      this.busy = false;
    }
  },

  async loadHistory(itemId, doubleRead) {
    try {
      const history = listOf(await rest({ url: `item/${itemId}/miqa/history` }));
      if (!this.session.current || this.session.current.item._id !== itemId) return;
      this.history.render(history);
      this.history.renderPair(doubleRead); // a disagreeing double read, side by side
    } catch (err) {
      this.history.showError(err.message);
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
    if (isTyping(e.target)) {
      if (e.key === 'Escape') e.target.blur();
      return;
    }
    if (document.querySelector('.modal.in')) return; // a Girder dialog is open
    const action = keyAction(e);
    if (!action || !this.keyActions[action.name]) return;
    this.keyActions[action.name].call(this, action.arg);
    e.preventDefault();
  },

  /** What each keymap action does on this page (see review/keymap.js). */
  keyActions: {
    decide(decision) { this.decide(decision); },
    cycleArtifact(index) { this.form.cycleArtifact(index); },
    setConfidence(value) { this.form.setConfidence(value); },
    focusComment() { this.form.focusComment(); },
    acceptSuggestions() { this.form.acceptSuggestions(); },
    useLocation() { this.useLocation(); },
    clearLocation() { this.form.setLocation(null); },
    skip() { this.skip(); },
    toggleHelp() { this.toggleHelp(); },
    closeHelp() { this.toggleHelp(false); },
    moveSlice(step) { this.viewer.moveSlice(null, step); },
    zoom(factor) { this.viewer.zoomBy(factor); },
    nextView() {
      this.viewer.activeView = (this.viewer.activeView + 1) % 3;
      this.viewer.views.forEach((view, i) => view.el.classList.toggle('miqa-view-active', i === this.viewer.activeView));
    },
    nextPreset() {
      this.viewer.nextPreset();
      this.$('.miqa-preset').val(String(this.viewer.presetIndex));
    },
    resetView() {
      this.viewer.resetView();
      this.$('.miqa-preset').val('0');
    },
    toggleCrosshair() { this.viewer.toggleCrosshair(); },
    cycleTileLayer() { this.cycleTileLayer(); },
  },

  destroy() {
    this.destroyed = true;
    document.removeEventListener('keydown', this.onKey);
    if (this.session) this.session.destroy();
    if (this.form) this.form.destroy();
    if (this.viewer) this.viewer.destroy();
    girder.views.View.prototype.destroy.call(this);
  },
});

export default ReviewView;
