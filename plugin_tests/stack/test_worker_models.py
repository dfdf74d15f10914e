"""The server learns the model from the workers: a worker whose model folder (``MIQA_MODEL_DIR``,
which the server never reads) holds new weights under the old name makes the scans assessed by
the old weights "not assessed by the current model" as soon as it has reported them."""

import os
import shutil

import pytest
from pytest_girder.assertions import assertStatus, assertStatusOk

from .test_pipeline import write_nifti


def _new_weights(target) -> str:
    """A copy of the shipped miqa-default in ``target/miqa-default`` whose weights differ by one
    bias value (so another sha256, same network); its sha256."""
    import torch

    from miqa_worker import model_store

    source = model_store.PACKAGE_MODEL_DIR / 'miqa-default'
    copy = target / 'miqa-default'
    shutil.copytree(source, copy)
    state = torch.load(copy / model_store.WEIGHTS_FILE, map_location='cpu', weights_only=True)
    weights = state['state_dict'] if isinstance(state.get('state_dict'), dict) else state
    name = next(key for key, value in weights.items()
                if key.endswith('bias') and value.is_floating_point())
    weights[name] = weights[name] + 1e-3
    torch.save(state, copy / model_store.WEIGHTS_FILE)
    return model_store.sha256_file(copy / model_store.WEIGHTS_FILE)


def _answered_once(timeout: float = 180) -> None:
    """Wait until the worker answers a describe_models (its process first loads ITK and the
    model: "ready." comes before that); the answer is not stored."""
    from girder_worker.app import app

    from girder_miqa.models.worker_models import DESCRIBE_TASK_NAME

    result = app.send_task(DESCRIBE_TASK_NAME, serializer='json', headers={
        'girder_job_disable': True, 'girder_client_token': '', 'girder_api_url': ''})
    assert result.get(timeout=timeout)['models']
    result.forget()


@pytest.fixture(scope='module')
def new_weights_worker(test_stack, tmp_path_factory):
    """The session's worker restarted with ``MIQA_MODEL_DIR`` pointing at new weights (and put
    back as it was afterwards); the new and the shipped weights' sha256."""
    from miqa_worker import model_store

    shipped = model_store.sha256_file(
        model_store.PACKAGE_MODEL_DIR / 'miqa-default' / model_store.WEIGHTS_FILE)
    models = tmp_path_factory.mktemp('worker-models')
    new = _new_weights(models)
    assert new != shipped
    name = test_stack.worker_names()[0]
    was_running = test_stack.stop(name)
    test_stack.env['MIQA_MODEL_DIR'] = str(models)
    try:
        test_stack.start_workers()
        _answered_once()
        yield new, shipped
    finally:
        test_stack.stop(name)
        test_stack.env.pop('MIQA_MODEL_DIR', None)
        if was_running:
            test_stack.start_workers()


def _assess(gc_admin, project_id) -> dict:
    return gc_admin.post(f'miqa/project/{project_id}/assess')


@pytest.mark.stack
@pytest.mark.plugin('miqa')
def test_new_weights_on_the_workers_make_old_assessments_stale(
        boundServer, admin, fsAssetstore, new_weights_worker, purged_broker, wait, tmp_path):
    import girder_client
    from girder.models.folder import Folder
    from girder.models.item import Item
    from girder.models.setting import Setting

    from girder_miqa import scheduling
    from girder_miqa.models import review_state
    from girder_miqa.models.project import Project
    from girder_miqa.models.worker_models import WorkerModels

    new, shipped = new_weights_worker
    assert 'MIQA_MODEL_DIR' not in os.environ  # this process (the server) has no such folder
    api = f'http://127.0.0.1:{boundServer.boundPort}/api/v1'
    Setting().set('worker.api_url', api)
    parent = Folder().findOne({'parentId': admin['_id'], 'name': 'Public'})
    folder = Folder().createFolder(parent, 'Study', creator=admin)
    project = Project().createProject(folder, admin, settings={'autoAssess': False})
    gc = girder_client.GirderClient(apiUrl=api)
    gc.authenticate('admin', 'password')
    ids = {}
    for name in ('fresh.nii.gz', 'old.nii.gz'):
        path = write_nifti(tmp_path / name)
        gc.uploadFileToFolder(str(folder['_id']), str(path))
        ids[name] = next(gc.listItem(str(folder['_id']), name=name))['_id']

    # Before the new worker has said anything: the workers last reported the shipped weights,
    # and a scan assessed by them counts as assessed by the current model.
    old_model = {'name': 'miqa-default', 'version': '0.6.0', 'sha256': shipped}
    WorkerModels().record(old_model, 'worker', default=True)
    old = Item().load(ids['old.nii.gz'], force=True)
    review_state.set_assessment_result(old, {'status': 'done', 'quality': 6.0,
                                             'artifacts': {}, 'model': old_model})
    stale = Item().load(ids['old.nii.gz'], force=True)['miqa']['assessment']
    assert scheduling.assessed_by(stale, scheduling.current_model(None, ask=False))

    # "Assess unassessed" asks the worker: it reports the new weights, so the old scan is
    # assessed again, with the fresh one.
    counts = _assess(gc, project['_id'])
    assert counts['scheduled'] == 2 and counts['alreadyAssessed'] == 0, counts
    reported = WorkerModels().reported(None)
    assert reported['name'] == 'miqa-default' and reported['sha256'] == new
    assert reported['source'] == 'worker'
    assert not scheduling.assessed_by(stale, scheduling.current_model(None, ask=False))

    def done(item_id):
        assessment = Item().load(item_id, force=True)['miqa']['assessment']
        return assessment if assessment['status'] in ('done', 'failed') else None

    for item_id in ids.values():
        assessment = wait(lambda item_id=item_id: done(item_id), timeout=240)
        assert assessment and assessment['status'] == 'done', assessment
        assert assessment['model']['sha256'] == new  # the worker's folder, not the package's

    # Both are now assessed by the reported model: the next request skips them.
    counts = _assess(gc, project['_id'])
    assert counts['alreadyAssessed'] == 2 and counts['scheduled'] == 0, counts


