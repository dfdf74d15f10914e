"""Audit findings on settings and scheduling: model names only, readable tier groups, one
pending assessment per scan and model, job tokens scoped and revoked."""

import json

import pytest
from pytest_girder.assertions import assertStatus, assertStatusOk

from .util import make_scan, report_worker_model, state

pytestmark = pytest.mark.plugin('miqa')


def _put(s, user, body):
    return s.server.request(f'/miqa/project/{s.id}/settings', method='PUT', user=user,
                            body=json.dumps(body), type='application/json')


@pytest.mark.parametrize('model', ['../../etc', '/etc/passwd', '..', 'miqa-default/../x',
                                   'not-installed', '', 7])
def test_model_setting_is_an_installed_name(study, model):
    """The project's model is the plain name of a model a worker reported installed."""
    s = study
    report_worker_model()  # as a worker's describe_models answer stores it
    before = s.server.request(f'/miqa/project/{s.id}/settings', user=s.owner).json['model']
    resp = _put(s, s.owner, {'model': model})
    assertStatus(resp, 400)
    assert 'installed model' in resp.json['message'] and 'miqa-default' in resp.json['message']
    assert s.server.request(f'/miqa/project/{s.id}/settings', user=s.owner).json['model'] == \
        before
    resp = _put(s, s.owner, {'model': 'miqa-default'})
    assertStatusOk(resp)
    assert resp.json['model'] == 'miqa-default'
    resp = _put(s, s.owner, {'model': None})  # back to the default (the workers' own)
    assertStatusOk(resp)
    assert resp.json['model'] is None


def test_model_setting_without_any_worker_report_is_a_clear_400(study, test_stack,
                                                                 purged_broker):
    """With no report stored and no worker answering, the setting cannot be checked: a 400
    that says so, after asking for at most a few seconds."""
    import time

    from girder_miqa.models.worker_models import ASK_SECONDS

    s = study
    if test_stack.running_pid('worker-1'):
        pytest.skip('a worker of this test session is running and would answer')
    started = time.monotonic()
    resp = _put(s, s.owner, {'model': 'miqa-default'})
    assertStatus(resp, 400)
    assert 'No worker has reported its models' in resp.json['message']
    assert time.monotonic() - started < ASK_SECONDS + 5
    assert s.server.request(f'/miqa/project/{s.id}/settings', user=s.owner).json['model'] is None


def test_stored_assessments_report_the_workers_model(study, purged_broker):
    """Each finished assessment a job writes reports its model (name, version, sha256); a job
    that asked for no model reports the workers' default. Malformed ones report nothing."""
    from girder_miqa import scheduling
    from girder_miqa.models.worker_models import WorkerModels

    s = study
    scan = make_scan(s.folder, 'a.nii.gz', s.admin, seed=1)
    assertStatusOk(s.server.request(f'/item/{scan["_id"]}/miqa/assess', method='POST',
                                    user=s.owner))  # the project names no model
    model = {'name': 'miqa-default', 'version': '0.7.0', 'sha256': 'b2' * 32}
    for bad in ({'name': '../x', 'version': '1', 'sha256': 'b2' * 32},
                {'name': 'miqa-default', 'version': '1', 'sha256': 'short'}):
        resp = s.server.request(f'/item/{scan["_id"]}/miqa/assessment', method='PUT',
                                user=s.admin, type='application/json', body=json.dumps({
                                    'status': 'done', 'quality': 5.0, 'artifacts': {},
                                    'model': bad}))
        assertStatusOk(resp)
        assert WorkerModels().names() == []
    resp = s.server.request(f'/item/{scan["_id"]}/miqa/assessment', method='PUT',
                            user=s.admin, type='application/json', body=json.dumps({
                                'status': 'done', 'quality': 5.0, 'artifacts': {},
                                'model': model}))
    assertStatusOk(resp)
    report = WorkerModels().reported(None)
    assert report['source'] == 'assessment' and report['default'] is True
    assert scheduling.current_model(None, ask=False) == model
    assert scheduling.assessed_by(state(scan)['assessment'], model)


def test_model_listing_imports_no_torch():
    """The server's model listing, scheduling and plugin import no model code: at most the
    girder-worker plugin class (``miqa_worker.plugin``, found by girder_worker's entry points)
    and the package's empty ``__init__``; never torch, ITK or the model store."""
    import subprocess
    import sys

    code = ('import json, sys, girder_miqa, girder_miqa.scheduling, girder_miqa.models.project, '
            'girder_worker.app; '
            'print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in '
            '("miqa_worker", "torch", "monai", "itk"))))')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                         check=True).stdout
    loaded = set(json.loads(out.strip().splitlines()[-1]))
    assert loaded <= {'miqa_worker', 'miqa_worker.plugin'}, loaded


