// Project settings for admins and owners: tier groups, artifact vocabulary, auto-assessment on or
// off, and re-assessing every scan.
import { escapeHtml, listOf, loadRules, rest, restJson } from '../api';
import { ProtocolEditor } from '../widgets/ProtocolEditor';

// The calibration shares (issue #23): setting key, label, what it does. Draws are reproducible.
const CALIBRATION_SHARES = [
  ['doubleReadShare', 'Blinded double reads', 'Share of scans that get a second, independent tier-1 read; disagreements go to tier 2 with both reads.'],
  ['goldRate', 'Gold re-reads', 'Share of tier-1 queue entries that are reference scans served again, unannounced; they never change a scan.'],
  ['hideAssessmentShare', 'Assessment hidden from tier 1', 'Share of scans whose automatic assessment tier 1 does not see, to measure what the model does to reviewers.'],
];

const SettingsView = girder.views.View.extend({
  events: {
    'click .miqa-add-artifact': function () {
      this.readForm();
      this.settings.artifacts.push({ key: '', label: '' });
      this.render();
    },
    'click .miqa-remove-artifact': function (e) {
      this.readForm();
      this.settings.artifacts.splice(Number(e.currentTarget.dataset.index), 1);
      this.render();
    },
    'submit .miqa-settings-form': function (e) {
      e.preventDefault();
      this.save();
    },
    'click .miqa-reassess': function () { this.reassess(); },
  },

  initialize(settings) {
    this.projectId = settings.projectId;
    this.message = '';
    this.render();
    this.load();
  },

  async load() {
    try {
      const [project, groups, rules] = await Promise.all([
        rest({ url: `miqa/project/${this.projectId}` }),
        rest({ url: 'group', data: { limit: 0, sort: 'name' } }),
        loadRules(),
      ]);
      this.project = project;
      this.rules = rules;
      this.settings = JSON.parse(JSON.stringify(project.settings));
      this.groups = listOf(groups);
    } catch (err) {
      this.error = err.message;
    }
    this.render();
  },

  readForm() {
    const s = this.settings;
    s.tier1GroupId = this.$('.miqa-tier1-group').val() || null;
    s.tier2GroupId = this.$('.miqa-tier2-group').val() || null;
    s.autoAssess = this.$('.miqa-auto-assess').is(':checked');
    s.outOfScope = this.$('.miqa-out-of-scope-band').val() || 'last';
    s.siteLevel = this.$('.miqa-site-level').val() === '' ? s.siteLevel : Number(this.$('.miqa-site-level').val());
    CALIBRATION_SHARES.forEach(([key]) => { // reviewer calibration: percent in the form, 0-1 stored
      const value = this.$(`.miqa-share-${key}`).val();
      if (value !== '' && value !== undefined) s[key] = Number(value) / 100;
    });
    s.artifacts = this.$('.miqa-artifact-row').toArray().map((row) => ({
      key: row.querySelector('.miqa-artifact-key-input').value.trim(),
      label: row.querySelector('.miqa-artifact-label-input').value.trim(),
    }));
  },

  async save() {
    this.readForm();
    const s = this.settings;
    const body = {
      tier1GroupId: s.tier1GroupId,
      tier2GroupId: s.tier2GroupId,
      autoAssess: s.autoAssess,
      outOfScope: s.outOfScope,
      siteLevel: s.siteLevel,
      ...Object.fromEntries(CALIBRATION_SHARES.map(([key]) => [key, s[key] ?? 0])),
      artifacts: s.artifacts.filter((a) => a.key),
    };
    try {
      this.settings = await restJson('PUT', `miqa/project/${this.projectId}/settings`, body);
      this.message = 'Saved.';
      this.messageKind = 'ok';
      this.fieldError = null;
      if (this.protocol) this.protocol.load(); // a new site level regroups the scans
    } catch (err) {
      this.message = err.message;
      this.messageKind = 'error';
      this.fieldError = err.json && err.json.field ? { field: err.json.field, message: err.message } : null;
    }
    this.render();
  },

  async reassess() {
    if (!window.confirm('Schedule the automatic assessment of every scan not yet assessed by the current model?')) return;
    try {
      const r = await rest({ url: `miqa/project/${this.projectId}/assess`, method: 'POST' });
      const reasons = Object.entries(r.reasons || {}).map(([k, v]) => `${v}× ${k}`).join('; ');
      this.message = `Scheduled ${r.scheduled} of ${r.scans} scans (${r.alreadyAssessed} already assessed, ${r.inProgress} in progress, ${r.notScheduled} not scheduled${reasons ? `: ${reasons}` : ''}).`;
      this.messageKind = 'ok';
    } catch (err) {
      this.message = err.message;
      this.messageKind = 'error';
    }
    this.render();
  },

  render() {
    if (this.error) {
      this.$el.html(`<div class="miqa-page miqa-error">${escapeHtml(this.error)}</div>`);
      return this;
    }
    if (!this.settings) {
      this.$el.html('<div class="miqa-page">Loading…</div>');
      return this;
    }
    const s = this.settings;
    const tier = (n) => this.rules.tiers[String(n)];
    const groupSelect = (cls, value) => `<select class="form-control ${cls}">
      <option value="">— nobody —</option>
      ${this.groups.map((g) => `<option value="${g._id}" ${String(value) === String(g._id) ? 'selected' : ''}>${escapeHtml(g.name)}</option>`).join('')}
    </select>`;
    this.$el.html(`<div class="miqa-page miqa-settings">
      <h2><a href="#miqa">MIQA projects</a> / ${escapeHtml(this.project.name)} / settings</h2>
      <form class="miqa-settings-form">
        <div class="form-group"><label>Tier-1 reviewers (group)</label>${groupSelect('miqa-tier1-group', s.tier1GroupId)}
          <p class="help-block">Tier 1 marks scans ${tier(1).decisions.map(escapeHtml).join(' or ')}.</p></div>
        <div class="form-group"><label>Tier-2 reviewers (group)</label>${groupSelect('miqa-tier2-group', s.tier2GroupId)}
          <p class="help-block">Tier 2 decides ${escapeHtml(tier(2).reviews)} scans: ${tier(2).decisions.map(escapeHtml).join(' or ')}.</p></div>
        <div class="checkbox"><label><input type="checkbox" class="miqa-auto-assess" ${s.autoAssess ? 'checked' : ''}> Assess new scans automatically (model <code>${escapeHtml(s.model || "the workers' default")}</code>)</label></div>
        <div class="form-group"><label>Scans outside the model's domain (e.g. T2w, FLAIR, BOLD)</label>
          <select class="form-control miqa-out-of-scope-band">
            ${[['last', 'last: after every other scan'], ['first', 'first: before the in-domain scans'], ['mixed', 'mixed in by their scores']].map(([v, text]) => `<option value="${v}" ${(s.outOfScope || 'last') === v ? 'selected' : ''}>${escapeHtml(text)}</option>`).join('')}
          </select>
          <p class="help-block">Where the queue ranks them: their scores are kept but flagged as not meaningful.</p></div>
        <div class="form-group miqa-site-level-group${this.fieldError && this.fieldError.field === 'siteLevel' ? ' has-error' : ''}"><label>Site folder level</label>
          <input type="number" min="0" step="1" class="form-control miqa-site-level" value="${escapeHtml(s.siteLevel ?? 1)}" style="max-width: 120px">
          ${this.fieldError && this.fieldError.field === 'siteLevel' ? `<p class="help-block miqa-field-message">${escapeHtml(this.fieldError.message)}</p>` : ''}
          <p class="help-block">Which folder under the project root names a scan's site (1: the first level, e.g. <code>site-a/sub-01/…</code>; 0: the whole project is one site). Protocols and metric percentiles compare scans within a site and scan type.</p></div>
        <h4>Reviewer calibration <small><a href="#miqa/project/${escapeHtml(this.projectId)}/reviewers">agreement</a></small></h4>
        ${CALIBRATION_SHARES.map(([key, label, help]) => `<div class="form-group miqa-share-group${this.fieldError && this.fieldError.field === key ? ' has-error' : ''}"><label>${escapeHtml(label)} (%)</label>
          <input type="number" min="0" max="100" step="any" class="form-control miqa-share-${key}" value="${escapeHtml(Math.round((s[key] || 0) * 1000) / 10)}" style="max-width: 120px">
          ${this.fieldError && this.fieldError.field === key ? `<p class="help-block miqa-field-message">${escapeHtml(this.fieldError.message)}</p>` : ''}
          <p class="help-block">${escapeHtml(help)}</p></div>`).join('')}
        <h4>Artifact vocabulary</h4>
        <table class="table table-condensed miqa-artifact-table">
          <thead><tr><th>Key</th><th>Label</th><th></th></tr></thead>
          <tbody>${s.artifacts.map((a, i) => `<tr class="miqa-artifact-row">
            <td><input class="form-control input-sm miqa-artifact-key-input" value="${escapeHtml(a.key)}" pattern="[a-z][a-z0-9_]*"></td>
            <td><input class="form-control input-sm miqa-artifact-label-input" value="${escapeHtml(a.label)}"></td>
            <td><button type="button" class="btn btn-xs btn-link miqa-remove-artifact" data-index="${i}">remove</button></td></tr>`).join('')}</tbody>
        </table>
        <button type="button" class="btn btn-sm btn-default miqa-add-artifact">Add artifact</button>
        <hr>
        <button type="submit" class="btn btn-primary miqa-save-settings">Save settings</button>
        <button type="button" class="btn btn-warning miqa-reassess">Re-assess all</button>
        <span class="miqa-settings-message miqa-${this.messageKind || 'ok'}">${escapeHtml(this.message)}</span>
      </form>
      <hr><section class="miqa-protocol-host"></section></div>`);
    if (!this.protocol) {
      this.protocol = new ProtocolEditor(document.createElement('section'), { projectId: this.projectId, canEdit: this.project.canAdmin !== false });
      this.protocol.el.className = 'miqa-protocol-section';
      this.protocol.load();
    }
    this.$('.miqa-protocol-host').replaceWith(this.protocol.el);
    return this;
  },
});

export default SettingsView;
