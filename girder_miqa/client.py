"""A Python client for the MIQA review API, built on girder_client.GirderClient."""

from __future__ import annotations

import io
import json
import os
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from girder_client import GirderClient

from .constants import is_image_name

DICOM_SUFFIXES = ('.dcm', '.ima')


def _id(value: Any) -> str:
    """An id from a document or an id string."""
    return str(value['_id']) if isinstance(value, dict) else str(value)


def _dicom_series(directory: Path) -> bool:
    """Whether a directory holds a DICOM series (files ending .dcm/.ima and no sub-folders)."""
    entries = list(directory.iterdir())
    return bool(entries) and all(e.is_file() for e in entries) and any(
        e.name.lower().endswith(DICOM_SUFFIXES) for e in entries)


def find_scans(root: str | os.PathLike) -> Iterator[tuple[str, Path, bool]]:
    """(relative folder, path, zip-it) for each scan under ``root``: image files, and DICOM
    series directories (uploaded as one zip each); sorted, so uploads are reproducible."""
    root = Path(root)
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        here = Path(dirpath)
        relative = '' if here == root else here.relative_to(root).as_posix()
        for name in list(dirnames):
            if _dicom_series(here / name):
                dirnames.remove(name)
                yield relative, here / name, True
        for name in sorted(filenames):
            if is_image_name(name) and not name.startswith('.'):
                yield relative, here / name, False


