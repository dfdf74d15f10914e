"""Queries over a project's scans: visibility, the review queues, counts and the summary.

Visibility: Girder items inherit access from their folder, so a user sees the scans in the
folders of the project they can read. The distinct folders holding a project's scans come from
an index (``DISTINCT_SCAN``) and their access is checked in one query; only when some are
unreadable is ``folderId: {$nin: unreadable}`` added to queries (``folderId`` is the last key of
the queue index, so the filter runs on index keys).

A cache may make a count lag; it never reveals a scan. Exports and summaries compute the
unreadable set afresh on every request. Only the queue uses the in-process cache (keyed by the
project's ``scanRev`` and the user's groups, for at most the ``miqa.visibility_cache_seconds``
setting), and each queue page
is still checked against the current access of the handful of folders on it.

Totals come from ``project['counts']`` (kept exact by every state change, see
``review_state.count_transition``) minus the scans in the unreadable folders (an indexed count
over those few folders), so a queue page never counts the whole project.
"""

import math
import threading
import time

from girder.models.folder import Folder
from girder.models.item import Item

from .. import settings
from ..access import can_admin, readable_folder_ids, user_tiers
from ..constants import ITEM_FIELD, AssessmentStatus, ReviewState
from . import calibration, protocol, review_state
from .decision import Decision
from .lock import public_state

P = ITEM_FIELD
QUEUE_SORT = [(f'{P}.sort.rank', 1), (f'{P}.sort.triage', -1), (f'{P}.sort.quality', 1),
              (f'{P}.sort.artifact', 1), (f'{P}.sort.created', 1), ('_id', 1)]
QUEUE_INDEX = [(f'{P}.projectId', 1), (f'{P}.state', 1)] + QUEUE_SORT + [('folderId', 1)]
FOLDER_INDEX = [(f'{P}.projectId', 1), ('folderId', 1), (f'{P}.state', 1)]
TIER_STATES = {1: ReviewState.UNREVIEWED, 2: ReviewState.QUESTIONABLE}


def ensure_indices() -> None:
    """The compound indices behind the queues and the visibility checks (on Girder's items)."""
    partial = {'partialFilterExpression': {f'{P}.projectId': {'$exists': True}}}
    existing = Item().collection.index_information().get('miqa_queue')
    if existing and [tuple(k) for k in existing['key']] != [tuple(k) for k in QUEUE_INDEX]:
        Item().collection.drop_index('miqa_queue')  # from before the triage key
    Item().ensureIndices([
        (QUEUE_INDEX, {'name': 'miqa_queue', **partial}),
        (FOLDER_INDEX, {'name': 'miqa_folders', **partial}),
    ])
    from .triage import backfill

    backfill()  # scans from before the triage score get one


_cache: dict = {}
_cache_lock = threading.Lock()


def _cached(key: tuple, compute):
    """A value from the in-process cache, computed when absent or older than the
    ``miqa.visibility_cache_seconds`` setting (0: always computed; a change of the setting
    applies to the values already cached)."""
    lifetime = settings.visibility_cache_seconds()
    now = time.monotonic()
    with _cache_lock:
        hit = _cache.get(key)
        if hit and now - hit[0] < lifetime:
            return hit[1]
    value = compute()
    with _cache_lock:
        if len(_cache) > 10_000:
            _cache.clear()
        _cache[key] = (now, value)
    return value


def _user_key(user: dict | None) -> tuple:
    if not user:
        return (None,)
    return (user['_id'], tuple(sorted(str(g) for g in user.get('groups') or [])))


def project_folders(project: dict) -> list:
    """The folders holding the project's scans (a DISTINCT_SCAN of the miqa_folders index)."""
    return [row['_id'] for row in Item().collection.aggregate([
        {'$match': {f'{P}.projectId': project['_id']}},
        {'$sort': {f'{P}.projectId': 1, 'folderId': 1}},
        {'$group': {'_id': '$folderId'}}], hint='miqa_folders')]


