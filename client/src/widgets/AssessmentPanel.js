// The automatic assessment beside the viewer: quality and the probability bars of the trained
// indicators (threshold line; untrained outputs are never shown), a banner when the scan is
// outside the model's domain, the quality points lost per artifact family, the fused indicator
// and its air statistics (the image quality metrics are MetricsPanel's). summarize() holds the logic, free of
// the DOM.
import { escapeHtml } from '../api.js';
import { artifactLabel, fmt } from '../format.js';

/** Trained indicators at or above this probability are suggested (never pre-set in the form:
 * the reviewer accepts them with S); the server's miqa.suspicion_thresholds default. */
export const SUGGEST_THRESHOLD = 0.5;

/** The indicators an older result (no trainedOutputs, miqa-default <= 0.6) was trained on, as
 * the server reads it (girder_miqa/models/review_state.py LEGACY_TRAINED). */
export const LEGACY_TRAINED = ['incomplete_coverage', 'wraparound', 'ghosting_motion', 'inhomogeneity'];

/** The indicators the assessment's model was trained on (its trainedOutputs less quality). */
export function trainedKeys(assessment) {
  const trained = assessment && assessment.trainedOutputs;
  return Array.isArray(trained) ? trained.filter((k) => k !== 'quality') : LEGACY_TRAINED;
}

/** The probabilities of the trained indicators only, as {key: p}. */
export function trainedProbabilities(assessment) {
  const trained = new Set(trainedKeys(assessment));
  const out = {};
  Object.entries((assessment && assessment.artifacts) || {}).forEach(([key, p]) => {
    const value = probability(p);
    if (trained.has(key) && Number.isFinite(value)) out[key] = value;
  });
  return out;
}

/** The artifacts a done assessment suggests: trained indicators at or above the threshold. */
export function suggestedKeys(assessment, threshold = SUGGEST_THRESHOLD) {
  const done = doneAssessment(assessment);
  return done ? Object.entries(trainedProbabilities(done)).filter(([, p]) => p >= threshold).map(([k]) => k) : [];
}

/** The banner of a scan outside the model's domain, or null (in scope, or not known). */
export function scopeNotice(assessment) {
  const scope = assessment && assessment.scope;
  if (!scope || typeof scope !== 'object' || scope.in_scope !== false) return null;
  const contrast = scope.contrast || 'unknown';
  return { text: `Outside the model's domain (${contrast}): scores not meaningful`, reason: scope.reason || '' };
}

/** The quality's interval [low, high] when the result carries one (qualityInterval: the
 * ensemble's spread over members x mirror views, widened by the factor fitted in model.json; or
 * the members' qualities as memberQuality); else null: the bare score is all there is. */
export function qualityInterval(assessment) {
  const interval = assessment && (assessment.qualityInterval || assessment.memberQuality);
  const values = Array.isArray(interval) ? interval.map(Number).filter(Number.isFinite) : [];
  return values.length >= 2 ? [Math.min(...values), Math.max(...values)] : null;
}

/** The quality as the panel writes it: "7.2 / 10 (6.4–7.9)" with its interval, else "7.2 / 10". */
export function qualityText(quality, interval) {
  return `${fmt(quality, 1)} / 10${interval ? ` (${fmt(interval[0], 1)}–${fmt(interval[1], 1)})` : ''}`;
}

/** An artifact's probability, whether stored as a number or as {probability} / {prob}. */
export function probability(value) {
  return typeof value === 'object' && value !== null ? Number(value.probability ?? value.prob) : Number(value);
}

/** The assessment if it is done (the only one with scores to show), else null. */
export function doneAssessment(assessment) {
  return assessment && assessment.status === 'done' ? assessment : null;
}

/**
 * What the panel shows of a done assessment.
 *
 * Returns:
 *   {quality, interval: [low, high] | null, artifacts: [[key, p]] of the trained indicators,
 *   most probable first, metrics: [[name, value]], fusion, airMetrics: [[name, value]],
 *   penalties: [[family, points]] costliest first, lost, model, scope: scopeNotice(),
 *   calibrated: whether the probabilities went through the model's recalibration}.
 */
export function summarize(assessment) {
  const artifacts = Object.entries(trainedProbabilities(assessment)).sort((a, b) => b[1] - a[1]);
  const metrics = Object.entries(assessment.metrics || {}).filter(([, v]) => typeof v !== 'object' || v === null);
  // one indicator may be decided by the network together with statistics of the air (fusion.json)
  const fusion = assessment.fusion && typeof assessment.fusion === 'object' ? assessment.fusion : null;
  const airMetrics = fusion ? Object.entries(fusion.metrics || {}).filter(([, v]) => typeof v === 'number') : [];
  // the quality points each simulated artifact family is estimated to cost (model.json penalty_families)
  const penalties = Object.entries(assessment.penalties && typeof assessment.penalties === 'object' ? assessment.penalties : {})
    .map(([family, points]) => [family, Number(points)])
    .filter(([, points]) => Number.isFinite(points))
    .sort((a, b) => b[1] - a[1]);
  const lost = penalties.reduce((sum, [, points]) => sum + points, 0);
  return {
    quality: Number(assessment.quality), interval: qualityInterval(assessment), artifacts, metrics,
    fusion, airMetrics, penalties, lost, model: assessment.model || {}, scope: scopeNotice(assessment),
    calibrated: assessment.calibrated === true,
  };
}

/** The tile-map overlay layers of an assessment: 'quality' then each trained indicator (none if
 * no map). */
