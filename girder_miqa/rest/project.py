"""Endpoints under ``/miqa/project``: enable folders for review and manage them."""

from girder.api import access
from girder.api.describe import Description, autoDescribeRoute
from girder.api.rest import Resource, filtermodel
from girder.constants import AccessType
from girder.models.folder import Folder

from ..models.project import Project


class MiqaResource(Resource):
    """The ``/miqa`` API root."""

    def __init__(self):
        super().__init__()
        self.resourceName = 'miqa'
        self.route('POST', ('project',), self.createProject)
        self.route('GET', ('project',), self.listProjects)

    @access.admin
    @filtermodel(model=Project)
    @autoDescribeRoute(
        Description('Enable a folder for MIQA review (admins).')
        .modelParam('folderId', model=Folder, level=AccessType.ADMIN, paramType='formData')
        .jsonParam('settings', 'Project settings', required=False, requireObject=True)
    )
    def createProject(self, folder, settings):
        return Project().createProject(folder, self.getCurrentUser(), settings)

    @access.public
    @filtermodel(model=Project)
    @autoDescribeRoute(Description('List MIQA projects the user can read.'))
    def listProjects(self):
        user = self.getCurrentUser()
        out = []
        for project in Project().find({}, sort=[('name', 1)]):
            folder = Folder().load(project['folderId'], user=user, level=AccessType.READ,
                                   exc=False)
            if folder:
                out.append(project)
        return out
