// The Reviewers page's parts (#miqa/project/:id/reviewers): the agreement figures of GET
// /miqa/project/:id/agreement as tables (each figure its value, 95 % interval and n), each
// reviewer's agreement with the gold standard over time as an SVG line plot, and the
// hidden-assessment arm against the shown one. Everything here is DOM-free: strings of HTML/SVG.
import { escapeHtml } from '../api.js';

/** "0.25 [0.02, 0.61]" of a figure {value, low, high, n}; "—" when it is undefined. */
export function figureText(fig, digits = 2) {
  if (!fig || fig.value === null || fig.value === undefined || !Number.isFinite(Number(fig.value))) return '—';
  const v = Number(fig.value).toFixed(digits);
  return fig.low === null || fig.low === undefined ? v : `${v} [${Number(fig.low).toFixed(digits)}, ${Number(fig.high).toFixed(digits)}]`;
}

/** A table row: a label, the figure, its n. */
function row(label, fig) {
  return `<tr><td>${escapeHtml(label)}</td><td class="miqa-figure">${escapeHtml(figureText(fig))}</td><td>${escapeHtml((fig && fig.n) ?? 0)}</td></tr>`;
}

/** The project-wide measures: Fleiss, tier 1 vs tier 2, humans vs model, gold, per pair. */
export function summaryRows(a) {
  const rows = [
    ["Fleiss' kappa (tier 1, two reads per scan)", a.fleiss],
    ["Tier 1 vs tier 2 (Cohen's kappa)", a.tier1VsTier2 && a.tier1VsTier2.kappa],
    ["Humans vs model (Cohen's kappa)", a.humansVsModel && a.humansVsModel.kappa],
    ['Agreement with the gold standard', a.gold && a.gold.agreement],
  ];
  (a.pairs || []).forEach((p) => rows.push([`Cohen's kappa ${p.raters.join(' / ')}`, p.kappa]));
  return rows;
}

/** Per-artifact agreement rows: label, kappa, percent agreement. */
export function artifactRows(a) {
  return (a.artifacts || []).filter((x) => x.kappa && x.kappa.n).map((x) => [x.label || x.key, x.kappa, x.agreement]);
}

/** The HTML of every table on the page. */
export function agreementTables(a) {
  const summary = summaryRows(a).map(([label, fig]) => row(label, fig)).join('');
  const artifacts = artifactRows(a).map(([label, kappa, agree]) => `<tr><td>${escapeHtml(label)}</td><td class="miqa-figure">${escapeHtml(figureText(kappa))}</td><td>${escapeHtml(figureText(agree))}</td><td>${escapeHtml(kappa.n)}</td></tr>`).join('');
  const reviewers = (a.reviewers || []).map((r) => `<tr class="miqa-reviewer-row"><td>${escapeHtml(r.name || r.reviewer)}</td><td>${escapeHtml(r.decisions)}</td><td>${escapeHtml(r.goldReads)}</td>
    <td class="miqa-figure">${escapeHtml(figureText(r.gold && r.gold.agreement))}</td><td class="miqa-figure">${escapeHtml(figureText(r.tier2Agreement))}</td>
    <td>${r.seconds && r.seconds.median !== null ? `${escapeHtml(Number(r.seconds.median).toFixed(0))} s` : '—'}</td>
    <td>${r.confidence && r.confidence.mean !== null ? escapeHtml(Number(r.confidence.mean).toFixed(1)) : '—'}</td></tr>`).join('');
  const arms = ['shown', 'hidden'].filter((k) => a.arms && a.arms[k]).map((k) => {
    const arm = a.arms[k];
    return `<tr class="miqa-arm-${k}"><td>assessment ${k}</td><td>${escapeHtml(arm.reads)}</td><td class="miqa-figure">${escapeHtml(figureText(arm.seconds, 1))}</td>
      <td class="miqa-figure">${escapeHtml(figureText(arm.tier2Agreement))}</td><td class="miqa-figure">${escapeHtml(figureText(arm.caught))}</td></tr>`;
  }).join('');
  return `<h4>Agreement</h4><p class="miqa-muted">Each figure: value [95 % interval], bootstrap over scans; n scans.</p>
    <table class="table table-condensed miqa-agreement-summary"><thead><tr><th>Measure</th><th>Value</th><th>n</th></tr></thead><tbody>${summary}</tbody></table>
    <h4>Per artifact (first two tier-1 reads)</h4>
    ${artifacts ? `<table class="table table-condensed miqa-agreement-artifacts"><thead><tr><th>Artifact</th><th>Kappa</th><th>Agreement</th><th>n</th></tr></thead><tbody>${artifacts}</tbody></table>` : '<p class="miqa-muted">No artifact read twice yet.</p>'}
    <h4>Reviewers</h4>
    <table class="table table-condensed miqa-agreement-reviewers"><thead><tr><th>Reviewer</th><th>Decisions</th><th>Gold re-reads</th><th>With gold</th><th>With tier 2</th><th>Median time</th><th>Confidence</th></tr></thead><tbody>${reviewers}</tbody></table>
    <h4>What the assessment does to tier 1</h4>
    <p class="miqa-muted">Tier-1 reads of scans tier 2 decided, with the automatic assessment shown or hidden: time per scan, agreement with tier 2, and the share of tier-2-bad scans flagged at tier 1.</p>
    <table class="table table-condensed miqa-agreement-arms"><thead><tr><th>Arm</th><th>Reads</th><th>Seconds</th><th>With tier 2</th><th>Bad caught</th></tr></thead><tbody>${arms}</tbody></table>`;
}

