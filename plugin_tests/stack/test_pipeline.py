"""End to end through real processes: an upload into a project becomes a Girder job that a real
girder-worker completes, and the assessment lands on the scan; failures say why."""

import gzip
import io
import time
from pathlib import Path

import numpy as np
import pytest

from miqa_worker.constants import ARTIFACT_KEYS


def _head_phantom(shape=(96, 112, 80), seed=0) -> np.ndarray:
    """A smooth ellipsoidal 'head' with a brighter core and mild noise (int16)."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing='ij'))
    r = np.sqrt((grid ** 2).sum(0))
    vol = np.where(r < 0.85, 400.0, 0.0) + np.where(r < 0.6, 300.0, 0.0)
    vol += rng.normal(0, 15, shape)
    return np.clip(vol, 0, None).astype(np.int16)


def write_nifti(path: Path, data: np.ndarray | None = None, spacing=(1.2, 1.2, 1.5)) -> Path:
    import nibabel as nib

    data = _head_phantom() if data is None else data
    nib.save(nib.Nifti1Image(data, np.diag([*spacing, 1.0])), str(path))
    return path


@pytest.fixture
def project_setup(boundServer, admin, fsAssetstore, worker_process, purged_broker):
    """An admin client, a project folder, and Girder pointed at itself for the worker."""
    import girder_client
    from girder.models.folder import Folder
    from girder.models.setting import Setting

    from girder_miqa.models.project import Project

    api = f'http://127.0.0.1:{boundServer.boundPort}/api/v1'
    Setting().set('worker.api_url', api)
    parent = Folder().findOne({'parentId': admin['_id'], 'name': 'Public'})
    folder = Folder().createFolder(parent, 'Study', creator=admin)
    project = Project().createProject(folder, admin)
    gc = girder_client.GirderClient(apiUrl=api)
    gc.authenticate('admin', 'password')
    return gc, folder, project


def _finished_job(job_id, wait):
    """The job once girder-worker has set its final status (just after the task returns)."""
    from girder_jobs.constants import JobStatus
    from girder_jobs.models.job import Job

    final = (JobStatus.SUCCESS, JobStatus.ERROR, JobStatus.CANCELED)
    return wait(lambda: (lambda j: j if j['status'] in final else None)(
        Job().load(job_id, force=True, includeLog=True)), timeout=30)


def _state(gc, item_id):
    return gc.get(f'item/{item_id}/miqa')


def _wait_assessed(gc, item_id, wait, timeout=120):
    def finished():
        state = _state(gc, item_id)
        return state if state['assessment']['status'] in ('done', 'failed') else None

    state = wait(finished, timeout=timeout)
    assert state, f'not assessed in {timeout} s: {_state(gc, item_id)}'
    return state


@pytest.mark.stack
@pytest.mark.plugin('miqa')
def test_upload_is_assessed_by_the_worker(project_setup, tmp_path, wait):
    from girder_jobs.constants import JobStatus

    gc, folder, project = project_setup
    session = gc.createFolder(str(folder['_id']), 'sub-01')
    started = time.monotonic()
    gc.uploadFileToFolder(session['_id'], str(write_nifti(tmp_path / 'sub-01_T1w.nii.gz')))
    item = next(gc.listItem(session['_id']))
    assert item['miqa']['state'] == 'unreviewed'  # readable in the item's own JSON

    state = _wait_assessed(gc, item['_id'], wait)
    latency = time.monotonic() - started
    assessment = state['assessment']
    assert assessment['status'] == 'done', assessment
    assert 0.0 <= assessment['quality'] <= 10.0
    # only the indicators the model was trained for are reported (the spec's trained outputs)
    trained = set(assessment['trainedOutputs']) - {'quality'}
    assert trained and trained < set(ARTIFACT_KEYS)
    assert set(assessment['artifacts']) == trained
    assert all(0.0 <= p <= 1.0 for p in assessment['artifacts'].values())
    assert len(assessment['model']['sha256']) == 64
    assert assessment['model']['name'] and assessment['model']['version']
    tile_map = assessment['tileMap']
    n_tiles = int(np.prod(tile_map['grid']))
    assert len(tile_map['quality']) == n_tiles
    assert all(len(tile_map['artifacts'][k]) == n_tiles for k in trained)
    assert assessment['metrics'] and all(np.isfinite(v) for v in assessment['metrics'].values())

    job = _finished_job(assessment['jobId'], wait)
    assert job['status'] == JobStatus.SUCCESS
    assert job['type'] == 'miqa.assessment'
    assert item['name'] in job['title']
    assert job['progress']['current'] == job['progress']['total']
    assert any('quality' in line for line in job['log'])
    print(f'upload-to-assessment latency: {latency:.2f} s')


@pytest.mark.stack
@pytest.mark.plugin('miqa')
def test_bad_scan_fails_with_reason_and_worker_goes_on(project_setup, tmp_path, wait):
    from girder_jobs.constants import JobStatus

    gc, folder, project = project_setup
    good = write_nifti(tmp_path / 'good.nii.gz')
    truncated = tmp_path / 'truncated.nii.gz'
    truncated.write_bytes(good.read_bytes()[:2000])
    text = tmp_path / 'notes-not-an-image.nii'
    text.write_text('this is a text file with an image extension\n' * 20)

    ids = {}
    for path in (truncated, text, good):
        gc.uploadFileToFolder(str(folder['_id']), str(path))
        ids[path.name] = next(gc.listItem(str(folder['_id']), name=path.name))['_id']

    for name in (truncated.name, text.name):
        state = _wait_assessed(gc, ids[name], wait)
        assert state['assessment']['status'] == 'failed'
        reason = state['assessment']['reason']
        assert reason and '\n' not in reason.strip() and 'Traceback' not in reason
        assert state['state'] == 'unreviewed'  # people can still review it
        job = _finished_job(state['assessment']['jobId'], wait)
        assert job['status'] == JobStatus.ERROR
    assert _wait_assessed(gc, ids[good.name], wait)['assessment']['status'] == 'done'


@pytest.mark.plugin('miqa')
def test_non_images_are_left_alone(server, admin, fsAssetstore):
    from girder.models.folder import Folder
    from girder.models.upload import Upload
    from girder_jobs.models.job import Job

    from girder_miqa.models.project import Project

    parent = Folder().findOne({'parentId': admin['_id'], 'name': 'Public'})
    folder = Folder().createFolder(parent, 'Study', creator=admin)
    Project().createProject(folder, admin)
    data = b'subject,age\n01,30\n'
    file = Upload().uploadFromFile(io.BytesIO(data), len(data), 'participants.csv',
                                   parentType='folder', parent=folder, user=admin)
    from girder.models.item import Item

    item = Item().load(file['itemId'], force=True)
    assert 'miqa' not in item
    assert Job().find({'type': 'miqa.assessment'}).count() == 0


@pytest.mark.plugin('miqa')
def test_upload_succeeds_when_scheduling_fails(server, admin, fsAssetstore, monkeypatch):
    """A broker that refuses the message: the file is stored and the scan says why."""
    from girder.models.folder import Folder
    from girder.models.item import Item
    from girder.models.upload import Upload
    from girder_worker.app import app
    from kombu.exceptions import OperationalError

    from girder_miqa.models.project import Project

    def refuse(*args, **kwargs):
        raise OperationalError('Error 111 connecting to 127.0.0.1:6379. Connection refused.')

    monkeypatch.setattr(app, 'send_task', refuse)  # the server sends tasks by name
    parent = Folder().findOne({'parentId': admin['_id'], 'name': 'Public'})
    folder = Folder().createFolder(parent, 'Study', creator=admin)
    Project().createProject(folder, admin)
    raw = io.BytesIO()
    with gzip.GzipFile(fileobj=raw, mode='wb') as gz:
        gz.write(b'\0' * 10)
    data = raw.getvalue()
    file = Upload().uploadFromFile(io.BytesIO(data), len(data), 'scan.nii.gz',
                                   parentType='folder', parent=folder, user=admin)
    assert file['size'] == len(data)
    state = Item().load(file['itemId'], force=True)['miqa']
    assert state['assessment']['status'] == 'not_scheduled'
    assert 'could not schedule the assessment' in state['assessment']['reason']
    assert 'Connection refused' in state['assessment']['reason']


@pytest.mark.plugin('miqa')
def test_auto_assessment_off_says_so(server, admin, fsAssetstore):
    from girder.models.folder import Folder
    from girder.models.item import Item
    from girder.models.upload import Upload
    from girder_jobs.models.job import Job

    from girder_miqa.models.project import Project

    parent = Folder().findOne({'parentId': admin['_id'], 'name': 'Public'})
    folder = Folder().createFolder(parent, 'Study', creator=admin)
    Project().createProject(folder, admin, {'autoAssess': False})
    data = b'\0' * 352
    file = Upload().uploadFromFile(io.BytesIO(data), len(data), 'scan.nii',
                                   parentType='folder', parent=folder, user=admin)
    state = Item().load(file['itemId'], force=True)['miqa']
    assert state['assessment']['status'] == 'not_scheduled'
    assert state['assessment']['reason'] == 'auto-assessment is off for this project'
    assert Job().find({'type': 'miqa.assessment'}).count() == 0


@pytest.mark.stack
@pytest.mark.plugin('miqa')
def test_assessment_write_needs_the_job_token(project_setup, tmp_path, wait, user):
    """A reviewer cannot write a score; the job's token cannot write another scan's."""
    import girder_client
    from girder.constants import TokenScope
    from girder.models.token import Token

    gc, folder, project = project_setup
    for name in ('a.nii.gz', 'b.nii.gz'):
        gc.uploadFileToFolder(str(folder['_id']), str(write_nifti(tmp_path / name)))
    a = next(gc.listItem(str(folder['_id']), name='a.nii.gz'))
    b = next(gc.listItem(str(folder['_id']), name='b.nii.gz'))
    _wait_assessed(gc, a['_id'], wait)
    _wait_assessed(gc, b['_id'], wait)

    other = girder_client.GirderClient(apiUrl=gc.urlBase)
    other.authenticate('user', 'password')
    body = {'status': 'failed', 'reason': 'forged'}
    with pytest.raises(girder_client.HttpError) as err:
        other.put(f'item/{a["_id"]}/miqa/assessment', json=body)
    assert err.value.status in (401, 403)

    token = Token().createToken(scope=[TokenScope.DATA_READ,
                                       f'miqa.assessment.write.{b["_id"]}'], days=1)
    scoped = girder_client.GirderClient(apiUrl=gc.urlBase)
    scoped.token = str(token['_id'])
    with pytest.raises(girder_client.HttpError) as err:
        scoped.put(f'item/{a["_id"]}/miqa/assessment', json=body)
    assert err.value.status in (401, 403)
    assert _state(gc, a['_id'])['assessment']['status'] == 'done'  # nothing was lost


@pytest.mark.stack
@pytest.mark.plugin('miqa')
def test_sidecar_beside_the_image_decides_its_scope(project_setup, tmp_path, wait):
    """A neutral name gives the worker no contrast; the BIDS sidecar uploaded beside it (same
    folder, same stem) does: the scan keeps its scores and is flagged out of the domain. A
    broken sidecar is a reason in the scope, never a failed assessment."""
    import json

    gc, folder, _project = project_setup
    told = gc.createFolder(str(folder['_id']), 'told')
    (tmp_path / 'scan7.json').write_text(json.dumps({
        'SeriesDescription': 'T2 TSE axial', 'RepetitionTime': 4.0, 'EchoTime': 0.09}))
    gc.uploadFileToFolder(told['_id'], str(tmp_path / 'scan7.json'))
    gc.uploadFileToFolder(told['_id'], str(write_nifti(tmp_path / 'scan7.nii.gz')))
    item = next(i for i in gc.listItem(told['_id']) if i['name'] == 'scan7.nii.gz')
    assessment = _wait_assessed(gc, item['_id'], wait)['assessment']
    assert assessment['status'] == 'done', assessment
    assert assessment['scope']['in_scope'] is False, assessment['scope']
    assert assessment['scope']['contrast'] == 'T2w'
    assert assessment['scope']['source'] == 'sidecar'
    assert 0.0 <= assessment['quality'] <= 10.0  # flagged, still scored

    broken = gc.createFolder(str(folder['_id']), 'broken')
    (tmp_path / 'b').mkdir()
    (tmp_path / 'b' / 'scan8.json').write_text('{not json')
    gc.uploadFileToFolder(broken['_id'], str(tmp_path / 'b' / 'scan8.json'))
    gc.uploadFileToFolder(broken['_id'], str(write_nifti(tmp_path / 'b' / 'scan8.nii.gz')))
    item = next(i for i in gc.listItem(broken['_id']) if i['name'] == 'scan8.nii.gz')
    assessment = _wait_assessed(gc, item['_id'], wait)['assessment']
    assert assessment['status'] == 'done', assessment
    assert 'sidecar' in assessment['scope']['reason'].lower(), assessment['scope']
