"""Endpoints under ``/item/{id}/miqa``: a scan's review state, decisions, lock and assessment."""

from girder.api import access
from girder.api.describe import Description, autoDescribeRoute
from girder.api.rest import boundHandler, getCurrentToken, getCurrentUser
from girder.constants import AccessType
from girder.exceptions import RestException
from girder.models.item import Item

from .. import access as rules
from .. import scheduling
from ..constants import ITEM_FIELD, AssessmentStatus
from ..models import calibration, lock, review_state
from ..models.decision import (
    BAD_RULE,
    MAX_COMMENT,
    Decision,
    lock_holder,
    normalize_artifacts,
    user_display,
    validate_fields,
)
from ..models.project import Project
from ..scheduling import assessment_scope

SCAN_ERROR = 'This item is not a scan of a MIQA project.'


def find_scan(item: dict) -> tuple[dict, dict]:
    """(the item's review state, its project), or 400 if it is no scan. An image in a project
    that is not registered yet gets the state it would have, computed and not stored (a GET
    writes nothing)."""
    state = item.get(ITEM_FIELD)
    project = Project().load(state['projectId']) if state else None
    if project is None:
        project = Project().findForItem(item)
        if project is None or scheduling.image_file(item) is None:
            raise RestException(SCAN_ERROR)
        state = review_state.pending_state(item, project)
    return state, project


def scan_and_project(item: dict) -> tuple[dict, dict]:
    """The scan (registered on the fly if it is an image in a project) and its project, or 400;
    for the requests that change a scan."""
    _state, project = find_scan(item)
    return review_state.ensure_scan(item, project), project


@access.public
@boundHandler
@autoDescribeRoute(
    Description('Get the MIQA review state of a scan.')
    .notes('The state (unreviewed, questionable, good, bad), the latest decision, the lock (null '
           'when free or expired), the automatic assessment and the queue sort keys. Also in '
           'the item\'s JSON as the read-only field "miqa".')
    .modelParam('id', model=Item, level=AccessType.READ)
    .errorResponse('The item is not a scan of a MIQA project.', 400)
)
def getState(self, item):
    state, project = find_scan(item)
    return viewer_state(state, project, item['_id'], getCurrentUser())


def viewer_state(state: dict, project: dict, itemId, user: dict | None,
                 roles: tuple | None = None) -> dict:
    """A scan's public state as ``user`` may see it (calibration.redact_state); ``roles``:
    the user's (tiers, project admin) when known."""
    tiers, admin = roles or (rules.user_tiers(project, user), rules.can_admin(project, user))
    return calibration.redact_state(lock.public_state(state), project, itemId, user, tiers,
                                    admin)


def on_item_json(event) -> None:
    """Girder's own item JSON (``GET /item/{id}``, ``GET /item``) carries the scan's state as
    "miqa": show it as ``GET /item/{id}/miqa`` does, so it hides what that hides (the assessment
    in the hidden arm, a gold scan's decisions from tier 1)."""
    value = event.info.get('returnVal')
    docs = [value] if isinstance(value, dict) else value if isinstance(value, list) else []
    user = getCurrentUser()
    projects: dict = {}
    for doc in docs:
        state = doc.get(ITEM_FIELD) if isinstance(doc, dict) else None
        if not isinstance(state, dict) or not state.get('projectId'):
            continue
        if state['projectId'] not in projects:
            project = Project().load(state['projectId'])
            projects[state['projectId']] = project and (project, (
                rules.user_tiers(project, user), rules.can_admin(project, user)))
        known = projects[state['projectId']]
        if known and (state.get('gold') or calibration.share(known[0], 'hidden') > 0):
            doc[ITEM_FIELD] = viewer_state(state, known[0], doc['_id'], user, known[1])


