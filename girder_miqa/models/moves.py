"""Keep scans in the right project when items or folders move (Girder's save events).

Girder moves an item or folder by changing its parent and saving the whole document, so a
``model.{item,folder}.save`` handler compares the parent with the stored one (one query by
``_id``) and ``model.{item,folder}.save.after`` re-homes the scans that moved:

* into another project: ``projectId`` changes, the state and decisions stay (the decisions keep
  the old ``projectId`` in the audit trail), the lock is dropped, both projects' counts follow;
* out of every project: the state is kept aside in ``item['miqaDetached']`` and leaves every
  queue and count;
* into a project from outside: registered like an existing image (unreviewed, or the kept state
  of a detached scan); the assessment is not scheduled (``POST /miqa/project/{id}/assess``).

The item save handler also refreshes ``item['miqa']`` in the document being saved from the
database, so a generic item save (rename, move) never writes back a stale review state.
"""

import threading

from girder.models.folder import Folder
from girder.models.item import Item

from ..constants import ITEM_FIELD
from .project import Project, attach_items, detach_items, folders_below
from .review_state import DETACHED_FIELD

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


def on_item_save(event) -> None:
    """``model.item.save``: note a change of folder; keep the stored review state."""
    item = event.info
    if not isinstance(item, dict) or '_id' not in item:
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


def on_item_saved(event) -> None:
    """``model.item.save.after``: re-home a moved item (see the module notes)."""
    item = event.info
    if not isinstance(item, dict) or not _moved(('item', item.get('_id'))):
        return
    project = Project().findForItem(item)
    if project is None:
        detach_items({'_id': item['_id']})
    else:
        attach_items(project, {'_id': item['_id']})
    stored = Item().collection.find_one({'_id': item['_id']}, {ITEM_FIELD: 1, DETACHED_FIELD: 1})
    for field in (ITEM_FIELD, DETACHED_FIELD):  # the caller (e.g. the REST move) returns this
        if stored and field in stored:
            item[field] = stored[field]
        else:
            item.pop(field, None)


def on_folder_save(event) -> None:
    """``model.folder.save``: note a change of parent."""
    folder = event.info
    if not isinstance(folder, dict) or '_id' not in folder:
        return
    stored = Folder().collection.find_one(
        {'_id': folder['_id']}, {'parentId': 1, 'parentCollection': 1})
    moved = stored is not None and (stored.get('parentId'), stored.get('parentCollection')) != (
        folder.get('parentId'), folder.get('parentCollection'))
    _remember(('folder', folder['_id']), moved)


def on_folder_saved(event) -> None:
    """``model.folder.save.after``: re-home the scans below a moved folder (nested projects
    keep theirs)."""
    folder = event.info
    if not isinstance(folder, dict) or not _moved(('folder', folder.get('_id'))):
        return
    project = Project().findForFolder(folder)
    folderIds = folders_below(folder['_id'])
    for start in range(0, len(folderIds), 500):
        query = {'folderId': {'$in': folderIds[start:start + 500]}}
        if project is None:
            detach_items(query)
        else:
            attach_items(project, query)
