"""Endpoints under ``/miqa``: enable folders and collections for review, settings, queues,
progress, exchange."""

import re

import cherrypy
from bson import ObjectId
from bson.errors import InvalidId
from girder.api import access
from girder.api.describe import Description, autoDescribeRoute
from girder.api.rest import Resource, setResponseHeader
from girder.constants import AccessType
from girder.exceptions import RestException
from girder.models.collection import Collection
from girder.models.folder import Folder
from girder.models.group import Group
from girder.models.item import Item
from girder.utility import path as path_util

from .. import scheduling
from ..access import (
    can_admin,
    can_read,
    can_read_group,
    require_project_admin,
    require_read,
    user_tiers,
)
from ..constants import ITEM_FIELD, AssessmentStatus
from ..models import exchange, scans
from ..models.project import Project, load_root, register_scans, root_of

MAX_IMPORT_BYTES = exchange.MAX_IMPORT_BYTES  # the import's size limit (HTTP 413 above)


def load_project(id: str, user: dict | None) -> dict:
    """The project with this (folder or collection) id, if the user can read its root; else
    400 or 403."""
    try:
        projectId = ObjectId(id)
    except (InvalidId, TypeError):
        raise RestException(f'Invalid project id: {id!r} is not an ObjectId.') from None
    project = Project().load(projectId)
    if project is None:
        raise RestException(f'No MIQA project has the id {id}.')
    require_read(project, user)
    return project


def _group(groupId, user: dict | None = None) -> dict | None:
    """A tier group for the UI; its name only for viewers who can read the group."""
    group = Group().load(groupId, force=True) if groupId else None
    if not group:
        return None
    readable = can_read_group(group, user)
    return {'_id': group['_id'], 'name': group['name'] if readable else None}


def project_json(project: dict, user: dict | None, counts: bool = True) -> dict:
    """A project for the UI: settings, root (folder or collection) name and path, counts, the
    user's tiers. ``folder`` describes the root whatever its type; ``folderId`` is null for a
    collection project."""
    rootType, rootId = root_of(project)
    root = load_root(project)
    try:
        rootPath = path_util.getResourcePath(rootType, root, force=True) if root else None
    except Exception:
        rootPath = None
    out = {
        '_id': project['_id'], 'rootType': rootType, 'rootId': rootId,
        'folderId': project.get('folderId'), 'name': project['name'],
        'created': project.get('created'), 'creatorId': project.get('creatorId'),
        'settings': project['settings'],
        'folder': {'_id': rootId, 'type': rootType, 'name': root['name'] if root else None,
                   'path': rootPath},
        'tier1Group': _group(project['settings'].get('tier1GroupId'), user),
        'tier2Group': _group(project['settings'].get('tier2GroupId'), user),
        'myTiers': user_tiers(project, user),
        'canAdmin': can_admin(project, user),
    }
    if counts:
        out['counts'] = scans.state_counts(project, user)
    return out


