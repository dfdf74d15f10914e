"""Schedule automatic assessments: the ``data.process`` hook and re-assessment requests.

Scheduling runs inside the upload request, so it never raises: when it fails the upload still
succeeds and the scan's assessment says why it was not assessed. Tasks are sent to the workers
by name: the server imports no model code (``miqa_worker``) at all, and learns which model the
workers run from their reports (``models/worker_models.py``).
"""

import datetime
import logging
import time

from girder.api.rest import getCurrentToken
from girder.constants import AccessType
from girder.models.file import File
from girder.models.item import Item
from girder.models.setting import Setting
from girder.models.token import Token
from girder.models.user import User
from girder_jobs.constants import JobStatus
from girder_jobs.models.job import Job
from girder_plugin_worker.constants import PluginSettings
from girder_plugin_worker.status import CustomJobStatus
from pymongo.errors import DuplicateKeyError

from . import settings
from .constants import (
    ASSESS_TASK_NAME,
    ASSESSMENT_WRITE_SCOPE,
    IMAGE_EXTENSIONS,
    ITEM_FIELD,
    JOB_TYPE,
    AssessmentStatus,
    is_image_name,
)
from .models import review_state
from .models.project import Project
from .models.worker_models import WorkerModels, ask_workers

logger = logging.getLogger(__name__)

# A job in one of these states is pending: a scan gets no second job for the same model then.
PENDING_STATUSES = (JobStatus.INACTIVE, JobStatus.QUEUED, JobStatus.RUNNING,
                    CustomJobStatus.FETCHING_INPUT, CustomJobStatus.CONVERTING_INPUT,
                    CustomJobStatus.CONVERTING_OUTPUT, CustomJobStatus.PUSHING_OUTPUT)


def current_model(name: str | None, ask: bool = True) -> dict:
    """Name, version and weights sha256 of the model the workers run under ``name`` (None or
    '': the ``miqa.default_model`` setting, else the workers' own default), as they reported it.

    With ``ask`` a worker is asked first (a few seconds at most; see ``ask_workers``), so that
    new weights on the workers count at once; when none answers, the latest stored report
    stands. Without any report only the name is known (``{"name": ...}``, None for an unknown
    default), and then no scan counts as assessed by it (see ``assessed_by``)."""
    name = name or settings.default_model() or None
    if ask:
        ask_workers()
    report = WorkerModels().reported(name)
    if report is None:
        return {'name': name}
    return {'name': report['name'], 'version': report.get('version'),
            'sha256': report['sha256']}


def assessed_by(assessment: dict, model: dict) -> bool:
    """Whether a finished assessment came from this model: the same name and the same weights
    (sha256). A model no worker has reported (no sha256 known) has assessed nothing yet, so
    the scan is assessed again rather than wrongly skipped."""
    used = assessment.get('model') or {}
    if not isinstance(used, dict) or not model.get('sha256'):
        return False
    return used.get('name') == model['name'] and used.get('sha256') == model['sha256']


def record_assessment_model(assessment: dict) -> None:
    """Keep the model a worker reports with a finished assessment (name, version, sha256) as
    the workers' latest report of that name; when its job asked for no model, that model is
    the workers' default. Never raises: the assessment is stored already."""
    if not isinstance(assessment, dict) or assessment.get('status') != AssessmentStatus.DONE:
        return
    try:
        job = Job().load(assessment['jobId'], force=True) if assessment.get('jobId') else None
        meta = (job or {}).get('meta') or {}
        default = True if 'model' in meta and meta['model'] is None else None
        WorkerModels().record(assessment.get('model'), 'assessment', default=default)
    except Exception:
        logger.exception('Could not record the model of an assessment')


def image_file(item: dict) -> dict | None:
    """The item's image file (the newest one with an image name), or None: the file a
    decision judges and an assessment reads are one and the same."""
    return review_state.current_image_file(item['_id'])


CLAIM_COLLECTION = 'miqa_schedule_claim'
CLAIM_SECONDS = 60  # a claim left by a crashed request expires after this


def _claims():
    return Job().database[CLAIM_COLLECTION]


def ensure_indices() -> None:
    """The index that finds a scan's pending assessment job, the claims' expiry, and the
    workers' model reports."""
    Job().collection.create_index([('meta.itemId', 1), ('status', 1)])
    _claims().create_index('at', expireAfterSeconds=CLAIM_SECONDS)
    WorkerModels()


