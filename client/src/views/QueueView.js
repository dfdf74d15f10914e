// A review queue as a list (#miqa/project/:id/queue/:tier): the scans in the order the reviewer
// gets them, each with its site and first reasons, a page at a time.
import { escapeHtml, rest } from '../api.js';
import { QueueList } from '../widgets/QueueList.js';

const PAGE = 50;

const QueueView = girder.views.View.extend({
  events: {
    'click .miqa-queue-prev': function () { this.go(this.offset - PAGE); },
    'click .miqa-queue-next': function () { this.go(this.offset + PAGE); },
  },

  initialize(settings) {
    this.projectId = settings.projectId;
    this.tier = Number(settings.tier) || 1;
    this.offset = 0;
    this.render();
    this.load();
  },

  go(offset) {
    this.offset = Math.max(0, offset);
    this.load();
  },

  async load() {
    try {
      [this.project, this.page] = await Promise.all([
        this.project ? Promise.resolve(this.project) : rest({ url: `miqa/project/${this.projectId}` }),
        rest({ url: `miqa/project/${this.projectId}/queue`, data: { tier: this.tier, limit: PAGE, offset: this.offset } }),
      ]);
      this.error = null;
    } catch (err) {
      this.error = err.message;
    }
    this.render();
  },

  render() {
    if (this.error) {
      this.$el.html(`<div class="miqa-page miqa-error">${escapeHtml(this.error)}</div>`);
      return this;
    }
    if (!this.page) {
      this.$el.html('<div class="miqa-page">Loading…</div>');
      return this;
    }
    const total = this.page.total || 0;
    const canReview = (this.project.myTiers || []).includes(this.tier);
    this.$el.html(`<div class="miqa-page miqa-queue-page" data-tier="${this.tier}">
      <h2><a href="#miqa">MIQA projects</a> / ${escapeHtml(this.project.name)} / tier ${this.tier} queue <small>(${total})</small></h2>
      <p>${canReview ? `<a class="btn btn-sm btn-primary" href="#miqa/project/${escapeHtml(this.projectId)}/review/${this.tier}">Start reviewing</a>` : ''}
        <a class="btn btn-sm btn-default" href="#miqa/project/${escapeHtml(this.projectId)}/report">Group report</a></p>
      <div class="miqa-queue-list"></div>
      <p>${this.offset > 0 ? '<button class="btn btn-xs btn-default miqa-queue-prev">Previous</button>' : ''}
        ${this.offset + PAGE < total ? '<button class="btn btn-xs btn-default miqa-queue-next">Next</button>' : ''}</p>
    </div>`);
    new QueueList(this.$('.miqa-queue-list')[0]).render(this.page.items || [], this.offset);
    return this;
  },
});

export default QueueView;
