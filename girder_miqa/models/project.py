"""A MIQA project: a Girder folder or collection enabled for review, with its settings.

The project document's ``_id`` is its root's id (``rootId``; ``rootType`` is ``'folder'`` or
``'collection'``; folder projects also keep ``folderId``), so the REST API and
``item['miqa']['projectId']`` identify a project by its folder or collection. The scans of a
collection project are the image items in any folder under it. Projects nest: a scan belongs to
the nearest root above it.
"""

import datetime
import math
import re

from bson import ObjectId
from bson.errors import InvalidId
from girder.constants import AccessType
from girder.exceptions import ValidationException
from girder.models.collection import Collection
from girder.models.file import File
from girder.models.folder import Folder
from girder.models.group import Group
from girder.models.item import Item
from girder.models.model_base import Model
from pymongo import UpdateOne

from ..constants import (
    ARTIFACTS,
    ITEM_FIELD,
    PROJECT_COLLECTION,
    ReviewState,
    is_image_name,
)
from . import review_state, sites
from .worker_models import ASK_SECONDS, WorkerModels, ask_workers

ARTIFACT_KEY_RE = re.compile(r'^[a-z][a-z0-9_]{0,63}$')
MAX_ARTIFACTS = 100
SETTING_KEYS = ('tier1GroupId', 'tier2GroupId', 'artifacts', 'autoAssess', 'model',
                'restartOnMove', 'outOfScope', 'siteLevel', *('doubleReadShare', 'goldRate',
                'hideAssessmentShare', 'calibrationSeed'))
# Reviewer calibration (models/calibration.py): shares of scans (or queue entries) drawn
# reproducibly from (project, item, calibrationSeed); all 0 leaves the review as it was.
CALIBRATION_SHARES = ('doubleReadShare', 'goldRate', 'hideAssessmentShare')
ROOT_TYPES = ('folder', 'collection')
ROOT_MODELS = {'folder': Folder, 'collection': Collection}


def default_settings() -> dict:
    """Settings of a new project: no tier groups yet, the default vocabulary, auto-assessment on."""
    return {
        'tier1GroupId': None,
        'tier2GroupId': None,
        'artifacts': [{'key': key, 'label': label} for key, label in ARTIFACTS],
        'autoAssess': True,
        'model': None,  # the miqa.default_model setting, else the workers' default
        'restartOnMove': True,  # a reviewed scan moved in from another project starts over
        # where the queue ranks scans outside the model's domain: first, last or mixed in
        'outOfScope': review_state.OUT_OF_SCOPE_DEFAULT,
        # how many folders below the root a scan's site folder is (models/sites.py)
        'siteLevel': sites.SITE_LEVEL_DEFAULT,
        # reviewer calibration: double reads, gold re-reads, the hidden-assessment arm
        **dict.fromkeys(CALIBRATION_SHARES, 0.0), 'calibrationSeed': 0,
    }


MODEL_NAME_RE = re.compile(r'^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$')  # the names workers accept


def installed_models(ask: bool = False) -> list[str]:
    """The names of the models the workers reported installed (``models/worker_models.py``),
    sorted; with ``ask`` a worker is asked first (a few seconds at most). The server has no
    model files of its own to look at."""
    if ask:
        ask_workers()
    return WorkerModels().names()


def _model_name(value) -> str | None:
    """A model setting: None (the ``miqa.default_model`` setting, else the workers' default),
    or the plain name of a model a worker reported installed (never a path). A name not among
    the stored reports makes the server ask a worker once; with no report at all the 400 says
    that no worker has reported its models."""
    if value is None:
        return None
    name = value.strip() if isinstance(value, str) else None
    installed = installed_models()
    if not installed or (name and MODEL_NAME_RE.match(name) and name not in installed):
        installed = installed_models(ask=True)
    if not installed:
        raise ValidationException(
            'No worker has reported its models yet (none answered within '
            f'{ASK_SECONDS:g} s), so the model setting cannot be checked: start a worker, then '
            'set the model again.', 'model')
    if name not in installed:
        raise ValidationException(
            f'model must be the name of an installed model: {", ".join(installed)}.', 'model')
    return name


