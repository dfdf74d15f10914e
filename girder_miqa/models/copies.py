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

from ..constants import ITEM_FIELD
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


def copied_image(item: dict) -> dict | None:
    """The image file of a copy that landed in a project (the copy becomes a new scan of it, as
    an upload would), or None (outside every project, or no image). Never raises."""
    try:
        if Project().findForItem(item) is None:
            return None
        return review_state.current_image_file(item['_id'])
    except Exception:
        logger.exception('MIQA could not look at the copied item %s', item.get('_id'))
        return None