class MiqaClient(GirderClient):
    """GirderClient plus the MIQA endpoints (``/miqa/...`` and ``/item/{id}/miqa/...``)."""

    # projects
    def me(self) -> dict:
        """The current user and their tiers in each project."""
        return self.get('miqa/me')

    def list_projects(self) -> list[dict]:
        return self.get('miqa/project')

    def get_project(self, project) -> dict:
        return self.get(f'miqa/project/{_id(project)}')

    def create_project(self, folder=None, settings: dict | None = None,
                       collection=None) -> dict:
        """Enable a folder or a collection (exactly one) for review (admins); ``settings`` as in
        ``update_settings``."""
        if (folder is None) == (collection is None):
            raise ValueError('Give exactly one of folder and collection.')
        params = {'folderId': _id(folder)} if folder is not None else {
            'collectionId': _id(collection)}
        if settings:
            params['settings'] = json.dumps(settings)
        return self.post('miqa/project', parameters=params)

    def get_settings(self, project) -> dict:
        return self.get(f'miqa/project/{_id(project)}/settings')

    def update_settings(self, project, **settings) -> dict:
        """Change settings: tier1GroupId, tier2GroupId, artifacts, autoAssess, model."""
        return self.put(f'miqa/project/{_id(project)}/settings', json=settings)

    def summary(self, project) -> dict:
        return self.get(f'miqa/project/{_id(project)}/summary')

    def queue(self, project, tier: int = 1, limit: int = 50, offset: int = 0) -> dict:
        """A page of the tier's queue: {"items", "total", "offset", "limit", ...}."""
        return self.get(f'miqa/project/{_id(project)}/queue',
                        parameters={'tier': tier, 'limit': limit, 'offset': offset})

    def export(self, project, format: str = 'csv') -> str:
        """The project's export as text (CSV or JSON)."""
        resp = self.sendRestRequest('GET', f'miqa/project/{_id(project)}/export',
                                    parameters={'format': format}, jsonResp=False)
        return resp.content.decode('utf-8')

    def report(self, project, format: str = 'json'):
        """The project's group report: the JSON (a dict) or the CSV (text)."""
        if format == 'json':
            return self.get(f'miqa/project/{_id(project)}/report')
        resp = self.sendRestRequest('GET', f'miqa/project/{_id(project)}/report',
                                    parameters={'format': 'csv'}, jsonResp=False)
        return resp.content.decode('utf-8')

    def import_text(self, project, text: str, format: str | None = None,
                    assetstore=None) -> dict:
        """Import a CSV or JSON export (or a study's list of scans); returns the report."""
        params = {}
        if format:
            params['format'] = format
        if assetstore:
            params['assetstoreId'] = _id(assetstore)
        contentType = 'application/json' if format == 'json' else 'text/csv'
        return self.sendRestRequest('POST', f'miqa/project/{_id(project)}/import',
                                    parameters=params, data=text.encode('utf-8'),
                                    headers={'Content-Type': contentType})

    def protocol(self, project) -> list[dict]:
        """The reference protocols in force (set and inferred)."""
        return self.get(f'miqa/project/{_id(project)}/protocol')

    def set_protocol(self, project, text: str, format: str | None = None) -> list[dict]:
        """Set reference protocols from JSON or CSV text (guessed from the text when
        ``format`` is None); returns the references in force."""
        if format is None:
            format = 'json' if text.lstrip()[:1] in ('[', '{') else 'csv'
        contentType = 'application/json' if format == 'json' else 'text/csv'
        return self.sendRestRequest('PUT', f'miqa/project/{_id(project)}/protocol',
                                    parameters={'format': format}, data=text.encode('utf-8'),
                                    headers={'Content-Type': contentType})

    def delete_protocol(self, project, scan_type: str, site: str | None = None) -> list[dict]:
        """Remove one set reference (its groups are inferred again)."""
        params = {'scanType': scan_type, **({'site': site} if site else {})}
        return self.delete(f'miqa/project/{_id(project)}/protocol', parameters=params)

    def compliance(self, project) -> dict:
        """Protocol compliance per site and scan type."""
        return self.get(f'miqa/project/{_id(project)}/compliance')

    def assess_project(self, project, force: bool = False) -> dict:
        return self.post(f'miqa/project/{_id(project)}/assess',
                         parameters={'force': json.dumps(force)})

    def agreement(self, project) -> dict:
        """Reviewer agreement: kappas per pair and for the project, per artifact, tier 1 vs
        tier 2, humans vs model, reviewers vs gold, and the hidden-assessment arms."""
        return self.get(f'miqa/project/{_id(project)}/agreement')

    def import_gold(self, project, text: str) -> dict:
        """Mark gold references from CSV (path or itemId, decision, artifacts, comment)."""
        return self.sendRestRequest('POST', f'miqa/project/{_id(project)}/gold',
                                    data=text.encode('utf-8'),
                                    headers={'Content-Type': 'text/csv'})

    def mark_gold(self, item, decision: str, artifacts: dict | None = None,
                  comment: str = '') -> dict:
        """Make a scan a gold-standard reference with this decision and artifacts."""
        return self.put(f'item/{_id(item)}/miqa/gold',
                        json={'decision': decision, 'artifacts': artifacts or {},
                              'comment': comment})

    def unmark_gold(self, item) -> dict:
        return self.delete(f'item/{_id(item)}/miqa/gold')

    def register_scans(self, project) -> dict:
        """Make the project's image items that are not yet scans its scans: {"registered": n}."""
        return self.post(f'miqa/project/{_id(project)}/register')

    # scans
    def scan_state(self, item) -> dict:
        return self.get(f'item/{_id(item)}/miqa')

    def history(self, item) -> list[dict]:
        return self.get(f'item/{_id(item)}/miqa/history')

    def lock(self, item, force: bool = False) -> dict:
        return self.post(f'item/{_id(item)}/miqa/lock', parameters={'force': json.dumps(force)})

    def unlock(self, item, force: bool = False) -> dict:
        return self.delete(f'item/{_id(item)}/miqa/lock',
                           parameters={'force': json.dumps(force)})

    def decide(self, item, decision: str, tier: int | None = None,
               artifacts: dict | None = None, comment: str | None = None,
               seconds: float | None = None, confidence: int | None = None,
               quality: float | None = None, location: dict | None = None) -> dict:
        """Record a decision; returns {"decision", "state"}."""
        body: dict[str, Any] = {'decision': decision}
        for key, value in (('tier', tier), ('artifacts', artifacts), ('comment', comment),
                           ('seconds', seconds), ('confidence', confidence),
                           ('quality', quality), ('location', location)):
            if value is not None:
                body[key] = value
        return self.post(f'item/{_id(item)}/miqa/decision', json=body)

    def assess(self, item) -> dict:
        return self.post(f'item/{_id(item)}/miqa/assess')

    # upload
    def upload_scans(self, local_dir: str | os.PathLike, folder,
                     progress: bool | Callable[[int], None] = True) -> dict:
        """Upload every scan under ``local_dir`` into ``folder``, keeping its sub-folders.

        DICOM series directories go up as one zip each. Scans already there (same item name in
        the same folder) are skipped, so an interrupted upload can be run again. Returns
        {"uploaded", "skipped", "bytes"}.
        """
        scans = list(find_scans(local_dir))
        sizes = [sum(f.stat().st_size for f in p.iterdir()) if zipped else p.stat().st_size
                 for _rel, p, zipped in scans]
        bar = None
        if progress is True:
            from tqdm import tqdm

            bar = tqdm(total=sum(sizes), unit='B', unit_scale=True, desc='Uploading scans')
        report = {'uploaded': 0, 'skipped': 0, 'bytes': 0}
        folders: dict[str, str] = {'': _id(folder)}
        try:
            for (relative, path, zipped), size in zip(scans, sizes, strict=True):
                folderId = self._folder(folders, relative)
                name = f'{path.name}.zip' if zipped else path.name
                if list(self.listItem(folderId, name=name)):
                    report['skipped'] += 1
                    self._advance(bar, progress, size)
                    continue
                done = [0]

                def callback(info, done=done):
                    self._advance(bar, progress, info['current'] - done[0])
                    done[0] = info['current']

                if zipped:
                    data = _zip_directory(path)
                    self.uploadStreamToFolder(folderId, io.BytesIO(data), name, len(data),
                                              progressCallback=None)
                    self._advance(bar, progress, size)
                else:
                    self.uploadFileToFolder(folderId, str(path), progressCallback=callback)
                    self._advance(bar, progress, size - done[0])
                report['uploaded'] += 1
                report['bytes'] += size
        finally:
            if bar is not None:
                bar.close()
        return report

    def _folder(self, folders: dict[str, str], relative: str) -> str:
        """The id of the Girder folder for a relative local path (created as needed)."""
        if relative not in folders:
            parent, _, name = relative.rpartition('/')
            parentId = self._folder(folders, parent)
            folders[relative] = self.loadOrCreateFolder(name, parentId, 'folder')['_id']
        return folders[relative]

    @staticmethod
    def _advance(bar, progress, amount: int) -> None:
        if amount <= 0:
            return
        if bar is not None:
            bar.update(amount)
        elif callable(progress):
            progress(amount)


def _zip_directory(directory: Path) -> bytes:
    """A DICOM series directory as zip bytes (stored, DICOM compresses poorly)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, 'w', zipfile.ZIP_STORED) as archive:
        for entry in sorted(directory.iterdir()):
            archive.write(entry, entry.name)
    return buffer.getvalue()