def unreadable_folders(project: dict, user: dict | None, cached: bool = False) -> frozenset:
    """The folders holding the project's scans that the user cannot read (admins: none).

    Args:
        cached: allow a set up to ``miqa.visibility_cache_seconds`` old; only for callers
            that re-check what they show (the queue) or show counts alone.
    """
    if user and user.get('admin'):
        return frozenset()

    def compute():
        folders = project_folders(project)
        return frozenset(set(folders) - readable_folder_ids(user, folders))

    if not cached:
        return compute()
    return _cached(('unreadable', project['_id'], project.get('scanRev', 0), _user_key(user)),
                   compute)


def visible_filter(project: dict, user: dict | None, cached: bool = False, **extra) -> dict:
    """A query for the project's scans the user can read (plus ``extra`` conditions); the
    access is checked now unless ``cached`` (see ``unreadable_folders``)."""
    query = {f'{P}.projectId': project['_id'], **extra}
    unreadable = unreadable_folders(project, user, cached=cached)
    if unreadable:
        query['folderId'] = {'$nin': sorted(unreadable)}
    return query


def relative_paths(project: dict, folderIds) -> dict:
    """{folderId: 'sub/ses'} relative to the project's root ('' for a project folder itself; a
    collection project's paths start with the top-level folder's name).

    Loads one level of parents per query, so a page costs a few queries, not one per folder.
    """
    root = project['_id']  # a folder project's folder id, or a collection project's id
    names: dict = {}
    parents: dict = {}
    pending = {f for f in folderIds if f != root}
    while pending:
        docs = list(Folder().collection.find(
            {'_id': {'$in': list(pending)}}, {'name': 1, 'parentId': 1, 'parentCollection': 1}))
        pending = set()
        for doc in docs:
            names[doc['_id']] = doc['name']
            parent = doc['parentId'] if doc.get('parentCollection') == 'folder' else None
            parents[doc['_id']] = parent
            if parent is not None and parent != root and parent not in names:
                pending.add(parent)
    out = {root: ''}
    for folderId in folderIds:
        parts, current = [], folderId
        while current is not None and current != root and current in names:
            parts.append(names[current])
            current = parents.get(current)
        out[folderId] = '/'.join(reversed(parts))
    return out


def scan_json(item: dict, folderPaths: dict) -> dict:
    """A scan as the queue and export return it: the item's basics, path and miqa state."""
    folderPath = folderPaths.get(item['folderId'], '')
    return {
        '_id': item['_id'], 'name': item['name'], 'folderId': item['folderId'],
        'created': item.get('created'), 'size': item.get('size'),
        'folderPath': folderPath,
        'path': f'{folderPath}/{item["name"]}' if folderPath else item['name'],
        ITEM_FIELD: public_state(item[ITEM_FIELD]),
    }


