"""Copies are new scans, a new image file restarts the review, moves between projects restart it.

The record is the truth: a decision is about the file its reviewer saw, in the project it was
made in; a copy has no decisions of its own.
"""

import csv
import io
import json

import pytest
from pytest_girder.assertions import assertStatus, assertStatusOk

from .test_roots_and_moves import exact_counts
from .util import decide, make_scan, nifti_bytes, state

pytestmark = pytest.mark.plugin('miqa')


def export_ids(s, projectId) -> list[str]:
    """The item ids a project's CSV export lists."""
    resp = s.server.request(f'/miqa/project/{projectId}/export', user=s.admin, isJson=False)
    assertStatusOk(resp)
    return [r['item_id'] if 'item_id' in r else r.get('itemId') for r in
            csv.DictReader(io.StringIO(resp.collapse_body().decode()))]


def counts_match_export(s, projectId) -> dict:
    counts = exact_counts(projectId)
    summary = s.server.request(f'/miqa/project/{projectId}/summary', user=s.admin).json
    assert summary['counts']['total'] == sum(counts.values())
    exported = json.loads(s.server.request(
        f'/miqa/project/{projectId}/export', user=s.admin, params={'format': 'json'},
        isJson=False).collapse_body().decode())
    byState = dict.fromkeys(counts, 0)
    for scan in exported['scans']:
        byState[scan['state']] += 1
    assert byState == counts
    return counts


class Copies:
    """A reviewed, locked scan in the study project, a writer, another project, a home folder."""

    def __init__(self, study):
        from girder.constants import AccessType
        from girder.models.collection import Collection
        from girder.models.folder import Folder
        from girder.models.user import User

        s = self.s = study
        self.writer = User().createUser(login='writer', password='password', firstName='W',
                                        lastName='Riter', email='writer@miqa.test')
        Folder().setUserAccess(s.folder, self.writer, AccessType.WRITE, save=True)
        self.session = s.subfolder('sub-01')
        self.scan = make_scan(self.session, 'scan.nii.gz', s.admin)
        assertStatusOk(decide(s.server, self.scan, s.tier1, 'questionable', comment='ring?'))
        assertStatusOk(decide(s.server, self.scan, s.tier2, 'bad', comment='ringing'))
        assertStatusOk(s.server.request(f'/item/{self.scan["_id"]}/miqa/lock', method='POST',
                                        user=s.tier2))
        other = Collection().createCollection('Other', creator=s.admin, public=False)
        self.otherFolder = Folder().createFolder(other, 'mri', parentType='collection',
                                                 creator=s.admin)
        for group in (s.group1, s.group2):
            Folder().setGroupAccess(self.otherFolder, group, AccessType.READ, save=True)
        Folder().setUserAccess(self.otherFolder, self.writer, AccessType.WRITE, save=True)
        self.other = s.enable(folderId=self.otherFolder['_id'])
        self.home = Folder().createFolder(self.writer, 'home', parentType='user',
                                          creator=self.writer)

    def copy_item(self, folder) -> dict:
        resp = self.s.server.request(f'/item/{self.scan["_id"]}/copy', method='POST',
                                     user=self.writer, params={'folderId': str(folder['_id'])})
        assertStatusOk(resp)
        return resp.json


@pytest.fixture
def copies(study):
    return Copies(study)


def assert_fresh_scan(s, item, projectId):
    from girder.models.item import Item

    st = Item().load(item['_id'], force=True)['miqa']
    assert st['projectId'] == projectId
    assert st['state'] == 'unreviewed'
    assert (st['decisionCount'], st['latestDecision'], st['tier1'], st['lock']) == (
        0, None, None, None)
    assert s.server.request(f'/item/{item["_id"]}/miqa/history', user=s.admin).json == []
    return st


def assert_no_scan(s, item):
    from girder.models.item import Item

    stored = Item().load(item['_id'], force=True)
    assert 'miqa' not in stored and 'miqaDetached' not in stored
    assertStatus(decide(s.server, item, s.admin, 'good'), 400)


