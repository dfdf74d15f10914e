"""The README's stack command, as a user runs it: up, status, up again, down; and its failures."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
MIQA = str(ROOT / 'devops' / 'miqa')

sys.path.insert(0, str(ROOT / 'devops'))
import services  # noqa: E402


def _env(tmp_path: Path, **extra) -> dict:
    env = dict(os.environ)
    for key in ('MIQA_MONGO_URI', 'MIQA_REDIS_URL'):
        env.pop(key, None)
    env.update({
        'MIQA_STATE_DIR': str(tmp_path / 'state'),
        'MIQA_PORT': str(services.free_port()),
        'MIQA_MONGO_PORT': str(services.free_port()),
        'MIQA_REDIS_PORT': str(services.free_port()),
        'MIQA_ADMIN_PASSWORD': 'stack-test-password',
        **extra,
    })
    return env


def _run(args, env, timeout=600):
    return subprocess.run([MIQA, *args], env=env, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


@pytest.mark.stack
def test_up_status_down(tmp_path):
    import girder_client

    env = _env(tmp_path)
    try:
        up = _run(['up'], env)
        assert up.returncode == 0, up.stdout + up.stderr
        assert 'MIQA is running at http://127.0.0.1:' in up.stdout

        status = _run(['status', '--json'], env)
        assert status.returncode == 0, status.stdout + status.stderr
        rows = {row['service']: row for row in json.loads(status.stdout)}
        assert set(rows) == {'mongod', 'redis', 'girder', 'worker-1'}
        for row in rows.values():
            assert row['state'] == 'running' and row['pid']
            assert Path(row['log']).is_file()

        gc = girder_client.GirderClient(apiUrl=f'http://127.0.0.1:{env["MIQA_PORT"]}/api/v1')
        gc.authenticate('admin', 'stack-test-password')
        projects = gc.get('miqa/project')
        assert len(projects) == 1
        folder_id = projects[0]['_id']
        sessions = list(gc.listFolder(folder_id))
        scans = [item for s in sessions for item in gc.listItem(s['_id'])]
        assert scans, 'the demo project has no scans'
        assert all(item.get('miqa', {}).get('state') == 'unreviewed' for item in scans)

        again = _run(['up'], env)  # harmless: nothing restarted, nothing uploaded twice
        assert again.returncode == 0, again.stdout + again.stderr
        assert 'already running' in again.stdout
        assert '(0 uploaded now' in again.stdout
        assert [row['pid'] for row in json.loads(_run(['status', '--json'], env).stdout)] == \
            [rows[name]['pid'] for name in ('mongod', 'redis', 'girder', 'worker-1')]
    finally:
        down = _run(['down'], env)
    assert down.returncode == 0, down.stdout + down.stderr
    status = _run(['status', '--json'], env)
    assert status.returncode == 1
    assert all(row['state'] == 'stopped' for row in json.loads(status.stdout))
    assert not services.port_in_use(int(env['MIQA_PORT']))


@pytest.mark.stack
def test_up_fails_cleanly_when_a_port_is_taken(tmp_path):
    with socket.socket() as blocker:
        blocker.bind(('127.0.0.1', 0))
        blocker.listen()
        env = _env(tmp_path, MIQA_PORT=str(blocker.getsockname()[1]))
        result = _run(['up', '--no-demo'], env)
    assert result.returncode != 0
    message = [line for line in result.stderr.splitlines() if line.startswith('Error')]
    assert len(message) == 1, result.stderr
    assert f'port {env["MIQA_PORT"]} is taken' in message[0]
    assert str(tmp_path / 'state' / 'logs' / 'girder.log') in message[0]
    # mongod and redis had started: nothing half-started is left running
    status = _run(['status', '--json'], env)
    assert all(row['state'] == 'stopped' for row in json.loads(status.stdout))
    assert not services.port_in_use(int(env['MIQA_MONGO_PORT']))


def test_missing_binary_is_a_one_line_error(tmp_path):
    stack = services.Stack(state_dir=tmp_path, redis_port=services.free_port())
    env_path = os.environ.get('PATH', '')
    os.environ['PATH'] = str(tmp_path)  # no redis-server on this PATH
    try:
        with pytest.raises(services.ServiceError) as err:
            stack.start_redis()
    finally:
        os.environ['PATH'] = env_path
    assert 'redis-server not found' in str(err.value)
    assert str(tmp_path / 'logs' / 'redis.log') in str(err.value)


def test_compose_file_structure():
    compose = yaml.safe_load((ROOT / 'devops' / 'docker-compose.yml').read_text())
    services_ = compose['services']
    assert set(services_) == {'mongo', 'redis', 'girder', 'worker'}
    assert services_['mongo']['image'].startswith('mongo:')
    assert services_['redis']['image'].startswith('redis:')
    assert services_['girder']['image'] == services_['worker']['image']
    assert services_['girder']['build']['dockerfile'] == 'devops/Dockerfile'
    assert (ROOT / 'devops' / 'Dockerfile').is_file()
    for name in ('girder', 'worker'):
        env = services_[name]['environment']
        assert env['GIRDER_WORKER_BROKER'].startswith('redis://redis:')
        assert env['GIRDER_WORKER_BACKEND'].startswith('redis://redis:')
        assert env['GIRDER_NOTIFICATION_REDIS_URL'].startswith('redis://redis:')
        assert 'assetstore:/assetstore' in services_[name]['volumes']
    assert services_['girder']['command'][:2] == ['girder', 'serve']
    assert '--mode' in services_['girder']['command']
    worker_cmd = services_['worker']['command']
    assert worker_cmd[:4] == ['celery', '-A', 'girder_worker.app', 'worker']
    assert 'ports' not in services_['worker']  # scalable: --scale worker=N
    assert set(compose['volumes']) == {'mongo-data', 'redis-data', 'assetstore'}
