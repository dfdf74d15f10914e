"""Celery tasks of the MIQA worker: thin wrappers around ``miqa_worker.assessment``.

The Girder server imports this module to schedule tasks, so nothing here imports torch or ITK
at import time; the worker process loads them once, when it starts (``worker_process_init``).
"""

import logging
import os
import shutil
import tempfile

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


@girder_job(title='MIQA assessment', type='miqa.assessment')
@app.task(bind=True)
def assess_scan(self, item_id: str, file_id: str, file_name: str,
                model_name: str | None = None, direct_path: str | None = None) -> dict:
    """Assess one scan and write the result to ``PUT /item/{id}/miqa/assessment``.

    A scan that cannot be assessed gets a failed assessment with the reason, and the job ends
    in error; the worker goes on with the next task.
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
        from .assessment import get_assessor
        from .model_store import find_installed

        find_installed(model_name)  # a plain installed name, never a path (else the job fails)
        path = _fetch_input(gc, file_id, file_name, direct_path, workdir)
        result = get_assessor(model_name).assess_file(path, progress=progress)
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
