// The reference protocols of a project on its settings page: the references in force per scan
// type and site (set by an admin, or inferred from the scans: marked), each set one editable
// (value, tolerance, severity per parameter), an inferred one adoptable as a set reference, and
// references pasted or uploaded as JSON or CSV. The server's 400 reason is shown at the field it
// names. The functions above the class are the DOM-free part.
import { escapeHtml, listOf, rest } from '../api.js';

export const SEVERITIES = ['warning', 'exclude'];
export const CSV_COLUMNS = ['scanType', 'site', 'parameter', 'value', 'tolerance', 'severity'];

/** Whether a reference was set by an admin ('set') or inferred from the scans ('inferred'). */
export function referenceKind(ref) {
  if (!ref || typeof ref !== 'object') return 'inferred';
  const mark = ref.reference ?? ref.source ?? ref.kind;
  if (mark === 'set' || mark === 'inferred') return mark;
  if (typeof ref.inferred === 'boolean') return ref.inferred ? 'inferred' : 'set';
  return ref.userId || ref.updated ? 'set' : 'inferred';
}

/**
 * The references of GET /miqa/project/:id/protocol, made uniform and sorted (scan type, then
 * all sites before each site, set before inferred).
 *
 * Returns:
 *   [{id, scanType, site (null: all sites), kind: 'set' | 'inferred', peers, parameters:
 *   [{key, value, tolerance, severity}] sorted by key}].
 */
export function references(resp) {
  const list = Array.isArray(resp) ? resp : (resp && (resp.references || resp.protocols)) || listOf(resp);
  return list.filter((r) => r && typeof r === 'object').map((r) => ({
    id: r._id || r.id || null,
    scanType: String(r.scanType ?? 'unknown'),
    site: r.site === undefined || r.site === null || r.site === '' ? null : String(r.site),
    kind: referenceKind(r),
    peers: Number.isFinite(Number(r.scans ?? r.peers)) ? Number(r.scans ?? r.peers) : null,
    basis: r.basis === 'project' || r.basis === 'site' ? r.basis : null,
    parameters: Object.entries(r.parameters && typeof r.parameters === 'object' ? r.parameters : {})
      .map(([key, p]) => {
        const spec = p && typeof p === 'object' && !Array.isArray(p) ? p : { value: p };
        return {
          key,
          value: spec.value ?? null,
          tolerance: spec.tolerance === undefined || spec.tolerance === null ? null : Number(spec.tolerance),
          severity: SEVERITIES.includes(spec.severity) ? spec.severity : 'warning',
        };
      })
      .sort((a, b) => a.key.localeCompare(b.key)),
  })).sort((a, b) => a.scanType.localeCompare(b.scanType)
    || (a.site === null ? -1 : 0) - (b.site === null ? -1 : 0) || String(a.site).localeCompare(String(b.site))
    || (a.kind === 'set' ? -1 : 1) - (b.kind === 'set' ? -1 : 1));
}

/** A value as the editor shows it: lists as JSON, null as ''. */
export function valueText(value) {
  if (value === null || value === undefined) return '';
  return typeof value === 'object' ? JSON.stringify(value) : String(value);
}

/**
 * What the admin typed as a value: a number, a list ("[1, 1, 1.2]" or "1, 1, 1.2") or text; when
 * the value it replaces is text (a software version "11"), text stays text.
 */
export function parseValue(text, like = undefined) {
  const t = String(text ?? '').trim();
  if (t === '') return null;
  if (typeof like === 'string') return t;
  try {
    const v = JSON.parse(t);
    if (typeof v === 'number' || Array.isArray(v)) return v;
  } catch { /* not JSON */ }
  if (t.includes(',')) {
    try {
      const v = JSON.parse(`[${t}]`);
      if (v.every((x) => typeof x === 'number')) return v;
    } catch { /* not a list of numbers */ }
  }
  return t;
}

/** A tolerance field: '' is none; anything else must be a number (NaN tells the form). */
export function parseTolerance(text) {
  const t = String(text ?? '').trim();
  return t === '' ? null : Number(t);
}

