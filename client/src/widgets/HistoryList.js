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

  showError(message) {
    this.el.textContent = `History unavailable: ${message}`;
  }
}