def test_tier_group_needs_read_access(study):
    from girder.models.group import Group

    s = study
    hidden = Group().createGroup('Secret reviewers', s.admin, public=False)
    for field in ('tier1GroupId', 'tier2GroupId'):
        resp = _put(s, s.owner, {field: str(hidden['_id'])})
        assertStatus(resp, 403)
    assert s.server.request(f'/miqa/project/{s.id}/settings', user=s.owner).json[
        'tier1GroupId'] == str(s.group1['_id'])
    # an admin may bind it; the owner's listing then shows the id but not the name
    assertStatusOk(_put(s, s.admin, {'tier2GroupId': str(hidden['_id'])}))
    listed = [p for p in s.server.request('/miqa/project', user=s.owner).json
              if p['_id'] == s.id][0]
    assert listed['tier2Group'] == {'_id': str(hidden['_id']), 'name': None}
    assert listed['tier1Group']['name'] == 'Tier 1'
    project = s.server.request(f'/miqa/project/{s.id}', user=s.admin).json
    assert project['tier2Group']['name'] == 'Secret reviewers'
    # a member of the private group can bind it
    Group().addUser(hidden, s.owner)
    from girder.models.user import User

    assertStatusOk(_put(s, User().load(s.owner['_id'], force=True),
                        {'tier1GroupId': str(hidden['_id'])}))


def _pending_jobs(item) -> int:
    from girder_jobs.constants import JobStatus
    from girder_jobs.models.job import Job

    return Job().collection.count_documents({
        'meta.itemId': str(item['_id']),
        'status': {'$in': [JobStatus.INACTIVE, JobStatus.QUEUED, JobStatus.RUNNING]}})


def test_reassessment_is_deduplicated(study, purged_broker):
    s = study
    scan = make_scan(s.folder, 'a.nii.gz', s.admin, seed=1)
    url = f'/item/{scan["_id"]}/miqa/assess'
    first = s.server.request(url, method='POST', user=s.owner)
    assertStatusOk(first)
    assert first.json['scheduled'] is True and first.json['alreadyQueued'] is False
    for _ in range(4):
        resp = s.server.request(url, method='POST', user=s.tier1)
        assertStatusOk(resp)
        assert resp.json['scheduled'] is False and resp.json['alreadyQueued'] is True
        assert resp.json['jobId'] == first.json['jobId']
    assert _pending_jobs(scan) == 1
    # the project-wide request skips it too, even with force
    for force in ('false', 'true'):
        resp = s.server.request(f'/miqa/project/{s.id}/assess', method='POST', user=s.owner,
                                params={'force': force})
        assertStatusOk(resp)
        assert resp.json['scheduled'] == 0 and resp.json['inProgress'] == 1
    assert _pending_jobs(scan) == 1
    # once the job ended, a new request schedules again
    from girder_jobs.models.job import Job

    job = Job().load(first.json['jobId'], force=True)
    Job().cancelJob(job)
    resp = s.server.request(url, method='POST', user=s.owner)
    assert resp.json['scheduled'] is True and resp.json['jobId'] != first.json['jobId']
    assert state(scan)['assessment']['status'] == 'queued'
    assert _pending_jobs(scan) == 1


def test_demo_says_when_self_registration_is_open():
    import stack  # devops/stack.py (plugin_tests/conftest.py puts devops/ on the path)

    notice = stack.registration_notice('open')
    assert 'OPEN' in notice and 'core.registration_policy' in notice and 'closed' in notice
    assert 'OPEN' not in stack.registration_notice('closed')
    source = (stack.Path(stack.__file__).parent / 'README.md').read_text()
    assert 'core.registration_policy' in source


