"""The models the workers report: name, version and weights sha256 of each installed model, and
which one is the workers' default.

The server never reads model files (they live on the worker hosts). It learns what the workers
run from two reports, both stored here, one document per model name (the latest report wins):

- every finished assessment a worker writes names the model that made it (``model``: name,
  version, sha256), recorded when it is stored;
- ``miqa_worker.tasks.describe_models`` answers (every installed model, and the default), asked
  for by :func:`ask_workers` only in requests that need the current truth (the project-wide
  assess and the validation of a model setting), never inside an upload.

One worker answers each ask (whichever takes the task): the workers of a deployment are
expected to carry the same models. A worker busy with an assessment answers late, and the
stored reports stand meanwhile.
"""

import datetime
import logging
import re

from girder.models.model_base import Model

logger = logging.getLogger(__name__)

COLLECTION = 'miqa_worker_model'
DESCRIBE_TASK_NAME = 'miqa_worker.tasks.describe_models'
ASK_SECONDS = 3.0  # how long a request waits for a worker's answer
MODEL_NAME_RE = re.compile(r'^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$')  # as the workers accept
SHA256_RE = re.compile(r'^[0-9a-f]{64}$')


class WorkerModels(Model):
    """One document per model name the workers reported: ``_id`` = ``name``, ``version``,
    ``sha256``, ``default`` (whether the workers use it when asked for no model), ``source``
    (``assessment`` or ``worker``) and ``reported`` (when)."""

    def initialize(self):
        self.name = COLLECTION
        self.ensureIndices(['default'])

    def validate(self, doc: dict) -> dict:
        return doc

    def record(self, model, source: str, default: bool | None = None) -> dict | None:
        """Store one model report (a malformed one is ignored, and None returned): the latest
        report of a name replaces the earlier one. ``default=True`` makes it the workers'
        default and no other name."""
        if not isinstance(model, dict):
            return None
        name, sha256 = model.get('name'), model.get('sha256')
        if not isinstance(name, str) or not MODEL_NAME_RE.match(name) or not isinstance(
                sha256, str) or not SHA256_RE.match(sha256):
            return None
        now = datetime.datetime.now(datetime.timezone.utc)
        fields = {'name': name, 'version': str(model.get('version') or ''), 'sha256': sha256,
                  'source': source, 'reported': now}
        if default is not None:
            fields['default'] = bool(default)
        if default:
            self.collection.update_many({'_id': {'$ne': name}, 'default': True},
                                        {'$set': {'default': False}})
        self.collection.update_one({'_id': name}, {'$set': fields,
                                                   '$setOnInsert': {'created': now}},
                                   upsert=True)
        return self.collection.find_one({'_id': name})

    def record_answer(self, answer) -> list[dict]:
        """Store a ``describe_models`` answer (``{"models": [{name, version, sha256, default}]}``);
        the documents stored."""
        models = answer.get('models') if isinstance(answer, dict) else None
        stored = []
        for model in models if isinstance(models, list) else []:
            doc = self.record(model, 'worker', default=bool(model.get('default'))) if isinstance(
                model, dict) else None
            if doc is not None:
                stored.append(doc)
        return stored

    def reported(self, name: str | None) -> dict | None:
        """The latest report of a model name; for None, of the workers' default model."""
        if name:
            return self.collection.find_one({'_id': name})
        return self.collection.find_one({'default': True})

    def names(self) -> list[str]:
        """The model names the workers reported, sorted."""
        return sorted(doc['_id'] for doc in self.collection.find({}, {'_id': 1}))


def ask_workers(timeout: float = ASK_SECONDS) -> list[dict] | None:
    """Ask a worker which models it has installed (``describe_models``, no network run) and
    store its answer; the stored reports, or None when no worker answered within ``timeout``
    seconds (busy or none running). Never raises: a broker that is down is no answer."""
    try:
        from girder_worker.app import app

        result = app.send_task(
            DESCRIBE_TASK_NAME, kwargs={}, expires=timeout, serializer='json',
            # no Girder job, no Girder token and no API URL: the task does not call Girder
            headers={'girder_job_disable': True, 'girder_client_token': '',
                     'girder_api_url': ''})
    except Exception as exc:
        logger.warning('Could not ask the workers for their models: %s', exc)
        return None
    try:
        answer = result.get(timeout=timeout, propagate=True, disable_sync_subtasks=False)
    except Exception as exc:
        logger.info('No worker reported its models within %.1f s: %s', timeout,
                    type(exc).__name__)
        return None
    finally:
        try:
            result.forget()
        except Exception:
            pass
    return WorkerModels().record_answer(answer)
