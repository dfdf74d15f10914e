// The projects page: every MIQA project the user can read, its progress and links to the queues.
import { apiUrl, authHeaders, escapeHtml, listOf, rest } from '../api';

const STATES = [
  { key: 'unreviewed', label: 'unreviewed', color: '#9aa5b1' },
  { key: 'questionable', label: 'questionable', color: '#f0ad4e' },
  { key: 'good', label: 'good', color: '#5cb85c' },
  { key: 'bad', label: 'bad', color: '#d9534f' },
];

/** A small stacked bar of the counts per state (inline SVG). */
export function progressChart(counts, width = 220, height = 14) {
  const total = STATES.reduce((sum, s) => sum + (counts[s.key] || 0), 0);
  if (!total) {
    return `<svg class="miqa-chart" width="${width}" height="${height}"><rect width="${width}" height="${height}" fill="#eee"/></svg>`;
  }
  let x = 0;
  const rects = STATES.map((s) => {
    const w = ((counts[s.key] || 0) / total) * width;
    const rect = w > 0 ? `<rect x="${x.toFixed(2)}" width="${w.toFixed(2)}" height="${height}" fill="${s.color}"><title>${s.label}: ${counts[s.key]}</title></rect>` : '';
    x += w;
    return rect;
  }).join('');
  return `<svg class="miqa-chart" width="${width}" height="${height}" role="img" aria-label="progress">${rects}</svg>`;
}

/**
 * Download a project's export with the session token in a header, never in the URL (where it
 * would land in the browser history, proxy logs and copied links), and save it as a file.
 */
export async function downloadExport(projectId, format, fetchImpl = fetch) {
  const resp = await fetchImpl(`${apiUrl(`miqa/project/${projectId}/export`)}?format=${format}`, {
    headers: authHeaders(),
  });
  if (!resp.ok) {
    let message = resp.statusText;
    try { message = (await resp.json()).message || message; } catch { /* not JSON */ }
    throw new Error(`Export failed: ${message}`);
  }
  const disposition = resp.headers.get('Content-Disposition') || '';
  const match = /filename="?([^";]+)"?/.exec(disposition);
  const blob = await resp.blob();
  const link = document.createElement('a');
  link.href = URL.createObjectURL(blob);
  link.download = match ? match[1] : `miqa-${projectId}.${format}`;
  document.body.appendChild(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 10000);
}

const ProjectsView = girder.views.View.extend({
  events: {
    'click .miqa-export-link': 'onExport',
  },

  async onExport(evt) {
    evt.preventDefault();
    const { projectId, format } = evt.currentTarget.dataset;
    try {
      await downloadExport(projectId, format);
    } catch (err) {
      this.$('.miqa-projects').prepend(`<p class="miqa-error">${escapeHtml(err.message)}</p>`);
    }
  },

  initialize() {
    this.projects = null;
    this.render();
    this.load();
  },

  async load() {
    try {
      this.projects = listOf(await rest({ url: 'miqa/project' }));
      this.error = null;
    } catch (err) {
      this.error = err.message;
    }
    this.render();
  },

  render() {
    let body;
    if (this.error) {
      body = `<p class="miqa-error">${escapeHtml(this.error)}</p>`;
    } else if (!this.projects) {
      body = '<p>Loading…</p>';
    } else if (!this.projects.length) {
      body = '<p>No MIQA projects you can see yet. An admin enables a folder for review in its project settings (<code>POST /miqa/project</code>).</p>';
    } else {
      body = `<table class="table miqa-projects-table">
        <thead><tr><th>Project</th><th>Progress</th>${STATES.map((s) => `<th class="miqa-count-${s.key}">${s.label}</th>`).join('')}<th>Queues</th><th></th></tr></thead>
        <tbody>${this.projects.map((p) => this.row(p)).join('')}</tbody></table>
        <p class="miqa-legend">${STATES.map((s) => `<span><i style="background:${s.color}"></i>${s.label}</span>`).join(' ')}</p>`;
    }
    this.$el.html(`<div class="miqa-page miqa-projects"><h2>MIQA projects</h2>${body}</div>`);
    return this;
  },

  row(p) {
    const counts = p.counts || {};
    const tiers = p.myTiers || [];
    const queue = (tier, n) => (tiers.includes(tier)
      ? `<a class="btn btn-sm btn-primary miqa-queue-link" data-tier="${tier}" href="#miqa/project/${p._id}/review/${tier}">Tier ${tier} queue <span class="badge">${n || 0}</span></a>`
      : `<span class="miqa-muted" title="You are not in this project's tier-${tier} group">Tier ${tier}: ${n || 0}</span>`);
    const exportLink = (fmt) => `<a class="miqa-export-link" href="#" data-project-id="${p._id}" data-format="${fmt}" title="Export decisions as ${fmt.toUpperCase()}">${fmt.toUpperCase()}</a>`;
    return `<tr class="miqa-project-row" data-project-id="${p._id}">
      <td><b>${escapeHtml(p.name)}</b><div class="miqa-muted">${escapeHtml((p.folder && p.folder.path) || '')}</div></td>
      <td>${progressChart(counts)}<div class="miqa-muted">${(counts.good || 0) + (counts.bad || 0)} of ${counts.total || 0} decided</div></td>
      ${STATES.map((s) => `<td class="miqa-count miqa-count-${s.key}">${counts[s.key] || 0}</td>`).join('')}
      <td class="miqa-queues">${queue(1, counts.unreviewed)} ${queue(2, counts.questionable)}
        <div class="miqa-muted">list: <a class="miqa-queue-list-link" data-tier="1" href="#miqa/project/${p._id}/queue/1">tier 1</a> · <a class="miqa-queue-list-link" data-tier="2" href="#miqa/project/${p._id}/queue/2">tier 2</a></div></td>
      <td class="miqa-project-actions">
        ${exportLink('csv')} · ${exportLink('json')}
        · <a class="miqa-report-link" href="#miqa/project/${p._id}/report" title="Metrics by site, protocol compliance, reasons">Report</a>
        · <a class="miqa-reviewers-link" href="#miqa/project/${p._id}/reviewers" title="Reviewer agreement: kappas, gold standard, the hidden-assessment arm">Reviewers</a>
        ${p.canAdmin ? ` · <a class="miqa-settings-link" href="#miqa/project/${p._id}/settings">Settings</a>` : ''}
        · <a href="#${p.rootType === 'collection' ? 'collection' : 'folder'}/${p.rootId || p.folderId}">${p.rootType === 'collection' ? 'Collection' : 'Folder'}</a>
      </td>
    </tr>`;
  },
});

export default ProjectsView;
