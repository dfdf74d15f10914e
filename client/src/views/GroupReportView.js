// The project's group report (#miqa/project/:id/report): per image quality metric a strip plot
// by site (clicking a dot opens that scan in the review page), the per-site protocol compliance
// table and the reasons most often seen per site, with the plots as a PNG and the report as a
// CSV to download. The data is GET /miqa/project/:id/report; report/groupReport.js holds the
// DOM-free parts.
import { apiUrl, authHeaders, escapeHtml, rest } from '../api.js';
import {
  complianceRows, ofScanType, plottedMetrics, reasonSites, scanTypes,
} from '../report/groupReport.js';
import { StripPlot, stackCanvases } from '../widgets/StripPlot.js';

/** Save a blob as a file through a temporary link. */
function saveBlob(blob, name) {
  const link = document.createElement('a');
  link.href = URL.createObjectURL(blob);
  link.download = name;
  document.body.appendChild(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 10000);
}

/** GET a file with the session token in a header (never in the URL) and save it. */
export async function downloadFile(path, fallbackName, fetchImpl = fetch) {
  const resp = await fetchImpl(apiUrl(path), { headers: authHeaders() });
  if (!resp.ok) {
    let message = resp.statusText;
    try { message = (await resp.json()).message || message; } catch { /* not JSON */ }
    throw new Error(`Download failed: ${message}`);
  }
  const match = /filename="?([^";]+)"?/.exec(resp.headers.get('Content-Disposition') || '');
  saveBlob(await resp.blob(), match ? match[1] : fallbackName);
}

const pct = (v) => (v === null || v === undefined || !Number.isFinite(Number(v)) ? '—' : `${Math.round(Number(v))} %`);

