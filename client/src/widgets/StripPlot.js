// One image quality metric by site as a strip plot on a canvas (MRIQC's group report is the
// model): a band per site, each scan a dot jittered across its band (the same place on every
// draw), the site's median as a line, outliers in red. Clicking a dot calls onOpen with its
// scan. stripLayout() and hitTest() are the DOM-free part.

export const PLOT = { height: 190, band: 96, left: 56, right: 12, top: 22, bottom: 34, radius: 4 };
export const COLORS = { point: 'rgba(51, 122, 183, 0.75)', outlier: '#d9534f', median: '#333', axis: '#999', text: '#333', background: '#ffffff' };

/** A stable number in [0, 1) from a string (the jitter of one scan's dot). */
export function unitHash(text) {
  let h = 2166136261;
  for (const c of String(text)) {
    h ^= c.codePointAt(0);
    h = Math.imul(h, 16777619);
  }
  return (h >>> 0) / 4294967296;
}

/** Up to about `count` round tick values covering [lo, hi]. */
export function ticks(lo, hi, count = 4) {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw);
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

function median(values) {
  const s = [...values].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/**
 * Where everything goes.
 *
 * Args:
 *   points: one metric's scans ([{itemId, name, site, scanType, value, outlier}]; values that are
 *     not finite numbers are left out).
 *   opts: PLOT's sizes, overridden.
 * Returns:
 *   {width, height, sites: [{site, x0, x1, centre, median, medianY, n}], points: [{...point, x,
 *   y}], yTicks: [{value, y}], lo, hi}.
 */
export function stripLayout(points, opts = {}) {
  const o = { ...PLOT, ...opts };
  const usable = (Array.isArray(points) ? points : [])
    .filter((p) => p && p.value !== null && p.value !== '' && Number.isFinite(Number(p.value)));
  const siteNames = [...new Set(usable.map((p) => String(p.site ?? '')))].sort();
  const width = o.left + o.right + Math.max(1, siteNames.length) * o.band;
  const height = o.height;
  const values = usable.map((p) => Number(p.value));
  let lo = values.length ? Math.min(...values) : 0;
  let hi = values.length ? Math.max(...values) : 1;
  if (hi === lo) {
    const pad = Math.abs(lo) * 0.1 || 1;
    lo -= pad;
    hi += pad;
  }
  const span = hi - lo;
  lo -= span * 0.06;
  hi += span * 0.06;
  const plotH = height - o.top - o.bottom;
  const yOf = (v) => o.top + (1 - (v - lo) / (hi - lo)) * plotH;
  const sites = siteNames.map((site, i) => {
    const x0 = o.left + i * o.band;
    const mine = usable.filter((p) => String(p.site ?? '') === site).map((p) => Number(p.value));
    const med = median(mine);
    return { site, x0, x1: x0 + o.band, centre: x0 + o.band / 2, median: med, medianY: yOf(med), n: mine.length };
  });
  const bySite = Object.fromEntries(sites.map((s) => [s.site, s]));
  const laid = usable.map((p) => {
    const s = bySite[String(p.site ?? '')];
    const jitter = (unitHash(p.itemId ?? p.name) - 0.5) * o.band * 0.55;
    return { ...p, value: Number(p.value), outlier: Boolean(p.outlier), x: s.centre + jitter, y: yOf(Number(p.value)) };
  });
  return { width, height, sites, points: laid, yTicks: ticks(lo, hi).map((value) => ({ value, y: yOf(value) })), lo, hi, opts: o };
}

/** The dot at (x, y) in canvas pixels (the nearest within its radius + 3 px), or null. */
export function hitTest(layout, x, y) {
  const reach = (layout.opts ? layout.opts.radius : PLOT.radius) + 3;
  let best = null;
  let bestD = reach * reach;
  for (const p of layout.points) {
    const d = (p.x - x) ** 2 + (p.y - y) ** 2;
    if (d <= bestD) {
      best = p;
      bestD = d;
    }
  }
  return best;
}

function label(value) {
  const a = Math.abs(value);
  if (a !== 0 && (a >= 1e4 || a < 1e-2)) return value.toExponential(1);
  return String(Number(value.toPrecision(4)));
}

export class StripPlot {
  /**
   * Args:
   *   el: where the plot goes (its canvas is made inside).
   *   metric: the metric's name (the title).
   *   points: its scans (see stripLayout).
   *   onOpen: point => void, when a dot is clicked.
   */
  constructor(el, { metric, points, onOpen = () => {} }) {
    this.el = el;
    this.metric = metric;
    this.layout = stripLayout(points);
    this.canvas = document.createElement('canvas');
    this.canvas.className = 'miqa-strip-canvas';
    this.canvas.width = this.layout.width;
    this.canvas.height = this.layout.height;
    this.canvas.dataset.metric = metric;
    this.canvas.miqaPlot = this; // the browser test finds a scan's dot through it
    el.appendChild(this.canvas);
    this.canvas.addEventListener('click', (e) => {
      const rect = this.canvas.getBoundingClientRect();
      const p = hitTest(this.layout, (e.clientX - rect.left) * (this.canvas.width / rect.width),
        (e.clientY - rect.top) * (this.canvas.height / rect.height));
      if (p) onOpen(p);
    });
    this.canvas.addEventListener('mousemove', (e) => {
      const rect = this.canvas.getBoundingClientRect();
      const p = hitTest(this.layout, e.clientX - rect.left, e.clientY - rect.top);
      this.canvas.style.cursor = p ? 'pointer' : 'default';
      this.canvas.title = p ? `${p.name} (${p.site}): ${label(p.value)}${p.outlier ? ', outlier' : ''}` : '';
    });
    this.draw();
  }

  /** Where a scan's dot is, in CSS pixels of the page (for tests and people), or null. */
  pointOf(itemId) {
    const p = this.layout.points.find((q) => String(q.itemId) === String(itemId));
    if (!p) return null;
    const rect = this.canvas.getBoundingClientRect();
    return { x: rect.left + p.x * (rect.width / this.canvas.width), y: rect.top + p.y * (rect.height / this.canvas.height) };
  }

  draw() {
    const { width, height, sites, points, yTicks, opts } = this.layout;
    const ctx = this.canvas.getContext('2d');
    ctx.fillStyle = COLORS.background;
    ctx.fillRect(0, 0, width, height);
    ctx.font = '11px sans-serif';
    ctx.fillStyle = COLORS.text;
    ctx.textBaseline = 'top';
    ctx.textAlign = 'left';
    ctx.fillText(this.metric, 4, 4);
    ctx.strokeStyle = COLORS.axis;
    ctx.lineWidth = 1;
    ctx.textAlign = 'right';
    ctx.textBaseline = 'middle';
    yTicks.forEach((t) => {
      ctx.beginPath();
      ctx.moveTo(opts.left - 4, Math.round(t.y) + 0.5);
      ctx.lineTo(opts.left, Math.round(t.y) + 0.5);
      ctx.stroke();
      ctx.fillText(label(t.value), opts.left - 6, t.y);
    });
    ctx.beginPath();
    ctx.moveTo(opts.left + 0.5, opts.top);
    ctx.lineTo(opts.left + 0.5, height - opts.bottom);
    ctx.lineTo(width - opts.right, height - opts.bottom + 0.5);
    ctx.stroke();
    ctx.textAlign = 'center';
    ctx.textBaseline = 'top';
    sites.forEach((s) => {
      ctx.fillStyle = COLORS.text;
      ctx.fillText(s.site.length > 14 ? `${s.site.slice(0, 13)}…` : s.site, s.centre, height - opts.bottom + 5);
      ctx.fillText(`n=${s.n}`, s.centre, height - opts.bottom + 18);
      ctx.strokeStyle = COLORS.median;
      ctx.beginPath();
      ctx.moveTo(s.centre - opts.band * 0.35, s.medianY);
      ctx.lineTo(s.centre + opts.band * 0.35, s.medianY);
      ctx.stroke();
    });
    points.filter((p) => !p.outlier).concat(points.filter((p) => p.outlier)).forEach((p) => {
      ctx.fillStyle = p.outlier ? COLORS.outlier : COLORS.point;
      ctx.beginPath();
      ctx.arc(p.x, p.y, opts.radius, 0, 2 * Math.PI);
      ctx.fill();
    });
  }
}

/** The plots drawn one under the other on one canvas (the report's PNG), under a title line. */
export function stackCanvases(canvases, { title = '', doc = document } = {}) {
  const head = title ? 24 : 0;
  const width = Math.max(1, ...canvases.map((c) => c.width));
  const height = Math.max(1, head + canvases.reduce((sum, c) => sum + c.height, 0));
  const out = doc.createElement('canvas');
  out.width = width;
  out.height = height;
  const ctx = out.getContext('2d');
  ctx.fillStyle = COLORS.background;
  ctx.fillRect(0, 0, width, height);
  if (title) {
    ctx.fillStyle = COLORS.text;
    ctx.font = 'bold 13px sans-serif';
    ctx.textBaseline = 'middle';
    ctx.fillText(title, 6, head / 2);
  }
  let y = head;
  canvases.forEach((c) => {
    ctx.drawImage(c, 0, y);
    y += c.height;
  });
  return out;
}
