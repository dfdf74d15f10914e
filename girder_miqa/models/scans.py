"""Queries over a project's scans: visibility, the review queues, counts and the summary.

Visibility: Girder items inherit access from their folder, so a user sees the scans in the
folders of the project they can read. The distinct folders holding a project's scans come from
an index (``DISTINCT_SCAN``), their access is checked in one query, and only when some are
unreadable is ``folderId: {$in: readable}`` added to the query.
"""

import math

from girder.models.folder import Folder
from girder.models.item import Item

from ..constants import ITEM_FIELD, AssessmentStatus, ReviewState
from .decision import Decision
from .project import readable_folder_ids

P = ITEM_FIELD
QUEUE_SORT = [(f'{P}.sort.rank', 1), (f'{P}.sort.quality', 1), (f'{P}.sort.artifact', 1),
              (f'{P}.sort.created', 1), ('_id', 1)]
QUEUE_INDEX = [(f'{P}.projectId', 1), (f'{P}.state', 1)] + QUEUE_SORT
FOLDER_INDEX = [(f'{P}.projectId', 1), (f'{P}.state', 1), ('folderId', 1)]
TIER_STATES = {1: ReviewState.UNREVIEWED, 2: ReviewState.QUESTIONABLE}
# The model calls a scan suspicious below this quality or above this artifact probability.
SUSPICIOUS_QUALITY = 5.0
SUSPICIOUS_PROBABILITY = 0.5


def ensure_indices() -> None:
    """The compound indices behind the queues and the visibility checks (on Girder's items)."""
    partial = {'partialFilterExpression': {f'{P}.projectId': {'$exists': True}}}
    Item().ensureIndices([
        (QUEUE_INDEX, {'name': 'miqa_queue', **partial}),
        (FOLDER_INDEX, {'name': 'miqa_folders', **partial}),
    ])


def visible_filter(project: dict, user: dict | None, **extra) -> dict:
    """A query for the project's scans the user can read (plus ``extra`` conditions)."""
    query = {f'{P}.projectId': project['_id'], **extra}
    if user and user.get('admin'):
        return query
    folders = Item().collection.distinct('folderId', query)
    readable = readable_folder_ids(user, folders)
    if len(readable) < len(folders):
        query['folderId'] = {'$in': sorted(readable)}
    return query


def relative_paths(project: dict, folderIds) -> dict:
    """{folderId: 'sub/ses'} relative to the project folder ('' for the project folder itself).

    Loads one level of parents per query, so a page costs a few queries, not one per folder.
    """
    root = project['folderId']
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
    from .lock import public_state

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
    query = visible_filter(project, user, **{f'{P}.state': TIER_STATES[tier]})
    total = Item().collection.count_documents(query)
    cursor = Item().collection.find(
        query, {'name': 1, 'folderId': 1, 'created': 1, 'size': 1, ITEM_FIELD: 1},
        sort=QUEUE_SORT, skip=offset, limit=limit).hint('miqa_queue')
    items = list(cursor)
    paths = relative_paths(project, {item['folderId'] for item in items})
    return {
        'tier': tier, 'state': TIER_STATES[tier], 'offset': offset, 'limit': limit,
        'total': total, 'items': [scan_json(item, paths) for item in items],
    }


def state_counts(project: dict, user: dict | None) -> dict:
    """How many visible scans are in each state, and in all."""
    query = visible_filter(project, user)
    counts = dict.fromkeys(ReviewState.ALL, 0)
    for row in Item().collection.aggregate([
            {'$match': query}, {'$group': {'_id': f'${P}.state', 'n': {'$sum': 1}}}]):
        counts[row['_id']] = row['n']
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

    decisionQuery = {'projectId': project['_id']}
    if 'folderId' in query:
        decisionQuery['folderId'] = query['folderId']
    reviewers: dict = {}
    for row in Decision().collection.aggregate([
            {'$match': decisionQuery},
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

    table = {'both': 0, 'modelOnly': 0, 'humanOnly': 0, 'neither': 0}
    for row in Item().collection.aggregate([
            {'$match': {**query, f'{P}.tier1': {'$ne': None}, f'{P}.sort.rank': 0}},
            {'$project': {
                'model': {'$or': [{'$lt': [f'${P}.sort.quality', SUSPICIOUS_QUALITY]},
                                  {'$lt': [f'${P}.sort.artifact', -SUSPICIOUS_PROBABILITY]}]},
                'human': {'$eq': [f'${P}.tier1.decision', ReviewState.QUESTIONABLE]}}},
            {'$group': {'_id': {'model': '$model', 'human': '$human'}, 'n': {'$sum': 1}}}]):
        model, human = row['_id']['model'], row['_id']['human']
        cell = ('both' if human else 'modelOnly') if model else (
            'humanOnly' if human else 'neither')
        table[cell] += row['n']
    n = sum(table.values())
    out['agreement'] = {
        'description': 'Model suspicious (quality < 5 or an artifact probability > 0.5) versus '
                       'the latest tier-1 decision questionable, over scans with both.',
        'qualityThreshold': SUSPICIOUS_QUALITY, 'probabilityThreshold': SUSPICIOUS_PROBABILITY,
        'n': n, **table,
        'percent': 100.0 * (table['both'] + table['neither']) / n if n else None,
        'kappa': _kappa(table),
    }
    return out
