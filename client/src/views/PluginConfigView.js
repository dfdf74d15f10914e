// The plugin's configuration page (#plugins/miqa/config, linked from Girder's plugin list): the
// site-wide MIQA settings, read and written through GET/PUT /system/setting (admins). Each
// setting is saved on its own, so the server's validator message shows beside the field it names
// (the form does not validate in the browser: the server's rules are the only ones).
import { escapeHtml, rest } from '../api';

// [key, label, help, input attributes]; the server's validators give the ranges.
const FIELDS = [
  ['miqa.lock_seconds', 'Review lock lifetime (seconds)',
    'How long a reviewer holds a scan unless the review page renews it (1–86400).',
    'type="number" min="1" max="86400" step="any"'],
  ['miqa.visibility_cache_seconds', 'Visibility cache lifetime (seconds)',
    'How long a queue may reuse a user\'s set of unreadable folders; 0 turns the cache off (0–3600).',
    'type="number" min="0" max="3600" step="any"'],
  ['miqa.suspicion_thresholds.quality', 'Suspicious below quality',
    'The model calls a scan suspicious below this predicted quality (0–10)…',
    'type="number" min="0" max="10" step="any"'],
  ['miqa.suspicion_thresholds.probability', 'Suspicious above artifact probability',
    '…or above this probability of any artifact (0–1).',
    'type="number" min="0" max="1" step="any"'],
  ['miqa.max_voxels', 'Largest image (voxels)',
    'Workers refuse images with more voxels (4096–1073741824).',
    'type="number" min="4096" max="1073741824" step="1"'],
  ['miqa.default_model', 'Default model',
    'The model new projects use; empty means the workers\' default.',
    'type="text" maxlength="100"'],
];
const KEYS = ['miqa.lock_seconds', 'miqa.visibility_cache_seconds', 'miqa.suspicion_thresholds',
  'miqa.max_voxels', 'miqa.default_model'];

/** The form's values as the settings' values (numbers as numbers; an empty number: unset). */
export function settingsFromForm(read) {
  const number = (key) => {
    const raw = String(read(key) ?? '').trim();
    return raw === '' ? null : Number(raw);
  };
  return {
    'miqa.lock_seconds': number('miqa.lock_seconds'),
    'miqa.visibility_cache_seconds': number('miqa.visibility_cache_seconds'),
    'miqa.suspicion_thresholds': {
      quality: number('miqa.suspicion_thresholds.quality'),
      probability: number('miqa.suspicion_thresholds.probability'),
    },
    'miqa.max_voxels': number('miqa.max_voxels'),
    'miqa.default_model': String(read('miqa.default_model') ?? '').trim(),
  };
}

const PluginConfigView = girder.views.View.extend({
  events: {
    'submit .miqa-config-form': function (e) {
      e.preventDefault();
      this.save();
    },
  },

  initialize() {
    this.values = null;
    this.errors = {};
    this.message = '';
    this.render();
    this.load();
  },

  async load() {
    try {
      this.values = await rest({ url: 'system/setting', data: { list: JSON.stringify(KEYS) } });
    } catch (err) {
      this.error = err.message;
    }
    this.render();
  },

  formValue(key) {
    if (key.startsWith('miqa.suspicion_thresholds.')) {
      return (this.values['miqa.suspicion_thresholds'] || {})[key.split('.').pop()];
    }
    return this.values[key];
  },

  async save() {
    const wanted = settingsFromForm((key) => this.$(`[data-key="${key}"]`).val());
    this.errors = {};
    let saved = 0;
    for (const key of KEYS) {
      const value = wanted[key];
      if (JSON.stringify(value) === JSON.stringify(this.values[key])) continue;
      try {
        await rest({ url: 'system/setting', method: 'PUT', data: { key, value: JSON.stringify(value) } });
        saved += 1;
      } catch (err) {
        this.errors[key] = err.message;
      }
    }
    const failed = Object.keys(this.errors).length;
    this.message = failed ? `${failed} setting(s) not saved: see below.` : `Saved (${saved} changed).`;
    this.messageKind = failed ? 'error' : 'ok';
    try {
      this.values = await rest({ url: 'system/setting', data: { list: JSON.stringify(KEYS) } });
    } catch (err) {
      this.error = err.message;
    }
    this.render();
  },

  render() {
    if (this.error) {
      this.$el.html(`<div class="miqa-page miqa-error">${escapeHtml(this.error)}</div>`);
      return this;
    }
    if (!this.values) {
      this.$el.html('<div class="miqa-page">Loading…</div>');
      return this;
    }
    const errorOf = (key) => this.errors[key] || this.errors[key.replace(/\.(quality|probability)$/, '')];
    this.$el.html(`<div class="miqa-page miqa-plugin-config">
      <div class="g-config-breadcrumb-container"></div>
      <p>Site-wide settings of MIQA. Leave a number empty for its default. Each project's own settings (tier groups, artifacts, model)
        are on its settings page under <a href="#miqa">MIQA projects</a>.</p>
      <form class="miqa-config-form" novalidate>
        ${FIELDS.map(([key, label, help, attrs]) => `<div class="form-group ${errorOf(key) ? 'has-error' : ''}">
          <label>${escapeHtml(label)}</label>
          <input class="form-control miqa-config-input" data-key="${key}" ${attrs} value="${escapeHtml(this.formValue(key))}">
          <p class="help-block">${escapeHtml(help)}</p>
          ${errorOf(key) ? `<p class="help-block miqa-config-error">${escapeHtml(errorOf(key))}</p>` : ''}
        </div>`).join('')}
        <button type="submit" class="btn btn-primary miqa-save-config">Save</button>
        <span class="miqa-config-message miqa-${this.messageKind || 'ok'}">${escapeHtml(this.message)}</span>
      </form></div>`);
    if (girder.views.widgets && girder.views.widgets.PluginConfigBreadcrumbWidget) {
      this.breadcrumb = new girder.views.widgets.PluginConfigBreadcrumbWidget({
        pluginName: 'MIQA', el: this.$('.g-config-breadcrumb-container'), parentView: this,
      });
      this.breadcrumb.render();
    }
    return this;
  },
});

export default PluginConfigView;
