"""Helpers for the review tests: tiny real NIfTI files and scans made through Girder's upload."""

import gzip
import io

import nibabel
import numpy as np


def nifti_bytes(seed: int = 0, compressed: bool = True) -> bytes:
    """A tiny valid NIfTI-1 volume (6x6x6), gzipped like a .nii.gz by default."""
    data = np.random.default_rng(seed).integers(0, 255, (6, 6, 6)).astype(np.uint8)
    image = nibabel.Nifti1Image(data, np.eye(4))
    raw = image.to_bytes()
    return gzip.compress(raw, mtime=0) if compressed else raw


def make_scan(folder: dict, name: str, user: dict, seed: int = 0) -> dict:
    """Upload a NIfTI into a new item in ``folder`` (runs the data.process hook); the item."""
    from girder.models.item import Item
    from girder.models.upload import Upload

    data = nifti_bytes(seed)
    item = Item().createItem(name, creator=user, folder=folder)
    Upload().uploadFromFile(io.BytesIO(data), len(data), name, parentType='item',
                            parent=item, user=user)
    return Item().load(item['_id'], force=True)


def decide(server, item, user, decision, **body):
    """POST a decision; the raw response."""
    return server.request(f'/item/{item["_id"]}/miqa/decision', method='POST', user=user,
                          body=__import__('json').dumps({'decision': decision, **body}),
                          type='application/json')


def state(item) -> dict:
    """The item's stored review state."""
    from girder.models.item import Item

    return Item().load(item['_id'], force=True)['miqa']


# A model as a worker reports it (describe_models, or the ``model`` of an assessment).
WORKER_MODEL = {'name': 'miqa-default', 'version': '0.6.0', 'sha256': 'a1' * 32}


def report_worker_model(model: dict | None = None, default: bool = True) -> dict:
    """Store a worker's report of a model (by default ``WORKER_MODEL``, the workers' default),
    as a ``describe_models`` answer does: what tests without a worker process rely on."""
    from girder_miqa.models.worker_models import WorkerModels

    model = model or WORKER_MODEL
    WorkerModels().record(model, 'worker', default=default)
    return model


def set_assessment(item, quality: float, probs: dict | None = None, model: dict | None = None):
    """Store a finished assessment on a scan, as the worker's PUT would (by default from the
    model the workers last reported, without asking them)."""
    from girder_miqa import scheduling
    from girder_miqa.models import review_state

    review_state.set_assessment_result(item, {
        'status': 'done', 'quality': quality, 'artifacts': probs or {},
        'model': model or scheduling.current_model('miqa-default', ask=False)})
