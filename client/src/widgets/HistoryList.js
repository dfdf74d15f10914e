// A scan's decision trail, newest first: decision, tier, reviewer, time, the artifacts marked
// present (those taken from the model's suggestions marked), the comment, confidence, seconds
// and location. historyEntry() is the DOM-free part.
import { escapeHtml } from '../api.js';
import { artifactLabel, fmt, fmtDate } from '../format.js';

/** What the list shows of one decision (labels from the project's vocabulary). */
export function historyEntry(decision, vocabulary) {
  const d = decision;
  return {
    decision: d.decision,
    tier: d.tier,
    who: d.userName || d.login || '',
    created: d.created,
    present: Object.entries(d.artifacts || {}).filter(([, v]) => v === 'present').map(([k]) => artifactLabel(vocabulary, k)),
    accepted: (d.acceptedSuggestions || []).map((k) => artifactLabel(vocabulary, k)),
    comment: d.comment || '',
    confidence: d.confidence || null,
    seconds: typeof d.seconds === 'number' ? d.seconds : null,
    ijk: d.location && d.location.ijk ? d.location.ijk : null,
  };
}

/** The two reads of a settled double read that disagreed, side by side (tier 2 decides it): an
 * HTML string, or '' when the scan has no such pair. */
export function pairedReadsHtml(doubleRead, vocabulary) {
  const reads = doubleRead && doubleRead.agree === false ? doubleRead.decisions || [] : [];
  if (reads.length !== 2) return '';
  const column = (d, i) => {
    const e = historyEntry({ ...d, tier: 1 }, vocabulary);
    const stated = Object.entries(d.artifacts || {}).map(([k, v]) => `${escapeHtml(artifactLabel(vocabulary, k))}: ${escapeHtml(v)}`);
    return `<div class="miqa-paired-read" data-read="${i + 1}"><h5>Read ${i + 1} · ${escapeHtml(e.who)}</h5>
      <span class="miqa-badge miqa-badge-${escapeHtml(e.decision)}">${escapeHtml(e.decision)}</span> ${fmtDate(e.created)}
      <div>${stated.length ? stated.join(', ') : '<span class="miqa-muted">no artifacts stated</span>'}</div>
      ${e.comment ? `<div class="miqa-history-comment">“${escapeHtml(e.comment)}”</div>` : ''}</div>`;
  };
  return `<div class="miqa-paired-reads"><h4>Double read: the two tier-1 reads disagree</h4>
    <div class="miqa-paired-columns" style="display: flex; gap: 1em">${reads.map(column).join('')}</div></div>`;
}

export class HistoryList {
  /**
   * Args:
   *   el: the list's element (.miqa-history-list).
   *   vocabulary: the project's artifacts ([{key, label}]), for the labels.
   */
  constructor(el, { vocabulary = [] } = {}) {
    this.el = el;
    this.vocabulary = vocabulary;
  }

  /** Show the decisions (oldest first, as GET item/:id/miqa/history gives them) newest first. */
  render(history) {
    if (!history.length) {
      this.el.innerHTML = '<p class="miqa-muted">No decisions yet.</p>';
      return;
    }
    this.el.innerHTML = history.slice().reverse().map((d) => {
      const e = historyEntry(d, this.vocabulary);
      return `<div class="miqa-history-entry">
          <span class="miqa-badge miqa-badge-${escapeHtml(e.decision)}">${escapeHtml(e.decision)}</span>
          tier ${escapeHtml(e.tier)} · ${escapeHtml(e.who)} · ${fmtDate(e.created)}
          ${e.present.length ? `<div>Artifacts: ${e.present.map((label) => `${escapeHtml(label)}${e.accepted.includes(label) ? ' <small class="miqa-accepted" title="Accepted from the model\'s suggestions">(suggested)</small>' : ''}`).join(', ')}</div>` : ''}
          ${e.comment ? `<div class="miqa-history-comment">“${escapeHtml(e.comment)}”</div>` : ''}
          <div class="miqa-muted">${e.confidence ? `confidence ${escapeHtml(e.confidence)} · ` : ''}${e.seconds !== null ? `${fmt(e.seconds, 1)} s` : ''}${e.ijk ? ` · at [${e.ijk.join(', ')}]` : ''}</div>
        </div>`;
    }).join('');
  }

  /** Show a disagreeing double read's two reads side by side above the trail (or nothing). */
  renderPair(doubleRead) {
    const html = pairedReadsHtml(doubleRead, this.vocabulary);
    if (html) this.el.insertAdjacentHTML('afterbegin', html);
  }

  showError(message) {
    this.el.textContent = `History unavailable: ${message}`;
  }
}
