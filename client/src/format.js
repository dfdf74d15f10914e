// Small formatting helpers shared by the review page and its widgets (no DOM).
import { escapeHtml } from './api.js';

/** A number for display: integers and large values rounded to 2 decimals, others to `digits`. */
export function fmt(value, digits = 2) {
  if (typeof value !== 'number' || !Number.isFinite(value)) return escapeHtml(value ?? '—');
  if (Math.abs(value) >= 1000 || Number.isInteger(value)) return String(Math.round(value * 100) / 100);
  return value.toFixed(digits);
}

/** A date in the reader's locale ('' when missing, the text itself when not a date). */
export function fmtDate(value) {
  if (!value) return '';
  const d = new Date(value);
  return Number.isNaN(d.getTime()) ? escapeHtml(value) : d.toLocaleString();
}

/** An artifact's label in the project's vocabulary, or its key made readable. */
export function artifactLabel(vocabulary, key) {
  const entry = (vocabulary || []).find((a) => a.key === key);
  return entry ? entry.label : String(key).replace(/_/g, ' ');
}
