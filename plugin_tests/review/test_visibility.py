"""Export and summary show only what the user can read at that moment, whatever was cached."""

import pytest
from pytest_girder.assertions import assertStatusOk

from .util import decide, make_scan

pytestmark = pytest.mark.plugin('miqa')


def _export_names(s, user) -> set:
    resp = s.server.request(f'/miqa/project/{s.id}/export', user=user,
                            params={'format': 'json'})
    assertStatusOk(resp)
    return {scan['name'] for scan in resp.json['scans']}


def _export_csv(s, user) -> str:
    resp = s.server.request(f'/miqa/project/{s.id}/export', user=user,
                            params={'format': 'csv'}, isJson=False)
    assertStatusOk(resp)
    return resp.collapse_body().decode()


def _summary(s, user) -> dict:
    resp = s.server.request(f'/miqa/project/{s.id}/summary', user=user)
    assertStatusOk(resp)
    return resp.json


def _reviewer(summary: dict, login: str) -> dict | None:
    return next((r for r in summary['reviewers'] if r['login'] == login), None)


def _prime(s, user) -> None:
    """Fill every cache the export, summary and queue may keep for this user."""
    _export_names(s, user)
    _summary(s, user)
    assertStatusOk(s.server.request(f'/miqa/project/{s.id}/queue', user=user,
                                    params={'tier': 1}))


def test_revoked_folder_access_hides_scan_at_once(study):
    from girder.models.folder import Folder

    s = study
    private = s.subfolder('sub-private')
    item = make_scan(private, 'secret.nii.gz', s.admin)
    make_scan(s.subfolder('sub-open'), 'open.nii.gz', s.admin, seed=1)
    assertStatusOk(decide(s.server, item, s.tier2, 'bad', comment='SECRET COMMENT',
                          seconds=40))
    _prime(s, s.tier1)
    assert _export_names(s, s.tier1) == {'secret.nii.gz', 'open.nii.gz'}
    assert _reviewer(_summary(s, s.tier1), 'tiertwo')['decisions'] == 1

    private = Folder().load(private['_id'], force=True)
    Folder().setGroupAccess(private, s.group1, None, save=True)

    assert _export_names(s, s.tier1) == {'open.nii.gz'}
    assert 'SECRET COMMENT' not in _export_csv(s, s.tier1)
    summary = _summary(s, s.tier1)
    assert summary['counts']['total'] == 1
    assert summary['counts']['bad'] == 0
    assert sum(a['present'] + a['absent'] for a in summary['artifacts']) == 0
    assert _reviewer(summary, 'tiertwo') is None  # its work on the hidden scan is hidden too
    # those who can still read it still see it
    assert _export_names(s, s.tier2) == {'secret.nii.gz', 'open.nii.gz'}
    assert _reviewer(_summary(s, s.tier2), 'tiertwo')['decisions'] == 1


def test_move_into_unreadable_folder_within_project_hides_scan_at_once(study):
    from girder.models.folder import Folder
    from girder.models.item import Item

    s = study
    restricted = s.subfolder('restricted')
    Folder().setGroupAccess(restricted, s.group1, None, save=True)
    item = make_scan(s.subfolder('sub-01'), 'moved.nii.gz', s.admin)
    assertStatusOk(decide(s.server, item, s.tier1, 'questionable', seconds=12,
                          comment='look at the frontal lobe'))
    _prime(s, s.tier1)
    assert _export_names(s, s.tier1) == {'moved.nii.gz'}
    before = _reviewer(_summary(s, s.tier1), 'tierone')
    assert before['decisions'] == 1 and before['seconds'] == 12

    Item().move(Item().load(item['_id'], force=True), restricted)

    assert _export_names(s, s.tier1) == set()
    assert 'frontal lobe' not in _export_csv(s, s.tier1)
    summary = _summary(s, s.tier1)
    assert summary['counts']['total'] == 0
    assert _reviewer(summary, 'tierone') is None  # its seconds and counts left with the scan
    assert _reviewer(_summary(s, s.admin), 'tierone')['decisions'] == 1


def test_scan_moved_out_of_project_leaves_reviewer_totals(study):
    from girder.models.folder import Folder
    from girder.models.item import Item

    s = study
    item = make_scan(s.subfolder('sub-01'), 'leaving.nii.gz', s.admin)
    assertStatusOk(decide(s.server, item, s.tier1, 'good', seconds=5))
    _prime(s, s.tier1)
    elsewhere = Folder().createFolder(s.collection, 'elsewhere', parentType='collection',
                                      creator=s.admin, public=False)
    Item().move(Item().load(item['_id'], force=True), elsewhere)
    summary = _summary(s, s.tier1)
    assert summary['counts']['total'] == 0
    assert _reviewer(summary, 'tierone') is None
