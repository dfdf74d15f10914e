"""Find and load MIQA models: ``<dir>/<name>/weights.pt`` (a state_dict) + ``model.json``
(:mod:`miqa_worker.model_spec`, read by :func:`read_spec`).

Search order for a name: ``MIQA_MODEL_DIR`` (``os.pathsep``-separated directories), then the
package's ``miqa_worker/models/``. A path to a model directory (or to its ``weights.pt``) is
used as is. Nothing is ever downloaded.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from pathlib import Path
from typing import Any

from .model_spec import (
    SPEC_FILE,
    WEIGHTS_FILE,
    ModelSpec,
    ModelSpecError,
    load_spec,
    save_spec,
    upgrade_v1,
)

logger = logging.getLogger(__name__)

PACKAGE_MODEL_DIR = Path(__file__).resolve().parent / 'models'
INFO_FILE = SPEC_FILE


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


def read_spec(model_dir: Path) -> ModelSpec:
    """The model folder's validated ``model.json``; ModelError (one line naming the field)."""
    try:
        return load_spec(Path(model_dir) / INFO_FILE)
    except ModelSpecError as exc:
        raise ModelError(f'{Path(model_dir)}{os.sep}{exc}') from None


def read_info(model_dir: Path) -> dict[str, Any]:
    """``{name, version, description, created, format_version, sha256, path}`` of a model
    folder: its validated ``model.json`` and the SHA-256 of its ``weights.pt``."""
    return model_info(read_spec(model_dir), Path(model_dir))


def model_info(spec: ModelSpec, model_dir: Path) -> dict[str, Any]:
    """What :func:`read_info` gives, for a spec already read."""
    return {'name': spec.name, 'version': spec.version, 'description': spec.description,
            'created': spec.created, 'format_version': spec.format_version,
            'sha256': sha256_file(model_dir / WEIGHTS_FILE), 'path': str(model_dir)}


def _first_line(exc: Exception) -> str:
    """An exception's first message line (torch's load errors run over many), else its type."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def load_network(model_dir: Path, spec: ModelSpec):
    """The network of a model folder's ``weights.pt``, built as its spec says, in eval mode on
    the CPU with gradients off; ModelError with the reason when the weights do not fit."""
    import torch

    from .network import build_network

    weights = Path(model_dir) / WEIGHTS_FILE
    try:
        state = torch.load(weights, map_location='cpu', weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file
        raise ModelError(f'cannot load {weights}: {type(exc).__name__}: {exc}') from None
    if isinstance(state, dict) and isinstance(state.get('state_dict'), dict):
        state = state['state_dict']
    network = build_network(spec.network.channels, len(spec.postprocessing.penalty_families))
    try:
        network.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as exc:
        raise ModelError(f'{weights} does not fit the MIQA network: {_first_line(exc)}') from None
    return _frozen(network)


def _frozen(network):
    network.eval()
    for parameter in network.parameters():
        parameter.requires_grad_(False)
    return network


def load_model(name_or_path: str | os.PathLike):
    """Load a model: ``(network in eval mode on CPU, info)`` (:func:`read_info`)."""
    model_dir = find_model(name_or_path)
    spec = read_spec(model_dir)
    return load_network(model_dir, spec), model_info(spec, model_dir)


def load_members(spec: ModelSpec, model_dir: Path | None, like) -> list:
    """The networks of the spec's ``members`` (weight files in the model folder, the same
    network as ``weights.pt``, trained with other seeds): their whole-volume-view outputs are
    averaged with the main network's. ModelError with the reason for a bad entry."""
    import copy

    import torch

    if not spec.members or model_dir is None:
        return []  # a network in memory has no folder
    members = []
    for name in spec.members:
        path = Path(model_dir) / name
        if not path.is_file():
            raise ModelError(f'{spec.name}: member {name!r} is not a file in {model_dir}')
        network = copy.deepcopy(like)
        try:
            network.load_state_dict(torch.load(path, map_location='cpu', weights_only=True))
        except Exception as exc:  # torch raises many types for a bad file
            raise ModelError(f'{path} does not fit the network of {WEIGHTS_FILE}: '
                             f'{_first_line(exc)}') from None
        members.append(_frozen(network))
    return members


def load_fusion(spec: ModelSpec, model_dir: Path):
    """The fused indicator a spec names, read from its file in the model folder (None when the
    spec has none); ModelError when the file is missing, bad, or about another indicator."""
    from .fusion import FusionError, load_fusion_file

    if spec.fusion is None:
        return None
    path = Path(model_dir) / spec.fusion.file
    try:
        if not path.is_file():
            raise FusionError(f'missing in {model_dir}')
        fusion = load_fusion_file(path)
        if fusion.indicator != spec.fusion.indicator:
            raise FusionError(f'decides {fusion.indicator!r}, model.json names '
                              f'{spec.fusion.indicator!r}')
    except FusionError as exc:
        raise ModelError(f'model {spec.name}: {spec.fusion.file}: {exc}') from None
    return fusion


def load_folder(name_or_path: str | os.PathLike):
    """Everything the assessor runs of a model, as its ``model.json`` says:
    ``(network, spec, info, fusion or None, member networks)``; ModelError naming the
    problem."""
    model_dir = find_model(name_or_path)
    spec = read_spec(model_dir)
    network = load_network(model_dir, spec)
    return (network, spec, model_info(spec, model_dir), load_fusion(spec, model_dir),
            load_members(spec, model_dir, network))


def save_model(network, model_dir: str | os.PathLike, name: str, version: str,
               description: str, spec: ModelSpec | None = None, **legacy: Any) -> Path:
    """Write ``weights.pt`` and ``model.json`` (tests, benchmarks, training).

    ``spec`` is written as given but for name, version and description; without it, the
    older format's keywords (``channels``, ``global_view_weight``, ``view_weights``,
    ``view_flips``, ``view_members``, ``penalty_families``, ...) are converted by
    :func:`model_spec.upgrade_v1`.
    """
    import dataclasses
    import datetime

    import torch

    created = datetime.datetime.now(datetime.timezone.utc).isoformat()
    if spec is None:
        spec = upgrade_v1({'name': name, 'version': version, 'created': created,
                           'description': description, **legacy})
    elif legacy:
        raise TypeError(f'save_model: spec given, so {sorted(legacy)[0]} is not used')
    spec = dataclasses.replace(spec, name=name, version=version, description=description)
    path = Path(model_dir)
    path.mkdir(parents=True, exist_ok=True)
    torch.save(network.state_dict(), path / WEIGHTS_FILE)
    save_spec(spec, path / INFO_FILE)
    return path
