// The image quality metrics as the scan's standing among its peers (the same site and scan type,
// item.miqa.metrics): each metric a percentile bar with its robust z, the outliers first. With
// fewer peers than the server's minimum it says so and shows the raw values, never an invented
// distribution. metricRows() is the DOM-free part.
import { escapeHtml } from '../api.js';
import { fmt } from '../format.js';

/** The site of a metrics group name ("site-b / T1w" -> "site-b"). */
export function groupSite(group) {
  return String(group || '').split(' / ')[0] || 'this site';
}

/**
 * What the panel shows.
 *
 * Args:
 *   raw: the assessment's metrics ({name: number}; other values are left out).
 *   stats: item.miqa.metrics ({group, peers, minimumPeers, enough, percentiles, z, outliers}) or
 *     nothing (not computed yet).
 * Returns:
 *   {mode: 'percentiles' | 'too-few' | 'raw', note, rows: [{name, value, percentile, z,
 *   outlier}]}: percentiles mode lists outliers first, then by |z|, largest first; the other
 *   modes list the raw values by name.
 */
export function metricRows(raw, stats) {
  const values = Object.entries(raw && typeof raw === 'object' ? raw : {})
    .filter(([, v]) => typeof v === 'number' && Number.isFinite(v));
  const s = stats && typeof stats === 'object' ? stats : null;
  if (!s || !s.enough) {
    const rows = values.map(([name, value]) => ({ name, value, percentile: null, z: null, outlier: false }))
      .sort((a, b) => a.name.localeCompare(b.name));
    if (!s) return { mode: 'raw', note: 'Percentiles among this site\'s scans are not computed yet.', rows };
    const need = Number.isFinite(Number(s.minimumPeers)) ? `; at least ${s.minimumPeers} needed` : '';
    return {
      mode: 'too-few',
      note: `Too few peers (${Number(s.peers) || 0}) at ${groupSite(s.group)} for percentiles${need}: raw values.`,
      rows,
    };
  }
  const percentiles = s.percentiles || {};
  const z = s.z || {};
  const outliers = new Set(Array.isArray(s.outliers) ? s.outliers : []);
  const names = new Set([...values.map(([n]) => n), ...Object.keys(percentiles)]);
  const byName = Object.fromEntries(values);
  const rows = [...names].map((name) => ({
    name,
    value: name in byName ? byName[name] : null,
    percentile: Number.isFinite(Number(percentiles[name])) ? Number(percentiles[name]) : null,
    z: Number.isFinite(Number(z[name])) ? Number(z[name]) : null,
    outlier: outliers.has(name),
  })).sort((a, b) => (b.outlier - a.outlier) || (Math.abs(b.z ?? 0) - Math.abs(a.z ?? 0)) || a.name.localeCompare(b.name));
  const why = s.note ? ` (${s.note})` : '';
  return { mode: 'percentiles', note: `Percentile among ${Number(s.peers) || 0} scans of ${s.group || 'this group'}${why}`, rows };
}

/** z with a real minus sign and one decimal. */
export function fmtZ(z) {
  if (z === null || z === undefined || !Number.isFinite(z)) return '';
  return `z = ${z < 0 ? '−' : ''}${Math.abs(z).toFixed(1)}`;
}

export class MetricsPanel {
  /** Args: el: the panel's element (section.miqa-metric-panel). */
  constructor(el) {
    this.el = el;
  }

  /** Show the assessment's metrics against the scan's peer statistics. */
  render(raw, stats) {
    const { mode, note, rows } = metricRows(raw, stats);
    if (!rows.length) {
      this.el.innerHTML = '';
      return;
    }
    const outliers = rows.filter((r) => r.outlier).length;
    const body = mode === 'percentiles'
      ? rows.map((r) => `<div class="miqa-metric-row miqa-bar-row${r.outlier ? ' miqa-outlier' : ''}" data-metric="${escapeHtml(r.name)}" title="${escapeHtml(r.name)} = ${fmt(r.value, 4)}">
          <span class="miqa-bar-label">${escapeHtml(r.name)}</span>
          <span class="miqa-bar miqa-percentile-bar">${r.percentile !== null ? `<span class="miqa-percentile-mark" style="left:${Math.max(0, Math.min(100, r.percentile))}%"></span>` : ''}</span>
          <span class="miqa-metric-value">${r.percentile !== null ? `p${Math.round(r.percentile)}` : '—'} <small>${fmtZ(r.z)}</small></span>
        </div>`).join('')
      : `<table class="table table-condensed">${rows.map((r) => `<tr class="miqa-metric-row" data-metric="${escapeHtml(r.name)}"><td>${escapeHtml(r.name)}</td><td>${fmt(r.value, 3)}</td></tr>`).join('')}</table>`;
    this.el.innerHTML = `<details class="miqa-metric-details" data-mode="${mode}" ${mode === 'percentiles' && outliers ? 'open' : ''}>
      <summary>Image metrics ${mode === 'percentiles' ? `<small>(${outliers} outlier${outliers === 1 ? '' : 's'})</small>` : ''}</summary>
      <p class="miqa-muted miqa-metric-note">${escapeHtml(note)}</p>
      ${body}
    </details>`;
  }
}
