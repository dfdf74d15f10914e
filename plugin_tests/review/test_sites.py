"""Sites and scan types (issue #22): the folder ``siteLevel`` levels below the project root, and
the contrast of the assessment (else the acquisition's series description)."""

import json

import pytest
from bson import ObjectId
from pytest_girder.assertions import assertStatus, assertStatusOk

from .util import make_scan

pytestmark = pytest.mark.plugin('miqa')


def put_settings(s, settings, status=200):
    resp = s.server.request(f'/miqa/project/{s.id}/settings', method='PUT', user=s.owner,
                            body=json.dumps(settings), type='application/json')
    assertStatus(resp, status)
    return resp.json


def test_site_is_the_folder_site_level_below_the_root(study):
    from girder_miqa.models.project import Project as MiqaProject
    from girder_miqa.models.sites import folder_path, site_of

    s = study
    subject = s.subfolder('subject-1', s.subfolder('site-a'))
    deep = make_scan(subject, 'a.nii.gz', s.admin)
    shallow = make_scan(s.folder, 'b.nii.gz', s.admin, seed=1)
    project = MiqaProject().load(ObjectId(s.id))
    assert folder_path(deep, project) == ['mri', 'site-a', 'subject-1']
    assert project['settings']['siteLevel'] == 1
    assert site_of(deep, project) == 'site-a'
    assert site_of(shallow, project) == 'mri'  # too shallow: its deepest folder, the root
    for level, expected in ((0, 'mri'), (2, 'subject-1'), (5, 'subject-1')):
        assert put_settings(s, {'siteLevel': level})['siteLevel'] == level
        project = MiqaProject().load(ObjectId(s.id))
        assert site_of(deep, project) == expected
    assert site_of(deep, project, folder_path=['root', 'x', 'y', 'z']) == 'z'


def test_collection_project_sites_start_below_the_collection(study):
    from girder.models.collection import Collection
    from girder.models.folder import Folder

    from girder_miqa.models.project import Project
    from girder_miqa.models.sites import folder_path, site_of

    s = study
    collection = Collection().createCollection('Multi', creator=s.admin, public=False)
    site = Folder().createFolder(collection, 'site-b', parentType='collection', creator=s.admin)
    item = make_scan(Folder().createFolder(site, 'sub', creator=s.admin), 'c.nii.gz', s.admin)
    pid = s.enable(collectionId=collection['_id'])['_id']
    project = Project().load(ObjectId(pid))
    assert folder_path(item, project) == ['Multi', 'site-b', 'sub']
    assert site_of(item, project) == 'site-b'


@pytest.mark.parametrize('value', [-1, 33, 1.5, 'one', True, None])
def test_bad_site_levels_are_refused(study, value):
    s = study
    resp = s.server.request(f'/miqa/project/{s.id}/settings', method='PUT', user=s.owner,
                            body=json.dumps({'siteLevel': value}), type='application/json')
    assertStatus(resp, 400)
    assert 'siteLevel must be an integer from 0' in resp.json['message']
    resp = s.server.request(f'/miqa/project/{s.id}/settings', user=s.owner)
    assertStatusOk(resp)
    assert resp.json['siteLevel'] == 1


def test_scan_type_prefers_the_scope_contrast():
    from girder_miqa.models.sites import scan_type

    def state(scope=None, description=None):
        assessment = {}
        if scope is not None:
            assessment['scope'] = {'in_scope': True, 'contrast': scope}
        if description is not None:
            assessment['acquisition'] = {'parameters': {'SeriesDescription': description}}
        return {'assessment': assessment}

    assert scan_type(state('T1w', 'MPRAGE')) == 'T1w'
    assert scan_type(state('unknown', 'MPRAGE')) == 'MPRAGE'
    assert scan_type(state(None, 'T2 FLAIR')) == 'T2 FLAIR'
    assert scan_type(state()) == 'unknown'
    assert scan_type({}) == 'unknown'
    assert scan_type({'miqa': state('T2w')}) == 'T2w'  # the item itself
