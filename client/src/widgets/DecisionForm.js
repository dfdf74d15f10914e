// The decision form: artifacts (not stated / present / absent), the model's suggestions (shown,
// never pre-set: "Accept suggestions" / S takes them, and the decision records which),
// comment, location, confidence, the bad rule and the decision buttons of the reviewer's tier. The rules (allowed decisions,
// what bad needs) come from GET /miqa/rules; the logic is in plain functions node can test.
import { escapeHtml } from '../api.js';
import { DECISION_KEYS } from '../review/keymap.js';
import { SUGGEST_THRESHOLD, doneAssessment, suggestedKeys, trainedProbabilities } from './AssessmentPanel.js';

/** The order the artifact keys and buttons cycle through (undefined: not stated). */
export const ARTIFACT_CYCLE = [undefined, 'present', 'absent'];

/** The decisions a tier may record, from the rules. */
export function allowedDecisions(rules, tier) {
  const entry = rules && rules.tiers && rules.tiers[String(tier)];
  return entry ? entry.decisions : [];
}

/**
 * A fresh form for a scan: nothing stated. The trained indicators the assessment finds likely
 * are marked "suggested" (untrained outputs are neither shown nor suggested) and stay unstated
 * until the reviewer accepts them (acceptSuggestions); tier 2 starts from what the latest
 * (tier-1) decision stated, never from the model.
 *
 * Args:
 *   vocabulary: the project's artifacts ([{key, label}]).
 *   state: the scan's review state ({assessment, latestDecision}).
 *   tier: the reviewer's tier.
 *   threshold: the suggestion threshold (GET /miqa/rules suggestionThreshold).
 */
export function initialForm(vocabulary, state, tier, threshold = SUGGEST_THRESHOLD) {
  const assessment = doneAssessment(state.assessment);
  const probs = assessment ? trainedProbabilities(assessment) : {};
  const form = { artifacts: {}, suggested: {}, accepted: {}, probs, comment: '', location: null, confidence: null };
  const suggested = new Set(suggestedKeys(assessment, threshold));
  vocabulary.forEach(({ key }) => {
    if (suggested.has(key)) form.suggested[key] = true;
  });
  const latest = state.latestDecision;
  if (tier === 2 && latest && latest.artifacts) {
    Object.entries(latest.artifacts).forEach(([key, value]) => {
      form.artifacts[key] = value;
    });
  }
  return form;
}

/** Accept every shown suggestion: each is marked present and recorded as accepted (a reviewer's
 * own change to it later makes it their statement). Returns how many were accepted. */
export function acceptSuggestions(form) {
  const keys = Object.keys(form.suggested).filter((key) => form.suggested[key]);
  keys.forEach((key) => {
    form.artifacts[key] = 'present';
    form.accepted[key] = true;
  });
  return keys.length;
}

/** The artifact value after `value` in the cycle not stated → present → absent → not stated. */
export function nextArtifactValue(value) {
  return ARTIFACT_CYCLE[(ARTIFACT_CYCLE.indexOf(value) + 1) % ARTIFACT_CYCLE.length];
}

/** Whether the form meets the bad rule: one of the rules' badRule.needsOneOf is there. */
export function badRuleMet(form, rules) {
  const has = {
    artifactPresent: Object.values(form.artifacts).includes('present'),
    comment: form.comment.trim().length > 0,
  };
  return rules.badRule.needsOneOf.some((need) => has[need]);
}

/**
 * Why a decision cannot be sent as the form stands, or null when it can.
 *
 * Returns:
 *   null, or {message, rule} (rule: true when it is the bad rule that is not met).
 */
export function decisionProblem(form, decision, tier, rules) {
  const allowed = allowedDecisions(rules, tier);
  if (!allowed.includes(decision)) {
    return { message: `At tier ${tier} a scan can be marked ${allowed.join(' or ')}.`, rule: false };
  }
  if (decision === rules.badRule.decision && !badRuleMet(form, rules)) {
    return { message: rules.badRule.summary, rule: true };
  }
  return null;
}

/** The POST body of a decision: the form's fields, the tier and the seconds spent (0.1 s). */
export function decisionBody(form, decision, tier, seconds) {
  const body = {
    decision,
    tier,
    artifacts: { ...form.artifacts },
    comment: form.comment.trim(),
    seconds: Math.round(seconds * 10) / 10,
  };
  if (form.confidence) body.confidence = form.confidence;
  if (form.location) body.location = form.location;
  const accepted = Object.keys(form.accepted || {}).filter((key) => form.artifacts[key] === 'present');
  if (accepted.length) body.acceptedSuggestions = accepted;
  return body;
}