class MiqaResource(Resource):
    """The ``/miqa`` API root."""

    def __init__(self):
        super().__init__()
        self.resourceName = 'miqa'
        self.route('GET', ('me',), self.getMe)
        self.route('POST', ('project',), self.createProject)
        self.route('GET', ('project',), self.listProjects)
        self.route('GET', ('project', ':id'), self.getProject)
        self.route('GET', ('project', ':id', 'settings'), self.getSettings)
        self.route('PUT', ('project', ':id', 'settings'), self.putSettings)
        self.route('GET', ('project', ':id', 'summary'), self.getSummary)
        self.route('GET', ('project', ':id', 'queue'), self.getQueue)
        self.route('GET', ('project', ':id', 'export'), self.export)
        self.route('POST', ('project', ':id', 'import'), self.importScans)
        self.route('POST', ('project', ':id', 'assess'), self.assess)
        self.route('POST', ('project', ':id', 'register'), self.registerScans)

    @access.public
    @autoDescribeRoute(
        Description('The current user and their tiers in each MIQA project they can read.')
        .notes('Returns {"user": {_id, login, name, admin} | null, "projects": [{_id, name, '
               'myTiers, canAdmin}]}.')
    )
    def getMe(self):
        user = self.getCurrentUser()
        projects = []
        for project in Project().find({}, sort=[('name', 1)]):
            if can_read(project, user):
                projects.append({'_id': project['_id'], 'name': project['name'],
                                 'myTiers': user_tiers(project, user),
                                 'canAdmin': can_admin(project, user)})
        return {
            'user': {'_id': user['_id'], 'login': user['login'], 'admin': user['admin'],
                     'name': f'{user["firstName"]} {user["lastName"]}'} if user else None,
            'projects': projects,
        }

    @access.admin
    @autoDescribeRoute(
        Description('Enable a folder or a collection for MIQA review (admins).')
        .notes('Give exactly one of folderId and collectionId. settings (all optional): '
               'tier1GroupId, tier2GroupId (group ids), artifacts ([{key, label}], default the '
               'model\'s ten), autoAssess (bool, default true), model (name). Image items '
               'already under the folder (or in any folder of the collection) become scans. The '
               'project is identified by its folder\'s or collection\'s id; a project nested '
               'inside another keeps the scans below it.')
        .param('folderId', 'The folder to enable.', required=False, paramType='formData')
        .param('collectionId', 'The collection to enable.', required=False,
               paramType='formData')
        .jsonParam('settings', 'Project settings', required=False, requireObject=True)
        .errorResponse('Neither or both of folderId and collectionId; an unknown id; the folder '
                       'or collection is already a project; or a setting is invalid.', 400)
    )
    def createProject(self, folderId, collectionId, settings):
        user = self.getCurrentUser()
        if bool(folderId) == bool(collectionId):
            raise RestException('Give exactly one of folderId and collectionId.')
        rootType, rootId = ('folder', folderId) if folderId else ('collection', collectionId)
        model = Folder if rootType == 'folder' else Collection
        try:
            root = model().load(ObjectId(rootId), user=user, level=AccessType.ADMIN)
        except (InvalidId, TypeError):
            raise RestException(f'Invalid {rootType}Id: {rootId!r} is not an ObjectId.') from None
        if root is None:
            raise RestException(f'No {rootType} has the id {rootId}.')
        project = Project().createProject(root, user, settings, rootType=rootType)
        register_scans(project)
        return project_json(Project().load(project['_id']), user)

    @access.public
    @autoDescribeRoute(
        Description('List the MIQA projects the user can read, with counts and their tiers.'))
    def listProjects(self):
        user = self.getCurrentUser()
        out = []
        for project in Project().find({}, sort=[('name', 1)]):
            if can_read(project, user):
                out.append(project_json(project, user))
        return out

    @access.public
    @autoDescribeRoute(
        Description('Get a MIQA project: settings, folder, counts and the user\'s tiers.')
        .param('id', 'The project (= its folder\'s or collection\'s) id.', paramType='path')
        .errorResponse('Invalid or unknown project id.', 400)
        .errorResponse('No read access to the project folder.', 403)
    )
    def getProject(self, id):
        user = self.getCurrentUser()
        return project_json(load_project(id, user), user)

    @access.public
    @autoDescribeRoute(
        Description('Get a MIQA project\'s settings.')
        .param('id', 'The project (= its folder\'s or collection\'s) id.', paramType='path')
        .errorResponse('Invalid or unknown project id.', 400)
    )
    def getSettings(self, id):
        return load_project(id, self.getCurrentUser())['settings']

    @access.user
    @autoDescribeRoute(
        Description('Change a MIQA project\'s settings (admins and the project\'s owners).')
        .notes('The body is a JSON object with any of tier1GroupId, tier2GroupId, artifacts, '
               'autoAssess, model; settings left out keep their values. Returns the settings.')
        .param('id', 'The project (= its folder\'s or collection\'s) id.', paramType='path')
        .jsonParam('settings', 'The settings to change.', paramType='body', requireObject=True)
        .errorResponse('Invalid setting.', 400)
        .errorResponse('Not an admin or owner of the project.', 403)
    )
    def putSettings(self, id, settings):
        user = self.getCurrentUser()
        project = load_project(id, user)
        require_project_admin(project, user)
        return Project().updateSettings(project, settings, user)['settings']

    @access.public
    @autoDescribeRoute(
        Description('Progress of a project: counts per state, reviewer and artifact, and the '
                    'agreement between tier-1 decisions and the model.')
        .notes('Counts cover only the scans the user can read (image items not registered yet '
               'are not counted: see POST /miqa/project/{id}/register). Agreement: the model '
               'calls a scan suspicious when its quality < 5 or any trained indicator > 0.5 '
               '(the miqa.suspicion_thresholds setting); tier 1 when it marks it questionable; '
               'reported as a 2x2 table, percent agreement and Cohen\'s kappa.')
        .param('id', 'The project (= its folder\'s or collection\'s) id.', paramType='path')
        .errorResponse('Invalid or unknown project id.', 400)
    )
    def getSummary(self, id):
        user = self.getCurrentUser()
        return scans.summary(load_project(id, user), user)

    @access.public
    @autoDescribeRoute(
        Description('A page of a review queue.')
        .notes('tier=1: unreviewed scans; tier=2: questionable scans. Most suspicious first by '
               'the automatic assessment (lowest predicted quality, then highest probability '
               'of a trained indicator; untrained outputs never count), then scans not yet '
               'assessed, oldest first; scans outside the model\'s domain form a band of their '
               'own where the project\'s outOfScope setting says (first, last: after the not '
               'yet assessed, or mixed in). Returns {"items": '
               '[{_id, name, folderId, folderPath, path, created, size, miqa}], "total", '
               '"offset", "limit", "tier", "state"}; only scans the user can read.')
        .param('id', 'The project (= its folder\'s or collection\'s) id.', paramType='path')
        .param('tier', 'The queue: 1 or 2.', dataType='integer', enum=[1, 2], default=1,
               required=False)
        .param('limit', 'Page size (1-1000).', dataType='integer', default=50, required=False)
        .param('offset', 'Scans to skip.', dataType='integer', default=0, required=False)
        .errorResponse('Invalid project id, tier, limit or offset.', 400)
    )
    def getQueue(self, id, tier, limit, offset):
        if not 1 <= limit <= 1000:
            raise RestException('limit must be from 1 to 1000.')
        if offset < 0:
            raise RestException('offset must not be negative.')
        user = self.getCurrentUser()
        project = load_project(id, user)
        return scans.queue(project, user, tier, limit, offset)

    @access.public(cookie=True)
    @autoDescribeRoute(
        Description('Export every scan of a project the user can read, as CSV or JSON.')
        .notes(exchange.EXPORT_NOTES)
        .param('id', 'The project (= its folder\'s or collection\'s) id.', paramType='path')
        .param('format', 'csv or json', enum=['csv', 'json'], default='csv', required=False)
        .errorResponse('Invalid project id or format.', 400)
    )
    def export(self, id, format):
        user = self.getCurrentUser()
        project = load_project(id, user)
        safe = re.sub(r'[^A-Za-z0-9._-]+', '_', project['name']).strip('_') or 'project'
        name = f'miqa-{safe}.{format}'
        setResponseHeader('Content-Disposition', f'attachment; filename="{name}"')
        if format == 'json':
            setResponseHeader('Content-Type', 'application/json')
            body = exchange.export_json(project, user)
        else:
            setResponseHeader('Content-Type', 'text/csv; charset=utf-8')
            body = exchange.export_csv(project, user)

        def stream():
            yield body.encode('utf8')
        return stream

    @access.user
    @autoDescribeRoute(
        Description('Import scans, and optionally earlier decisions, into a project.')
        .notes('Send the file as the request body (Content-Type text/csv or application/json) '
               'or as the field "file" of a multipart form. ' + exchange.IMPORT_NOTES)
        .param('id', 'The project (= its folder\'s or collection\'s) id.', paramType='path')
        .param('format', 'csv or json (default: from the Content-Type, else guessed).',
               enum=['csv', 'json'], required=False)
        .param('assetstoreId', 'The filesystem assetstore for rows with an absolute server '
               'path (default: the current assetstore, if it is a filesystem one).',
               required=False)
        .errorResponse('Invalid project id, format or file.', 400)
        .errorResponse('Not an admin or owner of the project.', 403)
        .errorResponse('The file is larger than the import limit (20 MB).', 413)
    )
    def importScans(self, id, format, assetstoreId):
        user = self.getCurrentUser()
        project = load_project(id, user)
        require_project_admin(project, user)
        limit = exchange.MAX_IMPORT_BYTES
        tooLarge = (f'The import is larger than {limit} bytes ({limit // (1024 * 1024)} MB), '
                    'the most one import may hold; split the file.')
        try:
            declared = int(cherrypy.request.headers.get('Content-Length') or 0)
        except ValueError:
            declared = 0
        if declared > limit + 1024 * 1024:  # a multipart form's own headers are allowed for
            raise RestException(tooLarge, code=413)
        part = cherrypy.request.params.get('file')
        if hasattr(part, 'file'):  # a multipart form upload (field "file")
            body = part.file.read(limit + 1)
            if not format and (part.filename or '').lower().endswith('.json'):
                format = 'json'
        else:  # the file as the request body
            body = cherrypy.request.body.read(limit + 1)
        if len(body) > limit:
            raise RestException(tooLarge, code=413)
        try:
            text = body.decode('utf-8-sig')
        except UnicodeDecodeError:
            raise RestException('The import must be UTF-8 text (CSV or JSON).') from None
        if not format:
            contentType = cherrypy.request.headers.get('Content-Type', '')
            format = 'json' if 'json' in contentType or text.lstrip()[:1] in ('[', '{') else 'csv'
        return exchange.import_text(project, user, text, format, assetstoreId)

    @access.user
    @autoDescribeRoute(
        Description('Schedule the automatic assessment of every scan not yet assessed by the '
                    'project\'s current model (same name and weights, by sha256).')
        .notes('For admins and the project\'s owners. Registers image items not yet known as '
               'scans first. Scans already queued or running are left alone; force=true only '
               'reschedules those whose job is no longer pending (e.g. a worker died). '
               'Returns counts: {"scans", "scheduled", "alreadyAssessed", "inProgress", '
               '"notScheduled", "registered", "reasons": {reason: count}}.')
        .param('id', 'The project (= its folder\'s or collection\'s) id.', paramType='path')
        .param('force', 'Also schedule scans whose assessment is queued or running.',
               dataType='boolean', default=False, required=False)
        .errorResponse('Not an admin or owner of the project.', 403)
    )
    def assess(self, id, force):
        user = self.getCurrentUser()
        project = load_project(id, user)
        require_project_admin(project, user)
        registered = register_scans(project)
        current = scheduling.current_model(project['settings'].get('model'))
        counts = {'scans': 0, 'scheduled': 0, 'alreadyAssessed': 0, 'inProgress': 0,
                  'notScheduled': 0, 'registered': registered, 'reasons': {}}
        query = scans.visible_filter(project, user)
        for item in Item().collection.find(query):
            counts['scans'] += 1
            assessment = item[ITEM_FIELD].get('assessment') or {}
            status = assessment.get('status')
            if status == AssessmentStatus.DONE and scheduling.assessed_by(assessment, current):
                counts['alreadyAssessed'] += 1
                continue
            if status in (AssessmentStatus.QUEUED, AssessmentStatus.RUNNING) and not force:
                counts['inProgress'] += 1
                continue
            job = scheduling.request_assessment(item, user, project)
            if job and job.get('alreadyQueued'):  # a pending job of this model: never twice
                counts['inProgress'] += 1
            elif job:
                counts['scheduled'] += 1
            else:
                counts['notScheduled'] += 1
                reason = Item().collection.find_one(
                    {'_id': item['_id']}, {ITEM_FIELD: 1})[ITEM_FIELD]['assessment'].get(
                        'reason') or 'unknown'
                counts['reasons'][reason] = counts['reasons'].get(reason, 0) + 1
        return counts

    @access.user
    @autoDescribeRoute(
        Description('Register the image items under a project that are not yet its scans.')
        .notes('For admins and the project\'s owners. Uploads, moves and copies register scans '
               'as they happen, and so does enabling the project; this covers items that '
               'arrived some other way (e.g. an assetstore import). Returns {"registered": how '
               'many became scans}.')
        .param('id', 'The project (= its folder\'s or collection\'s) id.', paramType='path')
        .errorResponse('Invalid or unknown project id.', 400)
        .errorResponse('Not an admin or owner of the project.', 403)
    )
    def registerScans(self, id):
        user = self.getCurrentUser()
        project = load_project(id, user)
        require_project_admin(project, user)
        return {'registered': register_scans(project)}
