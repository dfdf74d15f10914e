"""Endpoints under ``/miqa/project/{id}`` for reviewer calibration (issue #23): the agreement
figures and the gold-standard references' CSV import."""

import csv
import io

import cherrypy
from bson import ObjectId
from bson.errors import InvalidId
from girder.api import access
from girder.api.describe import Description, autoDescribeRoute
from girder.api.rest import boundHandler, getCurrentUser
from girder.exceptions import RestException, ValidationException
from girder.models.item import Item

from ..access import can_admin, require_project_admin
from ..constants import ITEM_FIELD
from ..models import agreement, calibration, exchange
from ..models.decision import normalize_artifacts
from ..models.scans import unreadable_folders
from .project import load_project

MAX_GOLD_BYTES = 5 * 1024 * 1024


@access.public
@boundHandler
@autoDescribeRoute(
    Description('Reviewer agreement in a project (project readers).')
    .notes('Cohen\'s kappa per pair of tier-1 raters, Fleiss\' kappa, agreement per artifact, '
           'tier 1 against tier 2, humans against the model, each reviewer against the gold '
           'standard (with a timeline), time spent and confidence per reviewer, and the '
           'hidden-assessment arm against the shown one. Each figure is {value, low, high, n}: '
           'a 95 % interval from a seeded bootstrap over scans. Only the scans you can read '
           'count. Reviewers are named to project admins; others see "Reviewer N" '
           'pseudonyms, and their own name.')
    .param('id', 'The project (= its folder\'s or collection\'s) id.', paramType='path')
    .errorResponse('Invalid or unknown project id.', 400)
    .errorResponse('No read access to the project.', 403)
)
def getAgreement(self, id):
    user = getCurrentUser()
    project = load_project(id, user)
    return agreement.compute(project, user, named=can_admin(project, user))


def _gold_rows(text: str):
    """The rows of a gold CSV (columns path or itemId, decision, artifacts, comment)."""
    reader = csv.DictReader(io.StringIO(text))
    columns = {c.strip().lower() for c in reader.fieldnames or []}
    if 'decision' not in columns or not columns & {'path', 'itemid'}:
        raise RestException('A gold CSV needs a decision column and a path or itemId column.')
    for line, row in enumerate(reader, start=2):
        yield line, {(k or '').strip().lower(): (v or '').strip() for k, v in row.items()}


def _gold_artifacts(cell: str, vocabulary: list) -> dict:
    """``"ghosting noise=absent"``: keys present, or key=present|absent, spaces or commas."""
    out = {}
    for token in cell.replace(',', ' ').split():
        key, _, value = token.partition('=')
        out[key] = value or 'present'
    return normalize_artifacts(out, vocabulary)


@access.user
@boundHandler
@autoDescribeRoute(
    Description('Import gold-standard references from CSV (project admins).')
    .notes('The body is CSV with a header: path (inside the project, as the export writes it) or '
           'itemId, decision (good, questionable or bad), artifacts (present keys, or '
           'key=present|absent, separated by spaces or commas), comment (optional). Rows that '
           'cannot be used are reported with their line; the others are stored. Returns '
           '{"marked", "errors": [{line, reason}]}.')
    .param('id', 'The project (= its folder\'s or collection\'s) id.', paramType='path')
    .errorResponse('Invalid project id or CSV.', 400)
    .errorResponse('Not an admin or owner of the project.', 403)
)
def importGold(self, id):
    user = getCurrentUser()
    project = load_project(id, user)
    require_project_admin(project, user)
    body = cherrypy.request.body.read(MAX_GOLD_BYTES + 1)
    if len(body) > MAX_GOLD_BYTES:
        raise RestException(f'A gold CSV may hold at most {MAX_GOLD_BYTES} bytes.', code=413)
    try:
        text = body.decode('utf-8-sig')
    except UnicodeDecodeError:
        raise RestException('The gold CSV must be UTF-8 text.') from None
    unreadable = unreadable_folders(project, user)
    marked, errors = 0, []
    for line, row in _gold_rows(text):
        try:
            if row.get('itemid'):
                try:
                    item = Item().load(ObjectId(row['itemid']), force=True)
                except (InvalidId, TypeError):
                    item = None
                state = (item or {}).get(ITEM_FIELD) or {}
                if not item or state.get('projectId') != project['_id'] or (
                        item['folderId'] in unreadable):
                    raise exchange.RowError(f'no scan of this project has the id '
                                            f'{row["itemid"][:40]}.')
            else:
                item = exchange._resolve_relative(project, row.get('path', ''), unreadable)
                if (item.get(ITEM_FIELD) or {}).get('projectId') != project['_id']:
                    raise exchange.RowError(f'{row["path"][:80]} is not a scan of this project.')
            calibration.Gold().mark(
                item, project, user, row.get('decision', '').lower(),
                _gold_artifacts(row.get('artifacts', ''), project['settings']['artifacts']),
                row.get('comment', ''))
            marked += 1
        except (exchange.RowError, ValidationException) as exc:
            errors.append({'line': line, 'reason': str(exc)})
    return {'marked': marked, 'errors': errors}


def register(resource) -> None:
    """Add the calibration routes to the ``/miqa`` resource."""
    resource.route('GET', ('project', ':id', 'agreement'), getAgreement)
    resource.route('POST', ('project', ':id', 'gold'), importGold)
