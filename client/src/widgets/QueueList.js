// A page of a review queue as a list: position, scan (a link to review it), site, predicted
// quality and the scan's first reasons, in the server's triage order. queueRow() is the DOM-free
// part.
import { escapeHtml } from '../api.js';
import { fmt } from '../format.js';
import { reasonHtml, reasonRows } from './ReasonsPanel.js';

/** How many reasons a queue row shows. */
export const ROW_REASONS = 3;

/**
 * What one queue row shows.
 *
 * Args:
 *   item: a row of GET /miqa/project/:id/queue ({_id, name, path, site, reasons, miqa}).
 * Returns:
 *   {id, name, path, site, quality (a number or null), reasons: the first ROW_REASONS reason
 *   rows, more: how many others, state}.
 */
export function queueRow(item) {
  const miqa = (item && item.miqa) || {};
  const all = reasonRows(item.reasons !== undefined ? item.reasons : miqa.reasons);
  const assessment = miqa.assessment && miqa.assessment.status === 'done' ? miqa.assessment : null;
  const quality = assessment && Number.isFinite(Number(assessment.quality)) ? Number(assessment.quality) : null;
  return {
    id: item._id,
    name: item.name || '',
    path: item.folderPath ?? item.path ?? '',
    site: item.site || '',
    quality,
    reasons: all.slice(0, ROW_REASONS),
    more: Math.max(0, all.length - ROW_REASONS),
    state: miqa.state || '',
  };
}

export class QueueList {
  /** Args: el: the list's element. */
  constructor(el) {
    this.el = el;
  }

  /** Show queue rows; offset is the position of the first. */
  render(items, offset = 0) {
    if (!items.length) {
      this.el.innerHTML = '<p class="miqa-muted">The queue is empty.</p>';
      return;
    }
    this.el.innerHTML = `<table class="table table-condensed miqa-queue-table">
      <thead><tr><th>#</th><th>Scan</th><th>Site</th><th>Quality</th><th>Reasons</th></tr></thead>
      <tbody>${items.map(queueRow).map((r, i) => `<tr class="miqa-queue-row" data-item-id="${escapeHtml(r.id)}">
        <td>${offset + i + 1}</td>
        <td><a class="miqa-queue-open" href="#miqa/item/${escapeHtml(r.id)}">${escapeHtml(r.name)}</a><div class="miqa-muted">${escapeHtml(r.path)}</div></td>
        <td class="miqa-queue-site">${escapeHtml(r.site)}</td>
        <td>${r.quality === null ? '—' : fmt(r.quality, 1)}</td>
        <td class="miqa-queue-reasons">${r.reasons.map((x) => `<div class="miqa-queue-reason miqa-severity-${x.severity}"><span class="miqa-severity miqa-severity-${x.severity}">${x.severity}</span> ${reasonHtml(x)}</div>`).join('')}${r.more ? `<div class="miqa-muted">and ${r.more} more</div>` : ''}${r.reasons.length ? '' : '<span class="miqa-muted">—</span>'}</td>
      </tr>`).join('')}</tbody></table>`;
  }
}