def test_item_copy_is_a_new_unreviewed_scan(copies):
    from girder.models.folder import Folder

    c, s = copies, copies.s
    before = counts_match_export(s, s.id)
    original = state(c.scan)

    # into the same project (another session folder)
    same = c.copy_item(s.subfolder('sub-02'))
    assert_fresh_scan(s, same, s.folder['_id'])
    assert counts_match_export(s, s.id) == {**before, 'unreviewed': before['unreviewed'] + 1}
    assertStatusOk(decide(s.server, same, s.tier1, 'good'))  # reviewed on its own
    assert state(same)['decisionCount'] == 1
    assert state(c.scan)['decisionCount'] == original['decisionCount'] == 2
    assert state(c.scan)['lock'] is not None  # the original keeps its lock

    # into another project: a scan of that project, not of the original's
    other = c.copy_item(c.otherFolder)
    assert_fresh_scan(s, other, c.otherFolder['_id'])
    assert counts_match_export(s, c.other['_id'])['unreviewed'] == 1
    assert str(other['_id']) not in export_ids(s, s.id)

    # outside every project: no scan at all
    outside = c.copy_item(c.home)
    assert_no_scan(s, outside)
    assert str(outside['_id']) not in export_ids(s, s.id)
    counts_match_export(s, s.id)

    # a copy of a detached scan (moved out of every project) is not a scan either, anywhere
    assertStatusOk(s.server.request(f'/item/{c.scan["_id"]}', method='PUT', user=s.admin,
                                    params={'folderId': str(c.home['_id'])}))
    again = c.copy_item(Folder().load(c.home['_id'], force=True))
    assert_no_scan(s, again)
    counts_match_export(s, s.id)


def test_folder_copy_registers_fresh_scans(copies):
    c, s = copies, copies.s
    fresh = make_scan(c.session, 'fresh.nii.gz', s.admin, seed=4)
    before = counts_match_export(s, s.id)

    def copy_folder(parent, parentType='folder', name=None):
        # what POST /folder/{id}/copy runs in Girder's local worker (absent in tests)
        from girder.models.folder import Folder
        from girder.models.item import Item

        copied = Folder().copyFolder(c.session, parent=parent, name=name or 'copied',
                                     parentType=parentType, creator=c.writer)
        return {i['name']: i for i in Item().find({'folderId': copied['_id']})}

    inside = copy_folder(s.folder)
    assert set(inside) == {'scan.nii.gz', 'fresh.nii.gz'}
    for item in inside.values():
        assert_fresh_scan(s, item, s.folder['_id'])
    assert counts_match_export(s, s.id) == {**before, 'unreviewed': before['unreviewed'] + 2}

    into_other = copy_folder(c.otherFolder)
    for item in into_other.values():
        assert_fresh_scan(s, item, c.otherFolder['_id'])
    assert counts_match_export(s, c.other['_id'])['unreviewed'] == 2

    outside = copy_folder(c.home, 'folder')
    for item in outside.values():
        assert_no_scan(s, item)
    counts_match_export(s, s.id)
    assert state(fresh)['state'] == 'unreviewed' and state(c.scan)['state'] == 'bad'


def test_copy_into_an_auto_assessing_project_is_assessed(copies, purged_broker):
    c, s = copies, copies.s
    resp = s.server.request(f'/miqa/project/{c.other["_id"]}/settings', method='PUT',
                            user=s.admin, body=json.dumps({'autoAssess': True}),
                            type='application/json')
    assertStatusOk(resp)
    copy = c.copy_item(c.otherFolder)
    st = assert_fresh_scan(s, copy, c.otherFolder['_id'])
    assert st['assessment']['status'] == 'queued'
    assert st['assessment']['jobId'] is not None
    assert st['assessment']['jobId'] != (state(c.scan)['assessment'] or {}).get('jobId')


# ---- 2: the image file changes ------------------------------------------------------------


def upload_into(s, item, user, seed, name='scan.nii.gz'):
    from girder.models.upload import Upload

    data = nifti_bytes(seed)
    return Upload().uploadFromFile(io.BytesIO(data), len(data), name, parentType='item',
                                   parent=item, user=user)


def reviewed(s, folder, name='judged.nii.gz'):
    scan = make_scan(folder, name, s.admin, seed=11)
    assertStatusOk(decide(s.server, scan, s.tier1, 'questionable', comment='hmm'))
    assertStatusOk(decide(s.server, scan, s.tier2, 'bad', comment='motion'))
    return scan


def assert_restarted(s, scan, file, superseded: int):
    from girder.models.item import Item

    st = Item().load(scan['_id'], force=True)['miqa']
    assert (st['state'], st['decisionCount'], st['latestDecision'], st['tier1']) == (
        'unreviewed', 0, None, None)
    assert st['file']['_id'] == (file['_id'] if file else None) if st.get('file') else file is None
    history = s.server.request(f'/item/{scan["_id"]}/miqa/history', user=s.admin).json
    assert len(history) == superseded and all(h['superseded'] for h in history)
    return st


def test_decisions_record_the_file_they_judged(study):
    from girder.models.file import File

    s = study
    scan = make_scan(s.folder, 'a.nii.gz', s.admin)
    file = File().findOne({'itemId': scan['_id']})
    resp = decide(s.server, scan, s.tier1, 'good')
    assertStatusOk(resp)
    d = resp.json['decision']
    assert d['fileId'] == str(file['_id'])
    assert d['file']['sha512'] == file['sha512'] and d['file']['size'] == file['size']


