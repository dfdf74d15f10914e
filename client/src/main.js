// Entry of the MIQA Girder web-client plugin: routes, a global-nav link, the Review button on
// item pages, and the plugin namespace (girder.plugins.miqa).
import './style.css';

import { escapeHtml } from './api';
import GroupReportView from './views/GroupReportView';
import PluginConfigView from './views/PluginConfigView';
import ProjectsView from './views/ProjectsView';
import QueueView from './views/QueueView';
import ReviewView from './views/ReviewView';
import ReviewersView from './views/ReviewersView';
import SettingsView from './views/SettingsView';
import SliceViewer from './viewer/SliceViewer';
import { loadScan } from './volume/load';

const { router, events } = girder;
const { wrap } = girder.utilities.PluginUtils;

// The site-wide settings, linked from Girder's plugin list.
girder.utilities.PluginUtils.exposePluginConfig('miqa', 'plugins/miqa/config');
router.route('plugins/miqa/config', 'miqaConfig', () => {
  events.trigger('g:navigateTo', PluginConfigView, {});
});

router.route('miqa', 'miqaProjects', () => {
  events.trigger('g:navigateTo', ProjectsView, {});
  events.trigger('g:highlightItem', 'MIQAView');
});
router.route('miqa/project/:id/review/:tier', 'miqaReview', (id, tier) => {
  events.trigger('g:navigateTo', ReviewView, { projectId: id, tier: Number(tier) });
});
router.route('miqa/project/:id/settings', 'miqaSettings', (id) => {
  events.trigger('g:navigateTo', SettingsView, { projectId: id });
});
router.route('miqa/project/:id/queue/:tier', 'miqaQueue', (id, tier) => {
  events.trigger('g:navigateTo', QueueView, { projectId: id, tier: Number(tier) });
});
router.route('miqa/project/:id/report', 'miqaReport', (id) => {
  events.trigger('g:navigateTo', GroupReportView, { projectId: id });
});
router.route('miqa/project/:id/reviewers', 'miqaReviewers', (id) => {
  events.trigger('g:navigateTo', ReviewersView, { projectId: id });
});
router.route('miqa/item/:id', 'miqaReviewItem', (id) => {
  events.trigger('g:navigateTo', ReviewView, { itemId: id });
});

// A "MIQA" entry in the global navigation for logged-in users.
wrap(girder.views.layout.GlobalNavView, 'render', function (render) {
  render.call(this);
  if (girder.auth.getCurrentUser() && !this.$('.g-nav-link[g-target="miqa"]').length) {
    this.$('.g-global-nav').append(`<li class="g-global-nav-li">
      <a class="g-nav-link" g-target="miqa" g-name="MIQA" href="#miqa"><i class="icon-eye"></i><span>MIQA</span></a></li>`);
    if (window.location.hash.startsWith('#miqa')) {
      this.$('.g-nav-link[g-target="miqa"]').parent().addClass('g-active');
    }
  }
  return this;
});

// A Review button on the item page of scans in MIQA projects.
wrap(girder.views.body.ItemView, 'render', function (render) {
  render.call(this);
  const miqa = this.model.get('miqa');
  if (miqa && girder.auth.getCurrentUser()) {
    this.once('g:rendered', () => {
      if (this.$('.g-miqa-review-item').length) return;
      this.$('.g-item-header > .pull-right').first().prepend(`<a class="btn btn-sm btn-primary g-miqa-review-item"
        href="#miqa/item/${this.model.id}" title="Review this scan in MIQA (state: ${escapeHtml(miqa.state)})">
        <i class="icon-eye"></i> Review <span class="label label-default">${escapeHtml(miqa.state)}</span></a>`);
    });
  }
  return this;
});

girder.pluginUtils.registerPluginNamespace('miqa', {
  GroupReportView, ProjectsView, QueueView, ReviewView, SettingsView, SliceViewer, loadScan,
});