@access.user
@boundHandler
@autoDescribeRoute(
    Description('Record a review decision on a scan.')
    .notes('Tier 1 marks a scan good or questionable (questionable scans go to the tier-2 '
           'queue); tier 2 makes the final decision, good or bad, on any scan and may override '
           f'earlier decisions. {BAD_RULE} The body is a JSON object: "decision" (required), '
           '"tier" (1 or 2; default your highest tier), "artifacts" ({key: "present" | '
           '"absent" | "not_stated"} with keys from the project vocabulary), "comment" (at most '
           f'{MAX_COMMENT} characters), "location" ({{"ijk": [i, j, k], "world": [x, y, z]}} in '
           'voxels and mm), "seconds" (time spent on the scan), "confidence" (1-5), "quality" '
           '(your own 0-10 score), "acceptedSuggestions" (the present artifacts you took from '
           'the model\'s suggestions: each must be a trained indicator the scan\'s current '
           'assessment suggests). Returns {"decision": the recorded decision, "state": the '
           'scan\'s new state}. Recording releases your lock.')
    .modelParam('id', model=Item, level=AccessType.READ)
    .jsonParam('body', 'The decision (see the notes).', paramType='body', requireObject=True)
    .errorResponse('Invalid decision, artifact, comment, location or number; or bad without an '
                   'artifact or comment.', 400)
    .errorResponse('You are not a reviewer at that tier in this project.', 403)
    .errorResponse('Someone else holds the scan\'s lock, or tier 2 already decided it.', 409)
)
def postDecision(self, item, body):
    user = getCurrentUser()
    item, project = scan_and_project(item)
    unknown = sorted(set(body) - {'decision', 'tier', 'artifacts', 'comment', 'location',
                                  'seconds', 'confidence', 'quality', 'acceptedSuggestions'})
    if unknown:
        raise RestException(f'Unknown field(s) in the decision: {", ".join(unknown)}.')
    tier = body.get('tier')
    if tier is not None and (isinstance(tier, bool) or tier not in (1, 2, '1', '2')):
        raise RestException('tier must be 1 or 2.')
    tier = int(tier) if tier is not None else None
    tiers = rules.require_reviewer(project, user, tier)
    tier = tier or max(tiers)
    if not isinstance(body.get('decision'), str):
        raise RestException('decision is required: good, questionable (tier 1) or bad (tier 2).')
    fields = validate_fields(
        project, tier, body['decision'], artifacts=body.get('artifacts'),
        comment=body.get('comment'), location=body.get('location'),
        seconds=body.get('seconds'), confidence=body.get('confidence'),
        quality=body.get('quality'), acceptedSuggestions=body.get('acceptedSuggestions'))
    fields['assessmentHidden'] = tier == 1 and calibration.assessment_hidden(
        project, item['_id'], tiers, rules.can_admin(project, user))
    state = item[ITEM_FIELD]
    if calibration.gold_read_pending(state, tier):  # an unannounced re-read of a gold scan
        doc = _gold_read(item, project, user, fields)
    else:
        doc = Decision().record(item, project, user, fields)
    state = Item().collection.find_one({'_id': item['_id']}, {ITEM_FIELD: 1})[ITEM_FIELD]
    if doc.get('readKind') == 'gold':  # unannounced: to the reviewer it is any read
        doc = {k: v for k, v in doc.items() if k not in ('reference', 'agrees')}
        doc['readKind'] = 'single'
    if doc.get('assessmentHidden'):  # the trail keeps the model's snapshot; the reader never
        doc = {**doc, 'assessment': None}
    return {'decision': doc, 'state': viewer_state(state, project, item['_id'], user)}


def _gold_read(item: dict, project: dict, user: dict, fields: dict) -> dict:
    """Store a tier-1 re-read of a gold scan (409 while someone else holds its lock)."""
    from ..exceptions import ConflictException

    holder = lock_holder(item[ITEM_FIELD], review_state._now())
    if holder and holder['userId'] != user['_id']:
        raise ConflictException(
            f'{holder.get("name") or holder.get("login")} ({holder.get("login")}) is reviewing '
            'this scan; a tier-2 reviewer or an admin may break the lock.')
    reference = calibration.Gold().findOne({'_id': item['_id']})
    extra = {'userName': user_display(user), 'assessment': None,
             'lockAcquired': holder['acquired'] if holder else None}
    return calibration.GoldRead().record(item, project, user, fields, reference, extra)


@access.public
@boundHandler
@autoDescribeRoute(
    Description('List every decision on a scan, oldest first (the audit trail).')
    .modelParam('id', model=Item, level=AccessType.READ)
    .errorResponse('The item is not a scan of a MIQA project.', 400)
)
def getHistory(self, item):
    state, project = find_scan(item)
    user = getCurrentUser()
    tiers, admin = rules.user_tiers(project, user), rules.can_admin(project, user)
    if 2 not in tiers and not admin and state.get('gold') and (
            state.get('state') != 'unreviewed'):
        return [d for d in Decision().history(item) if d.get('userId') == (user or {}).get(
            '_id')]  # a gold scan shows a tier-1 reviewer nothing but their own reads
    return calibration.visible_history(
        Decision().history(item), user,
        calibration.assessment_hidden(project, item['_id'], tiers, admin))


