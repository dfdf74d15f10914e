"""Copies of items (``POST /item/{id}/copy``, and every item of a folder copy) are new scans.

Girder's ``Item().copyItem`` copies every top-level field of the original, ``item['miqa']`` and
``item['miqaDetached']`` included, and saves without the save events. So:

* ``model.item.copy.prepare`` (the copy saved, its files not yet): the copied review state is
  dropped, so the copy never claims the original's state, decisions, lock or project;
* ``model.item.copy.after`` (its files copied): an image item that lands in a project becomes a
  new, unreviewed scan of that project (its counts follow) and is assessed when the project's
  auto-assessment is on, as an upload would be; outside every project it is no scan at all.

Neither handler ever fails the copy: an error is logged (and noted on the scan's assessment).
"""

import logging

from girder.models.item import Item

from ..constants import ITEM_FIELD, AssessmentStatus
from . import review_state
from .project import Project

logger = logging.getLogger(__name__)


def clear_copied_state(new: dict) -> None:
    """A copy was saved (its files not yet): it keeps none of the original's review state.
    Never raises."""
    try:
        Item().collection.update_one(
            {'_id': new['_id']}, {'$unset': {ITEM_FIELD: '', review_state.DETACHED_FIELD: ''}})
        new.pop(ITEM_FIELD, None)
        new.pop(review_state.DETACHED_FIELD, None)
    except Exception:
        logger.exception('MIQA could not clear the review state of a copied item')


def assess_new_scan(item: dict, project: dict, user: dict | None) -> None:
    """Schedule a new scan's assessment as an upload would (when the project's auto-assessment
    is on; otherwise the reason is noted). Never raises."""
    from .. import scheduling

    try:
        if not project['settings'].get('autoAssess', True):
            review_state.set_assessment_status(
                item, AssessmentStatus.NOT_SCHEDULED,
                reason='auto-assessment is off for this project')
            return
        scheduling.request_assessment(item, user, project)
    except Exception:
        logger.exception('MIQA could not schedule the assessment of item %s', item['_id'])
        review_state.set_assessment_status(
            item, AssessmentStatus.NOT_SCHEDULED,
            reason='internal error while scheduling the assessment (see the server log)')


def register_copy(item: dict, user: dict | None) -> dict | None:
    """A copy's files are copied: an image item in a project becomes a new scan of it (assessed
    as an upload would be, by ``user``); the stored item, or None if it is no scan. Never
    raises."""
    try:
        project = Project().findForItem(item)
        file = review_state.current_image_file(item['_id'])
        if project is None or file is None:
            return None
        item = review_state.ensure_scan(item, project)
        review_state.image_changed(item['_id'], file)
        assess_new_scan(Item().load(item['_id'], force=True), project, user)
        return Item().load(item['_id'], force=True)
    except Exception:
        logger.exception('MIQA could not register the copied item %s', item.get('_id'))
        return None
