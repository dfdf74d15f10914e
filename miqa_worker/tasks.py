"""Celery tasks of the MIQA worker: thin wrappers around ``miqa_worker.assessment`` and
``miqa_worker.model_store``.

The Girder server never imports this module: it sends the tasks by name
(``miqa_worker.tasks.assess_scan``, ``miqa_worker.tasks.describe_models``). Nothing here imports
torch or ITK at import time; the worker process loads them once, when it starts
(``worker_process_init``).
"""

import io
import logging
import os
import shutil
import socket
import tempfile
import time

from celery.signals import worker_process_init
from girder_worker.app import app
from girder_worker.utils import girder_job

from .constants import DEFAULT_MODEL

logger = logging.getLogger(__name__)


@worker_process_init.connect
def _warm_up(**kwargs) -> None:
    """Load ITK and the default model before the first task (ITK's first read costs seconds)."""
    if os.environ.get('MIQA_WORKER_NO_WARMUP'):
        return
    try:
        from .assessment import warm_up

        warm_up(DEFAULT_MODEL)
    except Exception:
        logger.exception('MIQA warm-up failed; tasks will load the model on first use')


def _fetch_input(gc, file_id: str, file_name: str, direct_path: str | None, workdir: str) -> str:
    """A local path to the scan, named like the upload (the reader picks its format by name)."""
    target = os.path.join(workdir, os.path.basename(file_name) or 'scan')
    if direct_path and os.path.isfile(direct_path):
        try:
            os.symlink(direct_path, target)
            return target
        except OSError:
            shutil.copyfile(direct_path, target)
            return target
    gc.downloadFile(file_id, target)
    return target


#: The largest JSON sidecar fetched (a BIDS sidecar is a few KiB).
SIDECAR_MAX_BYTES = 1 << 20


def _fetch_sidecar(gc, sidecar_file_id: str | None) -> bytes | None:
    """The JSON sidecar file the server named (its job token must be scoped to read it), or
    None. Never raises: the scope is then judged from the name and the image, and the
    assessment goes on (a job token reads only the files the server scoped it to, so the
    worker never lists the item itself)."""
    if not sidecar_file_id:
        return None
    try:
        if int(gc.getFile(sidecar_file_id).get('size') or 0) > SIDECAR_MAX_BYTES:
            return None
        buffer = io.BytesIO()
        gc.downloadFile(str(sidecar_file_id), buffer)
        return buffer.getvalue()
    except Exception as exc:  # a sidecar is optional: never fail the assessment for it
        logger.warning('MIQA: sidecar %s not read: %s', sidecar_file_id, exc)
        return None


@girder_job(title='MIQA assessment', type='miqa.assessment')
@app.task(bind=True)
def assess_scan(self, item_id: str, file_id: str, file_name: str,
                model_name: str | None = None, direct_path: str | None = None,
                max_voxels: int | None = None, sidecar: dict | str | None = None,
                sidecar_file_id: str | None = None) -> dict:
    """Assess one scan and write the result to ``PUT /item/{id}/miqa/assessment``; the result
    names the model that made it (``model``: name, version, sha256), which is how the server
    learns what the workers run. The result's ``scope`` says whether the scan is in the
    model's domain, judged from the upload's name, the image's JSON sidecar and the image
    (:mod:`miqa_worker.scope`): ``sidecar`` is its content as the server read it, or
    ``sidecar_file_id`` the file to download (with the job token scoped to read it).

    ``model_name`` None is this worker's default model. ``max_voxels`` is the server's
    ``miqa.max_voxels`` setting; the worker's ``MIQA_MAX_VOXELS`` may lower it further. A scan
    that cannot be assessed gets a failed assessment with the reason, and the job ends in
    error; the worker goes on with the next task.
    """
    gc = self.girder_client
    jm = self.job_manager
    endpoint = f'item/{item_id}/miqa/assessment'
    model_name = model_name or DEFAULT_MODEL

    def progress(current: int, total: int, message: str) -> None:
        if jm is not None:
            jm.updateProgress(total=total, current=current, message=message, forceFlush=True)

    gc.put(endpoint, json={'status': 'running'})
    workdir = tempfile.mkdtemp(prefix='miqa-')
    try:
        from .assessment import PROGRESS_TOTAL, get_assessor
        from .image_io import read_volume
        from .model_store import find_installed

        find_installed(model_name)  # a plain installed name, never a path (else the job fails)
        path = _fetch_input(gc, file_id, file_name, direct_path, workdir)
        if sidecar is None:
            sidecar = _fetch_sidecar(gc, sidecar_file_id)
        assessor = get_assessor(model_name)
        progress(1, PROGRESS_TOTAL, 'reading the image')
        started = time.perf_counter()
        volume = read_volume(path, max_voxels=max_voxels)
        result = assessor.assess_volume(volume, progress, _timings={
            'read': time.perf_counter() - started}, source=path, sidecar=sidecar)
    except Exception as exc:
        # An unreadable scan says why in one line; anything else names the exception type.
        bad_input = type(exc).__name__ in ('ImageError', 'ModelNotFoundError')
        reason = str(exc) if bad_input else f'{type(exc).__name__}: {exc}'
        gc.put(endpoint, json={'status': 'failed', 'reason': reason})
        raise
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    gc.put(endpoint, json={'status': 'done', **result})
    if jm is not None:
        jm.write(f'quality {result["quality"]:.2f}/10 with {result["model"]["name"]} '
                 f'{result["model"]["version"]} in {result["timings"]["total"]:.2f} s\n')
    return {'itemId': item_id, 'quality': result['quality']}


@app.task(name='miqa_worker.tasks.describe_models')
def describe_models() -> dict:
    """The models installed on this worker, for the server's "already assessed" check and
    model settings: ``{"worker", "default", "models": [{name, version, sha256, default}]}``.
    Reads each model.json and hashes each weights file (cached); runs no network."""
    from .model_store import find_installed, installed_models, read_info

    models = []
    for name in installed_models():
        try:
            info = read_info(find_installed(name))
        except Exception as exc:  # an unreadable model.json: not usable, so not reported
            logger.warning('MIQA model %s not reported: %s', name, exc)
            continue
        models.append({'name': name, 'version': str(info.get('version')),
                       'sha256': str(info['sha256']), 'default': name == DEFAULT_MODEL})
    return {'worker': socket.gethostname(), 'default': DEFAULT_MODEL, 'models': models}