@access.user
@boundHandler
@autoDescribeRoute(
    Description('Mark a scan as a gold-standard reference (project admins).')
    .notes('The body: "decision" (good, questionable or bad), "artifacts" ({key: "present" | '
           '"absent"}), "comment". At the project\'s goldRate a decided reference scan is '
           'served again to tier-1 reviewers, unannounced; those re-reads never change the '
           'scan. Returns the reference.')
    .modelParam('id', model=Item, level=AccessType.READ)
    .jsonParam('body', 'The reference decision.', paramType='body', requireObject=True)
    .errorResponse('Not a scan, or an invalid decision or artifact.', 400)
    .errorResponse('Not an admin or owner of the project.', 403)
)
def putGold(self, item, body):
    user = getCurrentUser()
    item, project = scan_and_project(item)
    rules.require_project_admin(project, user)
    unknown = sorted(set(body) - {'decision', 'artifacts', 'comment'})
    if unknown:
        raise RestException(f'Unknown field(s) in the reference: {", ".join(unknown)}.')
    if body.get('comment') is not None and not isinstance(body['comment'], str):
        raise RestException('comment must be text.')
    return calibration.Gold().mark(
        item, project, user, body.get('decision'),
        normalize_artifacts(body.get('artifacts'), project['settings']['artifacts']),
        (body.get('comment') or '')[:MAX_COMMENT])


@access.user
@boundHandler
@autoDescribeRoute(
    Description('Stop a scan being a gold-standard reference (project admins).')
    .notes('Its earlier gold re-reads are kept for the agreement figures. Returns {"removed": '
           'whether it was a reference}.')
    .modelParam('id', model=Item, level=AccessType.READ)
    .errorResponse('Not an admin or owner of the project.', 403)
)
def deleteGold(self, item):
    user = getCurrentUser()
    _state, project = find_scan(item)
    rules.require_project_admin(project, user)
    return {'removed': calibration.Gold().unmark(item)}


@access.user
@boundHandler
@autoDescribeRoute(
    Description('Get a scan\'s gold-standard reference (project admins), or null.')
    .modelParam('id', model=Item, level=AccessType.READ)
    .errorResponse('Not an admin or owner of the project.', 403)
)
def getGold(self, item):
    user = getCurrentUser()
    _state, project = find_scan(item)
    rules.require_project_admin(project, user)
    return calibration.Gold().findOne({'_id': item['_id']})


@access.user
@boundHandler
@autoDescribeRoute(
    Description('Open a scan for review: take (or renew) its lock.')
    .notes('The lock expires 5 minutes (the miqa.lock_seconds setting) after it was taken or '
           'last renewed; renew it by posting again. Another reviewer gets 409 naming the '
           'holder; tier-2 reviewers and admins may break it with force=true. Locks never block '
           'reading. Returns the scan\'s state.')
    .modelParam('id', model=Item, level=AccessType.READ)
    .param('force', 'Break a lock someone else holds (tier 2 and admins).', dataType='boolean',
           default=False, required=False)
    .errorResponse('You are not a reviewer in this project, or may not break locks.', 403)
    .errorResponse('Someone else holds the lock.', 409)
)
def postLock(self, item, force):
    item, user, may_break = _lock_request(item, force)
    return lock.public_state(lock.acquire(item, user, force=force, may_break=may_break))


@access.user
@boundHandler
@autoDescribeRoute(
    Description('Release the lock on a scan.')
    .notes('Releases your own lock; with force=true a tier-2 reviewer or admin releases anyone\'s. '
           'Releasing a scan nobody holds succeeds. Returns the scan\'s state.')
    .modelParam('id', model=Item, level=AccessType.READ)
    .param('force', 'Release a lock someone else holds (tier 2 and admins).',
           dataType='boolean', default=False, required=False)
    .errorResponse('You are not a reviewer in this project, or may not break locks.', 403)
    .errorResponse('Someone else holds the lock.', 409)
)
def deleteLock(self, item, force):
    item, user, may_break = _lock_request(item, force)
    return lock.public_state(lock.release(item, user, force=force, may_break=may_break))


def _lock_request(item: dict, force: bool) -> tuple[dict, dict, bool]:
    """The scan, the reviewer, and whether they may break someone else's lock (tier 2)."""
    user = getCurrentUser()
    item, project = scan_and_project(item)
    tiers = rules.require_reviewer(project, user)
    if force:
        rules.require_lock_breaker(tiers)
    return item, user, rules.may_break_locks(tiers)


