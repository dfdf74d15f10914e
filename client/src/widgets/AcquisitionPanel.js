// The scan's acquisition parameters (read by the worker from DICOM tags, a BIDS sidecar or the
// image header), each beside the reference value of the protocol in force when it deviates from
// it (item.miqa.protocol.deviations), unknowns as "unknown", and the problems met while reading
// them (a broken sidecar ...). acquisitionRows() is the DOM-free part.
import { escapeHtml } from '../api.js';

/** The parameters in the order the panel lists them (BIDS names), then any others. */
export const PARAMETER_ORDER = [
  'Manufacturer', 'ManufacturersModelName', 'SoftwareVersions', 'MagneticFieldStrength',
  'SeriesDescription', 'ProtocolName', 'ScanningSequence', 'SequenceVariant', 'SequenceName',
  'MRAcquisitionType', 'RepetitionTime', 'EchoTime', 'InversionTime', 'FlipAngle', 'VoxelSize',
  'Matrix', 'SliceThickness', 'Orientation', 'PixelBandwidth', 'ParallelReductionFactorInPlane',
  'PhaseEncodingDirection', 'ReceiveCoilName', 'InstitutionName', 'StationName',
  'DeviceSerialNumber', 'AcquisitionDate',
];

/** BIDS times are in seconds; people read TR/TE/TI in ms. */
const MS = new Set(['RepetitionTime', 'EchoTime', 'InversionTime']);
const UNITS = {
  MagneticFieldStrength: 'T', FlipAngle: '°', VoxelSize: 'mm', SliceThickness: 'mm', PixelBandwidth: 'Hz/px',
};

/** A parameter name made readable: "RepetitionTime" -> "Repetition time". */
export function parameterLabel(key) {
  const words = String(key).replace(/([a-z])([A-Z])/g, '$1 $2').split(' ');
  return words.map((w, i) => (i === 0 ? w : w.toLowerCase())).join(' ');
}

/** A number without float noise (at most 4 significant decimals). */
function num(value) {
  return String(Math.round(value * 10000) / 10000);
}

/**
 * A parameter's value for display, with its unit; null/undefined is "unknown".
 *
 * Args:
 *   key: the BIDS name (decides the unit: TR/TE/TI in ms, voxel size in mm ...).
 *   value: a number, a string, or a list (voxel size, matrix).
 */
export function formatValue(key, value) {
  if (value === null || value === undefined || value === '') return 'unknown';
  const scale = (v) => (MS.has(key) && typeof v === 'number' ? v * 1000 : v);
  const one = (v) => (typeof v === 'number' ? num(scale(v)) : String(v));
  const text = Array.isArray(value) ? value.map(one).join(' × ') : one(value);
  const unit = MS.has(key) ? 'ms' : UNITS[key];
  return unit && (typeof value === 'number' || Array.isArray(value)) ? `${text} ${unit}` : text;
}

/**
 * The rows the panel shows: deviating parameters first (exclude before warning), then the
 * others in PARAMETER_ORDER.
 *
 * Args:
 *   acquisition: the assessment's acquisition ({parameters, sources, problems}) or nothing.
 *   protocol: item.miqa.protocol ({deviations: [{parameter, expected, found, severity,
 *     tolerance, reference}]}) or nothing.
 * Returns:
 *   {rows: [{key, label, value, known, source, deviation: {expected, found, severity, tolerance,
 *   toleranceText (in the value's unit), reference} | null}], problems: [str], deviations: n}.
 */
export function acquisitionRows(acquisition, protocol) {
  const params = (acquisition && typeof acquisition.parameters === 'object' && acquisition.parameters) || {};
  const sources = (acquisition && typeof acquisition.sources === 'object' && acquisition.sources) || {};
  const deviations = {};
  ((protocol && Array.isArray(protocol.deviations)) ? protocol.deviations : []).forEach((d) => {
    if (d && d.parameter) deviations[d.parameter] = d;
  });
  const keys = [...PARAMETER_ORDER.filter((k) => k in params || k in deviations),
    ...Object.keys(params).filter((k) => !PARAMETER_ORDER.includes(k)).sort(),
    ...Object.keys(deviations).filter((k) => !PARAMETER_ORDER.includes(k) && !(k in params)).sort()];
  const rank = (row) => (row.deviation ? (row.deviation.severity === 'exclude' ? 0 : 1) : 2);
  const rows = keys.map((key, order) => {
    const d = deviations[key] || null;
    const value = key in params ? params[key] : (d ? d.found : null);
    return {
      key,
      label: parameterLabel(key),
      value: formatValue(key, value),
      known: value !== null && value !== undefined && value !== '',
      source: sources[key] || '',
      deviation: d ? {
        expected: formatValue(key, d.expected),
        found: formatValue(key, d.found),
        severity: d.severity === 'exclude' ? 'exclude' : 'warning',
        tolerance: d.tolerance === null || d.tolerance === undefined ? null : Number(d.tolerance),
        toleranceText: d.tolerance ? formatValue(key, Number(d.tolerance)) : null,
        reference: d.reference || '',
      } : null,
      order,
    };
  }).sort((a, b) => rank(a) - rank(b) || a.order - b.order).map(({ order, ...row }) => row); // eslint-disable-line no-unused-vars
  const problems = ((acquisition && Array.isArray(acquisition.problems)) ? acquisition.problems : []).map(String);
  return { rows, problems, deviations: Object.keys(deviations).length };
}

export class AcquisitionPanel {
  /** Args: el: the panel's element (section.miqa-acquisition). */
  constructor(el) {
    this.el = el;
  }

  /** Show the parameters of an assessment's acquisition against the scan's protocol check. */
  render(acquisition, protocol) {
    const { rows, problems, deviations } = acquisitionRows(acquisition, protocol);
    if (!rows.length && !problems.length) {
      this.el.innerHTML = '<h4>Acquisition</h4><p class="miqa-muted miqa-no-acquisition">No acquisition parameters read for this scan.</p>';
      return;
    }
    const tol = (d) => (d.toleranceText ? ` ± ${escapeHtml(d.toleranceText)}` : '');
    this.el.innerHTML = `<h4>Acquisition <small>${deviations ? `${deviations} deviation${deviations > 1 ? 's' : ''} from the protocol` : (protocol ? 'as the protocol says' : '')}</small></h4>
      ${problems.map((p) => `<div class="alert alert-warning miqa-acq-problem">${escapeHtml(p)}</div>`).join('')}
      <table class="table table-condensed miqa-acq-table">
        <thead><tr><th>Parameter</th><th>Value</th><th>Reference</th></tr></thead>
        <tbody>${rows.map((r) => `<tr class="miqa-acq-row${r.deviation ? ` miqa-deviation miqa-severity-${r.deviation.severity}` : ''}${r.known ? '' : ' miqa-unknown'}" data-key="${escapeHtml(r.key)}">
          <td title="${escapeHtml(r.key)}${r.source ? ` (from ${escapeHtml(r.source)})` : ''}">${escapeHtml(r.label)}</td>
          <td class="miqa-acq-value">${escapeHtml(r.value)}</td>
          <td class="miqa-acq-reference">${r.deviation ? `<span title="${escapeHtml(r.deviation.reference)} reference, ${r.deviation.severity}">${escapeHtml(r.deviation.expected)}${tol(r.deviation)}</span> <span class="miqa-severity miqa-severity-${r.deviation.severity}">${r.deviation.severity}</span>` : ''}</td>
        </tr>`).join('')}</tbody>
      </table>`;
  }
}