/** One reference as the PUT body's list entry. */
export function referenceBody(ref) {
  return {
    scanType: ref.scanType,
    site: ref.site,
    parameters: Object.fromEntries(ref.parameters.map((p) => [p.key, { value: p.value, tolerance: p.tolerance, severity: p.severity }])),
  };
}

/** Pasted or uploaded text: 'json' when it reads as JSON, else 'csv'. */
export function textFormat(text) {
  const t = String(text || '').trim();
  if (!t.startsWith('[') && !t.startsWith('{')) return 'csv';
  try {
    JSON.parse(t);
    return 'json';
  } catch {
    return 'csv';
  }
}

/**
 * Where a 400 reason belongs in a reference's form: the parameter and field it names.
 *
 * Args:
 *   message: the server's message, e.g. 'RepetitionTime: tolerance must be a number'.
 *   keys: the reference's parameter keys.
 * Returns:
 *   {key (a parameter or null), field: 'value' | 'tolerance' | 'severity' | null}.
 */
export function errorField(message, keys) {
  const text = String(message || '');
  const key = [...keys].sort((a, b) => b.length - a.length).find((k) => new RegExp(`\\b${k.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\b`).test(text)) || null;
  const field = ['tolerance', 'severity', 'value'].find((f) => new RegExp(`\\b${f}\\b`, 'i').test(text)) || null;
  return { key, field };
}

export class ProtocolEditor {
  /**
   * Args:
   *   el: the section's element.
   *   projectId: the project.
   *   canEdit: whether the user may set references (project admin).
   */
  constructor(el, { projectId, canEdit = true }) {
    this.el = el;
    this.projectId = projectId;
    this.canEdit = canEdit;
    this.refs = null;
    this.errors = {}; // index -> message, 'upload' -> message
    this.message = '';
    el.addEventListener('click', (e) => this.onClick(e));
    el.addEventListener('change', (e) => {
      if (e.target.classList.contains('miqa-protocol-file')) this.readFile(e.target);
    });
  }

  async load() {
    try {
      this.refs = references(await rest({ url: `miqa/project/${this.projectId}/protocol` }));
      this.loadError = null;
    } catch (err) {
      this.loadError = err.message;
    }
    this.render();
  }

  /** Send references (a JSON list, or CSV text) and reload; a 400 lands at `where`. */
  async send(body, format, where) {
    try {
      await rest({
        url: `miqa/project/${this.projectId}/protocol`,
        method: 'PUT',
        data: format === 'csv' ? body : JSON.stringify(body),
        contentType: format === 'csv' ? 'text/csv' : 'application/json',
        processData: false,
      });
      this.errors = {};
      this.message = 'References saved.';
      await this.load();
      return true;
    } catch (err) {
      this.errors = { [where]: err.message };
      this.message = '';
      this.render();
      return false;
    }
  }

  /** The reference at `index` as its form now reads (NaN tolerances are kept: the server says). */
  readReference(index) {
    const ref = this.refs[index];
    const box = this.el.querySelector(`.miqa-protocol-ref[data-index="${index}"]`);
    const before = Object.fromEntries(ref.parameters.map((p) => [p.key, p.value]));
    const parameters = [...box.querySelectorAll('.miqa-protocol-param')].map((row) => ({
      key: row.dataset.key || row.querySelector('.miqa-protocol-key').value.trim(),
      value: parseValue(row.querySelector('.miqa-protocol-value').value, before[row.dataset.key]),
      tolerance: parseTolerance(row.querySelector('.miqa-protocol-tolerance').value),
      toleranceText: row.querySelector('.miqa-protocol-tolerance').value,
      severity: row.querySelector('.miqa-protocol-severity').value,
    })).filter((p) => p.key);
    const site = box.querySelector('.miqa-protocol-site');
    return { ...ref, site: site ? (site.value.trim() || null) : ref.site, parameters };
  }