const GroupReportView = girder.views.View.extend({
  events: {
    'click .miqa-report-png': 'downloadPng',
    'click .miqa-report-csv': 'downloadCsv',
    'change .miqa-report-scan-type': function (e) {
      this.scanType = e.currentTarget.value || null;
      this.render();
    },
  },

  initialize(settings) {
    this.projectId = settings.projectId;
    this.plots = [];
    this.render();
    this.load();
  },

  async load() {
    try {
      [this.project, this.report] = await Promise.all([
        rest({ url: `miqa/project/${this.projectId}` }),
        rest({ url: `miqa/project/${this.projectId}/report` }),
      ]);
      this.error = null;
    } catch (err) {
      this.error = err.message;
    }
    this.render();
  },

  safeName() {
    return (String((this.project && this.project.name) || 'project').replace(/[^A-Za-z0-9._-]+/g, '_').replace(/^_+|_+$/g, '')) || 'project';
  },

  downloadPng(e) {
    e.preventDefault();
    const canvases = this.plots.map((p) => p.canvas);
    if (!canvases.length) return;
    const title = `${this.project.name}: image quality metrics by site${this.scanType ? ` (${this.scanType})` : ''}`;
    const suffix = this.scanType ? `-${this.scanType.replace(/[^A-Za-z0-9._-]+/g, '_')}` : '';
    stackCanvases(canvases, { title }).toBlob((blob) => saveBlob(blob, `miqa-report-${this.safeName()}${suffix}.png`), 'image/png');
  },

  async downloadCsv(e) {
    e.preventDefault();
    try {
      await downloadFile(`miqa/project/${this.projectId}/report?format=csv`, `miqa-report-${this.safeName()}.csv`);
    } catch (err) {
      this.$('.miqa-report-message').text(err.message);
    }
  },

  render() {
    this.plots = [];
    if (this.error) {
      this.$el.html(`<div class="miqa-page miqa-error">${escapeHtml(this.error)}</div>`);
      return this;
    }
    if (!this.report) {
      this.$el.html('<div class="miqa-page">Loading…</div>');
      return this;
    }
    // like MRIQC, one contrast at a time: the most common first
    const types = scanTypes(this.report.metrics);
    if (this.scanType === undefined) this.scanType = types.length > 1 ? types[0] : null;
    const metrics = plottedMetrics(ofScanType(this.report.metrics, this.scanType));
    const { parameters, rows } = complianceRows(this.report.compliance);
    const reasons = reasonSites(this.report.reasons);
    this.$el.html(`<div class="miqa-page miqa-report">
      <h2><a href="#miqa">MIQA projects</a> / ${escapeHtml(this.project.name)} / group report</h2>
      <p>
        <button class="btn btn-sm btn-default miqa-report-png" ${metrics.length ? '' : 'disabled'}>Download plots (PNG)</button>
        <button class="btn btn-sm btn-default miqa-report-csv">Download report (CSV)</button>
        <span class="miqa-report-message miqa-error"></span>
      </p>
      <h3>Image quality metrics by site
        ${types.length > 1 ? `<select class="form-control input-sm miqa-report-scan-type">${types.map((t) => `<option value="${escapeHtml(t)}" ${t === this.scanType ? 'selected' : ''}>${escapeHtml(t)}</option>`).join('')}<option value="" ${this.scanType ? '' : 'selected'}>all scan types</option></select>` : ''}</h3>
      <p class="miqa-muted">Each dot is a scan (red: outside its site's Tukey fences); the line is the site's median. Click a dot to review the scan.</p>
      ${metrics.length ? '<div class="miqa-strip-plots"></div>' : '<p class="miqa-muted miqa-no-metrics">No assessed scans with image metrics yet.</p>'}
      <h3>Protocol compliance per site</h3>
      ${rows.length ? `<div class="miqa-table-scroll"><table class="table table-condensed miqa-compliance-table">
        <thead><tr><th>Site</th><th>Scan type</th><th>Scans</th><th>Compliant</th>${parameters.map((k) => `<th>${escapeHtml(k)}</th>`).join('')}</tr></thead>
        <tbody>${rows.map((r) => `<tr class="miqa-compliance-row" data-site="${escapeHtml(r.site)}" data-scan-type="${escapeHtml(r.scanType)}">
          <td>${escapeHtml(r.site)}</td><td>${escapeHtml(r.scanType)}</td><td>${r.scans}</td>
          <td class="${r.percent !== null && r.percent < 100 ? 'miqa-noncompliant' : ''}">${r.compliant} (${pct(r.percent)})</td>
          ${parameters.map((k) => `<td class="miqa-compliance-cell${Number(r.parameters[k]) < 100 ? ' miqa-noncompliant' : ''}" data-parameter="${escapeHtml(k)}">${pct(r.parameters[k])}</td>`).join('')}
        </tr>`).join('')}</tbody></table></div>` : '<p class="miqa-muted">No protocol checks yet.</p>'}
      <h3>Reasons most often seen per site</h3>
      ${reasons.length ? `<div class="miqa-report-reasons">${reasons.map((s) => `<div class="miqa-report-site" data-site="${escapeHtml(s.site)}">
        <h4>${escapeHtml(s.site)}</h4>
        ${s.reasons.length ? `<ol>${s.reasons.map((r) => `<li><span class="miqa-reason-source miqa-source-${escapeHtml(r.source)}">${escapeHtml(r.source)}</span> ${escapeHtml(r.text)} <span class="badge">${r.count}</span></li>`).join('')}</ol>` : '<p class="miqa-muted">none</p>'}
      </div>`).join('')}</div>` : '<p class="miqa-muted">No reasons yet.</p>'}
    </div>`);
    const host = this.$('.miqa-strip-plots')[0];
    metrics.forEach(([metric, points]) => {
      const cell = document.createElement('div');
      cell.className = 'miqa-strip-plot';
      host.appendChild(cell);
      this.plots.push(new StripPlot(cell, {
        metric,
        points,
        onOpen: (p) => girder.router.navigate(`miqa/item/${p.itemId}`, { trigger: true }),
      }));
    });
    this.el.dataset.plots = String(this.plots.length);
    return this;
  },
});

export default GroupReportView;
