"""Find and load MIQA models: ``<dir>/<name>/weights.pt`` (a state_dict) + ``model.json``.

Search order for a name: ``MIQA_MODEL_DIR`` (``os.pathsep``-separated directories), then the
package's ``miqa_worker/models/``. A path to a model directory (or to its ``weights.pt``) is
used as is. Nothing is ever downloaded.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

PACKAGE_MODEL_DIR = Path(__file__).resolve().parent / 'models'
WEIGHTS_FILE = 'weights.pt'
INFO_FILE = 'model.json'


class ModelError(RuntimeError):
    """A model that cannot be used (unreadable or incompatible weights)."""


class ModelNotFoundError(ModelError, FileNotFoundError):
    """No model of that name or path; the message names every place searched."""


def search_dirs() -> list[Path]:
    """Directories searched for a model name, in order."""
    dirs = [Path(p).expanduser() for p in os.environ.get('MIQA_MODEL_DIR', '').split(os.pathsep)
            if p.strip()]
    return dirs + [PACKAGE_MODEL_DIR]


def find_model(name_or_path: str | os.PathLike) -> Path:
    """The directory of a model given its name or path; ModelNotFoundError naming the places."""
    text = os.fspath(name_or_path)
    candidate = Path(text).expanduser()
    looked: list[str] = []
    if candidate.is_file() and candidate.name == WEIGHTS_FILE:
        return candidate.parent
    if os.sep in text or candidate.is_absolute() or text.startswith('.'):
        if (candidate / WEIGHTS_FILE).is_file():
            return candidate
        raise ModelNotFoundError(f'model not found: no {WEIGHTS_FILE} in {candidate}')
    for base in search_dirs():
        path = base / text
        if (path / WEIGHTS_FILE).is_file():
            return path
        looked.append(str(path))
    raise ModelNotFoundError(f'model {text!r} not found: no {WEIGHTS_FILE} in '
                             f'{", ".join(looked)} (set MIQA_MODEL_DIR to add a directory)')


# A model name as a project setting or a task argument: one plain directory name, never a path.
MODEL_NAME_RE = re.compile(r'^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$')


def installed_models() -> list[str]:
    """The names of the installed models: directories with a ``model.json`` and a
    ``weights.pt`` in the search directories (sorted, each name once)."""
    names = set()
    for base in search_dirs():
        try:
            entries = list(base.iterdir())
        except OSError:
            continue
        for entry in entries:
            if (MODEL_NAME_RE.match(entry.name) and (entry / INFO_FILE).is_file()
                    and (entry / WEIGHTS_FILE).is_file()):
                names.add(entry.name)
    return sorted(names)


def find_installed(name) -> Path:
    """The directory of an installed model given its plain name (what users choose: a project
    setting, a task argument). Never opens what it is given as a path: anything but a name of
    an installed model is a ModelNotFoundError whose message lists the installed names and does
    not repeat the input (it may be a path)."""
    installed = installed_models()
    listing = ', '.join(installed) or 'none'
    if not isinstance(name, str) or not MODEL_NAME_RE.match(name):
        raise ModelNotFoundError(
            'the model must be the name of an installed model (letters, digits, ".", "_" and '
            f'"-", no path); installed: {listing}')
    for base in search_dirs():
        root = base.resolve()
        path = (base / name).resolve()
        if path.parent != root:  # a symlink out of the models folder
            continue
        if (path / WEIGHTS_FILE).is_file() and (path / INFO_FILE).is_file():
            return path
    raise ModelNotFoundError(f'model {name!r} is not installed; installed: {listing}')


_sha_cache: dict[tuple[str, int, int], str] = {}


def sha256_file(path: Path) -> str:
    """The SHA-256 of a file, cached by path, size and modification time."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _sha_cache:
        digest = hashlib.sha256()
        with open(path, 'rb') as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b''):
                digest.update(chunk)
        _sha_cache[key] = digest.hexdigest()
    return _sha_cache[key]