  async onClick(e) {
    const button = e.target.closest('button');
    if (!button || !this.el.contains(button)) return;
    const index = button.closest('.miqa-protocol-ref') ? Number(button.closest('.miqa-protocol-ref').dataset.index) : null;
    if (button.classList.contains('miqa-protocol-save')) {
      const ref = this.readReference(index);
      this.refs[index] = ref; // what was typed stays in the form, whatever the answer
      const bad = ref.parameters.find((p) => Number.isNaN(p.tolerance));
      if (bad) {
        this.errors = { [index]: `${bad.key}: tolerance must be a number` };
        this.render();
        return;
      }
      await this.send([referenceBody(ref)], 'json', index);
    } else if (button.classList.contains('miqa-protocol-adopt')) {
      // a set reference names values only: what the scans do not know is left out
      const ref = this.refs[index];
      this.refs[index] = { ...ref, kind: 'set', adopting: true, parameters: ref.parameters.filter((p) => p.value !== null) };
      this.render();
    } else if (button.classList.contains('miqa-protocol-add-param')) {
      this.refs[index] = this.readReference(index);
      this.refs[index].parameters.push({ key: '', value: null, tolerance: null, severity: 'warning', adding: true });
      this.render();
    } else if (button.classList.contains('miqa-protocol-delete')) {
      await this.remove(index);
    } else if (button.classList.contains('miqa-protocol-upload')) {
      const text = this.el.querySelector('.miqa-protocol-text').value;
      if (!text.trim()) {
        this.errors = { upload: 'Paste or choose a JSON or CSV file first.' };
        this.render();
        return;
      }
      const format = textFormat(text);
      await this.send(format === 'json' ? JSON.parse(text) : text, format, 'upload');
    }
  }

  async remove(index) {
    const ref = this.refs[index];
    try {
      const query = new URLSearchParams(ref.site === null ? { scanType: ref.scanType } : { scanType: ref.scanType, site: ref.site });
      await rest({ url: `miqa/project/${this.projectId}/protocol?${query}`, method: 'DELETE' });
      this.message = `The ${ref.scanType} reference${ref.site ? ` of ${ref.site}` : ''} is removed: it is inferred again.`;
      this.errors = {};
      await this.load();
    } catch (err) {
      this.errors = { [index]: err.message };
      this.render();
    }
  }

  readFile(input) {
    const file = input.files && input.files[0];
    if (!file) return;
    file.text().then((text) => {
      this.el.querySelector('.miqa-protocol-text').value = text;
    });
  }

