"""Fixtures of the review tests: a study folder enabled as a project, tier groups and users."""

import json

import pytest
from pytest_girder.assertions import assertStatusOk


def _user(login: str, admin: bool = False) -> dict:
    from girder.models.user import User

    return User().createUser(login=login, password='password', firstName=login.title(),
                             lastName='Tester', email=f'{login}@miqa.test', admin=admin)


class Study:
    """What a review test needs: users, groups, the project folder and the project JSON."""

    def __init__(self, server, admin):
        from girder.constants import AccessType
        from girder.models.collection import Collection
        from girder.models.folder import Folder
        from girder.models.group import Group

        self.server = server
        self.admin = admin
        self.tier1 = _user('tierone')
        self.tier2 = _user('tiertwo')
        self.outsider = _user('outsider')
        self.owner = _user('owner')
        self.group1 = Group().createGroup('Tier 1', admin)
        self.group2 = Group().createGroup('Tier 2', admin)
        Group().addUser(self.group1, self.tier1)
        Group().addUser(self.group2, self.tier2)
        self.collection = Collection().createCollection('Study', creator=admin, public=False)
        self.folder = Folder().createFolder(self.collection, 'mri', parentType='collection',
                                            creator=admin, public=False)
        for group in (self.group1, self.group2):
            Folder().setGroupAccess(self.folder, group, AccessType.READ, save=False)
        Folder().setUserAccess(self.folder, self.outsider, AccessType.READ, save=False)
        Folder().setUserAccess(self.folder, self.owner, AccessType.ADMIN, save=False)
        self.folder = Folder().save(self.folder)
        self.project = self.enable(folderId=self.folder['_id'])
        self.id = self.project['_id']

    def enable(self, **root) -> dict:
        """Enable a folder or collection (``folderId=`` / ``collectionId=``) as a project with
        this study's tier groups and auto-assessment off; returns the project JSON."""
        resp = self.server.request('/miqa/project', method='POST', user=self.admin, params={
            **{key: str(value) for key, value in root.items()},
            'settings': json.dumps({'tier1GroupId': str(self.group1['_id']),
                                    'tier2GroupId': str(self.group2['_id']),
                                    'autoAssess': False})})
        assertStatusOk(resp)
        return resp.json

    def subfolder(self, name: str, parent: dict | None = None) -> dict:
        """A session sub-folder (inherits the project folder's access)."""
        from girder.models.folder import Folder

        return Folder().createFolder(parent or self.folder, name, creator=self.admin,
                                     reuseExisting=True)


@pytest.fixture
def study(server, admin, fsAssetstore):
    return Study(server, admin)


@pytest.fixture
def bound_study(boundServer, admin, fsAssetstore):
    """The same study on a server listening on a port (for real HTTP clients)."""
    study = Study(boundServer, admin)
    study.url = f'http://127.0.0.1:{boundServer.boundPort}/api/v1'
    return study