def _claim(key: str) -> bool:
    """Atomically take the right to schedule ``key`` (scan and model): False while another
    request holds it (so two simultaneous requests cannot both schedule)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    try:
        _claims().insert_one({'_id': key, 'at': now})
        return True
    except DuplicateKeyError:  # held, unless its holder died (TTL removal runs once a minute)
        stale = now - datetime.timedelta(seconds=CLAIM_SECONDS)
        return _claims().update_one({'_id': key, 'at': {'$lt': stale}},
                                    {'$set': {'at': now}}).modified_count == 1


def project_model(project: dict) -> str | None:
    """The model name a project's assessments ask for: its ``model`` setting, else the
    ``miqa.default_model`` setting; None leaves the choice to the workers (their default)."""
    return project['settings'].get('model') or settings.default_model() or None


def pending_job(item: dict, model: str) -> dict | None:
    """The scan's queued or running assessment job for this model, or None (jobs from before
    the model was recorded count for any model)."""
    return Job().findOne({
        'type': JOB_TYPE, 'meta.itemId': str(item['_id']), 'meta.model': {'$in': [model, None]},
        'status': {'$in': list(PENDING_STATUSES)}}, sort=[('created', -1)])


def assessment_scope(itemId) -> str:
    """The token scope that lets a job write the assessment of this one item."""
    return f'{ASSESSMENT_WRITE_SCOPE}.{itemId}'


# The scoped token a job gets: read this one file, write this one scan's assessment. It lives
# at most JOB_TOKEN_HOURS (a long queue's wait included) and is deleted when the job ends.
FILE_READ_SCOPE = 'miqa.file.read'
JOB_TOKEN_HOURS = 6
FINAL_STATUSES = (JobStatus.SUCCESS, JobStatus.ERROR, JobStatus.CANCELED)


def file_scope(fileId) -> str:
    """The token scope that lets a job read this one file (GET /file/{id}[/download])."""
    return f'{FILE_READ_SCOPE}.{fileId}'


def _file_token_user(fileId) -> dict | None:
    """The user of the request's token when it is a job token for this file, else None."""
    token = getCurrentToken()
    if not token or file_scope(fileId) not in (token.get('scope') or ()):
        return None
    return User().load(token['userId'], force=True) if token.get('userId') else None


def job_file(fileId) -> tuple[dict, dict] | None:
    """``(file, user)`` when the request's token is a job token for this file (the file loaded
    with its user's read access), else None: such a token reads this one file and no other."""
    user = _file_token_user(fileId)
    if user is None:
        return None
    return File().load(fileId, user=user, level=AccessType.READ), user


def job_file_document(fileId) -> dict | None:
    """The file's document for a job token for this file (as ``GET /file/{id}``), else None."""
    found = job_file(fileId)
    return File().filter(found[0], found[1]) if found else None


def job_file_download(fileId, params: dict):
    """The file's download (as ``GET /file/{id}/download``, ``offset``/``endByte`` honoured)
    for a job token for this file, else None."""
    found = job_file(fileId)
    if found is None:
        return None
    try:
        offset = int(params.get('offset') or 0)
        endByte = int(params['endByte']) if params.get('endByte') else None
    except ValueError:
        offset, endByte = 0, None
    return File().download(found[0], offset, endByte=endByte)


def job_updated(job: dict) -> None:
    """Delete an assessment job's token once the job has ended."""
    if job.get('type') != JOB_TYPE or job.get('status') not in FINAL_STATUSES:
        return
    tokenId = job.get('miqaTokenId')
    if tokenId:
        try:  # token ids are random strings, not ObjectIds
            Token().removeWithQuery({'_id': str(tokenId)})
        except Exception:
            logger.exception('Could not delete the token of MIQA job %s', job.get('_id'))


SIDECAR_MAX_BYTES = 1 << 20  # a BIDS sidecar is a few KiB; larger JSON files are not sidecars


def image_stem(name: str) -> str:
    """The file name without its image ending: ``sub-01_T1w.nii.gz`` -> ``sub-01_T1w``."""
    lower = name.lower()
    for ext in sorted(IMAGE_EXTENSIONS, key=len, reverse=True):
        if lower.endswith(ext):
            return name[:-len(ext)]
    return name


def sidecar_for(item: dict, file: dict) -> str | None:
    """The text of the image's BIDS JSON sidecar, for the worker's contrast detection: a file
    ``<stem>.json`` in the same item, else the only file of an item ``<stem>.json`` in the same
    folder. None when there is none, or it is too large or unreadable: a sidecar is a hint,
    never a reason to fail scheduling. Whether it is valid JSON is the worker's to say."""
    wanted = f'{image_stem(file["name"])}.json'
    try:
        candidate = File().findOne({'itemId': item['_id'], 'name': wanted})
        if candidate is None and item.get('folderId'):
            other = Item().findOne({'folderId': item['folderId'], 'name': wanted})
            if other is not None:
                candidate = File().findOne({'itemId': other['_id']})
        if candidate is None or int(candidate.get('size') or 0) > SIDECAR_MAX_BYTES:
            return None
        with File().open(candidate) as handle:
            return handle.read(SIDECAR_MAX_BYTES + 1).decode('utf-8', errors='replace')
    except Exception:
        logger.warning('MIQA: sidecar of %s not read', item.get('_id'), exc_info=True)
        return None