export const PLOT = { width: 520, height: 200, left: 40, right: 110, top: 12, bottom: 28 };
export const LINE_COLORS = ['#337ab7', '#d9534f', '#5cb85c', '#f0ad4e', '#5bc0de', '#8e44ad', '#555'];

/**
 * Each reviewer's cumulative agreement with the gold standard against time, laid out.
 *
 * Args:
 *   reviewers: the agreement's reviewers ([{reviewer, name, gold: {timeline: [{created,
 *     cumulative}]}}]).
 * Returns:
 *   {lines: [{label, color, points: [{x, y, value, created}]}], t0, t1} (empty lines when no
 *   reviewer has a gold read).
 */
export function timelineLayout(reviewers, opts = {}) {
  const o = { ...PLOT, ...opts };
  const series = (reviewers || []).map((r) => ({
    label: r.name || r.reviewer,
    points: ((r.gold && r.gold.timeline) || []).map((p) => ({ t: Date.parse(p.created), value: Number(p.cumulative) }))
      .filter((p) => Number.isFinite(p.t) && Number.isFinite(p.value)),
  })).filter((s) => s.points.length);
  const times = series.flatMap((s) => s.points.map((p) => p.t));
  const t0 = times.length ? Math.min(...times) : 0;
  const t1 = times.length ? Math.max(...times) : 1;
  const span = t1 > t0 ? t1 - t0 : 1;
  const w = o.width - o.left - o.right;
  const h = o.height - o.top - o.bottom;
  return {
    width: o.width, height: o.height, t0, t1, o,
    lines: series.map((s, i) => ({
      label: s.label,
      color: LINE_COLORS[i % LINE_COLORS.length],
      points: s.points.map((p) => ({
        x: o.left + (t1 > t0 ? ((p.t - t0) / span) * w : w / 2),
        y: o.top + (1 - p.value) * h,
        value: p.value,
        created: new Date(p.t).toISOString(),
      })),
    })),
  };
}

/** The SVG of a timelineLayout (axes 0-1, a line and dots per reviewer, a legend). */
export function timelineSvg(layout) {
  const { o } = layout;
  if (!layout.lines.length) return '<p class="miqa-muted miqa-timeline-empty">No gold re-reads yet: set a gold rate and mark reference scans.</p>';
  const y = (v) => o.top + (1 - v) * (layout.height - o.top - o.bottom);
  const grid = [0, 0.5, 1].map((v) => `<line x1="${o.left}" x2="${layout.width - o.right}" y1="${y(v)}" y2="${y(v)}" stroke="#ddd"/><text x="${o.left - 6}" y="${y(v) + 4}" text-anchor="end" font-size="10">${v}</text>`).join('');
  const lines = layout.lines.map((l, i) => `<g class="miqa-timeline-line" data-reviewer="${escapeHtml(l.label)}">
      <polyline fill="none" stroke="${l.color}" stroke-width="2" points="${l.points.map((p) => `${p.x.toFixed(1)},${p.y.toFixed(1)}`).join(' ')}"/>
      ${l.points.map((p) => `<circle cx="${p.x.toFixed(1)}" cy="${p.y.toFixed(1)}" r="3" fill="${l.color}"><title>${escapeHtml(l.label)}: ${p.value.toFixed(2)} (${escapeHtml(p.created)})</title></circle>`).join('')}
      <text x="${layout.width - o.right + 8}" y="${o.top + 12 + i * 14}" font-size="11" fill="${l.color}">${escapeHtml(l.label)}</text></g>`).join('');
  const dates = [layout.t0, layout.t1].map((t, i) => `<text x="${i ? layout.width - o.right : o.left}" y="${layout.height - 8}" text-anchor="${i ? 'end' : 'start'}" font-size="10">${escapeHtml(new Date(t).toISOString().slice(0, 10))}</text>`).join('');
  return `<svg class="miqa-timeline" width="${layout.width}" height="${layout.height}" viewBox="0 0 ${layout.width} ${layout.height}" role="img" aria-label="Agreement with the gold standard over time">${grid}${lines}${dates}</svg>`;
}