  render() {
    if (this.loadError) {
      this.el.innerHTML = `<h4>Reference protocols</h4><p class="miqa-error">${escapeHtml(this.loadError)}</p>`;
      return;
    }
    if (!this.refs) {
      this.el.innerHTML = '<h4>Reference protocols</h4><p class="miqa-muted">Loading…</p>';
      return;
    }
    const pasted = this.el.querySelector('.miqa-protocol-text');
    const pastedText = pasted ? pasted.value : '';
    const editable = (r) => this.canEdit && r.kind === 'set';
    this.el.innerHTML = `<h4>Reference protocols</h4>
      <p class="help-block">Each scan is checked against the reference of its scan type and site: one set here, or else one inferred from the scans (per parameter, the most common value among the site's scans of that type). Values and tolerances are in BIDS units (seconds for TR, TE and TI; degrees; mm; T); tolerances are absolute (numbers; lists element by element); text must match exactly.</p>
      ${this.refs.length ? '' : '<p class="miqa-muted">No references yet: they are inferred once scans are assessed.</p>'}
      ${this.refs.map((r, i) => `<div class="miqa-protocol-ref" data-index="${i}" data-kind="${r.kind}" data-scan-type="${escapeHtml(r.scanType)}" data-site="${escapeHtml(r.site ?? '')}">
        <h5><b>${escapeHtml(r.scanType)}</b> · ${r.adopting ? `site <input class="form-control input-sm miqa-protocol-site" value="${escapeHtml(r.site ?? '')}" placeholder="all sites">` : escapeHtml(r.site ?? 'all sites')}
          <span class="label ${r.kind === 'set' ? 'label-primary' : 'label-default'} miqa-protocol-kind">${r.kind}</span>
          ${r.peers !== null ? `<small class="miqa-muted">${r.peers} scans${r.kind === 'inferred' && r.basis ? ` · the most common values among ${r.basis === 'project' ? 'the project\'s' : 'the site\'s'} scans` : ''}</small>` : ''}</h5>
        <table class="table table-condensed miqa-protocol-table">
          <thead><tr><th>Parameter</th><th>Value</th><th>Tolerance</th><th>Severity</th></tr></thead>
          <tbody>${r.parameters.map((p) => `<tr class="miqa-protocol-param" data-key="${p.adding ? '' : escapeHtml(p.key)}">
            <td>${p.adding ? '<input class="form-control input-sm miqa-protocol-key" placeholder="e.g. RepetitionTime">' : escapeHtml(p.key)}</td>
            <td><input class="form-control input-sm miqa-protocol-value" value="${escapeHtml(valueText(p.value))}" ${editable(r) ? '' : 'disabled'}></td>
            <td><input class="form-control input-sm miqa-protocol-tolerance" value="${escapeHtml(p.toleranceText !== undefined ? p.toleranceText : (p.tolerance ?? ''))}" placeholder="exact" ${editable(r) ? '' : 'disabled'}></td>
            <td><select class="form-control input-sm miqa-protocol-severity" ${editable(r) ? '' : 'disabled'}>${SEVERITIES.map((s) => `<option value="${s}" ${p.severity === s ? 'selected' : ''}>${s}</option>`).join('')}</select></td>
          </tr>`).join('')}</tbody>
        </table>
        ${this.canEdit ? (r.kind === 'set'
    ? `<button type="button" class="btn btn-xs btn-primary miqa-protocol-save">Save reference</button>
           <button type="button" class="btn btn-xs btn-default miqa-protocol-add-param">Add parameter</button>
           ${r.adopting ? '' : '<button type="button" class="btn btn-xs btn-link miqa-protocol-delete">Remove (infer again)</button>'}`
    : '<button type="button" class="btn btn-xs btn-default miqa-protocol-adopt">Set as reference…</button>') : ''}
        <div class="miqa-protocol-error miqa-error">${escapeHtml(this.errors[i] || '')}</div>
      </div>`).join('')}
      ${this.canEdit ? `<div class="form-group miqa-protocol-paste">
        <label>Paste or upload references (JSON list, or CSV with columns ${CSV_COLUMNS.join(', ')})</label>
        <textarea class="form-control miqa-protocol-text" rows="4" placeholder="scanType,site,parameter,value,tolerance,severity&#10;T1w,,RepetitionTime,2.3,0.01,exclude">${escapeHtml(pastedText)}</textarea>
        <input type="file" class="miqa-protocol-file" accept=".json,.csv,application/json,text/csv">
        <button type="button" class="btn btn-sm btn-default miqa-protocol-upload">Upload references</button>
        <div class="miqa-protocol-upload-error miqa-error">${escapeHtml(this.errors.upload || '')}</div>
      </div>` : ''}
      <div class="miqa-protocol-message miqa-ok">${escapeHtml(this.message)}</div>`;
    Object.entries(this.errors).forEach(([where, message]) => {
      if (where === 'upload') {
        this.el.querySelector('.miqa-protocol-text')?.classList.add('miqa-field-error');
        return;
      }
      const ref = this.refs[Number(where)];
      const { key, field } = errorField(message, ref ? ref.parameters.map((p) => p.key) : []);
      const box = this.el.querySelector(`.miqa-protocol-ref[data-index="${where}"]`);
      const row = key && box ? box.querySelector(`.miqa-protocol-param[data-key="${key}"]`) : null;
      if (row) {
        row.classList.add('miqa-row-error');
        const input = row.querySelector(`.miqa-protocol-${field || 'value'}`);
        if (input) input.classList.add('miqa-field-error');
      }
    });
  }
}
