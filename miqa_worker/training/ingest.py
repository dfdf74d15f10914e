"""Ingest a MIQA project's reviewed scans into a training cache (``miqa-train ingest --project``).

The project's JSON export (``GET /miqa/project/{id}/export?format=json``) gives every scan the
user can read with its whole decision trail; each labelled scan's image file is downloaded and
preprocessed as ``cache_from_csv`` does, into ``index.csv`` + ``volumes/*.npz`` (what
``load_cache`` reads), with ``ingest.json`` saying what was kept and what was skipped and why.

Which decision labels a scan (:func:`label_decision`): its **latest tier-2 decision** that

- is not ``superseded`` (the review started over: a new or removed file, a move), and
- was stated by a Girder account: a live review, or an import a site admin attributed to an
  account (it has a ``userId``). An import nobody vouched for (no ``userId``, its login marked
  ``(unverified)``) is not a reviewer's statement and never labels a scan.

A scan with tier-1 decisions only (good / questionable, never settled by tier 2) is skipped and
counted (``tier1_only``); so are unreviewed scans, those whose tier-2 decisions are all
superseded or unverified, and those the model's assessment found outside its domain
(``out_of_scope``, e.g. a T2w scan: a reviewer's good or bad about it would teach the T1 model
a contrast it does not score). A scan without an assessment's scope is kept.

Labels from that decision (:func:`decision_labels`):

- ``quality``: the reviewer's own 0-10 score when given, else good = 9 and bad = 2 (the tier-2
  values of the export's ``quality`` column, which ``labels.py`` reads from a label CSV);
- one indicator per artifact the reviewer stated ``present`` (1) or ``absent`` (0); a key not
  stated is unknown. A key in the decision's ``acceptedSuggestions`` (artifacts the reviewer
  took from the model's suggestions) is unknown too: the model's own output accepted with one
  key is not an independent label, so training on it would teach the model itself;
- ``decision`` (good/bad) and ``tier2_good``: what the agreement of ``miqa-train run
  --fine-tune-from`` compares the model with.
"""

from __future__ import annotations

import datetime
import json
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..constants import ARTIFACT_KEYS, is_image_name
from .labels import write_index

#: Quality label of a tier-2 decision without the reviewer's own score (the export's values).
TIER2_QUALITY = {'good': 9.0, 'bad': 2.0}
#: The export marks a claimed reviewer nobody vouched for with this suffix (exchange.UNVERIFIED).
UNVERIFIED = '(unverified)'
#: The decision field listing the artifact keys the reviewer accepted from the model.
ACCEPTED_FIELD = 'acceptedSuggestions'
PRESENT, ABSENT = 'present', 'absent'
INGEST_FILE = 'ingest.json'


class IngestError(ValueError):
    """The project cannot be ingested (bad id, no access, server unreachable); one line."""


@dataclass
class IngestSummary:
    """What an ingest kept and skipped (``ingest.json``)."""

    project: dict
    volumes: int = 0
    counts: Counter = field(default_factory=Counter)
    skipped: list[dict] = field(default_factory=list)
    index: Path | None = None

    def to_json(self) -> dict:
        return {'project': self.project, 'volumes': self.volumes,
                'counts': dict(sorted(self.counts.items())), 'skipped': self.skipped,
                'rules': RULES}


RULES = ('labels come from each scan\'s latest tier-2 decision that is not superseded and was '
         'stated by a Girder account (unverified imports never count); tier-1-only scans and '
         'scans the model found out of its domain are skipped; quality = the reviewer\'s '
         'score, else good 9 / bad 2; artifacts stated present/absent are labels, unstated '
         'ones and acceptedSuggestions are unknown')


def verified(decision: dict) -> bool:
    """Whether a Girder account stated the decision (not an unverified import)."""
    login = str(decision.get('login') or '')
    return bool(decision.get('userId')) and not login.endswith(UNVERIFIED)