export function tileLayers(assessment) {
  const done = doneAssessment(assessment);
  const map = done ? done.tileMap : null;
  const trained = new Set(trainedKeys(done));
  return { map: map || null, layers: map ? ['quality', ...Object.keys(map.artifacts || {}).filter((k) => trained.has(k))] : [] };
}

export class AssessmentPanel {
  /**
   * Args:
   *   el: the panel's element (section.miqa-assessment).
   *   vocabulary: the project's artifacts ([{key, label}]), for the labels.
   *   threshold: the suggestion threshold (GET /miqa/rules suggestionThreshold).
   */
  constructor(el, { vocabulary = [], threshold = SUGGEST_THRESHOLD } = {}) {
    this.el = el;
    this.vocabulary = vocabulary;
    this.threshold = Number.isFinite(threshold) ? threshold : SUGGEST_THRESHOLD;
  }

  label(key) {
    return artifactLabel(this.vocabulary, key);
  }

  /** Show an assessment (or its status while it is not done). */
  render(assessment) {
    if (!doneAssessment(assessment)) {
      const status = assessment ? assessment.status : 'none';
      this.el.innerHTML = `<h4>Automatic assessment</h4><p class="miqa-muted">Status: ${escapeHtml(status)}${assessment && assessment.reason ? ` — ${escapeHtml(assessment.reason)}` : ''}</p>`;
      return;
    }
    const { quality, interval, artifacts, fusion, airMetrics, penalties, lost, model, scope, calibrated } = summarize(assessment);
    const fused = (key) => Boolean(fusion && fusion.indicator === key);
    const fusedTitle = (key) => (fused(key)
      ? ` title="Network alone: ${Math.round(Number(fusion.network) * 100)}%; with the air statistics below: ${Math.round(Number(fusion.probability) * 100)}%"`
      : '');
    this.el.innerHTML = `
      <h4>Automatic assessment <small>${escapeHtml(model.name || model)}${model.version ? ` v${escapeHtml(model.version)}` : ''}</small></h4>
      ${scope ? `<div class="alert alert-warning miqa-out-of-scope" title="${escapeHtml(scope.reason)}">${escapeHtml(scope.text)}${scope.reason ? ` <small>(${escapeHtml(scope.reason)})</small>` : ''}</div>` : ''}
      <div class="miqa-bar-row miqa-quality-row" title="Predicted quality, 0 (unusable) to 10 (excellent)">
        <span class="miqa-bar-label">Quality</span>
        <span class="miqa-bar"><span class="miqa-bar-fill miqa-quality-fill" style="width:${Math.max(0, Math.min(100, quality * 10))}%"></span></span>
        <span class="miqa-bar-value miqa-quality-value">${fmt(quality, 1)} / 10${interval ? ` <small class="miqa-quality-interval" title="Uncertainty: the spread of the ensemble's networks and mirror views, widened to cover the true quality of most held-out test volumes (see the model card)">(${fmt(interval[0], 1)}–${fmt(interval[1], 1)})</small>` : ''}</span>
      </div>
      <div class="miqa-artifact-bars${calibrated ? ' miqa-calibrated' : ''}"${calibrated ? ' title="Calibrated probabilities: of scans given 30%, about 30% had the artifact on held-out test volumes"' : ''}>
        ${artifacts.map(([key, p]) => `
          <div class="miqa-bar-row ${p >= this.threshold ? 'miqa-above' : ''} ${fused(key) ? 'miqa-fused' : ''}" data-key="${escapeHtml(key)}"${fusedTitle(key)}>
            <span class="miqa-bar-label">${escapeHtml(this.label(key))}${fused(key) ? ' <sup>*</sup>' : ''}${p >= this.threshold ? ' <span class="miqa-suggested" title="Suggested: press S to accept">★</span>' : ''}</span>
            <span class="miqa-bar"><span class="miqa-bar-fill" style="width:${Math.round(p * 100)}%"></span><span class="miqa-threshold" style="left:${this.threshold * 100}%"></span></span>
            <span class="miqa-bar-value">${Math.round(p * 100)}%</span>
          </div>`).join('')}
      </div>
      ${artifacts.length ? '' : '<p class="miqa-muted miqa-no-indicators">No trained artifact indicators.</p>'}
      ${fusion ? `<p class="miqa-muted miqa-fusion-note"><sup>*</sup> ${escapeHtml(this.label(fusion.indicator))}: network alone ${Math.round(Number(fusion.network) * 100)}%, decided with the air statistics.</p>` : ''}
      ${penalties.length ? `<details class="miqa-metrics miqa-penalties"${lost >= 1 ? ' open' : ''}><summary>Quality points lost, by artifact family (estimated, ${fmt(lost, 1)} in all)</summary><table class="table table-condensed">${penalties.map(([family, points]) => `<tr data-family="${escapeHtml(family)}"${points >= 1 ? ' class="miqa-above"' : ''}><td>${escapeHtml(family)}</td><td>${fmt(points, 1)}</td></tr>`).join('')}</table></details>` : ''}
      ${airMetrics.length ? `<details class="miqa-metrics miqa-air-metrics"><summary>Air statistics (${escapeHtml(this.label(fusion.indicator))})</summary><table class="table table-condensed">${airMetrics.map(([k, v]) => `<tr><td>${escapeHtml(k)}</td><td>${fmt(v, 4)}</td></tr>`).join('')}</table></details>` : ''}`;
  }
}
