"""miqa_worker: the girder-worker plugin that assesses scans (model code is imported lazily)."""

from girder_worker import GirderWorkerPluginABC


class MiqaWorkerPlugin(GirderWorkerPluginABC):
    """Registers ``miqa_worker.tasks`` with the girder-worker Celery app."""

    def __init__(self, app, *args, **kwargs):
        self.app = app

    def task_imports(self):
        return ['miqa_worker.tasks']