def _group_id(value, field: str, user: dict | None = None):
    """A group id setting: None, or the id of an existing group (that ``user``, when given,
    can read; AccessException otherwise)."""
    if value in (None, ''):
        return None
    try:
        groupId = ObjectId(str(value))
    except (InvalidId, TypeError):
        raise ValidationException(f'{field} must be a group id, not {value!r}.', field) from None
    group = Group().load(groupId, force=True)
    if not group:
        raise ValidationException(f'{field}: no group has the id {value}.', field)
    if user is not None:
        Group().requireAccess(group, user, AccessType.READ)
    return groupId


def validate_settings(settings: dict, base: dict | None = None, user: dict | None = None) -> dict:
    """Merge ``settings`` into ``base`` (default settings) after checking every field; tier
    groups must be readable by ``user`` (when given)."""
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
            out[field] = _group_id(settings[field], field, user)
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
    if 'restartOnMove' in settings:
        if not isinstance(settings['restartOnMove'], bool):
            raise ValidationException('restartOnMove must be true or false.', 'restartOnMove')
        out['restartOnMove'] = settings['restartOnMove']
    if 'model' in settings:
        out['model'] = _model_name(settings['model'])
    if 'outOfScope' in settings:
        bands = review_state.OUT_OF_SCOPE_BANDS
        if settings['outOfScope'] not in bands:
            raise ValidationException(
                f'outOfScope must be one of {", ".join(bands)} (where the queue ranks scans '
                f'outside the model\'s domain), not {settings["outOfScope"]!r}.', 'outOfScope')
        out['outOfScope'] = settings['outOfScope']
    if 'siteLevel' in settings:
        try:
            out['siteLevel'] = sites.validate_site_level(settings['siteLevel'])
        except ValueError as exc:
            raise ValidationException(str(exc), 'siteLevel') from None
    for key in CALIBRATION_SHARES:
        if key in settings:
            if not finite(settings[key]) or not 0 <= settings[key] <= 1:
                raise ValidationException(f'{key} must be a number from 0 to 1.', key)
            out[key] = float(settings[key])
    if 'calibrationSeed' in settings:
        seed = settings['calibrationSeed']
        if not finite(seed) or not float(seed).is_integer() or not 0 <= seed < 2 ** 31:
            raise ValidationException(
                'calibrationSeed must be an integer from 0 to 2147483647.', 'calibrationSeed')
        out['calibrationSeed'] = int(seed)
    return out


def root_of(project: dict) -> tuple[str, ObjectId]:
    """(rootType, rootId) of a project (projects from before collections are folders)."""
    return project.get('rootType', 'folder'), project.get('rootId', project['_id'])


def load_root(project: dict) -> dict | None:
    """The project's folder or collection document (None if it was deleted)."""
    rootType, rootId = root_of(project)
    return ROOT_MODELS[rootType]().load(rootId, force=True)


