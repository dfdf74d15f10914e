// The Reviewers page (#miqa/project/:id/reviewers): how much the project's reviewers agree (GET
// /miqa/project/:id/agreement): the kappas with their intervals, per artifact, per reviewer
// (named to project admins, pseudonyms to others), each reviewer's agreement with the gold
// standard over time, and the hidden-assessment arm against the shown one.
import { escapeHtml, rest } from '../api.js';
import { agreementTables, timelineLayout, timelineSvg } from '../widgets/AgreementTables.js';

const ReviewersView = girder.views.View.extend({
  initialize(settings) {
    this.projectId = settings.projectId;
    this.render();
    this.load();
  },

  async load() {
    try {
      [this.project, this.agreement] = await Promise.all([
        rest({ url: `miqa/project/${this.projectId}` }),
        rest({ url: `miqa/project/${this.projectId}/agreement` }),
      ]);
      this.error = null;
    } catch (err) {
      this.error = err.message;
    }
    this.render();
  },

  render() {
    if (this.error) {
      this.$el.html(`<div class="miqa-page"><div class="alert alert-danger">${escapeHtml(this.error)}</div></div>`);
      return this;
    }
    if (!this.agreement) {
      this.$el.html('<div class="miqa-page miqa-muted">Loading reviewer agreement…</div>');
      return this;
    }
    const a = this.agreement;
    const s = a.settings || {};
    this.$el.html(`<div class="miqa-page miqa-reviewers" data-named="${a.named ? 'true' : 'false'}">
      <h2><a href="#miqa">MIQA projects</a> / ${escapeHtml(this.project.name)} / reviewers</h2>
      <p class="miqa-muted">Double reads ${escapeHtml(Math.round((s.doubleReadShare || 0) * 100))} % of scans,
        gold re-reads ${escapeHtml(Math.round((s.goldRate || 0) * 100))} % of tier-1 entries,
        assessment hidden on ${escapeHtml(Math.round((s.hideAssessmentShare || 0) * 100))} % of scans.
        ${a.named ? '' : 'Other reviewers are shown by pseudonym.'}</p>
      ${agreementTables(a)}
      <h4>Agreement with the gold standard over time</h4>
      ${timelineSvg(timelineLayout(a.reviewers))}
    </div>`);
    return this;
  },
});

export default ReviewersView;
