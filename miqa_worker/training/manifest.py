"""The data manifest: which real scans are generator bases, whose they are, and who is held out.

The manifest (``data/manifest.json`` beside this module for the shipped model) lists each base
by file name inside the shared folder, with its subject (person), contrast and role (``train``
or ``held-out``: every generated volume of a held-out person is kept out of training). The
shared folder itself is never baked into code: it comes from the command line or the recipe,
else ``$MIQA_SHARED_MRI``, else ``../shared/data/mri`` of the current directory.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

MANIFEST_FORMAT = 'miqa-data-manifest/1'
DEFAULT_MANIFEST = Path(__file__).resolve().parent / 'data' / 'manifest.json'
SHARED_ENV = 'MIQA_SHARED_MRI'
DEFAULT_SHARED = Path('..') / 'shared' / 'data' / 'mri'
ROLES = ('train', 'held-out')


@dataclass(frozen=True)
class ManifestEntry:
    """One real base scan: its file in the shared folder, its person, contrast and role."""

    file: str
    subject: str
    contrast: str
    role: str = 'train'


@dataclass(frozen=True)
class DataManifest:
    """The real bases of a model, in the order the generator takes them."""

    entries: tuple[ManifestEntry, ...]
    path: Path | None = None

    @property
    def held_out_subjects(self) -> tuple[str, ...]:
        """The held-out people, in their first appearance's order."""
        return tuple(dict.fromkeys(e.subject for e in self.entries if e.role == 'held-out'))

    def roles(self, held_out: tuple[str, ...] | None = None) -> dict[str, str]:
        """``file -> 'subject (held-out test|training)'`` for the real-scan look."""
        test = set(self.held_out_subjects if held_out is None else held_out)
        return {e.file: f'{e.subject} ({"held-out test" if e.subject in test else "training"})'
                for e in self.entries}


def load_manifest(path: Path | str | None = None) -> DataManifest:
    """Read and check a manifest; ValueError with one line naming the bad field."""
    path = Path(path) if path is not None else DEFAULT_MANIFEST
    try:
        raw = json.loads(path.read_text(encoding='utf-8'))
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f'data manifest {path}: {exc}') from None
    if not isinstance(raw, dict) or raw.get('format') != MANIFEST_FORMAT:
        raise ValueError(f'data manifest {path}: format must be {MANIFEST_FORMAT!r}')
    unknown = set(raw) - {'format', 'description', 'sources'}
    if unknown:
        raise ValueError(f'data manifest {path}: unknown key {sorted(unknown)[0]!r}')
    entries = []
    for n, item in enumerate(raw.get('sources') or []):
        where = f'data manifest {path}: sources[{n}]'
        if not isinstance(item, dict):
            raise ValueError(f'{where} must be an object')
        extra = set(item) - {'file', 'subject', 'contrast', 'role', 'note'}
        if extra:
            raise ValueError(f'{where}: unknown key {sorted(extra)[0]!r}')
        for key in ('file', 'subject', 'contrast'):
            if not isinstance(item.get(key), str) or not item[key]:
                raise ValueError(f'{where}.{key} must be a non-empty string')
        if item.get('role', 'train') not in ROLES:
            raise ValueError(f'{where}.role must be one of {", ".join(ROLES)}')
        entries.append(ManifestEntry(item['file'], item['subject'], item['contrast'],
                                     item.get('role', 'train')))
    return DataManifest(tuple(entries), path)


def default_shared_dir() -> Path:
    """``$MIQA_SHARED_MRI``, else ``../shared/data/mri`` relative to the current directory."""
    return Path(os.environ.get(SHARED_ENV) or DEFAULT_SHARED)