class Project(Model):
    """One document per enabled folder or collection, in its own collection (``_id`` = root)."""

    def initialize(self):
        self.name = PROJECT_COLLECTION

    def reconnect(self):
        """Connect, then bring projects from before collection roots up to date (idempotent)."""
        super().reconnect()
        # The old unique index on folderId would refuse a second collection project (no folderId);
        # the _id (= the root's id) is the unique key now.
        if 'folderId_1' in self.collection.index_information():
            self.collection.drop_index('folderId_1')
        self.collection.update_many(
            {'rootId': {'$exists': False}, 'folderId': {'$type': 'objectId'}},
            [{'$set': {'rootType': 'folder', 'rootId': '$folderId'}}])
        # Projects from before counts were kept get them here, so no read has to store them.
        for doc in self.collection.find({'counts': {'$exists': False}}, {'_id': 1}):
            review_state.recount(doc['_id'], scans_changed=False)

    def validate(self, doc):
        if doc.get('rootType') not in ROOT_TYPES:
            raise ValidationException('rootType must be folder or collection.', 'rootType')
        if not isinstance(doc.get('rootId'), ObjectId) or doc.get('_id', doc['rootId']) != \
                doc['rootId']:
            raise ValidationException('A project needs a root whose id is its _id.', 'rootId')
        if doc['rootType'] == 'folder' and doc.get('folderId') != doc['rootId']:
            raise ValidationException('A folder project keeps its folder id.', 'folderId')
        return doc

    def createProject(self, root: dict, creator: dict, settings: dict | None = None,
                      rootType: str = 'folder') -> dict:
        """Enable a folder or collection for review. ValidationException if it already is one."""
        if rootType not in ROOT_TYPES:
            raise ValidationException('rootType must be folder or collection.', 'rootType')
        if self.findOne({'_id': root['_id']}, fields=['_id']):
            raise ValidationException(f'This {rootType} is already a MIQA project.',
                                      f'{rootType}Id')
        doc = {
            '_id': root['_id'],
            'rootType': rootType,
            'rootId': root['_id'],
            'name': root['name'],
            'creatorId': creator['_id'] if creator else None,
            'created': datetime.datetime.now(datetime.timezone.utc),
            'settings': validate_settings(settings or {}, user=creator),
            'counts': dict.fromkeys(ReviewState.ALL, 0),  # kept exact by review_state
            'rev': 0, 'scanRev': 0,
        }
        if rootType == 'folder':
            doc['folderId'] = root['_id']
        return self.save(doc)

    def updateSettings(self, project: dict, settings: dict, user: dict | None = None) -> dict:
        """Change some settings (the others keep their values); ``user`` must be able to read
        the tier groups it binds."""
        merged = validate_settings(settings, base=project['settings'], user=user)
        self.update({'_id': project['_id']}, {'$set': {'settings': merged}})
        band = merged.get('outOfScope', review_state.OUT_OF_SCOPE_DEFAULT)
        if band != project['settings'].get('outOfScope', review_state.OUT_OF_SCOPE_DEFAULT):
            review_state.rerank_out_of_scope(project['_id'], band)
        level = project['settings'].get('siteLevel', sites.SITE_LEVEL_DEFAULT)
        project['settings'] = merged
        if merged.get('siteLevel', sites.SITE_LEVEL_DEFAULT) != level:
            from .triage import refresh_project  # the scans' sites, so their groups, changed

            refresh_project(project)
        return project

    def findForFolder(self, folder: dict) -> dict | None:
        """The nearest project at or above a folder (its folders, then its collection), or None."""
        chain = [folder['_id']]
        for entry in reversed(Folder().parentsToRoot(folder, force=True)):  # parent first
            if entry['type'] in ROOT_TYPES and entry['object']:
                chain.append(entry['object']['_id'])
        found = {p['_id']: p for p in self.find({'_id': {'$in': chain}})}
        for rootId in chain:
            if rootId in found:
                return found[rootId]
        return None

    def findForItem(self, item: dict) -> dict | None:
        """The project a scan belongs to, or None."""
        folder = Folder().load(item['folderId'], force=True)
        return self.findForFolder(folder) if folder else None


def subtree_folder_ids(project: dict) -> list:
    """The folders whose items belong to the project: its folder (or its collection's folders)
    and all folders below, stopping at nested projects."""
    rootType, rootId = root_of(project)
    return folders_below(rootId, rootType, include_root=rootType == 'folder')


def folders_below(rootId, rootType: str = 'folder', include_root: bool = True) -> list:
    """A folder (or a collection's top-level folders) and every folder below, one query per
    level, leaving out the subtrees of projects other than ``rootId``."""
    other = {p['_id'] for p in Project().find({'_id': {'$ne': rootId}}, fields=['_id'])}
    out = [rootId] if include_root else []
    frontier, parentType = [rootId], rootType
    while frontier:
        children = [doc['_id'] for doc in Folder().find(
            {'parentId': {'$in': frontier}, 'parentCollection': parentType}, fields=['_id'])
            if doc['_id'] not in other]
        out.extend(children)
        frontier, parentType = children, 'folder'
    return out


