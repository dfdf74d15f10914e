"""``GET /miqa/project/{id}/report``: the group report of a project (models/report.py)."""

import re

from girder.api import access
from girder.api.describe import Description, autoDescribeRoute
from girder.api.rest import getCurrentUser, setResponseHeader

from ..models import report
from .project import load_project


@access.public(cookie=True)
@autoDescribeRoute(
    Description('The group report of a project: each metric by site, compliance, reasons.')
    .notes('Over the assessed scans the user can read. JSON: {"metrics": {name: [{itemId, '
           'name, site, scanType, value, z, outlier}]} (the metrics with a known good '
           'direction), "compliance": the per-site compliance table, "reasons": {site: [{text, '
           'source, count}]} (most often seen first), "sites", "scans", "directions"}. CSV: one '
           'row per scan (site, scanType, triage, outliers, reasons and each metric\'s value), '
           'as a download. Computed on request; nothing is stored.')
    .param('id', 'The project (= its folder\'s or collection\'s) id.', paramType='path')
    .param('format', 'json or csv', enum=['json', 'csv'], default='json', required=False)
    .errorResponse('Invalid project id or format.', 400)
    .errorResponse('Read access was denied on the project.', 403)
)
def getReport(id, format):
    user = getCurrentUser()
    project = load_project(id, user)
    if format == 'json':
        return report.report(project, user)
    safe = re.sub(r'[^A-Za-z0-9._-]+', '_', project['name']).strip('_') or 'project'
    setResponseHeader('Content-Type', 'text/csv; charset=utf-8')
    setResponseHeader('Content-Disposition', f'attachment; filename="miqa-report-{safe}.csv"')
    body = report.report_csv(project, user)

    def stream():
        yield body.encode('utf8')
    return stream


def register(miqaResource) -> None:
    """Add ``GET /miqa/project/{id}/report`` to the ``/miqa`` resource."""
    miqaResource.route('GET', ('project', ':id', 'report'), getReport)