def test_new_image_file_restarts_the_review(study):
    from girder.constants import AccessType
    from girder.models.folder import Folder
    from girder.models.user import User

    s = study
    writer = User().createUser(login='writer2', password='password', firstName='W',
                               lastName='R', email='writer2@miqa.test')
    Folder().setUserAccess(s.folder, writer, AccessType.WRITE, save=True)
    scan = reviewed(s, s.folder)
    assert exact_counts(s.id)['bad'] == 1
    old = s.server.request(f'/item/{scan["_id"]}/miqa/history', user=s.admin).json
    assert old[-1]['fileId']

    new = upload_into(s, scan, writer, seed=12)
    st = assert_restarted(s, scan, new, superseded=2)
    assert st['file']['_id'] == new['_id']
    assert exact_counts(s.id) == {'unreviewed': 1, 'questionable': 0, 'good': 0, 'bad': 0}
    counts_match_export(s, s.id)
    # reviewed again, on the new file
    resp = decide(s.server, scan, s.tier1, 'good')
    assertStatusOk(resp)
    assert resp.json['decision']['fileId'] == str(new['_id'])
    history = s.server.request(f'/item/{scan["_id"]}/miqa/history', user=s.admin).json
    assert [h.get('superseded', False) for h in history] == [True, True, False]
    assert state(scan)['decisionCount'] == 1 and exact_counts(s.id)['good'] == 1


def test_replaced_content_and_removed_file_restart_the_review(study):
    from girder.models.file import File
    from girder.models.upload import Upload

    s = study
    scan = reviewed(s, s.folder)
    file = File().findOne({'itemId': scan['_id']})
    data = nifti_bytes(21)
    upload = Upload().createUploadToFile(file, s.admin, len(data))
    Upload().handleChunk(upload, io.BytesIO(data))
    replaced = File().load(file['_id'], force=True)
    assert replaced['sha512'] != file['sha512']
    st = assert_restarted(s, scan, replaced, superseded=2)
    assert st['file']['sha512'] == replaced['sha512']
    assert exact_counts(s.id)['bad'] == 0

    assertStatusOk(decide(s.server, scan, s.tier2, 'good'))
    assert exact_counts(s.id)['good'] == 1
    resp = s.server.request(f'/file/{file["_id"]}', method='DELETE', user=s.admin)
    assertStatusOk(resp)
    assert_restarted(s, scan, None, superseded=3)
    assert exact_counts(s.id) == {'unreviewed': 1, 'questionable': 0, 'good': 0, 'bad': 0}


def test_decision_on_a_silently_changed_file_is_refused(study):
    """A file added without upload events (an assetstore import does that): the next decision
    is refused (409) and the scan starts over, about the file the reviewer can see now."""
    from girder.models.assetstore import Assetstore
    from girder.models.file import File

    s = study
    scan = reviewed(s, s.folder)
    silent = File().createFile(creator=s.admin, item=scan, name='other.nii.gz', size=10,
                               assetstore=Assetstore().getCurrent())
    assert state(scan)['state'] == 'bad'  # no event saw it
    assertStatus(decide(s.server, scan, s.tier2, 'good'), 409)
    assert_restarted(s, scan, silent, superseded=2)
    assert exact_counts(s.id) == {'unreviewed': 1, 'questionable': 0, 'good': 0, 'bad': 0}
    resp = decide(s.server, scan, s.tier2, 'good')
    assertStatusOk(resp)
    assert resp.json['decision']['fileId'] == str(silent['_id'])


def test_file_change_is_assessed_when_auto_assess_is_on(study, purged_broker):
    from girder_jobs.models.job import Job

    from girder_miqa.scheduling import PENDING_STATUSES

    s = study
    assertStatusOk(s.server.request(f'/miqa/project/{s.id}/settings', method='PUT',
                                    user=s.admin, body=json.dumps({'autoAssess': True}),
                                    type='application/json'))
    scan = reviewed(s, s.folder)
    oldJob = state(scan)['assessment']['jobId']
    assert oldJob is not None  # queued for the first file, never run (no worker here)
    new = upload_into(s, scan, s.admin, seed=13)
    st = assert_restarted(s, scan, new, superseded=2)
    assert st['assessment']['status'] == 'queued'
    assert st['assessment']['jobId'] not in (None, oldJob)  # not the old file's pending job
    assert Job().load(oldJob, force=True)['status'] not in PENDING_STATUSES
    job = Job().load(st['assessment']['jobId'], force=True)
    assert job['meta']['fileId'] == str(new['_id'])


# ---- 3: moves between projects restart the review ------------------------------------------


