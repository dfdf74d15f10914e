"""A MIQA project: a Girder folder enabled for review, with its settings.

The project document's ``_id`` is its folder's id (also kept as ``folderId``), so the REST API
and ``item['miqa']['projectId']`` identify a project by its folder.
"""

import datetime
import math
import re

from bson import ObjectId
from bson.errors import InvalidId
from girder.constants import AccessType
from girder.exceptions import ValidationException
from girder.models.file import File
from girder.models.folder import Folder
from girder.models.group import Group
from girder.models.item import Item
from girder.models.model_base import Model
from pymongo import UpdateOne

from ..constants import (
    ARTIFACTS,
    DEFAULT_MODEL,
    ITEM_FIELD,
    PROJECT_COLLECTION,
    ReviewState,
    is_image_name,
)
from . import review_state

ARTIFACT_KEY_RE = re.compile(r'^[a-z][a-z0-9_]{0,63}$')
MAX_ARTIFACTS = 100
SETTING_KEYS = ('tier1GroupId', 'tier2GroupId', 'artifacts', 'autoAssess', 'model')


def default_settings() -> dict:
    """Settings of a new project: no tier groups yet, the default vocabulary, auto-assessment on."""
    return {
        'tier1GroupId': None,
        'tier2GroupId': None,
        'artifacts': [{'key': key, 'label': label} for key, label in ARTIFACTS],
        'autoAssess': True,
        'model': DEFAULT_MODEL,
    }


def _group_id(value, field: str):
    """A group id setting: None, or the id of an existing group."""
    if value in (None, ''):
        return None
    try:
        groupId = ObjectId(str(value))
    except (InvalidId, TypeError):
        raise ValidationException(f'{field} must be a group id, not {value!r}.', field) from None
    if not Group().load(groupId, force=True):
        raise ValidationException(f'{field}: no group has the id {value}.', field)
    return groupId


def validate_settings(settings: dict, base: dict | None = None) -> dict:
    """Merge ``settings`` into ``base`` (default settings) after checking every field."""
    if not isinstance(settings, dict):
        raise ValidationException('settings must be a JSON object.', 'settings')
    unknown = sorted(set(settings) - set(SETTING_KEYS))
    if unknown:
        raise ValidationException(
            f'Unknown setting(s): {", ".join(unknown)}; known: {", ".join(SETTING_KEYS)}.',
            'settings')
    out = dict(base or default_settings())
    for field in ('tier1GroupId', 'tier2GroupId'):
        if field in settings:
            out[field] = _group_id(settings[field], field)
    if 'artifacts' in settings:
        vocab = settings['artifacts']
        if not isinstance(vocab, list) or not vocab or len(vocab) > MAX_ARTIFACTS:
            raise ValidationException(
                f'artifacts must be a list of 1 to {MAX_ARTIFACTS} {{"key", "label"}} objects.',
                'artifacts')
        seen, clean = set(), []
        for entry in vocab:
            if isinstance(entry, str):
                entry = {'key': entry, 'label': entry.replace('_', ' ')}
            if not isinstance(entry, dict) or not isinstance(entry.get('key'), str):
                raise ValidationException(
                    'Each artifact needs a "key" string (and optionally a "label").', 'artifacts')
            key = entry['key']
            if not ARTIFACT_KEY_RE.match(key):
                raise ValidationException(
                    f'Artifact key {key!r} must be lower case letters, digits and _ '
                    '(starting with a letter, at most 64).', 'artifacts')
            if key in seen:
                raise ValidationException(f'Artifact key {key!r} appears twice.', 'artifacts')
            label = entry.get('label') or key.replace('_', ' ')
            if not isinstance(label, str) or len(label) > 200:
                raise ValidationException(
                    f'The label of {key!r} must be a string of at most 200 characters.',
                    'artifacts')
            seen.add(key)
            clean.append({'key': key, 'label': label})
        out['artifacts'] = clean
    if 'autoAssess' in settings:
        if not isinstance(settings['autoAssess'], bool):
            raise ValidationException('autoAssess must be true or false.', 'autoAssess')
        out['autoAssess'] = settings['autoAssess']
    if 'model' in settings:
        model = settings['model']
        if not isinstance(model, str) or not model.strip() or len(model) > 200:
            raise ValidationException('model must be a non-empty name.', 'model')
        out['model'] = model.strip()
    return out