def label_decision(decisions: list[dict]) -> tuple[dict | None, str]:
    """The decision that labels a scan (see the module notes) and, when there is none, why:
    ``unreviewed``, ``tier1_only``, ``superseded`` or ``unverified``. ``decisions`` are in
    the export's order (oldest first)."""
    if not decisions:
        return None, 'unreviewed'
    tier2 = [d for d in decisions if d.get('tier') == 2 and d.get('decision') in TIER2_QUALITY]
    if not tier2:
        return None, 'tier1_only'
    live = [d for d in tier2 if not d.get('superseded')]
    if not live:
        return None, 'superseded'
    stated = [d for d in live if verified(d)]
    if not stated:
        return None, 'unverified'
    return stated[-1], 'labelled'


def decision_labels(decision: dict) -> tuple[float, np.ndarray]:
    """Quality and the 10 indicators (1, 0, NaN unknown) a tier-2 decision states; artifacts
    only the model suggested (``acceptedSuggestions``) stay unknown."""
    quality = decision.get('quality')
    quality = float(quality) if quality is not None else TIER2_QUALITY[decision['decision']]
    accepted = set(decision.get(ACCEPTED_FIELD) or ())
    artifacts = decision.get('artifacts') or {}
    indicators = np.full(len(ARTIFACT_KEYS), np.nan, dtype=np.float32)
    for k, key in enumerate(ARTIFACT_KEYS):
        if key in accepted:
            continue
        if artifacts.get(key) == PRESENT:
            indicators[k] = 1.0
        elif artifacts.get(key) == ABSENT:
            indicators[k] = 0.0
    return quality, indicators


def connect(api_url: str, api_key: str):
    """A girder_client authenticated with an API key; IngestError with the reason."""
    import requests
    from girder_client import AuthenticationError, GirderClient, HttpError

    client = GirderClient(apiUrl=api_url)
    try:
        client.authenticate(apiKey=api_key)
    except (AuthenticationError, HttpError) as exc:
        raise IngestError(f'{api_url}: the API key was refused ({_reason(exc)})') from None
    except requests.RequestException as exc:
        raise IngestError(f'cannot reach {api_url}: {type(exc).__name__}') from None
    return client


def _reason(exc: Exception) -> str:
    text = getattr(exc, 'responseText', None)
    try:
        return json.loads(text)['message']
    except (TypeError, ValueError, KeyError):
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def fetch_export(client, project_id: str) -> dict:
    """The project's JSON export; IngestError for a bad id or no access."""
    from girder_client import HttpError

    try:
        return client.get(f'miqa/project/{project_id}/export', parameters={'format': 'json'})
    except HttpError as exc:
        raise IngestError(f'project {project_id}: {_reason(exc)} (HTTP {exc.status})') from None


def _image_file(client, scan: dict, decision: dict) -> dict | None:
    """The file the decision judged (its ``fileId``; None when it is gone, never another
    file), else (an older decision without one) the scan's first image file."""
    from girder_client import HttpError

    if decision.get('fileId'):
        try:
            return client.getFile(str(decision['fileId']))
        except HttpError:
            return None
    files = [f for f in client.listFile(str(scan['itemId'])) if is_image_name(f['name'])]
    return files[0] if files else None


def _download(client, file: dict, target: Path) -> Path:
    """The file at ``target`` (downloaded unless a copy of that size is there already)."""
    if not (target.is_file() and target.stat().st_size == file.get('size')):
        target.parent.mkdir(parents=True, exist_ok=True)
        client.downloadFile(str(file['_id']), str(target))
    return target


def _cell(value: float) -> bool | None:
    return None if math.isnan(value) else bool(value)