def schedule_assessment(item: dict, file: dict, user: dict | None, project: dict) -> dict:
    """Queue the worker task for one scan as a Girder job, and return the job.

    The task is sent by name (the server has no copy of the worker's code); girder-worker's
    publish hook makes the Girder job from the ``girder_*`` headers, as for a task object.
    The job gets a token that can read this one file and write this item's assessment, nothing
    else, for at most JOB_TOKEN_HOURS; it is deleted when the job ends (job_updated).
    """
    from girder_worker.app import app

    if user is None and item.get('creatorId'):
        user = User().load(item['creatorId'], force=True)
    token = Token().createToken(
        user=user, days=JOB_TOKEN_HOURS / 24,
        scope=[file_scope(file['_id']), assessment_scope(item['_id'])])
    directPath = None
    if Setting().get(PluginSettings.DIRECT_PATH):  # workers share the assetstore's disk
        try:
            directPath = File().getLocalFilePath(file)
        except Exception:
            directPath = None
    model = project_model(project)
    result = app.send_task(ASSESS_TASK_NAME, serializer='girder_io', kwargs={
        'item_id': str(item['_id']),
        'file_id': str(file['_id']),
        'file_name': file['name'],
        'model_name': model,
        'direct_path': directPath,
        'max_voxels': settings.max_voxels(),
        'sidecar': sidecar_for(item, file),
    }, headers={
        'girder_job_title': f'MIQA assessment: {item["name"]}',
        'girder_job_type': JOB_TYPE,
        'girder_job_public': False,
        'girder_job_handler': 'celery_handler',
        'girder_user': user,
        'girder_client_token': str(token['_id']),
        'girder_job_other_fields': {'meta': {
            'creator': 'miqa', 'itemId': str(item['_id']), 'fileId': str(file['_id']),
            'model': model},
            'miqaTokenId': str(token['_id'])},
    })
    job = Job().findOne({'celeryTaskId': result.id})
    review_state.set_assessment_status(item, AssessmentStatus.QUEUED, jobId=job['_id'])
    return job


def request_assessment(item: dict, user: dict | None, project: dict | None = None) -> dict | None:
    """Schedule one scan, recording the reason on the scan if it cannot be scheduled.

    Returns the new job; or, when the scan already has a pending job for the project's model,
    that job (with ``alreadyQueued: True``, not stored) and schedules nothing; or None when
    nothing could be scheduled.
    """
    project = project or Project().findForItem(item)
    if project is None:
        return None
    item = review_state.ensure_scan(item, project)
    file = image_file(item)
    if file is None:
        review_state.set_assessment_status(
            item, AssessmentStatus.NOT_SCHEDULED, reason='the item has no image file')
        return None
    model = project_model(project)
    key = f'{item["_id"]}:{model}'
    deadline = time.monotonic() + 5
    while True:
        pending = pending_job(item, model)
        if pending is not None:
            pending['alreadyQueued'] = True
            return pending
        if _claim(key):
            break
        if time.monotonic() > deadline:  # another request is still scheduling this scan
            return None
        time.sleep(0.05)
    try:
        if (pending := pending_job(item, model)) is not None:  # scheduled while we waited
            pending['alreadyQueued'] = True
            return pending
        return schedule_assessment(item, file, user, project)
    except Exception as exc:  # the broker is down, the worker plugin is missing ...
        logger.exception('Could not schedule the assessment of item %s', item['_id'])
        review_state.set_assessment_status(
            item, AssessmentStatus.NOT_SCHEDULED,
            reason=f'could not schedule the assessment: {type(exc).__name__}: {exc}')
        return None
    finally:
        _claims().delete_one({'_id': key})


def image_uploaded(file: dict, user: dict | None) -> None:
    """An image file finished uploading (``data.process``): its item becomes (or restarts as)
    a scan of the project it is in, and is assessed when the project assesses automatically.
    Never raises: a failure is recorded on the scan and the upload still succeeds."""
    if not file.get('itemId') or not is_image_name(file.get('name', '')):
        return
    try:
        item = Item().load(file['itemId'], force=True)
        project = Project().findForItem(item) if item else None
        if project is None:
            return
        item = review_state.ensure_scan(item, project)
        review_state.image_changed(item['_id'], file)  # a new image: the review starts over
        if not project['settings'].get('autoAssess', True):
            review_state.set_assessment_status(
                item, AssessmentStatus.NOT_SCHEDULED,
                reason='auto-assessment is off for this project')
            return
        request_assessment(item, user, project)
    except Exception:
        logger.exception('MIQA data.process handler failed for file %s', file.get('_id'))
        if file.get('itemId'):
            review_state.set_assessment_status(
                {'_id': file['itemId']}, AssessmentStatus.NOT_SCHEDULED,
                reason='internal error while scheduling the assessment (see the server log)')


__all__ = ['ITEM_FIELD', 'image_uploaded', 'request_assessment', 'schedule_assessment']