@pytest.mark.stack
@pytest.mark.plugin('miqa')
def test_model_setting_is_checked_against_a_live_worker(
        boundServer, admin, fsAssetstore, new_weights_worker, purged_broker):
    """No report stored: the settings request asks the running worker, which names its
    installed models."""
    from girder.models.folder import Folder

    from girder_miqa.models.project import Project
    from girder_miqa.models.worker_models import WorkerModels

    new, _ = new_weights_worker
    assert WorkerModels().names() == []
    parent = Folder().findOne({'parentId': admin['_id'], 'name': 'Public'})
    folder = Folder().createFolder(parent, 'Study', creator=admin)
    project = Project().createProject(folder, admin, settings={'autoAssess': False})
    url = f'/miqa/project/{project["_id"]}/settings'
    resp = boundServer.request(url, method='PUT', user=admin, type='application/json',
                               body='{"model": "not-installed"}')
    assertStatus(resp, 400)
    assert 'installed model: miqa-default' in resp.json['message']
    assert WorkerModels().reported('miqa-default')['sha256'] == new
    resp = boundServer.request(url, method='PUT', user=admin, type='application/json',
                               body='{"model": "miqa-default"}')
    assertStatusOk(resp)
    assert resp.json['model'] == 'miqa-default'


@pytest.mark.stack
@pytest.mark.plugin('miqa')
def test_voxel_limit_setting_reaches_the_worker(
        boundServer, admin, fsAssetstore, new_weights_worker, purged_broker, wait, tmp_path):
    """``miqa.max_voxels`` travels with the task: the worker refuses a larger scan, says why,
    and the job records the limit it was given."""
    import girder_client
    from girder.models.folder import Folder
    from girder.models.item import Item
    from girder.models.setting import Setting
    from girder_jobs.models.job import Job

    from girder_miqa.constants import PluginSettings
    from girder_miqa.models.project import Project

    api = f'http://127.0.0.1:{boundServer.boundPort}/api/v1'
    Setting().set('worker.api_url', api)
    Setting().set(PluginSettings.MAX_VOXELS, 100_000)
    parent = Folder().findOne({'parentId': admin['_id'], 'name': 'Public'})
    folder = Folder().createFolder(parent, 'Study', creator=admin)
    Project().createProject(folder, admin)
    gc = girder_client.GirderClient(apiUrl=api)
    gc.authenticate('admin', 'password')
    gc.uploadFileToFolder(str(folder['_id']), str(write_nifti(tmp_path / 'big.nii.gz')))
    item = next(gc.listItem(str(folder['_id'])))

    def finished():
        assessment = Item().load(item['_id'], force=True)['miqa']['assessment']
        return assessment if assessment['status'] in ('done', 'failed') else None

    assessment = wait(finished, timeout=180)
    assert assessment and assessment['status'] == 'failed', assessment
    assert 'over the limit of 100,000' in assessment['reason']  # 96 x 112 x 80 = 860,160
    job = Job().load(assessment['jobId'], force=True)
    assert job['kwargs']['max_voxels'] == 100_000