def test_job_token_reads_only_its_file_and_dies_with_the_job(study, purged_broker):
    import datetime

    from girder.models.file import File
    from girder.models.token import Token
    from girder_jobs.models.job import Job

    from girder_miqa.scheduling import JOB_TOKEN_HOURS

    s = study
    scan = make_scan(s.folder, 'a.nii.gz', s.admin, seed=1)
    other = make_scan(s.folder, 'b.nii.gz', s.admin, seed=2)
    resp = s.server.request(f'/item/{scan["_id"]}/miqa/assess', method='POST', user=s.owner)
    assertStatusOk(resp)
    job = Job().load(resp.json['jobId'], force=True)
    token = Token().load(job['miqaTokenId'], force=True, objectId=False)
    file = File().findOne({'itemId': scan['_id']})
    otherFile = File().findOne({'itemId': other['_id']})
    assert sorted(token['scope']) == sorted([f'miqa.file.read.{file["_id"]}',
                                             f'miqa.assessment.write.{scan["_id"]}'])
    expires = token['expires'].replace(tzinfo=datetime.timezone.utc)
    assert expires - datetime.datetime.now(datetime.timezone.utc) <= datetime.timedelta(
        hours=JOB_TOKEN_HOURS)
    tok = str(token['_id'])
    resp = s.server.request(f'/file/{file["_id"]}', token=tok)
    assertStatusOk(resp)
    assert resp.json['_id'] == str(file['_id'])
    resp = s.server.request(f'/file/{file["_id"]}/download', token=tok, isJson=False)
    assertStatusOk(resp)
    assert len(b''.join(resp.body)) == file['size']
    for path in (f'/file/{otherFile["_id"]}/download', f'/file/{otherFile["_id"]}',
                 f'/item/{other["_id"]}', f'/item/{scan["_id"]}'):
        assert s.server.request(path, token=tok, isJson=False).output_status[:3] in (b'401',
                                                                                  b'403')
    # the job's end deletes the token
    Job().cancelJob(job)
    assert Token().load(tok, force=True, objectId=False) is None
    assert s.server.request(f'/file/{file["_id"]}/download', token=tok,
                            isJson=False).output_status[:3] == b'401'


@pytest.mark.stack
def test_real_worker_job_token_is_revoked_when_the_job_ends(
        boundServer, admin, fsAssetstore, worker_process, purged_broker, wait, tmp_path):
    """Through a real girder-worker: the job reads its private scan with the file-scoped token,
    writes the assessment, and once the job is final its token no longer exists."""
    import girder_client
    from girder.models.folder import Folder
    from girder.models.item import Item
    from girder.models.setting import Setting
    from girder.models.token import Token
    from girder_jobs.constants import JobStatus
    from girder_jobs.models.job import Job

    from girder_miqa.models.project import Project

    from ..stack.test_pipeline import write_nifti

    Setting().set('worker.api_url', f'http://127.0.0.1:{boundServer.boundPort}/api/v1')
    parent = Folder().findOne({'parentId': admin['_id'], 'name': 'Private'})
    folder = Folder().createFolder(parent, 'Private study', creator=admin)
    Project().createProject(folder, admin)
    gc = girder_client.GirderClient(apiUrl=f'http://127.0.0.1:{boundServer.boundPort}/api/v1')
    gc.authenticate('admin', 'password')
    gc.uploadFileToFolder(str(folder['_id']), str(write_nifti(tmp_path / 'sub-01_T1w.nii.gz')))
    item = next(gc.listItem(str(folder['_id'])))
    jobId = Item().load(item['_id'], force=True)['miqa']['assessment']['jobId']
    tokenId = Job().load(jobId, force=True)['miqaTokenId']
    final = (JobStatus.SUCCESS, JobStatus.ERROR, JobStatus.CANCELED)
    job = wait(lambda: (lambda j: j if j['status'] in final else None)(
        Job().load(jobId, force=True, includeLog=True)), timeout=180)
    assert job and job['status'] == JobStatus.SUCCESS, job and job.get('log')
    assert Item().load(item['_id'], force=True)['miqa']['assessment']['status'] == 'done'
    assert wait(lambda: Token().load(tokenId, force=True, objectId=False) is None, timeout=10)


def test_simultaneous_reassessments_queue_one_job(bound_study, purged_broker):
    import threading

    import requests

    s = bound_study
    scan = make_scan(s.folder, 'a.nii.gz', s.admin, seed=1)
    from girder.models.token import Token

    token = str(Token().createToken(s.owner)['_id'])
    answers = []

    def post():
        answers.append(requests.post(f'{s.url}/item/{scan["_id"]}/miqa/assess',
                                     headers={'Girder-Token': token}, timeout=30).json())

    threads = [threading.Thread(target=post) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(a['scheduled'] for a in answers) == 1, answers
    assert _pending_jobs(scan) == 1
    assert len({a['jobId'] for a in answers}) == 1
