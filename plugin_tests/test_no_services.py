"""Tests that need no Girder start no mongod and no Redis; tests that need them still get them.

Each case runs pytest in a child process, as a user does, and watches that process's
descendants in /proc while it runs.
"""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SERVICE_BINARIES = {'mongod', 'redis-server'}


def _descendants(pid: int) -> dict[int, str]:
    """The live descendants of ``pid``, as {pid: command name}, read from /proc."""
    parents: dict[int, int] = {}
    names: dict[int, str] = {}
    for entry in Path('/proc').iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / 'stat').read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces, so split after the last ')'
        names[int(entry.name)] = stat[stat.index('(') + 1:stat.rindex(')')]
        parents[int(entry.name)] = int(stat[stat.rindex(')') + 2:].split()[1])
    found, frontier = {}, [pid]
    while frontier:
        parent = frontier.pop()
        for child, ppid in parents.items():
            if ppid == parent and child not in found:
                found[child] = names[child]
                frontier.append(child)
    return found


def _run_pytest(*args: str, timeout: float = 300) -> tuple[subprocess.CompletedProcess, set]:
    """Run pytest on ``args`` in a child; returns its result and the service binaries that ran
    below it at any time."""
    env = {key: value for key, value in os.environ.items()
           if key not in ('MIQA_MONGO_URI', 'MIQA_REDIS_URL', 'PYTEST_ADDOPTS')}
    proc = subprocess.Popen(
        [sys.executable, '-m', 'pytest', *args, '-q', '-p', 'no:cacheprovider'], cwd=ROOT,
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen: set[str] = set()
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        seen |= SERVICE_BINARIES & set(_descendants(proc.pid).values())
        time.sleep(0.05)
    out, _ = proc.communicate(timeout=max(1, deadline - time.monotonic()))
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, None), seen


@pytest.mark.skipif(not Path('/proc/self/stat').exists(), reason='reads processes from /proc')
def test_worker_tests_start_no_services():
    result, seen = _run_pytest('plugin_tests/worker/test_tiling.py')
    assert result.returncode == 0, result.stdout[-2000:]
    assert 'miqa test services started: none' in result.stdout
    assert not seen, f'a run of worker tests started {sorted(seen)}'


def test_no_worker_or_training_test_needs_services():
    result, _ = _run_pytest('plugin_tests/worker', 'plugin_tests/training', '--collect-only')
    assert result.returncode == 0, result.stdout[-2000:]
    assert 'miqa test services started: none (0 of ' in result.stdout


@pytest.mark.skipif(not Path('/proc/self/stat').exists(), reason='reads processes from /proc')
def test_girder_tests_still_get_services():
    """The control: a test on pytest-girder's server starts both, and the watch sees them."""
    result, seen = _run_pytest('plugin_tests/test_plugin.py')
    assert result.returncode == 0, result.stdout[-2000:]
    assert 'miqa test services started: mongod, redis (' in result.stdout
    assert seen == SERVICE_BINARIES