def attach_items(project: dict, query: dict) -> int:
    """Make the items matching ``query`` (all inside the project) its scans; returns how many
    joined: scans of another project move over with their state (their lock dropped), detached
    scans get their kept state back, and image items that never were scans become unreviewed
    ones. Both projects' counts follow."""
    pid = project['_id']
    joined = 0
    deltas: dict = {}
    fresh = []
    for doc in Item().collection.find(
            {**query, f'{ITEM_FIELD}.projectId': {'$ne': pid}},
            {'name': 1, 'created': 1, f'{ITEM_FIELD}.projectId': 1, f'{ITEM_FIELD}.state': 1,
             f'{review_state.DETACHED_FIELD}.state': 1}):
        old = doc.get(ITEM_FIELD)
        if old:
            if review_state.reassign(doc['_id'], old, pid):
                joined += 1
                for projectId, n in ((old.get('projectId'), -1), (pid, 1)):
                    if projectId is not None:
                        byState = deltas.setdefault(projectId, {})
                        byState[old['state']] = byState.get(old['state'], 0) + n
        elif doc.get(review_state.DETACHED_FIELD):
            state = review_state.reattach(doc['_id'], pid)
            if state is not None:
                joined += 1
                deltas.setdefault(pid, {})[state] = deltas.get(pid, {}).get(state, 0) + 1
        else:
            fresh.append(doc)
    for start in range(0, len(fresh), 1000):
        batch = fresh[start:start + 1000]
        withImage = {f['itemId'] for f in File().collection.find(
            {'itemId': {'$in': [doc['_id'] for doc in batch]}}, {'itemId': 1, 'name': 1})
            if is_image_name(f['name'])}
        ops = [UpdateOne({'_id': doc['_id'], ITEM_FIELD: {'$exists': False},
                          review_state.DETACHED_FIELD: {'$exists': False}},
                         {'$set': {ITEM_FIELD: review_state.initial_state(doc, project)}})
               for doc in batch if doc['_id'] in withImage]
        if ops:
            added = Item().collection.bulk_write(ops, ordered=False).modified_count
            joined += added
            byState = deltas.setdefault(pid, {})
            byState[ReviewState.UNREVIEWED] = byState.get(ReviewState.UNREVIEWED, 0) + added
    review_state.apply_deltas(deltas)
    return joined


def detach_items(query: dict) -> int:
    """Take the scans matching ``query`` out of their projects (state kept aside, see
    review_state); returns how many left."""
    left = 0
    deltas: dict = {}
    for doc in Item().collection.find({**query, ITEM_FIELD: {'$exists': True}},
                                      {f'{ITEM_FIELD}.projectId': 1, f'{ITEM_FIELD}.state': 1}):
        old = doc[ITEM_FIELD]
        if review_state.detach(doc['_id'], old):
            left += 1
            if old.get('projectId') is not None:
                byState = deltas.setdefault(old['projectId'], {})
                byState[old['state']] = byState.get(old['state'], 0) - 1
    review_state.apply_deltas(deltas)
    return left


def register_scans(project: dict) -> int:
    """Make every image item under the project one of its scans; returns how many joined.

    Items uploaded after the project was enabled get theirs from the ``data.process`` hook and
    moved ones from the move hooks (models/moves.py); this covers those that existed before,
    were imported, or changed hands some other way.
    """
    added = 0
    folderIds = subtree_folder_ids(project)
    for start in range(0, len(folderIds), 500):
        added += attach_items(project, {'folderId': {'$in': folderIds[start:start + 500]}})
    review_state.recount(project['_id'], scans_changed=bool(added))
    return added


def finite(value) -> bool:
    """Whether a JSON value is a finite number (and not a boolean)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(
        value)
