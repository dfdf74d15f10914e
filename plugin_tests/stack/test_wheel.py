"""The wheel a lab installs: built by ``python -m build``, installed with pip into a fresh venv
that cannot see this repository, it loads as a Girder and a girder-worker plugin, runs its
commands, carries the shipped model and, under a real ``girder serve``, serves its web client.

The fresh venv gets its dependencies (Girder, torch...) from the project's venv through a
``.pth`` line naming that venv's site-packages, so the test runs offline and in seconds; the
package itself comes only from the wheel.
"""

import json
import os
import subprocess
import sys
import sysconfig
import urllib.request
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUNDLE = ROOT / 'girder_miqa' / 'web_client' / 'dist' / 'girder-plugin-miqa.umd.cjs'
ITK_PIPELINE = 'itk/pipelines/nrrd-read-image.js'  # one file of the client's itk/ subfolders

sys.path.insert(0, str(ROOT / 'devops'))
import services  # noqa: E402

pytestmark = pytest.mark.stack


@pytest.fixture(scope='session')
def wheel(tmp_path_factory) -> Path:
    """The wheel ``python -m build`` makes from this checkout (sdist first, then its wheel)."""
    if not BUNDLE.exists():
        pytest.skip(f'the web client is not built ({BUNDLE} is missing): bash client/build.sh')
    try:
        import build  # noqa: F401
    except ImportError:
        pytest.skip('needs the `build` package (the dev extra): pip install build')
    out = tmp_path_factory.mktemp('dist')
    # --no-isolation: setuptools and wheel come from this venv, so no index is needed.
    result = subprocess.run(
        [sys.executable, '-m', 'build', '--no-isolation', '--outdir', str(out), str(ROOT)],
        capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    wheels = list(out.glob('girder_miqa-*.whl'))
    assert len(wheels) == 1, sorted(p.name for p in out.iterdir())
    return wheels[0]


@pytest.fixture(scope='session')
def venv(wheel, tmp_path_factory) -> Path:
    """A fresh venv holding only the wheel; its dependencies come from the project's venv."""
    home = tmp_path_factory.mktemp('wheel-venv')
    subprocess.run([sys.executable, '-m', 'venv', '--without-pip', str(home)], check=True)
    python = home / 'bin' / 'python'
    site = Path(_run(python, '-c', 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
                .stdout.strip())
    deps = dict.fromkeys([sysconfig.get_paths()['purelib'], sysconfig.get_paths()['platlib']])
    (site / 'project-deps.pth').write_text(''.join(f'{path}\n' for path in deps))
    result = subprocess.run(
        [sys.executable, '-m', 'pip', '--python', str(python), 'install', '--no-deps',
         '--no-index', '--no-compile', '-q', str(wheel)],
        capture_output=True, text=True, timeout=300, cwd=home, env=_env())
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    return home


def _env() -> dict:
    """This session's environment without anything that would put the repository on sys.path."""
    env = {key: value for key, value in os.environ.items()
           if key not in ('PYTHONPATH', 'PYTHONHOME', 'PYTHONSTARTUP')}
    env['PYTHONNOUSERSITE'] = '1'
    return env


def _run(*argv, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run a command of the venv outside the repository; fails the test with its output."""
    result = subprocess.run([str(arg) for arg in argv], capture_output=True, text=True,
                            timeout=timeout, cwd=cwd or Path(argv[0]).parent, env=_env(),
                            stdin=subprocess.DEVNULL)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    return result


def _venv_json(venv: Path, code: str) -> dict:
    """Run ``code`` in the venv's Python; it prints one JSON object, returned here."""
    return json.loads(_run(venv / 'bin' / 'python', '-c', code).stdout.strip().splitlines()[-1])


def test_wheel_holds_the_web_client_and_the_shipped_model(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    dist = ROOT / 'girder_miqa' / 'web_client' / 'dist'
    built = {p.relative_to(ROOT).as_posix() for p in dist.rglob('*') if p.is_file()}
    assert built and built <= names, sorted(built - names)[:5]
    assert f'girder_miqa/web_client/dist/{ITK_PIPELINE}' in names
    model = ROOT / 'miqa_worker' / 'models' / 'miqa-default'
    shipped = {p.relative_to(ROOT).as_posix() for p in model.iterdir() if p.is_file()}
    assert {'model.json', 'weights.pt'} <= {Path(n).name for n in shipped}
    assert shipped <= names, sorted(shipped - names)


def test_a_wheel_without_the_built_client_is_refused(tmp_path):
    """From a checkout whose client is not built (a fresh clone), the wheel build stops and says
    why, instead of making a plugin with no review page."""
    pytest.importorskip('build')
    import shutil

    tree = tmp_path / 'checkout'
    tree.mkdir()
    for name in ('setup.py', 'MANIFEST.in', 'pyproject.toml', 'README.md'):
        shutil.copy(ROOT / name, tree / name)
    skip = shutil.ignore_patterns('__pycache__', 'dist', '*.pt', '*.png')  # no client, light
    for package in ('girder_miqa', 'miqa_worker'):
        shutil.copytree(ROOT / package, tree / package, ignore=skip)
    result = subprocess.run(
        [sys.executable, '-m', 'build', '--no-isolation', '--wheel', '--outdir',
         str(tmp_path / 'out'), str(tree)],
        capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL, env=_env())
    assert result.returncode != 0
    assert 'web_client/dist/girder-plugin-miqa.umd.cjs is missing: run `bash client/build.sh`' \
        in result.stdout + result.stderr
    assert not list((tmp_path / 'out').glob('*.whl'))


def test_package_resolves_inside_the_venv_not_the_repository(venv):
    found = _venv_json(venv, (
        'import json, os, sys, girder_miqa, miqa_worker\n'
        'print(json.dumps({"paths": [os.path.abspath(p or ".") for p in sys.path], '
        '"files": [girder_miqa.__file__, miqa_worker.__file__]}))'))
    site = str(venv / 'lib')
    assert all(file.startswith(site) for file in found['files']), found['files']
    assert str(ROOT) not in found['paths'], found['paths']


def test_entry_points_load_from_the_installed_wheel(venv):
    found = _venv_json(venv, (
        'import json\n'
        'from importlib.metadata import distribution, entry_points\n'
        'from girder.plugin import GirderPlugin\n'
        'from girder_worker import GirderWorkerPluginABC\n'
        'bases = {"girder.plugin": GirderPlugin, "girder_worker_plugins": GirderWorkerPluginABC}\n'
        'out = {"location": str(distribution("girder-miqa").locate_file(""))}\n'
        'for group, base in bases.items():\n'
        '    eps = [ep for ep in entry_points(group=group) if ep.dist.name == "girder-miqa"]\n'
        '    loaded = {ep.name: ep.load() for ep in eps}\n'
        '    out[group] = {name: [issubclass(cls, base), __import__(cls.__module__, '
        'fromlist=["_"]).__file__] for name, cls in loaded.items()}\n'
        'out["scripts"] = sorted(ep.name for ep in entry_points(group="console_scripts") '
        'if ep.dist.name == "girder-miqa")\n'
        'print(json.dumps(out))'))
    site = str(venv / 'lib')
    assert found['location'].startswith(site), found['location']
    for group in ('girder.plugin', 'girder_worker_plugins'):
        assert list(found[group]) == ['miqa'], found[group]
        is_plugin, module_file = found[group]['miqa']
        assert is_plugin, f'{group} miqa does not load a plugin class'
        assert module_file.startswith(site), module_file
    assert found['scripts'] == ['miqa', 'miqa-assess', 'miqa-train']


@pytest.mark.parametrize('script', ['miqa', 'miqa-assess', 'miqa-train'])
def test_console_scripts_run(venv, script):
    result = _run(venv / 'bin' / script, '--help')
    assert 'Usage:' in result.stdout


def test_shipped_model_is_inside_the_installed_package(venv):
    found = _venv_json(venv, (
        'import json\n'
        'from importlib.resources import files\n'
        'model = files("miqa_worker") / "models" / "miqa-default"\n'
        'print(json.dumps({"dir": str(model), "files": sorted(p.name for p in model.iterdir()),'
        ' "spec": json.loads((model / "model.json").read_text())}))'))
    assert found['dir'].startswith(str(venv / 'lib')), found['dir']
    assert {'model.json', 'weights.pt', 'MODEL_CARD.md'} <= set(found['files'])
    shipped = json.loads((ROOT / 'miqa_worker' / 'models' / 'miqa-default' / 'model.json')
                         .read_text())
    assert found['spec'] == shipped


def test_girder_serve_from_the_venv_serves_the_plugin_static_files(venv, test_stack, tmp_path):
    """``girder serve`` of the venv loads the installed plugin, whose client it then serves."""
    import pymongo

    port = services.free_port()
    database = 'miqa_wheel_test'
    base = test_stack.mongo_base_uri
    uri = base if '/' in base.split('//', 1)[-1] else f'{base}/{database}'
    log = open(tmp_path / 'girder.log', 'wb')  # noqa: SIM115 - the child writes it
    girder = subprocess.Popen(
        [str(venv / 'bin' / 'python'), '-c',
         'import sys; from girder.cli import main; sys.argv[0] = "girder"; sys.exit(main())',
         'serve', '--mode', 'production', '--database', uri, '--host', '127.0.0.1',
         '--port', str(port)],
        cwd=tmp_path, env=_env(), stdout=log, stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL)
    root = f'http://127.0.0.1:{port}/'
    try:
        up = services.wait_for_http(f'{root}api/v1/system/version', 90, girder)
        assert up, (tmp_path / 'girder.log').read_text(errors='replace')[-3000:]
        with urllib.request.urlopen(f'{root}api/v1/system/plugin_static_files', timeout=10) as r:
            static = json.load(r)
        scripts = [url for url in static['js'] if url.startswith('plugin_static/miqa/')]
        assert len(scripts) == 1, (static, (tmp_path / 'girder.log').read_text()[-3000:])
        with urllib.request.urlopen(root + scripts[0], timeout=30) as resp:
            assert resp.status == 200
            assert 'javascript' in resp.headers.get('Content-Type', ''), resp.headers
            assert resp.read() == BUNDLE.read_bytes()
        with urllib.request.urlopen(f'{root}plugin_static/miqa/{ITK_PIPELINE}', timeout=30) as r:
            assert r.status == 200 and 'javascript' in r.headers.get('Content-Type', '')
    finally:
        girder.terminate()
        try:
            girder.wait(timeout=15)
        except subprocess.TimeoutExpired:
            girder.kill()
            girder.wait()
        log.close()
        if uri.endswith(f'/{database}'):
            pymongo.MongoClient(base).drop_database(database)
