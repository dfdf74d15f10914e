"""The package boundaries: the model core imports nothing from Girder, girder-worker or Celery;
the Girder server imports no model code; the core imports no training code.

No services: plain subprocesses and source scans.
"""

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CORE_MODULES = ('constants', 'image_io', 'preprocessing', 'tiling', 'network', 'assessment',
                'fusion', 'quality_metrics', 'model_store', 'model_spec', 'cli')
# The only modules of miqa_worker that may import girder_worker and Celery.
WORKER_GLUE = ('plugin.py', 'tasks.py')
REFUSED = ('girder', 'girder_worker', 'girder_client', 'girder_jobs', 'girder_plugin_worker',
           'celery')
# What only the ``train`` extra installs: assessment needs none of it (the ``worker`` extra).
TRAIN_ONLY = ('torchio', 'sklearn', 'pandas', 'matplotlib', 'nilearn')

# Runs in a fresh interpreter: a finder refuses every Girder / girder-worker / Celery import
# and every training-only package, then the core is imported and assesses a generated volume
# with the shipped model.
CORE_WITHOUT_GIRDER = '''
import importlib.abc, json, sys

REFUSED = {refused!r}


class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in REFUSED:
            raise ModuleNotFoundError(f'refused by the test: {{name}}')
        return None


sys.meta_path.insert(0, Refuse())
import importlib
import importlib.util

loaded = []
for name in {modules!r}:
    if importlib.util.find_spec(f'miqa_worker.{{name}}') is None:
        continue  # a module another part has not added yet
    importlib.import_module(f'miqa_worker.{{name}}')
    loaded.append(name)

import nibabel
import numpy as np

from miqa_worker.assessment import get_assessor
from miqa_worker.constants import DEFAULT_MODEL

grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, 72)] * 3, indexing='ij'))
radius = np.sqrt((grid ** 2).sum(0))
data = (np.where(radius < 0.8, 600.0, 0.0) + np.where(radius < 0.5, 300.0, 0.0)
        + np.random.default_rng(0).normal(0, 10, radius.shape)).clip(0).astype(np.int16)
nibabel.save(nibabel.Nifti1Image(data, np.diag([1.5, 1.5, 1.5, 1.0])), {scan!r})
result = get_assessor(DEFAULT_MODEL).assess_file({scan!r})
print(json.dumps({{
    'loaded': loaded,
    'quality': result['quality'],
    'artifacts': sorted(result['artifacts']),
    'model': result['model'],
    'refused': sorted(m for m in sys.modules if m.split('.')[0] in REFUSED),
    'training': sorted(m for m in sys.modules if m.startswith('miqa_worker.training')),
}}))
'''