@access.user
@boundHandler
@autoDescribeRoute(
    Description('Schedule the automatic assessment of a scan (again).')
    .notes('For the project\'s reviewers and owners. Returns {"scheduled": bool, '
           '"alreadyQueued": bool, "jobId", "state"}; when nothing could be scheduled the '
           'state\'s assessment.reason says why. A scan has at most one pending (queued or '
           'running) job per model: while it has one, the answer is that job\'s id with '
           '"alreadyQueued": true and "scheduled": false, and nothing is scheduled.')
    .modelParam('id', model=Item, level=AccessType.READ)
    .errorResponse('You are not a reviewer or owner of this project.', 403)
)
def postAssess(self, item):
    user = getCurrentUser()
    item, project = scan_and_project(item)
    rules.require_assessor(project, user)
    job = scheduling.request_assessment(item, user, project)
    already = bool(job and job.get('alreadyQueued'))
    state = Item().collection.find_one({'_id': item['_id']}, {ITEM_FIELD: 1})[ITEM_FIELD]
    return {'scheduled': job is not None and not already, 'alreadyQueued': already,
            'jobId': job['_id'] if job else None, 'state': lock.public_state(state)}


ASSESSMENT_STATUSES = (AssessmentStatus.RUNNING, AssessmentStatus.DONE, AssessmentStatus.FAILED)


@access.public
@boundHandler
@autoDescribeRoute(
    Description('Write the automatic assessment of a scan (the worker job token or an admin).')
    .modelParam('id', model=Item, force=True)
    .jsonParam('assessment', 'The assessment: status (running, done or failed), and with done '
               'the scores; with failed a reason.', paramType='body', requireObject=True)
    .errorResponse('Only the job that assesses this scan, or an admin, may write it.', 403)
)
def putAssessment(self, item, assessment):
    user = getCurrentUser()
    token = getCurrentToken()
    rules.require_assessment_writer(user, token, assessment_scope(item['_id']))
    if not item.get(ITEM_FIELD):
        raise RestException('This item is not a scan of a MIQA project.')
    current = (item[ITEM_FIELD].get('file') or {}).get('_id')
    if not rules.is_site_admin(user) and current is not None and scheduling.file_scope(
            current) not in (token.get('scope') or ()):
        # a job about an earlier image file (replaced while it ran): its result is not this
        # file's assessment
        raise RestException('This job assessed an image file the scan no longer has; its '
                            'result was not stored.', code=409)
    status = assessment.get('status')
    if status not in ASSESSMENT_STATUSES:
        raise RestException(f'status must be one of {", ".join(ASSESSMENT_STATUSES)}.')
    if status == AssessmentStatus.FAILED and not assessment.get('reason'):
        raise RestException('A failed assessment needs a reason.')
    if status == AssessmentStatus.DONE:
        for key in ('quality', 'artifacts', 'model'):
            if key not in assessment:
                raise RestException(f'A finished assessment needs "{key}".')
        trained = assessment.get('trainedOutputs')
        if trained is not None and not (isinstance(trained, list) and all(
                isinstance(name, str) for name in trained)):
            raise RestException('trainedOutputs must be a list of output names.')
        scope = assessment.get('scope')
        if scope is not None and not (isinstance(scope, dict) and isinstance(
                scope.get('in_scope'), bool)):
            raise RestException('scope must be an object with in_scope true or false.')
    previous = item[ITEM_FIELD].get('assessment') or {}
    if status == AssessmentStatus.RUNNING:
        review_state.set_assessment_status(item, status, jobId=previous.get('jobId'))
    else:
        review_state.set_assessment_result(item, {**assessment, 'jobId': previous.get('jobId')})
    return Item().load(item['_id'], force=True)[ITEM_FIELD]


def register(itemResource) -> None:
    itemResource.route('GET', (':id', 'miqa'), getState)
    itemResource.route('POST', (':id', 'miqa', 'decision'), postDecision)
    itemResource.route('GET', (':id', 'miqa', 'history'), getHistory)
    itemResource.route('POST', (':id', 'miqa', 'lock'), postLock)
    itemResource.route('DELETE', (':id', 'miqa', 'lock'), deleteLock)
    itemResource.route('POST', (':id', 'miqa', 'assess'), postAssess)
    itemResource.route('PUT', (':id', 'miqa', 'assessment'), putAssessment)
    itemResource.route('GET', (':id', 'miqa', 'gold'), getGold)
    itemResource.route('PUT', (':id', 'miqa', 'gold'), putGold)
    itemResource.route('DELETE', (':id', 'miqa', 'gold'), deleteGold)
