"""Endpoints under ``/miqa/project/{id}``: the reference protocols and protocol compliance
(issue #22; :mod:`girder_miqa.models.protocol`)."""

import cherrypy
from girder.api import access
from girder.api.describe import Description, autoDescribeRoute
from girder.api.rest import boundHandler, getCurrentUser
from girder.exceptions import RestException, ValidationException

from ..access import require_project_admin
from ..models import protocol, triage
from ..models.scans import visible_filter
from .project import load_project

MAX_BODY_BYTES = 1024 * 1024


def _refresh(project: dict, scan_type: str, site: str | None) -> None:
    """Recompute the triage (reasons, queue order) of the groups a reference change touches."""
    for group_site, kind in protocol.groups_of(project, scan_type, site):
        triage.refresh_group(project, group_site, kind)


@access.public
@boundHandler
@autoDescribeRoute(
    Description('The reference protocols in force in a project (project readers).')
    .notes('A list of references {_id, scanType, site (null: all sites), reference: "set" | '
           '"inferred", parameters: {Key: {value, tolerance, severity}}, scans}: every set '
           'reference, and the inferred one of each site and scan type without one (the most '
           'common value per parameter among the site\'s scans of that type, the project\'s '
           f'when the site has fewer than {protocol.MIN_SITE_SCANS}; basis says which).')
    .param('id', 'The project (= its folder\'s or collection\'s) id.', paramType='path')
    .errorResponse('Invalid project id.', 400)
    .errorResponse('No read access to the project.', 403)
)
def getProtocol(self, id):
    project = load_project(id, getCurrentUser())
    return protocol.in_force(project)


@access.user
@boundHandler
@autoDescribeRoute(
    Description('Set reference protocols of a project (project admins).')
    .notes('The body: a JSON list of {scanType, site (null or absent: all sites), parameters: '
           '{Key: {value, tolerance (absolute, numbers only; null: equal), severity: warning '
           '| exclude}}}, or CSV with the columns scanType, site, parameter, value, tolerance, '
           'severity (one row per parameter; an empty site is all sites). Each reference '
           'replaces the one of its scan type and site. The groups touched get their triage '
           'recomputed. Returns the references in force.')
    .param('id', 'The project (= its folder\'s or collection\'s) id.', paramType='path')
    .param('format', 'json or csv (default: from the Content-Type, else guessed).',
           enum=['csv', 'json'], required=False)
    .errorResponse('Invalid project id or reference (the message names the row and field).',
                   400)
    .errorResponse('Not an admin of the project.', 403)
)
def putProtocol(self, id, format):
    user = getCurrentUser()
    project = load_project(id, user)
    require_project_admin(project, user)
    body = cherrypy.request.body.read(MAX_BODY_BYTES + 1)
    if len(body) > MAX_BODY_BYTES:
        raise RestException(f'The references are larger than {MAX_BODY_BYTES} bytes.', 413)
    try:
        text = body.decode('utf-8-sig')
    except UnicodeDecodeError:
        raise RestException('The references must be UTF-8 text (JSON or CSV).') from None
    if not format:
        contentType = cherrypy.request.headers.get('Content-Type', '')
        format = 'json' if 'json' in contentType or text.lstrip()[:1] in ('[', '{') else 'csv'
    try:
        references = protocol.parse_references(text, format)
    except ValidationException as exc:
        raise RestException(str(exc)) from None
    for ref in references:
        protocol.Protocol().set_reference(project, user, ref['scanType'], ref['site'],
                                          ref['parameters'])
    for ref in references:
        _refresh(project, ref['scanType'], ref['site'])
    return protocol.in_force(project)


@access.user
@boundHandler
@autoDescribeRoute(
    Description('Remove one set reference protocol (project admins): its groups go back to '
                'the inferred reference.')
    .param('id', 'The project (= its folder\'s or collection\'s) id.', paramType='path')
    .param('scanType', 'The reference\'s scan type.')
    .param('site', 'The reference\'s site (absent: the all-sites reference).', required=False)
    .errorResponse('Invalid project id, or no such set reference.', 400)
    .errorResponse('Not an admin of the project.', 403)
)
def deleteProtocol(self, id, scanType, site):
    user = getCurrentUser()
    project = load_project(id, user)
    require_project_admin(project, user)
    site = site.strip() if site and site.strip() not in ('', '*') else None
    if not protocol.Protocol().remove_reference(project, scanType, site):
        raise RestException(f'No set reference of scan type {scanType!r} for '
                            f'{"site " + repr(site) if site else "all sites"}.')
    _refresh(project, scanType, site)
    return protocol.in_force(project)


@access.public
@boundHandler
@autoDescribeRoute(
    Description('Protocol compliance per site and scan type (project readers).')
    .notes('{sites: {site: {scanType: {scans, compliant, reference: "set" | "inferred", '
           'parameters: {Key: percent of the scans within the reference}}}}, '
           'minimumSiteScans}, over the assessed scans the user can read.')
    .param('id', 'The project (= its folder\'s or collection\'s) id.', paramType='path')
    .errorResponse('Invalid project id.', 400)
    .errorResponse('No read access to the project.', 403)
)
def getCompliance(self, id):
    user = getCurrentUser()
    project = load_project(id, user)
    return protocol.compliance(project, user, visible_filter(project, user))


def register(miqaResource) -> None:
    """Add the protocol and compliance routes to the ``/miqa`` resource."""
    miqaResource.route('GET', ('project', ':id', 'protocol'), getProtocol)
    miqaResource.route('PUT', ('project', ':id', 'protocol'), putProtocol)
    miqaResource.route('DELETE', ('project', ':id', 'protocol'), deleteProtocol)
    miqaResource.route('GET', ('project', ':id', 'compliance'), getCompliance)