def queue(project: dict, user: dict | None, tier: int, limit: int = 50,
          offset: int = 0) -> dict:
    """One page of a tier's queue, most suspicious first, then not yet assessed, oldest first."""
    query = visible_filter(project, user, cached=True, **{f'{P}.state': TIER_STATES[tier]})
    total = state_counts(project, user, cached=True)[TIER_STATES[tier]]
    mine = calibration.my_pending_items(project, user) if tier == 1 else []
    if mine:  # double reads this reviewer read already wait for someone else
        query['_id'] = {'$nin': mine}
        total = max(0, total - len(mine))
    cursor = Item().collection.find(
        query, {'name': 1, 'folderId': 1, 'created': 1, 'size': 1, ITEM_FIELD: 1},
        sort=QUEUE_SORT, skip=offset, limit=limit).hint('miqa_queue')
    items = list(cursor)
    if tier == 1 and offset == 0:  # gold re-reads among the first page's entries, unannounced
        gold = calibration.gold_entries(project, user, visible_filter(
            project, user, cached=True), len(items) or 1)
        for k, entry in enumerate(gold):
            items.insert(min(len(items), (k + 1) * len(items) // (len(gold) + 1) + k), entry)
    if not (user and user.get('admin')):  # the definitive check, for the folders on this page
        readable = readable_folder_ids(user, {item['folderId'] for item in items})
        items = [item for item in items if item['folderId'] in readable]
    paths = relative_paths(project, {item['folderId'] for item in items})
    rows = [scan_json(item, paths) for item in items]
    tiers, admin = user_tiers(project, user), can_admin(project, user)
    for row in rows:  # what this reviewer may see of each (calibration.redact_state)
        row[ITEM_FIELD] = calibration.redact_state(row[ITEM_FIELD], project, row['_id'], user,
                                                   tiers, admin)
    for row in rows:  # the site and first reasons, of what the reviewer may see (triage.py)
        queue_row_triage(row, project)
    return {
        'tier': tier, 'state': TIER_STATES[tier], 'offset': offset, 'limit': limit,
        'total': total, 'items': rows,
    }


QUEUE_REASONS = 3  # reasons per queue row; the scan's page has them all


def queue_row_triage(row: dict, project: dict) -> dict:
    """Add a queue row's ``site`` (stored, else from its path) and its first reasons."""
    from .sites import site_of

    state = row.get(ITEM_FIELD) or {}
    reasons = state.get('reasons') or []
    if state.get('assessmentHidden'):  # the network's reasons would tell what it said
        reasons = [r for r in reasons if r.get('source') != 'network']
    row['reasons'] = reasons[:QUEUE_REASONS]
    folderPath = row.get('folderPath') or ''
    row['site'] = state.get('site') or site_of(row, project, [project.get('name', '')] + (
        folderPath.split('/') if folderPath else []))
    return row


def state_counts(project: dict, user: dict | None, cached: bool = False) -> dict:
    """How many visible scans are in each state, and in all (``cached``: may lag, see
    ``unreadable_folders``)."""
    counts = project.get('counts')
    if counts is None:  # a project from before counts were kept (reads store nothing)
        counts = review_state.count_states(project['_id'])
    counts = {state: max(0, counts.get(state, 0)) for state in ReviewState.ALL}
    unreadable = unreadable_folders(project, user, cached=cached)
    if unreadable:
        for row in Item().collection.aggregate([
                {'$match': {f'{P}.projectId': project['_id'],
                            'folderId': {'$in': sorted(unreadable)}}},
                {'$group': {'_id': f'${P}.state', 'n': {'$sum': 1}}}], hint='miqa_folders'):
            counts[row['_id']] = max(0, counts.get(row['_id'], 0) - row['n'])
    counts['total'] = sum(counts[s] for s in ReviewState.ALL)
    return counts


def _kappa(table: dict) -> float | None:
    """Cohen's kappa of a 2x2 agreement table (None when undefined)."""
    n = sum(table.values())
    if not n:
        return None
    observed = (table['both'] + table['neither']) / n
    modelYes = (table['both'] + table['modelOnly']) / n
    humanYes = (table['both'] + table['humanOnly']) / n
    expected = modelYes * humanYes + (1 - modelYes) * (1 - humanYes)
    if math.isclose(expected, 1.0):
        return 1.0 if math.isclose(observed, 1.0) else None
    return (observed - expected) / (1 - expected)


def summary(project: dict, user: dict | None) -> dict:
    """Progress: counts per state, reviewer, artifact and assessment; model/tier-1 agreement."""
    query = visible_filter(project, user)
    out = {'projectId': project['_id'], 'counts': state_counts(project, user)}

    assessment = dict.fromkeys((AssessmentStatus.NOT_SCHEDULED, AssessmentStatus.QUEUED,
                                AssessmentStatus.RUNNING, AssessmentStatus.DONE,
                                AssessmentStatus.FAILED), 0)
    for row in Item().collection.aggregate([
            {'$match': query},
            {'$group': {'_id': f'${P}.assessment.status', 'n': {'$sum': 1}}}]):
        assessment[row['_id'] or AssessmentStatus.NOT_SCHEDULED] = row['n']
    out['assessment'] = assessment

    artifacts = {a['key']: {'key': a['key'], 'label': a['label'], 'present': 0, 'absent': 0}
                 for a in project['settings']['artifacts']}
    for row in Item().collection.aggregate([
            {'$match': {**query, f'{P}.latestDecision.artifacts': {'$type': 'object'}}},
            {'$project': {'a': {'$objectToArray': f'${P}.latestDecision.artifacts'}}},
            {'$unwind': '$a'},
            {'$group': {'_id': {'k': '$a.k', 'v': '$a.v'}, 'n': {'$sum': 1}}}]):
        key, value = row['_id']['k'], row['_id']['v']
        entry = artifacts.setdefault(key, {'key': key, 'label': key, 'present': 0, 'absent': 0})
        if value in ('present', 'absent'):
            entry[value] += row['n']
    out['artifacts'] = list(artifacts.values())

    # Reviewers' work counts only on scans the user can read now: each decision is joined to
    # its scan, which must still be in this project and outside the unreadable folders (a scan
    # moved into an unreadable folder, or out of the project, no longer counts).
    itemMatch = {f'scan.{P}.projectId': project['_id']}
    if 'folderId' in query:
        itemMatch['scan.folderId'] = query['folderId']
    reviewers: dict = {}
    for row in Decision().collection.aggregate([
            {'$match': {'projectId': project['_id'], **calibration.pending_clause()}},
            {'$lookup': {'from': 'item', 'localField': 'itemId', 'foreignField': '_id',
                         'as': 'scan', 'pipeline': [
                             {'$project': {'folderId': 1, f'{P}.projectId': 1}}]}},
            {'$unwind': '$scan'},
            {'$match': itemMatch},
            {'$group': {'_id': {'login': '$login', 'tier': '$tier', 'decision': '$decision'},
                        'userId': {'$first': '$userId'}, 'name': {'$first': '$userName'},
                        'n': {'$sum': 1}, 'seconds': {'$sum': {'$ifNull': ['$seconds', 0]}}}}]):
        key = row['_id']['login']
        entry = reviewers.setdefault(key, {
            'login': key, 'userId': row['userId'], 'name': row['name'], 'decisions': 0,
            'seconds': 0.0, 'tier1': {'good': 0, 'questionable': 0},
            'tier2': {'good': 0, 'bad': 0}})
        entry['decisions'] += row['n']
        entry['seconds'] += row['seconds']
        entry[f'tier{row["_id"]["tier"]}'][row['_id']['decision']] = row['n']
    out['reviewers'] = sorted(reviewers.values(), key=lambda r: (-r['decisions'], r['login']))

    quality, probability = settings.suspicion_thresholds()
    table = {'both': 0, 'modelOnly': 0, 'humanOnly': 0, 'neither': 0}
    for row in Item().collection.aggregate([
            {'$match': {**query, f'{P}.tier1': {'$ne': None}, f'{P}.sort.rank': 0}},
            {'$project': {
                'model': {'$or': [{'$lt': [f'${P}.sort.quality', quality]},
                                  {'$lt': [f'${P}.sort.artifact', -probability]}]},
                'human': {'$eq': [f'${P}.tier1.decision', ReviewState.QUESTIONABLE]}}},
            {'$group': {'_id': {'model': '$model', 'human': '$human'}, 'n': {'$sum': 1}}}]):
        model, human = row['_id']['model'], row['_id']['human']
        cell = ('both' if human else 'modelOnly') if model else (
            'humanOnly' if human else 'neither')
        table[cell] += row['n']
    n = sum(table.values())
    out['agreement'] = {
        'description': f'Model suspicious (quality < {quality:g} or an artifact probability > '
                       f'{probability:g}) versus the latest tier-1 decision questionable, over '
                       'scans with both.',
        'qualityThreshold': quality, 'probabilityThreshold': probability,
        'n': n, **table,
        'percent': 100.0 * (table['both'] + table['neither']) / n if n else None,
        'kappa': _kappa(table),
    }
    out['compliance'] = protocol.compliance(project, user, query)  # per site, scan type (#22)
    return out
