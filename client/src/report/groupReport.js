// The group report's data made ready to show, free of the DOM (views/GroupReportView.js draws
// it): the per-site compliance table, the reasons most often seen per site, the metrics to plot.

/** The sites of a compliance answer, whether {sites: {...}} or the bare mapping. */
function complianceSites(compliance) {
  if (!compliance || typeof compliance !== 'object') return {};
  const sites = compliance.sites && typeof compliance.sites === 'object' ? compliance.sites : compliance;
  return sites;
}

/**
 * The compliance table: one row per site and scan type, one column per parameter any of them
 * checks.
 *
 * Args:
 *   compliance: {sites: {site: {scanType: {scans, compliant, parameters: {Key: percent}}}}}.
 * Returns:
 *   {parameters: [Key], rows: [{site, scanType, scans, compliant, percent, parameters: {Key:
 *   percent}}]} sorted by site then scan type; a parameter sorted first when some row has it
 *   below 100 %.
 */
export function complianceRows(compliance) {
  const rows = [];
  Object.entries(complianceSites(compliance)).forEach(([site, types]) => {
    Object.entries(types && typeof types === 'object' ? types : {}).forEach(([scanType, c]) => {
      if (!c || typeof c !== 'object') return;
      const scans = Number(c.scans) || 0;
      const compliant = Number(c.compliant) || 0;
      rows.push({
        site, scanType, scans, compliant,
        percent: scans ? (100 * compliant) / scans : null,
        parameters: c.parameters && typeof c.parameters === 'object' ? c.parameters : {},
      });
    });
  });
  rows.sort((a, b) => a.site.localeCompare(b.site) || a.scanType.localeCompare(b.scanType));
  const all = [...new Set(rows.flatMap((r) => Object.keys(r.parameters)))];
  const failing = (k) => rows.some((r) => Number(r.parameters[k]) < 100);
  const parameters = all.sort((a, b) => (failing(b) - failing(a)) || a.localeCompare(b));
  return { parameters, rows };
}

/** The reasons per site, most often seen first: [{site, reasons: [{text, source, count}]}]. */
export function reasonSites(reasons, limit = 5) {
  return Object.entries(reasons && typeof reasons === 'object' ? reasons : {})
    .map(([site, list]) => ({
      site,
      reasons: (Array.isArray(list) ? list : []).filter((r) => r && r.text)
        .map((r) => ({ text: String(r.text), source: r.source || 'network', count: Number(r.count) || 0 }))
        .sort((a, b) => b.count - a.count || a.text.localeCompare(b.text))
        .slice(0, limit),
    }))
    .sort((a, b) => a.site.localeCompare(b.site));
}

/** The metrics that have at least one numeric value, by name. */
export function plottedMetrics(metrics) {
  return Object.entries(metrics && typeof metrics === 'object' ? metrics : {})
    .filter(([, points]) => Array.isArray(points) && points.some((p) => p && typeof p.value === 'number' && Number.isFinite(p.value)))
    .sort(([a], [b]) => a.localeCompare(b));
}

/** The scan types of the report's points, the most common first (ties by name). */
export function scanTypes(metrics) {
  const typeOf = {}; // itemId -> scan type: a scan counts once, whatever its metrics
  Object.values(metrics && typeof metrics === 'object' ? metrics : {}).forEach((points) => {
    (Array.isArray(points) ? points : []).forEach((p) => {
      if (p) typeOf[p.itemId] = p.scanType || 'unknown';
    });
  });
  const counts = {};
  Object.values(typeOf).forEach((type) => { counts[type] = (counts[type] || 0) + 1; });
  const max = (type) => counts[type];
  return Object.keys(counts).sort((a, b) => max(b) - max(a) || a.localeCompare(b));
}

/** The metrics' points of one scan type (all of them for null), metrics left without any dropped. */
export function ofScanType(metrics, scanType) {
  if (!scanType) return metrics || {};
  return Object.fromEntries(Object.entries(metrics || {})
    .map(([name, points]) => [name, (Array.isArray(points) ? points : []).filter((p) => p && (p.scanType || 'unknown') === scanType)])
    .filter(([, points]) => points.length));
}
