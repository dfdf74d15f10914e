"""Test fixtures: a real mongod and Redis for the whole session, a real Celery worker on demand.

Services come from ``devops/services.py`` (the code ``devops/miqa up`` runs), on free ports and
a state directory of their own, so tests never collide with a running stack. Set
``MIQA_MONGO_URI`` / ``MIQA_REDIS_URL`` to use existing servers instead.
"""

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / 'devops'))

import services  # noqa: E402

SHARED_MRI = ROOT.parent / 'shared' / 'data' / 'mri'
TEST_REDIS_DB = 3  # the tests' own database index, away from a stack's default 0

_stack: services.Stack | None = None


def pytest_configure(config):
    """Start mongod and Redis before anything imports girder_worker (it reads the env once)."""
    global _stack
    if hasattr(config, 'workerinput'):  # xdist workers share the controller's services
        return
    state = Path(tempfile.mkdtemp(prefix='miqa-test-'))
    _stack = services.Stack(
        state_dir=state, girder_port=services.free_port(), mongo_port=services.free_port(),
        redis_port=services.free_port(), redis_db=TEST_REDIS_DB,
        mongo_uri=os.environ.get('MIQA_MONGO_URI') or None,
        redis_url=os.environ.get('MIQA_REDIS_URL') or None)
    _stack.start_mongod()
    _stack.start_redis()
    config.option.mongo_uri = _stack.mongo_base_uri
    os.environ.update({
        'GIRDER_WORKER_BROKER': _stack.broker_url,
        'GIRDER_WORKER_BACKEND': _stack.broker_url,
        'GIRDER_NOTIFICATION_REDIS_URL': _stack.broker_url,
    })


_exit_status: int | None = None


def pytest_sessionfinish(session, exitstatus):
    global _exit_status
    _exit_status = int(exitstatus)


def pytest_unconfigure(config):
    """Stop the services and delete their state: all of it after a green run; after a red one
    the service logs stay (and the path is printed), the ~300 MB of database files do not."""
    if _stack is None:
        return
    _stack.down()
    state = Path(_stack.state_dir)
    if _exit_status == 0:
        shutil.rmtree(state, ignore_errors=True)
    else:
        shutil.rmtree(state / 'mongo', ignore_errors=True)
        print(f'service logs of this test session: {state / "logs"}', file=sys.stderr)


@pytest.fixture(scope='session')
def test_stack() -> services.Stack:
    assert _stack is not None
    return _stack


@pytest.fixture(scope='session')
def shared_mri() -> Path:
    """The real scans in ../shared/data/mri (skips with the reason when absent)."""
    if not SHARED_MRI.is_dir():
        pytest.skip(f'needs the real scans in {SHARED_MRI}, which is absent here')
    return SHARED_MRI


@pytest.fixture(scope='session')
def worker_process(test_stack):
    """One real girder-worker (Celery) process for the session, on the tests' broker."""
    name = 'worker-1'
    test_stack.workers = 1
    test_stack.start_workers()
    yield test_stack
    test_stack.stop(name)


@pytest.fixture
def purged_broker(test_stack):
    """Drop messages that earlier tests left in the broker."""
    from girder_worker.app import app

    app.control.purge()
    yield


def _wait(predicate, timeout=60.0, interval=0.2):
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return predicate()


@pytest.fixture
def wait():
    return _wait