/** The location of interest as the form shows it. */
export function locationText(location) {
  return location
    ? `voxel [${location.ijk.join(', ')}], ${location.world.map((v) => v.toFixed(1)).join(', ')} mm`
    : '—';
}

export class DecisionForm {
  /**
   * Args:
   *   el: the form's element (section.miqa-decision-form); the widget fills and listens on it.
   *   rules: GET /miqa/rules; tier: the reviewer's tier; vocabulary: the project's artifacts.
   *   onDecide: decision => void, when a decision button is clicked.
   *   onUseLocation: () => void, when "Use crosshairs" is clicked (the page owns the viewer).
   */
  constructor(el, { rules, tier, vocabulary, onDecide = () => {}, onUseLocation = () => {} }) {
    Object.assign(this, { el, rules, tier, vocabulary, onDecide, onUseLocation });
    this.values = null;
    this.onClick = (e) => this.handleClick(e);
    this.onInput = (e) => {
      if (!e.target.classList.contains('miqa-comment') || !this.values) return;
      this.values.comment = e.target.value;
      this.renderRule();
    };
    el.addEventListener('click', this.onClick);
    el.addEventListener('input', this.onInput);
    this.render();
  }

  $(selector) {
    return this.el.querySelector(selector);
  }

  render() {
    const allowed = allowedDecisions(this.rules, this.tier);
    const bad = this.rules.badRule;
    this.el.innerHTML = `
      <h4>Decision <small>tier ${this.tier}</small></h4>
      <div class="miqa-artifacts"></div>
      <div class="miqa-suggestions-row"><button type="button" class="btn btn-xs btn-default miqa-accept-suggestions" title="Mark the suggested artifacts present (S)">Accept suggestions <kbd>S</kbd></button></div>
      <textarea class="miqa-comment form-control" rows="2" placeholder="Comment (C)"></textarea>
      <div class="miqa-location-row">
        Location: <span class="miqa-location">—</span>
        <button class="btn btn-xs btn-default miqa-use-location" title="Use the crosshairs (L)">Use crosshairs</button>
        <button class="btn btn-xs btn-link miqa-clear-location" title="Shift+L">clear</button>
      </div>
      <div class="miqa-confidence">Confidence:
        ${[1, 2, 3, 4, 5].map((v) => `<button class="btn btn-xs btn-default" data-value="${v}" title="Shift+${v}">${v}</button>`).join('')}
      </div>
      ${allowed.includes(bad.decision) ? `<div class="miqa-rule">${escapeHtml(bad.summary)}</div>` : ''}
      <div class="miqa-decision-buttons">
        ${allowed.map((d) => `<button class="btn miqa-decide miqa-decide-${d}" data-decision="${d}">${d[0].toUpperCase()}${d.slice(1)} <kbd>${DECISION_KEYS[d]}</kbd></button>`).join('')}
      </div>
      <div class="miqa-form-message"></div>`;
  }

  handleClick(e) {
    const target = e.target.closest('button');
    if (!target || !this.el.contains(target)) return;
    if (target.classList.contains('miqa-decide')) {
      this.onDecide(target.dataset.decision);
    } else if (target.classList.contains('miqa-artifact-state')) {
      const { key, state } = target.dataset;
      this.setArtifact(key, state === 'not_stated' ? undefined : state);
    } else if (target.classList.contains('miqa-accept-suggestions')) {
      this.acceptSuggestions();
    } else if (target.classList.contains('miqa-use-location')) {
      this.onUseLocation();
    } else if (target.classList.contains('miqa-clear-location')) {
      this.setLocation(null);
    } else if (target.parentElement && target.parentElement.classList.contains('miqa-confidence')) {
      this.setConfidence(Number(target.dataset.value));
    }
  }

  /** Start over for a scan ({assessment, latestDecision}). */
  reset(state) {
    this.values = initialForm(this.vocabulary, state, this.tier, this.rules.suggestionThreshold ?? SUGGEST_THRESHOLD);
    this.$('.miqa-comment').value = '';
    this.renderArtifacts();
    this.renderLocation();
    this.renderConfidence();
    this.renderRule();
    this.showMessage('');
  }