def read_info(model_dir: Path) -> dict[str, Any]:
    """The model's ``model.json`` plus ``sha256``/``path`` (name from the directory if absent)."""
    info: dict[str, Any] = {}
    info_path = model_dir / INFO_FILE
    if info_path.is_file():
        try:
            info = json.loads(info_path.read_text(encoding='utf-8'))
        except (OSError, ValueError) as exc:
            raise ModelError(f'unreadable {info_path}: {exc}') from None
        if not isinstance(info, dict):
            raise ModelError(f'{info_path} is not a JSON object')
    info.setdefault('name', model_dir.name)
    info.setdefault('version', 'unversioned')
    info['sha256'] = sha256_file(model_dir / WEIGHTS_FILE)
    info['path'] = str(model_dir)
    return info


def _first_line(exc: Exception) -> str:
    """An exception's first message line (torch's load errors run over many), else its type."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def penalty_families(info: dict[str, Any]) -> list[str]:
    """The families whose quality points a model's extra outputs estimate (``model.json``
    ``penalty_families``, in output order; absent: none). ValueError with the reason otherwise.
    """
    families = info.get('penalty_families') or []
    if not isinstance(families, list) or not all(isinstance(f, str) and f for f in families):
        raise ValueError('penalty_families must be a list of artifact family names')
    if len(set(families)) != len(families):
        raise ValueError('penalty_families names a family twice')
    return families


def load_model(name_or_path: str | os.PathLike):
    """Load a model: ``(network in eval mode on CPU, info dict with sha256 of weights.pt)``."""
    import torch

    from .network import build_network

    model_dir = find_model(name_or_path)
    info = read_info(model_dir)
    weights = model_dir / WEIGHTS_FILE
    try:
        state = torch.load(weights, map_location='cpu', weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file
        raise ModelError(f'cannot load {weights}: {type(exc).__name__}: {exc}') from None
    if isinstance(state, dict) and isinstance(state.get('state_dict'), dict):
        state = state['state_dict']
    try:
        network = build_network(info.get('channels'), len(penalty_families(info)))
    except ValueError as exc:
        raise ModelError(f'{model_dir / INFO_FILE}: {exc}') from None
    try:
        network.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as exc:
        raise ModelError(f'{weights} does not fit the MIQA network: {_first_line(exc)}') from None
    network.eval()
    for parameter in network.parameters():
        parameter.requires_grad_(False)
    return network, info


def load_members(info: dict[str, Any], like) -> list:
    """The networks of ``model.json`` ``view_members`` (weight files in the model folder, the
    same network as ``weights.pt``, trained with other seeds): their whole-volume-view outputs
    are averaged with the main network's. ModelError with the reason for a bad entry."""
    import copy

    import torch

    names = info.get('view_members') or []
    if not names:
        return []  # also for a network in memory, which has no folder
    if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
        raise ModelError(f'{info.get("name")}: view_members must be a list of weight files')
    model_dir = Path(info['path'])
    members = []
    for name in names:
        path = model_dir / name
        if Path(name).name != name or not path.is_file():
            raise ModelError(f'{info.get("name")}: view member {name!r} is not a file in '
                             f'{model_dir}')
        network = copy.deepcopy(like)
        try:
            network.load_state_dict(torch.load(path, map_location='cpu', weights_only=True))
        except Exception as exc:  # torch raises many types for a bad file
            raise ModelError(f'{path} does not fit the network of {WEIGHTS_FILE}: '
                             f'{_first_line(exc)}') from None
        network.eval()
        members.append(network)
    return members


def save_model(network, model_dir: str | os.PathLike, name: str, version: str,
               description: str, **extra: Any) -> Path:
    """Write ``weights.pt`` and ``model.json`` (used by tests and training)."""
    import datetime

    import torch

    path = Path(model_dir)
    path.mkdir(parents=True, exist_ok=True)
    torch.save(network.state_dict(), path / WEIGHTS_FILE)
    info = {'name': name, 'version': version,
            'created': datetime.datetime.now(datetime.timezone.utc).isoformat(),
            'description': description, **extra}
    (path / INFO_FILE).write_text(json.dumps(info, indent=2) + '\n', encoding='utf-8')
    return path