def test_move_to_another_project_restarts_the_review(copies):
    c, s = copies, copies.s
    assertStatusOk(s.server.request(f'/item/{c.scan["_id"]}', method='PUT', user=s.admin,
                                    params={'folderId': str(c.otherFolder['_id'])}))
    st = state(c.scan)
    assert (st['projectId'], st['state'], st['decisionCount'], st['lock']) == (
        c.otherFolder['_id'], 'unreviewed', 0, None)
    history = s.server.request(f'/item/{c.scan["_id"]}/miqa/history', user=s.admin).json
    assert [(h['projectId'], h['superseded']) for h in history] == [(s.id, True)] * 2
    assert counts_match_export(s, c.other['_id'])['unreviewed'] == 1
    assert counts_match_export(s, s.id)['bad'] == 0

    # with restartOnMove off, a moved scan keeps its decisions (as before)
    resp = s.server.request(f'/miqa/project/{s.id}/settings', method='PUT', user=s.admin,
                            body=json.dumps({'restartOnMove': 'yes'}), type='application/json')
    assertStatus(resp, 400)
    resp = s.server.request(f'/miqa/project/{s.id}/settings', method='PUT', user=s.admin,
                            body=json.dumps({'restartOnMove': False}), type='application/json')
    assertStatusOk(resp)
    assert resp.json['restartOnMove'] is False
    # a scan detached from one project restarts when it enters another (on by default there)
    gone = reviewed(s, s.folder, 'gone.nii.gz')
    assertStatusOk(s.server.request(f'/item/{gone["_id"]}', method='PUT', user=s.admin,
                                    params={'folderId': str(c.home['_id'])}))
    assertStatusOk(s.server.request(f'/item/{gone["_id"]}', method='PUT', user=s.admin,
                                    params={'folderId': str(c.otherFolder['_id'])}))
    assert (state(gone)['state'], state(gone)['decisionCount']) == ('unreviewed', 0)
    assert counts_match_export(s, c.other['_id'])['unreviewed'] == 2

    kept = reviewed(s, c.otherFolder, 'kept.nii.gz')
    assertStatusOk(s.server.request(f'/item/{kept["_id"]}', method='PUT', user=s.admin,
                                    params={'folderId': str(s.folder['_id'])}))
    assert (state(kept)['state'], state(kept)['decisionCount']) == ('bad', 2)
    assert counts_match_export(s, s.id)['bad'] == 1


def test_worker_process_binds_the_copy_handlers(copies):
    """Girder runs POST /folder/{id}/copy in the worker's local queue, a process where the
    Girder plugin is never loaded: the worker plugin binds the model handlers there."""
    from girder import events
    from girder.models.folder import Folder
    from girder.models.item import Item

    from miqa_worker.plugin import MiqaWorkerPlugin

    c, s = copies, copies.s
    names = ('model.item.copy.prepare', 'model.item.copy.after', 'model.item.remove',
             'model.item.save', 'model.item.save.after', 'model.folder.save',
             'model.folder.save.after', 'model.file.remove')
    for name in names:  # a worker process: no Girder plugin loaded, nothing bound
        events.unbind(name, 'miqa')
    try:
        MiqaWorkerPlugin(app=None)
        copied = Folder().copyFolder(c.session, parent=s.folder, name='copied-in-worker',
                                     parentType='folder', creator=c.writer)
        items = list(Item().find({'folderId': copied['_id']}))
        assert items
        for item in items:
            assert_fresh_scan(s, item, s.folder['_id'])
        counts_match_export(s, s.id)
    finally:
        from girder_miqa import bind_model_handlers

        bind_model_handlers()


def test_result_about_a_replaced_file_is_not_stored(study):
    """A job still running on the old file after a replacement cannot store its result as the
    new file's assessment; the job about the current file can."""
    from girder.models.file import File
    from girder.models.token import Token

    from girder_miqa.scheduling import assessment_scope, file_scope

    s = study
    scan = make_scan(s.folder, 'replaced.nii.gz', s.tier1, seed=31)
    old = File().findOne({'itemId': scan['_id']})

    def job_token(file):
        return Token().createToken(user=s.tier1, days=0.1, scope=[
            file_scope(file['_id']), assessment_scope(scan['_id'])])

    stale = job_token(old)
    new = upload_into(s, scan, s.admin, seed=32)
    result = {'status': 'done', 'quality': 9.5, 'artifacts': {}, 'model': {'name': 'x'}}
    resp = s.server.request(f'/item/{scan["_id"]}/miqa/assessment', method='PUT',
                            token=stale, body=json.dumps(result), type='application/json')
    assertStatus(resp, 409)
    assert 'no longer has' in resp.json['message']
    assert state(scan)['assessment']['status'] != 'done'
    resp = s.server.request(f'/item/{scan["_id"]}/miqa/assessment', method='PUT',
                            token=job_token(new), body=json.dumps(result),
                            type='application/json')
    assertStatusOk(resp)
    assert state(scan)['assessment']['quality'] == 9.5