def ingest_project(client, project_id: str, cache_dir: Path | str,
                   progress: bool = True) -> IngestSummary:
    """Download a project's tier-2-labelled scans into ``cache_dir`` and write its
    ``index.csv`` and ``ingest.json`` (see the module notes); returns the summary."""
    import requests
    from girder_client import HttpError
    from tqdm import tqdm

    from .dataset import read_image_array
    from .synthetic import to_uint8

    cache_dir = Path(cache_dir)
    export = fetch_export(client, project_id)
    project = export.get('project') or {}
    summary = IngestSummary({'id': str(project.get('_id', project_id)),
                             'name': project.get('name'), 'api_url': client.urlBase,
                             'ingested': datetime.datetime.now(datetime.timezone.utc)
                             .isoformat(timespec='seconds')})
    rows = []

    def skip(scan: dict, why: str, detail: str = '') -> None:
        summary.counts[why] += 1
        summary.skipped.append({'itemId': str(scan['itemId']), 'path': scan.get('path'),
                                'reason': f'{why}: {detail}' if detail else why})

    for scan in tqdm(export.get('scans') or [], desc='ingest', disable=not progress):
        decision, why = label_decision(scan.get('decisions') or [])
        if decision is None:
            skip(scan, why)
            continue
        scope = (scan.get('assessment') or {}).get('scope') or {}
        if scope.get('in_scope') is False:
            skip(scan, 'out_of_scope', str(scope.get('contrast') or 'unknown'))
            continue
        file = _image_file(client, scan, decision)
        if file is None:
            skip(scan, 'no_file')
            continue
        try:
            source = _download(client, file, cache_dir / 'downloads' / str(scan['itemId'])
                               / Path(file['name']).name)
        except HttpError as exc:
            skip(scan, 'no_file', f'{_reason(exc)} (HTTP {exc.status})')
            continue
        except requests.RequestException as exc:
            raise IngestError(f'download of {scan.get("path")} failed: '
                              f'{type(exc).__name__}') from None
        vid = f'{len(rows):05d}-{scan["itemId"]}'
        target = cache_dir / 'volumes' / f'{vid}.npz'
        try:
            data, spacing = read_image_array(str(source))
        except Exception as exc:  # any reader error: the scan is skipped with its reason
            skip(scan, 'unreadable', (str(exc).splitlines() or [type(exc).__name__])[0][:200])
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(target, volume=to_uint8(data), spacing=spacing)
        quality, indicators = decision_labels(decision)
        summary.counts['labelled'] += 1
        summary.counts['accepted_suggestions_dropped'] += len(
            set(decision.get(ACCEPTED_FIELD) or ()) & set(ARTIFACT_KEYS))
        rows.append({
            'volume_id': vid, 'file': f'volumes/{vid}.npz',
            'subject_id': scan.get('subject_id') or str(scan['itemId']),
            'source': f'girder:item/{scan["itemId"]}', 'quality': quality,
            **{key: _cell(value) for key, value in zip(ARTIFACT_KEYS, indicators, strict=True)},
            'decision': decision['decision'], 'tier2_good': decision['decision'] == 'good',
            'item_id': str(scan['itemId']), 'path': scan.get('path'),
            'decision_id': str(decision.get('_id', '')), 'reviewer': decision.get('login'),
            'accepted_suggestions': ' '.join(decision.get(ACCEPTED_FIELD) or ()),
            'contrast': scope.get('contrast'),
        })
    if not rows:
        raise IngestError(f'project {project_id}: no scan has a tier-2 decision a reviewer '
                          f'stated ({_counts_text(summary.counts)})')
    summary.volumes = len(rows)
    summary.index = cache_dir / 'index.csv'
    write_index(rows, summary.index)
    (cache_dir / INGEST_FILE).write_text(json.dumps(summary.to_json(), indent=1),
                                         encoding='utf-8')
    return summary


def _counts_text(counts: Counter) -> str:
    return ', '.join(f'{k} {v}' for k, v in sorted(counts.items()) if v) or 'no scans'


def summary_line(summary: IngestSummary) -> str:
    """One line for the console: volumes written and the skip counts."""
    return (f'wrote {summary.index}: {summary.volumes} scans labelled by tier-2 decisions '
            f'({_counts_text(summary.counts)})')


def read_summary(cache_dir: Path | str) -> dict[str, Any] | None:
    """An ingested cache's ``ingest.json`` (None for a generated or CSV cache)."""
    path = Path(cache_dir) / INGEST_FILE
    return json.loads(path.read_text(encoding='utf-8')) if path.is_file() else None