class Project(Model):
    """One document per enabled folder, in its own collection (``folderId`` is unique)."""

    def initialize(self):
        self.name = PROJECT_COLLECTION
        self.ensureIndices([('folderId', {'unique': True})])

    def validate(self, doc):
        if not isinstance(doc.get('folderId'), ObjectId):
            raise ValidationException('A project needs a folder.', 'folderId')
        return doc

    def createProject(self, folder: dict, creator: dict, settings: dict | None = None) -> dict:
        """Enable a folder for review. Raises ValidationException if it already is one."""
        if self.findOne({'folderId': folder['_id']}):
            raise ValidationException('This folder is already a MIQA project.', 'folderId')
        doc = {
            '_id': folder['_id'],
            'folderId': folder['_id'],
            'name': folder['name'],
            'creatorId': creator['_id'] if creator else None,
            'created': datetime.datetime.now(datetime.timezone.utc),
            'settings': validate_settings(settings or {}),
            'counts': dict.fromkeys(ReviewState.ALL, 0),  # kept exact by review_state
            'rev': 0, 'scanRev': 0,
        }
        return self.save(doc)

    def updateSettings(self, project: dict, settings: dict) -> dict:
        """Change some settings (the others keep their values)."""
        merged = validate_settings(settings, base=project['settings'])
        self.update({'_id': project['_id']}, {'$set': {'settings': merged}})
        project['settings'] = merged
        return project

    def findForFolder(self, folder: dict) -> dict | None:
        """The nearest project at or above a folder, or None."""
        chain = [folder['_id']]
        for entry in Folder().parentsToRoot(folder, force=True):
            if entry['type'] == 'folder':
                chain.append(entry['object']['_id'])
        found = {p['folderId']: p for p in self.find({'folderId': {'$in': chain}})}
        for folderId in chain:
            if folderId in found:
                return found[folderId]
        return None

    def findForItem(self, item: dict) -> dict | None:
        """The project a scan belongs to, or None."""
        folder = Folder().load(item['folderId'], force=True)
        return self.findForFolder(folder) if folder else None


def user_tiers(project: dict, user: dict | None) -> list[int]:
    """The tiers a user may decide at in a project (admins: both)."""
    if not user:
        return []
    if user.get('admin'):
        return [1, 2]
    groups = set(user.get('groups') or [])
    settings = project['settings']
    return [tier for tier, key in ((1, 'tier1GroupId'), (2, 'tier2GroupId'))
            if settings.get(key) is not None and settings[key] in groups]


def can_admin(project: dict, user: dict | None) -> bool:
    """Whether a user may change a project's settings (admins and owners of its folder)."""
    if not user:
        return False
    if user.get('admin'):
        return True
    folder = Folder().load(project['folderId'], force=True)
    return bool(folder) and Folder().hasAccess(folder, user, AccessType.ADMIN)


def readable_folder_ids(user: dict | None, folderIds) -> set:
    """Those of ``folderIds`` the user can read, in one query (admins: all)."""
    folderIds = list(folderIds)
    if user and user.get('admin'):
        return set(folderIds)
    query = {'_id': {'$in': folderIds}, **Folder().permissionClauses(user, AccessType.READ)}
    return {doc['_id'] for doc in Folder().find(query, fields=['_id'])}


def subtree_folder_ids(project: dict) -> list:
    """The project folder and all folders below it, stopping at nested projects."""
    other = {p['folderId'] for p in Project().find({'folderId': {'$ne': project['folderId']}},
                                                    fields=['folderId'])}
    out = [project['folderId']]
    frontier = [project['folderId']]
    while frontier:
        children = [doc['_id'] for doc in Folder().find(
            {'parentId': {'$in': frontier}, 'parentCollection': 'folder'}, fields=['_id'])
            if doc['_id'] not in other]
        out.extend(children)
        frontier = children
    return out


def register_scans(project: dict) -> int:
    """Give every image item under the project that has no review state one; returns how many.

    Items uploaded after the project was enabled get theirs from the ``data.process`` hook; this
    covers those that existed before, were imported, or were moved in.
    """
    added = 0
    folderIds = subtree_folder_ids(project)
    for start in range(0, len(folderIds), 500):
        chunk = folderIds[start:start + 500]
        items = list(Item().collection.find(
            {'folderId': {'$in': chunk}, ITEM_FIELD: {'$exists': False}},
            {'_id': 1, 'name': 1, 'created': 1}))
        for batch_start in range(0, len(items), 1000):
            batch = items[batch_start:batch_start + 1000]
            ids = [doc['_id'] for doc in batch]
            withImage = {f['itemId'] for f in File().collection.find(
                {'itemId': {'$in': ids}}, {'itemId': 1, 'name': 1}) if is_image_name(f['name'])}
            ops = [UpdateOne({'_id': doc['_id'], ITEM_FIELD: {'$exists': False}},
                             {'$set': {ITEM_FIELD: review_state.initial_state(doc, project)}})
                   for doc in batch if doc['_id'] in withImage]
            if ops:
                added += Item().collection.bulk_write(ops, ordered=False).modified_count
    review_state.recount(project['_id'], scans_changed=bool(added))
    return added


def finite(value) -> bool:
    """Whether a JSON value is a finite number (and not a boolean)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(
        value)