  renderArtifacts() {
    const form = this.values;
    this.$('.miqa-artifacts').innerHTML = this.vocabulary.map(({ key, label }, i) => {
      const value = form.artifacts[key] || 'not_stated';
      const p = form.probs[key];
      const btn = (state, text) => `<button type="button" class="btn btn-xs miqa-artifact-state ${value === state ? 'active' : ''}" data-key="${escapeHtml(key)}" data-state="${state}">${text}</button>`;
      return `<div class="miqa-artifact miqa-artifact-${value}" data-key="${escapeHtml(key)}" data-state="${value}">
        <span class="miqa-artifact-key">${i < 10 ? `<kbd>${(i + 1) % 10}</kbd>` : ''}</span>
        <span class="miqa-artifact-label">${escapeHtml(label)}${form.suggested[key] ? ` <span class="miqa-suggested" title="Suggested by the automatic assessment; S accepts">${form.accepted[key] ? 'accepted' : 'suggested'}</span>` : ''}${typeof p === 'number' && Number.isFinite(p) ? ` <small>${Math.round(p * 100)}%</small>` : ''}</span>
        <span class="btn-group">${btn('present', 'present')}${btn('absent', 'absent')}${btn('not_stated', '–')}</span>
      </div>`;
    }).join('');
    const accept = this.$('.miqa-accept-suggestions');
    const open = Object.keys(form.suggested).filter((key) => !form.accepted[key]);
    if (accept) {
      accept.parentElement.hidden = !Object.keys(form.suggested).length;
      accept.disabled = !open.length;
    }
  }

  /** Accept the shown suggestions (the S key, the button). */
  acceptSuggestions() {
    if (!this.values || !acceptSuggestions(this.values)) return;
    this.renderArtifacts();
    this.renderRule();
  }

  setArtifact(key, value) {
    if (!this.values) return;
    delete this.values.accepted[key]; // the reviewer's own statement now
    if (value) this.values.artifacts[key] = value;
    else delete this.values.artifacts[key];
    this.renderArtifacts();
    this.renderRule();
  }

  /** The artifact key 1-9, 0: cycle the index-th artifact's value. */
  cycleArtifact(index) {
    const entry = this.vocabulary[index];
    if (!entry || !this.values) return;
    this.setArtifact(entry.key, nextArtifactValue(this.values.artifacts[entry.key]));
  }

  setLocation(location) {
    if (!this.values) return;
    this.values.location = location;
    this.renderLocation();
  }

  renderLocation() {
    this.$('.miqa-location').textContent = locationText(this.values.location);
  }

  /** Set a confidence; the same one again clears it. */
  setConfidence(value) {
    if (!this.values) return;
    this.values.confidence = this.values.confidence === value ? null : value;
    this.renderConfidence();
  }

  renderConfidence() {
    this.el.querySelectorAll('.miqa-confidence button').forEach((b) => {
      b.classList.toggle('active', Number(b.dataset.value) === this.values.confidence);
    });
  }

  renderRule() {
    const rule = this.$('.miqa-rule');
    if (!rule || !this.values) return;
    const ok = badRuleMet(this.values, this.rules);
    rule.classList.toggle('miqa-rule-ok', ok);
    rule.classList.toggle('miqa-rule-violated', !ok);
    const bad = this.$(`.miqa-decide-${this.rules.badRule.decision}`);
    if (bad) {
      bad.classList.toggle('miqa-blocked', !ok);
      bad.title = ok ? `Mark bad (${DECISION_KEYS.bad})` : this.rules.badRule.summary;
    }
  }

  setEnabled(enabled) {
    this.el.querySelectorAll('.miqa-decide').forEach((b) => { b.disabled = !enabled; });
  }

  showMessage(text) {
    this.$('.miqa-form-message').textContent = text || '';
  }

  focusComment() {
    this.$('.miqa-comment').focus();
  }

  /**
   * The body of a decision, or null (the reason shown, the rule flashed) when it cannot be sent.
   *
   * Args:
   *   decision: good, questionable or bad; seconds: the time spent on the scan.
   */
  submission(decision, seconds) {
    if (!this.values) return null;
    const problem = decisionProblem(this.values, decision, this.tier, this.rules);
    if (problem) {
      this.showMessage(problem.message);
      const rule = problem.rule && this.$('.miqa-rule');
      if (rule) {
        rule.classList.add('miqa-rule-flash');
        setTimeout(() => rule.classList.remove('miqa-rule-flash'), 800);
      }
      return null;
    }
    return decisionBody(this.values, decision, this.tier, seconds);
  }

  destroy() {
    this.el.removeEventListener('click', this.onClick);
    this.el.removeEventListener('input', this.onInput);
  }
}
