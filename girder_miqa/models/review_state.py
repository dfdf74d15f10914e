"""The review state of a scan, kept in the protected top-level item field ``item['miqa']``.

Schema (only this plugin writes it)::

    item['miqa'] = {
        'projectId': ObjectId,           # the project's folder id
        'state': 'unreviewed' | 'questionable' | 'good' | 'bad',
        'created': datetime,
        'assessment': {                  # the automatic assessment, see AssessmentStatus
            'status': str, 'reason': str | None, 'jobId': ObjectId | None, 'updated': datetime,
            ... the worker's result when status == 'done' (quality, artifacts, tileMap, metrics,
            model, volume, timings)
        },
    }
"""

import datetime

from girder.models.item import Item

from ..constants import ITEM_FIELD, AssessmentStatus, ReviewState


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def ensure_scan(item: dict, project: dict) -> dict:
    """Give an item its initial review state if it has none; returns the current item."""
    if item.get(ITEM_FIELD):
        return item
    state = {
        'projectId': project['folderId'],
        'state': ReviewState.UNREVIEWED,
        'created': _now(),
        'assessment': {'status': AssessmentStatus.NOT_SCHEDULED, 'reason': None, 'jobId': None,
                       'updated': _now()},
    }
    Item().collection.update_one(
        {'_id': item['_id'], ITEM_FIELD: {'$exists': False}}, {'$set': {ITEM_FIELD: state}})
    return Item().load(item['_id'], force=True)


def set_assessment_status(item: dict, status: str, reason: str | None = None,
                          jobId=None) -> None:
    """Record where the automatic assessment stands (queued, running, failed ...)."""
    Item().collection.update_one({'_id': item['_id']}, {'$set': {
        f'{ITEM_FIELD}.assessment.status': status,
        f'{ITEM_FIELD}.assessment.reason': reason,
        f'{ITEM_FIELD}.assessment.jobId': jobId,
        f'{ITEM_FIELD}.assessment.updated': _now(),
    }})


def set_assessment_result(item: dict, result: dict) -> None:
    """Store a finished (or failed) assessment from the worker, replacing the previous one."""
    assessment = {**result, 'updated': _now()}
    Item().collection.update_one(
        {'_id': item['_id']}, {'$set': {f'{ITEM_FIELD}.assessment': assessment}})
