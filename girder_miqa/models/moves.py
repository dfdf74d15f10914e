"""Keep scans in the right project when items or folders move (Girder's save events).

Girder moves an item or folder by changing its parent and saving the whole document, so a
``model.{item,folder}.save`` handler compares the parent with the stored one (one query by
``_id``) and ``model.{item,folder}.save.after`` re-homes the scans that moved:

* into another project: ``projectId`` changes, the lock is dropped, both projects' counts
  follow; when the receiving project's ``restartOnMove`` setting is on (the default) a reviewed
  scan starts over as unreviewed there (its decisions stay in the trail, superseded, with the
  old ``projectId``); when it is off the state and decisions stay as they were;
* out of every project: the state is kept aside in ``item['miqaDetached']`` and leaves every
  queue and count;
* into a project from outside: registered like an existing image (unreviewed, or the kept state
  of a detached scan); the assessment is not scheduled (``POST /miqa/project/{id}/assess``).

The item save handler also refreshes ``item['miqa']`` in the document being saved from the
database, so a generic item save (rename, move) never writes back a stale review state.
"""

import logging
import threading
from collections.abc import Callable

from girder.models.folder import Folder
from girder.models.item import Item

from ..constants import ITEM_FIELD, AssessmentStatus, is_image_name
from . import review_state
from .project import Project, attach_items, detach_items, folders_below
from .review_state import DETACHED_FIELD

logger = logging.getLogger(__name__)

_moving: dict = {}  # {(model, _id): True} for documents whose parent changed, between the events
_moving_lock = threading.Lock()


def _remember(key: tuple, moved: bool) -> None:
    with _moving_lock:
        if moved:
            _moving[key] = True
        else:
            _moving.pop(key, None)


def _moved(key: tuple) -> bool:
    with _moving_lock:
        return _moving.pop(key, False)


def item_saving(item: dict) -> None:
    """An item is about to be saved: note a change of folder; keep the stored review state in
    the document being saved."""
    if '_id' not in item:
        return  # a new item: uploads register through data.process
    stored = Item().collection.find_one(
        {'_id': item['_id']}, {'folderId': 1, ITEM_FIELD: 1, DETACHED_FIELD: 1})
    if stored is None:
        return
    for field in (ITEM_FIELD, DETACHED_FIELD):
        if field in stored:
            item[field] = stored[field]
        else:
            item.pop(field, None)
    _remember(('item', item['_id']), stored.get('folderId') != item.get('folderId'))


def item_saved(item: dict) -> tuple | None:
    """An item was saved: re-home it if it moved (see the module notes); ``item`` gets the
    stored review state. Returns None when it did not move, else where it was (its project id,
    site and scan type before, each None when it was no placed scan) for the triage refresh."""
    if not _moved(('item', item.get('_id'))):
        return None
    before = (Item().collection.find_one({'_id': item['_id']}, {ITEM_FIELD: 1}) or {}).get(
        ITEM_FIELD) or {}
    project = Project().findForItem(item)
    if project is None:
        detach_items({'_id': item['_id']})
    else:
        _attach(project, {'_id': item['_id']})
    stored = Item().collection.find_one({'_id': item['_id']}, {ITEM_FIELD: 1, DETACHED_FIELD: 1})
    for field in (ITEM_FIELD, DETACHED_FIELD):  # the caller (e.g. the REST move) returns this
        if stored and field in stored:
            item[field] = stored[field]
        else:
            item.pop(field, None)
    return before.get('projectId'), before.get('site'), before.get('scanType')


def folder_saving(folder: dict) -> None:
    """A folder is about to be saved: note a change of parent."""
    if '_id' not in folder:
        return
    stored = Folder().collection.find_one(
        {'_id': folder['_id']}, {'parentId': 1, 'parentCollection': 1})
    moved = stored is not None and (stored.get('parentId'), stored.get('parentCollection')) != (
        folder.get('parentId'), folder.get('parentCollection'))
    _remember(('folder', folder['_id']), moved)


def folder_saved(folder: dict) -> dict | None:
    """A folder was saved: if it moved, re-home the scans below it (nested projects keep
    theirs); returns the project they are in now (None: not moved, or in none)."""
    if not _moved(('folder', folder.get('_id'))):
        return None
    project = Project().findForFolder(folder)
    folderIds = folders_below(folder['_id'])
    for start in range(0, len(folderIds), 500):
        query = {'folderId': {'$in': folderIds[start:start + 500]}}
        if project is None:
            detach_items(query)
        else:
            _attach(project, query)
    return project


def _attach(project: dict, query: dict) -> None:
    """``attach_items``, then (the project's ``restartOnMove`` setting, on by default) start over
    the reviewed scans that came from another project: their decisions stay in the trail,
    marked superseded ('moved'), with the project they were made in."""
    pid = project['_id']
    arrived = []
    if project['settings'].get('restartOnMove', True):
        arrived = [doc['_id'] for doc in Item().collection.find({**query, '$and': [
            {'$or': [{f'{ITEM_FIELD}.projectId': {'$exists': True, '$ne': pid}},
                     {f'{DETACHED_FIELD}.detachedFrom': {'$exists': True, '$ne': pid}}]},
            {'$or': [{f'{ITEM_FIELD}.decisionCount': {'$gt': 0}},
                     {f'{ITEM_FIELD}.state': {'$exists': True, '$ne': 'unreviewed'}},
                     {f'{DETACHED_FIELD}.decisionCount': {'$gt': 0}},
                     {f'{DETACHED_FIELD}.state': {'$exists': True, '$ne': 'unreviewed'}}]}]},
            {'_id': 1})]
    attach_items(project, query)
    for itemId in arrived:
        review_state.restart(itemId, 'moved', keep_file=True, keep_assessment=True)


def file_removing(file: dict, schedule: Callable[[dict, dict, dict | None, dict], object]) -> None:
    """A file is being removed: if it is the image file a scan's review is about, the review
    starts over, about the item's next image file or none. Never raises (the removal goes on).

    Args:
        file: the file being removed (still stored).
        schedule: ``scheduling.schedule_assessment``, called as ``(item, file, user, project)``
            to assess the following image file when the project's auto-assessment is on.
    """
    if not file.get('itemId') or not is_image_name(file.get('name', '')):
        return
    try:
        stored = Item().collection.find_one({'_id': file['itemId']}, {ITEM_FIELD: 1})
        state = (stored or {}).get(ITEM_FIELD)
        if not state:
            return
        recorded = state.get('file')
        if recorded and recorded.get('_id') != file['_id']:
            return  # an older image file, not the one reviewed
        if not recorded:
            current = review_state.current_image_file(file['itemId'])
            if current is None or current['_id'] != file['_id']:
                return
        following = review_state.current_image_file(file['itemId'], exclude=file['_id'])
        review_state.restart(file['itemId'], 'file_removed', file=following)
        if following is None:
            review_state.set_assessment_status(
                {'_id': file['itemId']}, AssessmentStatus.NOT_SCHEDULED,
                reason='the item has no image file')
            return
        project = Project().load(state['projectId'], force=True)
        if project is not None and project['settings'].get('autoAssess', True):
            try:  # the file being removed is still there: name the following one
                schedule(Item().load(file['itemId'], force=True), following, None, project)
            except Exception as exc:
                review_state.set_assessment_status(
                    {'_id': file['itemId']}, AssessmentStatus.NOT_SCHEDULED,
                    reason=f'could not schedule the assessment: {type(exc).__name__}: {exc}')
    except Exception:
        logger.exception('MIQA could not restart the review of item %s', file.get('itemId'))
