"""The girder-worker plugin of MIQA (entry point ``girder_worker_plugins: miqa``): it registers
:mod:`miqa_worker.tasks` with the worker's Celery app. The only module of the package, with
the tasks, that imports girder_worker."""

from girder_worker import GirderWorkerPluginABC


class MiqaWorkerPlugin(GirderWorkerPluginABC):
    """Registers ``miqa_worker.tasks`` with the girder-worker Celery app.

    Args:
        app: the girder-worker Celery app that loads the plugin.
    """

    def __init__(self, app, *args, **kwargs):
        self.app = app
        bind_girder_model_handlers()

    def task_imports(self) -> list[str]:
        return ['miqa_worker.tasks']


def bind_girder_model_handlers() -> bool:
    """Where this worker also runs Girder's own ``local`` tasks (folder copies and deletions,
    in this process), bind the Girder plugin's model handlers here, so that a folder copied
    through ``POST /folder/{id}/copy`` gets fresh scans, not clones of the originals' review
    state. On a worker host without Girder, nothing to do. Returns whether it bound them."""
    try:
        from girder_miqa import bind_model_handlers
    except ImportError:
        return False
    bind_model_handlers()
    return True
