"""Test fixtures: a real mongod and Redis when a collected test needs them, a real Celery worker
on demand.

Services come from ``devops/services.py`` (the code ``devops/miqa up`` runs), on free ports and
a state directory of their own, so tests never collide with a running stack. They start only if
a test that will run needs the database or the broker (a ``db`` or ``test_stack`` fixture, which
every Girder fixture implies): ``pytest plugin_tests/worker`` starts none. Set
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
# The recorded outputs (worker/data/shipped_outputs.json and every figure the tests compare)
# are float32 ones; on a CPU with bfloat16 the worker's default would run its passes in
# bfloat16. worker/test_precision.py checks that path against float32 on its own.
os.environ.setdefault('MIQA_PRECISION', 'float32')
TEST_REDIS_DB = 3  # the tests' own database index, away from a stack's default 0
# A test that requests one of these (directly or through pytest-girder's server, admin,
# fsAssetstore... which all need ``db``) talks to mongod or Redis.
SERVICE_FIXTURES = frozenset({'db', 'test_stack'})

_stack: services.Stack | None = None
_started: list[str] = []  # the services this session started itself, in order
_up = False  # whether start_services() ran (external servers start nothing)
_needed_by: tuple[int, int] | None = None  # (tests that need the services, tests collected)


def _distributed(config) -> bool:
    """Whether pytest-xdist runs the tests in worker processes (the controller collects none)."""
    return bool(getattr(config.option, 'numprocesses', None)) and \
        getattr(config.option, 'dist', 'no') != 'no'


def pytest_configure(config):
    """Choose the ports and export the broker's URL before anything imports girder_worker (it
    reads the env once); the services themselves start only once a test needs them."""
    global _stack
    if hasattr(config, 'workerinput'):  # xdist workers share the controller's services
        return
    state = Path(tempfile.mkdtemp(prefix='miqa-test-'))
    _stack = services.Stack(
        state_dir=state, girder_port=services.free_port(), mongo_port=services.free_port(),
        redis_port=services.free_port(), redis_db=TEST_REDIS_DB,
        mongo_uri=os.environ.get('MIQA_MONGO_URI') or None,
        redis_url=os.environ.get('MIQA_REDIS_URL') or None)
    config.option.mongo_uri = _stack.mongo_base_uri
    os.environ.update({
        'GIRDER_WORKER_BROKER': _stack.broker_url,
        'GIRDER_WORKER_BACKEND': _stack.broker_url,
        'GIRDER_NOTIFICATION_REDIS_URL': _stack.broker_url,
    })
    if _distributed(config):  # the workers collect; their tests may need the services
        start_services()


def start_services() -> services.Stack:
    """Start mongod and Redis once for the session (no-op for external servers or a repeat)."""
    global _up
    assert _stack is not None, 'the services are planned in pytest_configure'
    if not _up:
        _up = True
        for name, start in (('mongod', _stack.start_mongod), ('redis', _stack.start_redis)):
            if start() == 'started':
                _started.append(name)
    return _stack


def needs_services(item: pytest.Item) -> bool:
    """Whether a collected test uses the database or the broker."""
    return not SERVICE_FIXTURES.isdisjoint(getattr(item, 'fixturenames', ()))


@pytest.hookimpl(trylast=True)  # after -m / -k deselection
def pytest_collection_modifyitems(session, config, items):
    """Start the services before the first test if any test that will run needs them."""
    global _needed_by
    if _stack is None:
        return
    _needed_by = (sum(map(needs_services, items)), len(items))
    if _needed_by[0] and not config.option.collectonly:
        start_services()


def pytest_terminal_summary(terminalreporter):
    if _stack is None:
        return
    needed = f' ({_needed_by[0]} of {_needed_by[1]} tests need them)' if _needed_by else ''
    terminalreporter.write_line(
        f'miqa test services started: {", ".join(_started) or "none"}{needed}')


_exit_status: int | None = None


def pytest_sessionfinish(session, exitstatus):
    global _exit_status
    _exit_status = int(exitstatus)


def pytest_unconfigure(config):
    """Stop the services and delete their state: all of it after a green run; after a red one
    the service logs stay (and the path is printed), the ~300 MB of database files do not."""
    if _stack is None:
        return
    state = Path(_stack.state_dir)
    if not _started:
        shutil.rmtree(state, ignore_errors=True)
        return
    _stack.down()
    if _exit_status == 0:
        shutil.rmtree(state, ignore_errors=True)
    else:
        shutil.rmtree(state / 'mongo', ignore_errors=True)
        print(f'service logs of this test session: {state / "logs"}', file=sys.stderr)


@pytest.fixture(scope='session')
def test_stack() -> services.Stack:
    """The session's mongod and Redis (started here too, for a test that asks for them late)."""
    return start_services()


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