def test_core_imports_and_assesses_without_girder(tmp_path):
    """With every Girder, girder-worker, Celery and training-only import refused, the core
    modules import and assess a generated volume with the shipped model, and load no training
    code."""
    code = CORE_WITHOUT_GIRDER.format(refused=REFUSED + TRAIN_ONLY, modules=CORE_MODULES,
                                      scan=str(tmp_path / 'phantom.nii.gz'))
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                          cwd=ROOT, timeout=600, env={'MIQA_WORKER_NO_WARMUP': '1',
                                                      'PATH': '/usr/bin:/bin',
                                                      'HOME': str(tmp_path)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(out['loaded']) >= set(CORE_MODULES) - {'model_spec'}, out['loaded']
    assert out['refused'] == [] and out['training'] == []
    assert 0.0 <= out['quality'] <= 10.0
    # only what the shipped model was trained to say (its spec's trained indicators)
    assert out['artifacts'] == ['ghosting_motion', 'incomplete_coverage', 'inhomogeneity',
                                'wraparound']
    assert out['model']['name'] == 'miqa-default' and len(out['model']['sha256']) == 64


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import in a file, relative ones resolved against its package,
    plus string arguments of import_module / find_spec / __import__ calls."""
    tree = ast.parse(path.read_text(encoding='utf-8'), str(path))
    package = '.'.join(path.relative_to(ROOT).with_suffix('').parts[:-1])
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split('.')[:len(package.split('.')) - node.level + 1]
                module = '.'.join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ''
            found.append((node.lineno, module))
            found += [(node.lineno, f'{module}.{alias.name}') for alias in node.names]
        elif isinstance(node, ast.Call) and node.args and isinstance(
                node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, 'id', '')
            if name in ('import_module', 'find_spec', '__import__'):
                found.append((node.lineno, node.args[0].value))
    return found


def _offending(paths, prefixes) -> list[str]:
    return [f'{path.relative_to(ROOT)}:{line} imports {module}'
            for path in paths for line, module in _imports(path)
            if any(module == p or module.startswith(p + '.') for p in prefixes)]


def test_server_imports_no_model_code():
    """No module of the Girder plugin imports miqa_worker or torch (not even lazily, nor by
    a name handed to importlib): the server sends tasks by name and reads worker reports."""
    paths = sorted((ROOT / 'girder_miqa').rglob('*.py'))
    assert len(paths) > 10
    assert _offending(paths, ('miqa_worker', 'torch', 'monai', 'itk')) == []


def test_core_imports_no_training_and_no_girder():
    """The core modules of miqa_worker import neither its training package nor (outside the
    girder-worker plugin and its tasks) Girder, girder-worker or Celery."""
    paths = sorted(p for p in (ROOT / 'miqa_worker').glob('*.py'))
    assert {p.stem for p in paths} >= set(CORE_MODULES) - {'model_spec'}
    assert _offending(paths, ('miqa_worker.training',)) == []
    core = [p for p in paths if p.name not in WORKER_GLUE]
    assert _offending(core, REFUSED) == []


def test_server_and_worker_agree_on_names():
    """The server's review vocabulary and image endings are the worker's output keys and the
    endings it reads (each package keeps its own copy; they must not drift)."""
    from girder_miqa import constants as server
    from miqa_worker import constants as worker

    assert server.ARTIFACT_KEYS == worker.ARTIFACT_KEYS
    assert server.ARTIFACTS == worker.ARTIFACTS
    assert server.IMAGE_EXTENSIONS == worker.IMAGE_EXTENSIONS


def test_core_imports_in_a_venv_without_girder_worker(tmp_path):
    """A real virtual environment that has the model stack but no Girder, girder-worker or
    Celery installed at all (its site folder links every package of this one but those):
    ``python -c 'import miqa_worker.assessment'`` works there, the Girder side does not."""
    import site
    import venv

    ours = Path(site.getsitepackages()[0])
    linked = tmp_path / 'site'
    linked.mkdir()
    for entry in ours.iterdir():
        name = entry.name.lower()
        if name.startswith(('girder', 'celery', '__editable__')) or name.endswith('.pth'):
            continue
        (linked / entry.name).symlink_to(entry)
    env_dir = tmp_path / 'venv'
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / 'bin' / 'python'
    env_site = subprocess.run(
        [python, '-c', 'import sysconfig; print(sysconfig.get_paths()["purelib"])'],
        capture_output=True, text=True, check=True).stdout.strip()
    (Path(env_site) / 'core.pth').write_text(f'{linked}\n{ROOT}\n')

    probe = ("import importlib.util as u, json; "
             "import miqa_worker.assessment, miqa_worker.model_store, miqa_worker.image_io; "
             "print(json.dumps({n: u.find_spec(n) is not None "
             "for n in ('girder', 'girder_worker', 'celery')}))")
    done = subprocess.run([python, '-c', probe], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout) == {'girder': False, 'girder_worker': False, 'celery': False}
    server = subprocess.run([python, '-c', 'import girder_miqa'], capture_output=True, text=True,
                            cwd=tmp_path)
    assert server.returncode != 0 and 'girder' in server.stderr
