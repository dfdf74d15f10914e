"""miqa_worker: the MIQA model library (image IO, preprocessing, tiling, network, assessment,
fusion, quality metrics, model store) and, apart from it, the girder-worker plugin.

The core modules import nothing from Girder, girder-worker or Celery: a worker host, a notebook
or the ``miqa-assess`` command use them alike. The girder-worker plugin class lives in
:mod:`miqa_worker.plugin` and the Celery tasks in :mod:`miqa_worker.tasks`, thin over the core.
"""

__version__ = '0.1.0'
