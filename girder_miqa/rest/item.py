"""Endpoints under ``/item/{id}/miqa``: a scan's review state and its assessment."""

from girder.api import access
from girder.api.describe import Description, autoDescribeRoute
from girder.api.rest import boundHandler, getCurrentToken, getCurrentUser
from girder.constants import AccessType
from girder.exceptions import AccessException, RestException
from girder.models.item import Item
from girder.models.token import Token

from ..constants import ITEM_FIELD, AssessmentStatus
from ..models import review_state
from ..scheduling import assessment_scope


@access.public
@boundHandler
@autoDescribeRoute(
    Description('Get the MIQA review state of a scan.')
    .modelParam('id', model=Item, level=AccessType.READ)
    .errorResponse('The item is not a scan of a MIQA project.', 400)
)
def getState(self, item):
    state = item.get(ITEM_FIELD)
    if not state:
        raise RestException('This item is not a scan of a MIQA project.')
    return state


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
    allowed = bool(user and user.get('admin')) or bool(
        token and Token().hasScope(token, assessment_scope(item['_id'])))
    if not allowed:
        raise AccessException('Only the job that assesses this scan, or an admin, may write it.')
    if not item.get(ITEM_FIELD):
        raise RestException('This item is not a scan of a MIQA project.')
    status = assessment.get('status')
    if status not in ASSESSMENT_STATUSES:
        raise RestException(f'status must be one of {", ".join(ASSESSMENT_STATUSES)}.')
    if status == AssessmentStatus.FAILED and not assessment.get('reason'):
        raise RestException('A failed assessment needs a reason.')
    if status == AssessmentStatus.DONE:
        for key in ('quality', 'artifacts', 'model'):
            if key not in assessment:
                raise RestException(f'A finished assessment needs "{key}".')
    previous = item[ITEM_FIELD].get('assessment') or {}
    if status == AssessmentStatus.RUNNING:
        review_state.set_assessment_status(item, status, jobId=previous.get('jobId'))
    else:
        review_state.set_assessment_result(item, {**assessment, 'jobId': previous.get('jobId')})
    return Item().load(item['_id'], force=True)[ITEM_FIELD]


def register(itemResource) -> None:
    itemResource.route('GET', (':id', 'miqa'), getState)
    itemResource.route('PUT', (':id', 'miqa', 'assessment'), putAssessment)
