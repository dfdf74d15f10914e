// The scan's reasons at the top of the review page: one ordered list (network, protocol and
// image metrics together, as the server's triage ranks them), each with its source and severity,
// each a link to what it is about: clicking scrolls to the parameter row, the metric row or the
// indicator bar and highlights it. reasonRows() and targetSelector() hold the logic, free of the
// DOM.
import { escapeHtml } from '../api.js';

export const SOURCES = { network: 'network', protocol: 'protocol', metrics: 'metrics' };
export const SEVERITIES = ['exclude', 'warning', 'info'];

/** How long a highlighted target stays highlighted (ms). */
export const HIGHLIGHT_MS = 4000;

/** A value safe inside a double-quoted CSS attribute selector. */
export function cssString(value) {
  return String(value).replace(/["\\]/g, '\\$&');
}

/**
 * The selector of the element a reason's target names on the review page, or null.
 *
 * Args:
 *   target: {kind: 'indicator' | 'parameter' | 'metric', key}.
 */
export function targetSelector(target) {
  if (!target || typeof target !== 'object' || target.key === undefined || target.key === null) return null;
  const key = cssString(target.key);
  if (target.kind === 'parameter') {
    // the problems met reading the parameters (a broken sidecar) have no row of their own
    return target.key === 'acquisition' ? '.miqa-acquisition .miqa-acq-problem' : `.miqa-acq-row[data-key="${key}"]`;
  }
  if (target.kind === 'metric') return `.miqa-metric-row[data-metric="${key}"]`;
  if (target.kind === 'indicator') {
    if (target.key === 'quality') return '.miqa-assessment .miqa-quality-row';
    if (target.key === 'scope') return '.miqa-assessment .miqa-out-of-scope'; // the out-of-domain banner
    return `.miqa-assessment .miqa-bar-row[data-key="${key}"]`;
  }
  return null;
}

/**
 * The reasons as the panel lists them: heaviest first (the server's order kept among equals),
 * with an unknown source or severity read as 'network' / 'info'.
 *
 * Args:
 *   reasons: item.miqa.reasons ([{source, severity, text, target, weight}]) or nothing.
 *   limit: show at most this many (all when null).
 * Returns:
 *   [{source, severity, text, target, weight, selector}].
 */
export function reasonRows(reasons, limit = null) {
  const rows = (Array.isArray(reasons) ? reasons : [])
    .filter((r) => r && typeof r === 'object' && r.text)
    .map((r, index) => ({
      source: SOURCES[r.source] || 'network',
      severity: SEVERITIES.includes(r.severity) ? r.severity : 'info',
      text: String(r.text),
      target: r.target && typeof r.target === 'object' ? r.target : null,
      weight: Number.isFinite(Number(r.weight)) ? Number(r.weight) : 0,
      selector: targetSelector(r.target),
      index,
    }))
    .sort((a, b) => b.weight - a.weight || a.index - b.index)
    .map(({ index, ...row }) => row); // eslint-disable-line no-unused-vars
  return limit === null ? rows : rows.slice(0, limit);
}

/** One reason as a short inline badge + text (queue rows use it too). */
export function reasonHtml(row) {
  return `<span class="miqa-reason-source miqa-source-${row.source}">${escapeHtml(row.source)}</span> <span class="miqa-reason-text">${escapeHtml(row.text)}</span>`;
}

/** Scroll the nearest scrolling box around `el` (the side panel) so that `el` is in its middle,
 * leaving the page itself where it is. */
export function scrollToCentre(el) {
  const view = el.ownerDocument && el.ownerDocument.defaultView;
  for (let box = el.parentElement; box && view; box = box.parentElement) {
    const overflow = view.getComputedStyle(box).overflowY;
    if ((overflow === 'auto' || overflow === 'scroll') && box.scrollHeight > box.clientHeight) {
      const offset = el.getBoundingClientRect().top - box.getBoundingClientRect().top;
      box.scrollTop += offset - (box.clientHeight - el.offsetHeight) / 2;
      return;
    }
  }
  if (el.scrollIntoView) el.scrollIntoView({ block: 'nearest' });
}

export class ReasonsPanel {
  /**
   * Args:
   *   el: the panel's element (section.miqa-reasons).
   *   root: where the targets are looked for (the review page's element).
   */
  constructor(el, { root = null } = {}) {
    this.el = el;
    this.root = root || (el && el.ownerDocument) || null;
    this.rows = [];
    this.timer = null;
    const follow = (e) => {
      const link = e.target.closest('.miqa-reason');
      if (!link || !this.el.contains(link)) return;
      e.preventDefault();
      this.reveal(this.rows[Number(link.dataset.index)]);
    };
    el.addEventListener('click', follow);
    el.addEventListener('keydown', (e) => {
      if (e.key === 'Enter') {
        e.stopPropagation(); // not a shortcut of the review page
        follow(e);
      }
    });
  }

  /**
   * Show a scan's reasons (none: a short line saying so).
   *
   * Args:
   *   reasons: item.miqa.reasons.
   *   where: {site, scanType} of the scan (item.miqa), named in the heading when known.
   */
  render(reasons, { site = null, scanType = null } = {}) {
    this.rows = reasonRows(reasons);
    const group = [site, scanType].filter(Boolean).map(escapeHtml).join(' · ');
    const heading = `<h4>Reasons <small>${this.rows.length ? `(${this.rows.length})` : ''}${group ? ` <span class="miqa-reason-group">${group}</span>` : ''}</small></h4>`;
    if (!this.rows.length) {
      this.el.innerHTML = `${heading}<p class="miqa-muted miqa-no-reasons">No reasons: nothing stands out.</p>`;
      return;
    }
    this.el.innerHTML = `${heading}
      <ol class="miqa-reason-list">${this.rows.map((r, i) => `
        <li class="miqa-reason miqa-severity-${r.severity}" data-index="${i}" data-source="${r.source}"
          data-target-kind="${escapeHtml(r.target ? r.target.kind : '')}" data-target-key="${escapeHtml(r.target ? r.target.key : '')}"
          title="${r.selector ? 'Show what this is about' : ''}" role="button" tabindex="0">
          <span class="miqa-severity miqa-severity-${r.severity}">${r.severity}</span> ${reasonHtml(r)}
        </li>`).join('')}</ol>`;
  }

  /** Scroll to a reason's target, open the section it is folded in, and highlight it. */
  reveal(row) {
    if (!row || !row.selector || !this.root) return null;
    const target = this.root.querySelector(row.selector);
    if (!target) return null;
    for (let d = target.closest('details'); d; d = d.parentElement && d.parentElement.closest('details')) d.open = true;
    this.root.querySelectorAll('.miqa-highlight').forEach((e) => e.classList.remove('miqa-highlight'));
    target.classList.add('miqa-highlight');
    scrollToCentre(target);
    clearTimeout(this.timer);
    this.timer = setTimeout(() => target.classList.remove('miqa-highlight'), HIGHLIGHT_MS);
    return target;
  }
}
