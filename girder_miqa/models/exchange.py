"""Export a project's scans and decisions as CSV or JSON, and import them (or a study's history).

The CSV is one row per scan and doubles as a training label file; the JSON holds every decision.
Both import back: rows find their scan by ``itemId`` (or by ``path`` inside the project), and a
decision already present (same scan, time, reviewer, tier, decision) is not added twice.
"""

import csv
import datetime
import io
import json
import os
import sys

from bson import ObjectId
from bson.errors import InvalidId
from girder.exceptions import RestException, ValidationException
from girder.models.assetstore import Assetstore
from girder.models.file import File
from girder.models.folder import Folder
from girder.models.item import Item
from girder.models.user import User
from girder.utility import JsonEncoder
from girder.utility.assetstore_utilities import getAssetstoreAdapter
from girder.utility.filesystem_assetstore_adapter import FilesystemAssetstoreAdapter

from .. import access
from ..constants import ARTIFACT_KEYS, ITEM_FIELD, ReviewState, is_image_name
from . import calibration, protocol, review_state, triage
from .decision import Decision, derive_state, validate_fields
from .project import Project, finite, load_root, root_of
from .scans import relative_paths, unreadable_folders, visible_filter

QUALITY_LABELS = {ReviewState.BAD: 2.0, ReviewState.QUESTIONABLE: 5.0}
DECISION_COLUMNS = ('decision', 'tier', 'reviewer', 'decided', 'comment', 'seconds',
                    'confidence', 'decision_quality', 'location_ijk', 'location_world',
                    'accepted_suggestions', 'read_kind', 'assessment_hidden')
# The model's domain as the assessment judged it (export only; an import ignores them).
SCOPE_COLUMNS = ('in_scope', 'contrast', 'scope_reason')
#: The model's quality interval (its result's ``qualityInterval``), blank when it has none.
QUALITY_INTERVAL_COLUMNS = ('quality_low', 'quality_high')


def _quality_interval(assessment: dict) -> tuple:
    """The cells of an assessment's ``qualityInterval`` [low, high] ('' when it has none)."""
    interval = assessment.get('qualityInterval')
    if (isinstance(interval, (list, tuple)) and len(interval) == 2
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in interval)):
        return tuple(interval)
    return ('', '')


# The most one import may hold (the request body; HTTP 413 above it). A 5 MB file imports in
# seconds (benchmarks/bench_import.py); 20 MB keeps one request well under a minute.
MAX_IMPORT_BYTES = 20 * 1024 * 1024
# How far an imported decision's time may lie ahead of the server's clock.
CLOCK_SKEW = datetime.timedelta(minutes=5)
# What an import by a project owner (not a site admin) adds to a reviewer it cannot vouch for.
UNVERIFIED = '(unverified)'
# Cells starting with these are formulas to spreadsheets (OWASP CSV injection): the export puts
# a single quote before them, the import takes it off again.
FORMULA_STARTS = ('=', '+', '-', '@', '\t', '\r')
# A CSV field may be as long as the whole import; the rows' checks give the real limits.
csv.field_size_limit(max(csv.field_size_limit(), MAX_IMPORT_BYTES + 1))
IMAGE_SUFFIXES = sorted(('.nii.gz', '.nii', '.nrrd', '.nhdr', '.mha', '.mhd', '.mgz', '.mgh',
                         '.zip'), key=len, reverse=True)

EXPORT_NOTES = (
    'CSV: one row per scan, usable as a training label file. Columns: path (the scan\'s path '
    'inside the project, e.g. sub-01/ses-1/t1.nii.gz; in a collection project it starts with '
    'the top-level folder), subject_id (the top-level sub-folder, or '
    'the item name without its extension for scans at the top), quality (the reviewer\'s 0-10 '
    'score if given, else good = 9 when decided at tier 2 and 8 at tier 1, questionable = 5, '
    'bad = 2; blank when unreviewed), one column per artifact key (true = present, false = '
    'absent, blank = not stated, from the latest decision), itemId, name, state, decision, '
    'tier, reviewer, decided, comment, seconds, confidence, decision_quality, location_ijk, '
    'location_world, accepted_suggestions (the latest decision; accepted_suggestions: the '
    'present artifacts taken from the model\'s suggestions, space separated), decision_count, '
    'assessment_status, model, model_version, model_quality, quality_low, quality_high (the '
    'model\'s quality interval; blank without one), model_max_artifact_probability '
    '(of the trained indicators only), in_scope, contrast, scope_reason (whether the scan is '
    'in the model\'s domain; blank when not known), then the acquisition and protocol '
    'columns, site, scan_type, triage and reasons (the triage score and its reasons, "; "-'
    'separated). JSON: {"project": {...}, '
    '"scans": [{itemId, path, subject_id, name, state, quality, artifacts, latestDecision, '
    'decisions: [every decision], assessment: {status, model, quality, qualityInterval, '
    'artifacts (trained '
    'indicators only), trainedOutputs, scope}, site, scanType, triage, reasons}]}. Only '
    'scans the user can read. CSV rows end in CRLF and cells holding CR, LF, quotes or commas '
    'are quoted; a cell starting with = + - @ tab or CR (negative numbers too) gets a leading '
    'single quote against spreadsheet formula injection, which the import takes off again.'
    ' Reviewer calibration: read_kind (single, double or gold) and assessment_hidden (true when '
    'tier 1 was not shown the model) of the latest decision follow accepted_suggestions, and '
    'each JSON decision has readKind and assessmentHidden; a double read\'s first read is in '
    'neither format until its second is in; a project admin\'s JSON also gives each scan its '
    'goldReference and goldReads.')

IMPORT_NOTES = (
    'The body is the CSV or JSON file. Each row (CSV) or entry (JSON "scans" list) names a scan '
    'by itemId (an item already in Girder, under this project; when no item has that id, as in '
    'an export from another server, the path is used) or path: a path inside the '
    'project (as exported), or an absolute path of a file on the server, imported through a '
    'filesystem assetstore (admins only) into the optional sub-folder "folder" (created as '
    'needed) under the optional item name "name". Optional earlier decision, CSV columns: '
    'decision, tier (default 2 for bad, else 1), reviewer (login; need not be a Girder user), '
    'decided (ISO 8601 time), comment, seconds, confidence, decision_quality, location_ijk and '
    'location_world ("i j k", "x y z"), accepted_suggestions (present artifact keys, space '
    'separated; kept as the file says: the model then is not known) and one column per '
    'artifact key (true/false/blank, or '
    'present/absent). Several rows for one scan bring several decisions. JSON entries carry '
    '"decisions": [{decision, tier, reviewer or login, created or decided, artifacts, comment, '
    'location, seconds, confidence, quality, acceptedSuggestions}]. The export\'s in_scope, '
    'contrast and scope_reason columns (and a JSON assessment\'s scope) are ignored: the '
    'model\'s word is never imported as its own. Every imported decision records who imported it '
    'and when (importedBy, imported) and the reviewer the file names (reviewerClaimed); it is '
    'attributed to that Girder account (its userId, counted as its work) only when a site admin '
    'imports, otherwise it carries no account and its login is the name marked "(unverified)". '
    'A model snapshot in a decision is kept as importedAssessment (unverified), never as the '
    'model\'s. Times later than now (beyond 5 minutes) are errors. A scan\'s state follows '
    'its whole trail as live decisions do: its newest tier-2 decision if any, else its newest; '
    'a tier-1 decision dated after a tier-2 one is refused. Scans the importer cannot read are '
    'reported as missing. CSV cells starting with a single quote before = + - @ tab or CR (as '
    'the export writes formula-like cells) lose that quote. Every row is checked before '
    'anything is written, and each scan\'s rows are written together. Bad rows are reported '
    'with their line (CSV) or entry (JSON) number and reason and do not stop the others; '
    'importing the same file again adds nothing. The body may hold at most 20 MB (413 above); a '
    'file that cannot be parsed at all (e.g. JSON nested too deeply) is a 400. In a collection '
    'project, paths start with a top-level folder and server files need "folder". Returns '
    '{"rows", "scans", "filesImported", "decisionsAdded", "decisionsSkipped", "errors": '
    '[{line, reason}]}.')


def _formula_like(text: str) -> bool:
    """Whether a cell, after any leading single quotes, starts like a formula."""
    return text.lstrip("'").startswith(FORMULA_STARTS)


def defuse(value):
    """A CSV cell a spreadsheet does not run: a single quote before ``= + - @`` tab or CR (also
    before such a cell that already starts with quotes, so that ``undefuse`` is exact)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)  # a negative number is guarded too
    if isinstance(value, str) and value and (value.startswith(FORMULA_STARTS) or (
            value.startswith("'") and _formula_like(value))):
        return "'" + value
    return value


def undefuse(value):
    """The cell ``defuse`` was given: one leading single quote off where it guards a formula."""
    if isinstance(value, str) and value.startswith("'") and _formula_like(value):
        return value[1:]
    return value


def subject_id(path: str) -> str:
    """The top-level sub-folder of a scan's path, or its name without the image extension."""
    if '/' in path:
        return path.split('/', 1)[0]
    lower = path.lower()
    for suffix in IMAGE_SUFFIXES:
        if lower.endswith(suffix):
            return path[:-len(suffix)]
    return path


def quality_label(state: dict) -> float | None:
    """The 0-10 training label of a scan from its latest decision (see EXPORT_NOTES)."""
    latest = state.get('latestDecision')
    if not latest:
        return None
    if latest.get('quality') is not None:
        return latest['quality']
    if latest['decision'] == ReviewState.GOOD:
        return 9.0 if latest.get('tier') == 2 else 8.0
    return QUALITY_LABELS.get(latest['decision'])


def _artifact_keys(project: dict) -> list[str]:
    keys = list(ARTIFACT_KEYS)
    return keys + [a['key'] for a in project['settings']['artifacts'] if a['key'] not in keys]


def _iso(value) -> str:
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.timezone.utc)
        return value.isoformat()
    return '' if value is None else str(value)


def _model_name_version(assessment: dict) -> tuple[str, str]:
    model = assessment.get('model')
    if isinstance(model, dict):
        return str(model.get('name') or ''), str(model.get('version') or '')
    return ('' if model is None else str(model)), ''


def _scans(project: dict, user: dict | None):
    """The visible scans with their paths inside the project, in path order."""
    items = list(Item().collection.find(
        visible_filter(project, user), {'name': 1, 'folderId': 1, ITEM_FIELD: 1}))
    paths = relative_paths(project, {item['folderId'] for item in items})
    tiers, admin = access.user_tiers(project, user), access.can_admin(project, user)
    for item in items:
        folderPath = paths.get(item['folderId'], '')
        item['path'] = f'{folderPath}/{item["name"]}' if folderPath else item['name']
        # the hidden arm's assessment stays hidden from a tier-1-only reviewer here too
        item[ITEM_FIELD] = calibration.hide_assessment(item[ITEM_FIELD], project, item['_id'],
                                                       tiers, admin)
    items.sort(key=lambda item: (item['path'], item['_id']))
    return items


def export_csv(project: dict, user: dict | None) -> str:
    """The CSV export (see EXPORT_NOTES)."""
    keys = _artifact_keys(project)
    columns = (['path', 'subject_id', 'quality', *keys, 'itemId', 'name', 'state',
                *DECISION_COLUMNS, 'decision_count', 'assessment_status', 'model',
                'model_version', 'model_quality', *QUALITY_INTERVAL_COLUMNS,
                'model_max_artifact_probability',
                *SCOPE_COLUMNS, *protocol.EXPORT_COLUMNS, *triage.EXPORT_COLUMNS])
    out = io.StringIO()
    # CRLF rows (RFC 4180): the writer then quotes every cell holding a CR or LF, so a comment
    # with a bare carriage return still reads back as one cell
    writer = csv.DictWriter(out, columns, lineterminator='\r\n')
    writer.writeheader()
    for item in _scans(project, user):
        state = item[ITEM_FIELD]
        latest = state.get('latestDecision') or {}
        artifacts = latest.get('artifacts') or {}
        assessment = state.get('assessment') or {}
        probs = review_state.trained_probabilities(assessment)
        scope = review_state.scope_of(assessment) or {}
        name, version = _model_name_version(assessment)
        location = latest.get('location') or {}
        quality = quality_label(state)
        row = {
            'path': item['path'], 'subject_id': subject_id(item['path']),
            'quality': '' if quality is None else quality,
            **{key: {'present': 'true', 'absent': 'false'}.get(artifacts.get(key), '')
               for key in keys},
            'itemId': str(item['_id']), 'name': item['name'], 'state': state['state'],
            'decision': latest.get('decision', ''), 'tier': latest.get('tier', ''),
            'reviewer': latest.get('reviewerClaimed') or latest.get('login', ''),
            'decided': _iso(latest.get('created')),
            'comment': latest.get('comment', ''),
            'seconds': '' if latest.get('seconds') is None else latest['seconds'],
            'confidence': '' if latest.get('confidence') is None else latest['confidence'],
            'decision_quality': '' if latest.get('quality') is None else latest['quality'],
            'location_ijk': ' '.join(str(v) for v in location.get('ijk') or []),
            'location_world': ' '.join(repr(v) for v in location.get('world') or []),
            'accepted_suggestions': ' '.join(latest.get('acceptedSuggestions') or []),
            'read_kind': latest.get('readKind', '') if latest else '',
            'assessment_hidden': {True: 'true', False: 'false'}.get(
                latest.get('assessmentHidden'), ''),
            'decision_count': state.get('decisionCount', 0),
            'assessment_status': assessment.get('status', ''), 'model': name,
            'model_version': version,
            'model_quality': '' if assessment.get('quality') is None else assessment['quality'],
            **dict(zip(QUALITY_INTERVAL_COLUMNS, _quality_interval(assessment), strict=True)),
            'model_max_artifact_probability': max(probs.values()) if probs else '',
            'in_scope': {True: 'true', False: 'false'}.get(scope.get('in_scope'), ''),
            'contrast': scope.get('contrast') or '', 'scope_reason': scope.get('reason') or '',
            **protocol.export_columns(state),  # acq_<Key>, protocol_deviations (issue #22)
            **triage.export_columns(state, item['path'], project),  # site ... reasons (#22)
        }
        writer.writerow({k: defuse(v) for k, v in row.items()})
    return out.getvalue()


def export_json(project: dict, user: dict | None) -> str:
    """The JSON export (see EXPORT_NOTES), every decision included."""
    scans = _scans(project, user)
    decisions: dict = {}
    ids = [item['_id'] for item in scans]
    for start in range(0, len(ids), 1000):  # by scan: moved-in scans bring their history
        for doc in Decision().collection.find({'itemId': {'$in': ids[start:start + 1000]},
                                               **calibration.pending_clause()},
                                              sort=[('created', 1), ('_id', 1)]):
            decisions.setdefault(doc['itemId'], []).append(
                {k: v for k, v in doc.items() if k not in ('itemId', 'projectId', 'folderId')})
    gold = calibration.export_gold(project, access.can_admin(project, user), ids)  # admins only
    out = []
    for item in scans:
        state = item[ITEM_FIELD]
        assessment = state.get('assessment') or {}
        if gold is not None:
            item.update(gold.get(item['_id'], {'goldReference': None, 'goldReads': []}))
        out.append({
            **{k: item[k] for k in ('goldReference', 'goldReads') if k in item},
            'itemId': item['_id'], 'path': item['path'], 'subject_id': subject_id(item['path']),
            'name': item['name'], 'state': state['state'], 'quality': quality_label(state),
            'artifacts': (state.get('latestDecision') or {}).get('artifacts') or {},
            'latestDecision': state.get('latestDecision'),
            'decisions': decisions.get(item['_id'], []),
            'assessment': {'status': assessment.get('status'), 'model': assessment.get('model'),
                           'quality': assessment.get('quality'),
                           'qualityInterval': assessment.get('qualityInterval'),
                           'artifacts': review_state.trained_probabilities(assessment) or None,
                           'trainedOutputs': assessment.get('trainedOutputs'),
                           'scope': review_state.scope_of(assessment)},
            **{k: state.get(k) for k in ('site', 'scanType', 'reasons')},  # (#22)
            'triage': (state.get('sort') or {}).get('triage'),
        })
    rootType, rootId = root_of(project)
    doc = {'project': {'_id': project['_id'], 'name': project['name'], 'rootType': rootType,
                       'rootId': rootId, 'settings': project['settings']},
           'exported': datetime.datetime.now(datetime.timezone.utc), 'scans': out}
    return json.dumps(doc, cls=JsonEncoder, indent=1, allow_nan=False)


# ---------------------------------------------------------------------------------------- import

class RowError(Exception):
    """A reason a row cannot be imported (reported with its line; the other rows go on)."""


def _number(value, field: str, integer: bool = False):
    if value in (None, ''):
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise RowError(f'{field} must be a number, not {_short(value)}.') from None
    if integer and number.is_integer():
        return int(number)
    return number


def _short(value, limit: int = 80) -> str:
    """A value for an error message, cut to ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else f'{text[:limit]}... ({len(text)} characters)'


def _parse_time(value, now: datetime.datetime | None = None) -> datetime.datetime | None:
    """An imported decision's time in UTC (to the millisecond); RowError if it is not an ISO 8601
    time, cannot be shown in UTC, or lies in the future (beyond CLOCK_SKEW)."""
    if value in (None, ''):
        return None
    try:
        if isinstance(value, datetime.datetime):
            parsed = value
        else:
            parsed = datetime.datetime.fromisoformat(str(value).strip().replace('Z', '+00:00'))
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=datetime.timezone.utc)
        parsed = parsed.astimezone(datetime.timezone.utc)
    except (ValueError, TypeError):
        raise RowError(f'decided must be an ISO 8601 time, not {_short(value)}.') from None
    except OverflowError:
        raise RowError(f'decided {_short(value)} lies outside the years 1 to 9999 in '
                       'UTC.') from None
    now = now or datetime.datetime.now(datetime.timezone.utc)
    if parsed > now + CLOCK_SKEW:
        raise RowError(f'decided {_short(value)} is in the future (now is '
                       f'{now.replace(microsecond=0).isoformat()}).')
    return parsed.replace(microsecond=parsed.microsecond // 1000 * 1000)  # Mongo keeps ms


def _vector_text(value, field: str):
    if value in (None, ''):
        return None
    if isinstance(value, list):
        return value
    try:
        return [float(v) for v in str(value).replace(',', ' ').split()]
    except ValueError:
        raise RowError(f'{field} must be three numbers separated by spaces.') from None


def _csv_decision(row: dict, keys: list[str]) -> dict | None:
    """The decision a CSV row carries, as a JSON-style decision entry, or None."""
    if not (row.get('decision') or '').strip():
        return None
    location = {}
    ijk = _vector_text(row.get('location_ijk'), 'location_ijk')
    world = _vector_text(row.get('location_world'), 'location_world')
    if ijk is not None:
        location['ijk'] = ijk
    if world is not None:
        location['world'] = world
    return {
        'decision': row['decision'].strip().lower(), 'tier': row.get('tier'),
        'reviewer': row.get('reviewer'), 'decided': row.get('decided'),
        'comment': row.get('comment'), 'seconds': row.get('seconds'),
        'confidence': row.get('confidence'), 'quality': row.get('decision_quality'),
        'location': location or None,
        'artifacts': {key: row[key] for key in keys if (row.get(key) or '').strip()},
        'acceptedSuggestions': (row.get('accepted_suggestions') or '').strip() or None,
        'readKind': (row.get('read_kind') or '').strip() or None,
        'assessmentHidden': (row.get('assessment_hidden') or '').strip() or None,
    }


def _imported_assessment(entry: dict) -> dict | None:
    """The model snapshot an imported decision brings, kept apart from the model's own (it is
    the file's word, unverified): status, model, quality and artifact probabilities only."""
    raw = entry.get('importedAssessment')
    raw = raw.get('snapshot') if isinstance(raw, dict) else entry.get('assessment')
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise RowError('a decision\'s "assessment" must be an object.')

    def text(value):
        return value[:200] if isinstance(value, str) else None

    model = raw.get('model')
    if isinstance(model, dict):
        model = {'name': text(model.get('name')), 'version': text(model.get('version'))}
    else:
        model = text(model)
    artifacts = raw.get('artifacts')
    probs = {str(k)[:100]: float(v) for k, v in artifacts.items()
             if finite(v)} if isinstance(artifacts, dict) else {}
    snapshot = {'status': text(raw.get('status')), 'model': model,
                'quality': float(raw['quality']) if finite(raw.get('quality')) else None,
                'artifacts': dict(list(probs.items())[:100]) or None}
    return {'unverified': True, 'snapshot': snapshot}


def _prepare_decision(project: dict, entry: dict, now: datetime.datetime) -> tuple:
    """Validate an imported decision: its fields, the reviewer's name and its time."""
    if not isinstance(entry, dict):
        raise RowError('each decision must be an object.')
    decision = entry.get('decision')
    if not isinstance(decision, str) or not decision:
        raise RowError('a decision needs "decision".')
    decision = decision.strip().lower()
    tier = _number(entry.get('tier'), 'tier', integer=True)
    if tier is None:
        tier = 2 if decision == ReviewState.BAD else 1
    if tier not in (1, 2):
        raise RowError(f'tier must be 1 or 2, not {_short(entry.get("tier"))}.')
    artifacts = entry.get('artifacts')
    if isinstance(artifacts, dict):
        artifacts = {k: (v.strip().lower() if isinstance(v, str) else v)
                     for k, v in artifacts.items()}
    try:
        fields = validate_fields(
            project, tier, decision, artifacts=artifacts, comment=entry.get('comment') or '',
            location=entry.get('location'), seconds=_number(entry.get('seconds'), 'seconds'),
            confidence=_number(entry.get('confidence'), 'confidence', integer=True),
            quality=_number(entry.get('quality'), 'quality'),
            acceptedSuggestions=entry.get('acceptedSuggestions'))
    except ValidationException as exc:
        raise RowError(str(exc)) from None
    try:
        fields.update(calibration.import_kinds(entry))
    except ValueError as exc:
        raise RowError(str(exc)) from None
    claimed = entry.get('reviewerClaimed') or entry.get('reviewer') or entry.get('login') or ''
    if not isinstance(claimed, str) or len(claimed) > 200:
        raise RowError('reviewer must be a login name (at most 200 characters).')
    created = _parse_time(entry.get('decided') or entry.get('created'), now)
    return fields, claimed.strip(), created, _imported_assessment(entry)


def _resolve_relative(project: dict, path: str, unreadable: frozenset) -> dict:
    """The item at a path inside the project, or RowError (the same for what the importer
    cannot read as for what does not exist)."""
    parts = [p for p in path.strip('/').split('/') if p]
    if not parts:
        raise RowError('path is empty.')
    rootType, folderId = root_of(project)
    if rootType == 'collection' and len(parts) < 2:
        raise RowError(f'no item at the path {_short(path)}: the paths of a collection project '
                       'start with a top-level folder.')
    parentType = rootType
    for name in parts[:-1]:
        folder = Folder().findOne({'parentId': folderId, 'parentCollection': parentType,
                                   'name': name}, fields=['_id'])
        if folder is None or folder['_id'] in unreadable:
            raise RowError(f'no folder {_short(name)} on the path {_short(path)} in this '
                           'project.')
        folderId, parentType = folder['_id'], 'folder'
    item = Item().findOne({'folderId': folderId, 'name': parts[-1]})
    if item is None or item['folderId'] in unreadable:
        raise RowError(f'no item at the path {_short(path)} in this project.')
    return item


def _target_folder(project: dict, user: dict, folderPath) -> dict:
    """The folder (created as needed) at ``folderPath`` inside the project."""
    rootType, _rootId = root_of(project)
    parent = load_root(project)
    if parent is None:
        raise RowError('the project\'s folder or collection no longer exists.')
    if folderPath is not None and not isinstance(folderPath, str):
        raise RowError('folder must be a path (text).')
    names = [p for p in (folderPath or '').strip('/').split('/') if p]
    if rootType == 'collection' and not names:
        raise RowError('a collection project needs "folder": items live in its folders.')
    parentType = rootType
    for name in names:
        if name in ('.', '..'):
            raise RowError('folder must not contain "." or "..".')
        parent = Folder().createFolder(parent, name, parentType=parentType, creator=user,
                                       reuseExisting=True)
        parentType = 'folder'
    return parent


class Importer:
    """Import one file's rows into a project, collecting per-row errors.

    Every row is checked first (its fields, times and scan); then each scan's rows are written
    together and the scan's state rebuilt from its whole trail. A scan's rows are never half
    written: if writing fails, what was written for that scan is taken out again.
    """

    def __init__(self, project: dict, user: dict, assetstoreId: str | None):
        self.project = project
        self.user = user
        self.assetstoreId = assetstoreId
        self.report = {'rows': 0, 'scans': 0, 'filesImported': 0, 'decisionsAdded': 0,
                       'decisionsSkipped': 0, 'errors': []}
        self._adapter = None
        self._users: dict = {}
        self._inProject: dict = {}
        self._items: dict = {}  # itemId -> item (or None), loaded in bulk before the checks
        self._trails: dict = {}  # itemId -> its decisions, oldest first, loaded in bulk
        self._deltas: dict = {}  # state -> change in the project's counts
        self._unreadable = unreadable_folders(project, user)
        self.now = datetime.datetime.now(datetime.timezone.utc)
        self.now = self.now.replace(microsecond=self.now.microsecond // 1000 * 1000)

    def error(self, line, reason: str) -> None:
        self.report['errors'].append({'line': line, 'reason': reason})

    def adapter(self) -> FilesystemAssetstoreAdapter:
        """The filesystem assetstore adapter for server paths (chosen once)."""
        if self._adapter is None:
            if self.assetstoreId:
                try:
                    store = Assetstore().load(ObjectId(self.assetstoreId))
                except (InvalidId, TypeError):
                    store = None
                if store is None:
                    raise RowError(f'no assetstore has the id {_short(self.assetstoreId)}.')
            else:
                store = Assetstore().getCurrent()
            adapter = getAssetstoreAdapter(store)
            if not isinstance(adapter, FilesystemAssetstoreAdapter):
                raise RowError('importing server files needs a filesystem assetstore '
                               '(assetstoreId).')
            self._adapter = adapter
        return self._adapter

    def account(self, claimed: str) -> dict | None:
        if claimed not in self._users:
            self._users[claimed] = User().findOne({'login': claimed.lower()}) if claimed else None
        return self._users[claimed]

    def identity(self, claimed: str) -> tuple[dict | None, str]:
        """(the account an imported decision is attributed to, its ``login``): a named account
        only when a site admin imports (or it is the importer's own); else no account, and the
        claimed name marked as unverified so it is never counted as an account's work."""
        account = self.account(claimed)
        if access.may_attribute_import(self.user, account):
            return account, account['login']
        if not claimed or access.is_site_admin(self.user):
            return None, claimed
        return None, f'{claimed} {UNVERIFIED}'

    def in_project(self, item: dict) -> bool:
        folderId = item['folderId']
        if folderId not in self._inProject:
            project = Project().findForItem(item)
            self._inProject[folderId] = project is not None and (
                project['_id'] == self.project['_id'])
        return self._inProject[folderId]

    def resolve(self, entry: dict) -> tuple[dict | None, dict | None]:
        """The row's existing item, or (None, plan) for a server file still to import. An item
        the importer cannot read is reported exactly as one that does not exist."""
        itemId = entry.get('itemId')
        path = entry.get('path')
        hasPath = isinstance(path, str) and bool(path.strip())
        if itemId not in (None, ''):
            try:
                oid = ObjectId(str(itemId).strip())
            except (InvalidId, TypeError):
                raise RowError(f'itemId {_short(itemId)} is not an ObjectId.') from None
            item = self._items[oid] if oid in self._items else Item().load(oid, force=True)
            if item is not None and item['folderId'] in self._unreadable:
                item = None
            if item is None and not hasPath:
                raise RowError(f'no item has the id {str(itemId).strip()}.')
            if item is not None:
                if not self.in_project(item):
                    raise RowError(f'item {itemId} is not in this project.')
                return item, None
            # an export from another server: the scan is found by its path in this project
        if not hasPath:
            raise RowError('a row needs an itemId or a path.')
        path = path.strip()
        if not os.path.isabs(path):
            return _resolve_relative(self.project, path, self._unreadable), None
        if not access.may_import_server_files(self.user):
            raise RowError('only admins may import files from the server\'s filesystem.')
        if not os.path.isfile(path):
            raise RowError(f'no file at {_short(path)} on the server.')
        name = entry.get('name')
        if name is not None and not isinstance(name, str):
            raise RowError('name must be text.')
        name = (name or '').strip() or os.path.basename(path)
        if not is_image_name(os.path.basename(path)):
            raise RowError(f'{os.path.basename(path)!r} is not an image file name.')
        self.adapter()
        return None, {'path': os.path.abspath(path), 'name': name,
                      'folder': entry.get('folder')}

    def import_file(self, plan: dict) -> dict:
        folder = _target_folder(self.project, self.user, plan['folder'])
        item = Item().createItem(plan['name'], creator=self.user, folder=folder,
                                 reuseExisting=True)
        existing = File().findOne({'itemId': item['_id'], 'path': plan['path']})
        if existing is None:
            self.adapter().importFile(item, plan['path'], self.user,
                                      name=os.path.basename(plan['path']))
            self.report['filesImported'] += 1
        return Item().load(item['_id'], force=True)

    def check(self, entry: dict, decisions: list) -> tuple:
        """Validate one row without writing: (scan key, item or plan, prepared decisions)."""
        prepared = [_prepare_decision(self.project, d, self.now) for d in decisions]
        item, plan = self.resolve(entry)
        if plan is not None:
            key = ('file', plan['path'], plan['name'], str(plan['folder']))
        else:
            key = item['_id']
        return key, item, plan, prepared

    def scan(self, item: dict | None, plan: dict | None, rows: list) -> None:
        """Write one scan's checked rows [(line, prepared)] and rebuild its state."""
        lines = [line for line, _ in rows]
        try:
            if plan is not None:
                item = self.import_file(plan)
            elif not item.get(ITEM_FIELD):
                if review_state.current_image_file(item['_id']) is None:
                    raise RowError(f'item {item["_id"]} has no image file.')
            item = review_state.ensure_scan(item, self.project)
        except RowError as exc:
            for line in lines:
                self.error(line, str(exc))
            return
        self.report['scans'] += 1
        trail = self._trails.get(item['_id'])
        if trail is None:
            trail = Decision().history(item)
        seen = {(d['created'].replace(tzinfo=None), name, d['tier'], d['decision'])
                for d in trail for name in {d.get('login'), d.get('reviewerClaimed')} if name}
        keys = {d['importKey'] for d in trail if d.get('importKey')}
        existingTier2 = [d['created'].replace(tzinfo=None) for d in trail
                         if d['tier'] == 2 and not d.get('superseded')]
        candidates = []  # (line, [docs], skipped)
        for line, prepared in rows:
            docs, skipped = [], 0
            for fields, claimed, created, snapshot in prepared:
                undated = created is None
                created = self.now if undated else created
                naive = created.replace(tzinfo=None)
                importKey = Decision.import_key(fields, claimed, created, undated)
                if importKey in keys or (not undated and (
                        naive, claimed, fields['tier'], fields['decision']) in seen):
                    skipped += 1  # the same decision (e.g. exported from here) is already in
                    continue
                keys.add(importKey)
                account, login = self.identity(claimed)
                docs.append(Decision().import_doc(
                    item, self.project, fields, claimed, account, login, self.user, created,
                    self.now, importedAssessment=snapshot, undated=undated))
            candidates.append((line, docs, skipped))
        # tier 2 is final: a tier-1 decision dated after a tier-2 one (kept or brought by this
        # file) would be refused live, so it is refused here; repeat until nothing changes
        while True:
            tier2 = existingTier2 + [d['created'].replace(tzinfo=None)
                                     for _, docs, _ in candidates for d in docs
                                     if d['tier'] == 2]
            first = min(tier2) if tier2 else None
            refused = [c for c in candidates if first is not None and any(
                d['tier'] == 1 and d['created'].replace(tzinfo=None) > first for d in c[1])]
            if not refused:
                break
            for line, _docs, _ in refused:
                self.error(line, f'this scan was decided at tier 2 on {first.isoformat()}Z; a '
                           'tier-1 decision dated after that cannot change it.')
            candidates = [c for c in candidates if c not in refused]
        docs = [d for _, ds, _ in candidates for d in ds]
        try:
            if docs:
                Decision().collection.insert_many(docs, ordered=True)
            self.rebuild(item, trail, docs)
        except Exception as exc:  # the scan's rows are all or nothing: take them out again
            Decision().collection.delete_many({'_id': {'$in': [d['_id'] for d in docs]}})
            Decision().rebuild_state(item)
            reason = (f'not imported: {exc}' if isinstance(exc, RestException) else
                      'not imported: the scan\'s decisions could not be stored '
                      f'({type(exc).__name__}).')
            for line, _docs, _ in candidates:
                self.error(line, reason)
            return
        for _, ds, skipped in candidates:
            self.report['decisionsAdded'] += len(ds)
            self.report['decisionsSkipped'] += skipped

    def rebuild(self, item: dict, trail: list, docs: list) -> None:
        """Set the scan's state from its trail (as read) and the new decisions; if the scan
        changed since it was read, from the trail as it is now (``Decision.rebuild_state``)."""
        state = item[ITEM_FIELD]
        history = sorted(trail + docs, key=lambda d: (d['created'].replace(tzinfo=None),
                                                      d['_id']))
        derived = derive_state(history)
        latest = state.get('latestDecision') or {}
        if not docs and (state.get('state'), state.get('decisionCount'), latest.get('_id')) == (
                derived[f'{ITEM_FIELD}.state'], derived[f'{ITEM_FIELD}.decisionCount'],
                (derived[f'{ITEM_FIELD}.latestDecision'] or {}).get('_id')):
            return  # nothing new, and the scan already agrees with its trail
        if Item().collection.update_one(
                {'_id': item['_id'], f'{ITEM_FIELD}.rev': state.get('rev', 0),
                 f'{ITEM_FIELD}.projectId': self.project['_id']},
                {'$set': {**derived, f'{ITEM_FIELD}.updated': self.now},
                 '$inc': {f'{ITEM_FIELD}.rev': 1}}).modified_count:
            old, new = state['state'], derived[f'{ITEM_FIELD}.state']
            if old != new:
                self._deltas[old] = self._deltas.get(old, 0) - 1
                self._deltas[new] = self._deltas.get(new, 0) + 1
        else:
            Decision().rebuild_state(item)

    def run(self, rows) -> dict:
        """Import (line, entry, decisions) rows: check them all, then write scan by scan."""
        rows = list(rows)
        ids = set()
        for _line, entry, _decisions in rows:
            try:
                ids.add(ObjectId(str(entry.get('itemId')).strip()))
            except (InvalidId, TypeError):
                pass
        ids = sorted(ids)
        for start in range(0, len(ids), 1000):  # one query per thousand scans, not per row
            chunk = ids[start:start + 1000]
            self._items.update(dict.fromkeys(chunk))
            self._items.update({doc['_id']: doc for doc in Item().collection.find(
                {'_id': {'$in': chunk}})})
        scans: dict = {}
        for line, entry, decisions in rows:
            self.report['rows'] += 1
            if 'error' in entry and len(entry) == 1:
                self.error(line, entry['error'])
                continue
            try:
                key, item, plan, prepared = self.check(entry, decisions)
            except (RowError, ValidationException) as exc:
                self.error(line, str(exc))
                continue
            except (TypeError, ValueError, AttributeError, OverflowError,
                    RecursionError) as exc:  # malformed values the checks above did not foresee
                self.error(line, f'the row cannot be read ({type(exc).__name__}).')
                continue
            scans.setdefault(key, (item, plan, []))[2].append((line, prepared))
        known = sorted(k for k in scans if isinstance(k, ObjectId))
        for start in range(0, len(known), 1000):  # the scans' trails, a thousand at a time
            chunk = known[start:start + 1000]
            for itemId in chunk:
                self._trails[itemId] = []
            for doc in Decision().collection.find({'itemId': {'$in': chunk}},
                                                  sort=[('created', 1), ('_id', 1)]):
                self._trails[doc['itemId']].append(doc)
        try:
            for item, plan, scanRows in scans.values():
                self.scan(item, plan, scanRows)
        finally:
            review_state.apply_deltas({self.project['_id']: self._deltas})
        self.report['errors'].sort(key=lambda e: e['line'])
        return self.report


def _csv_rows(project: dict, text: str):
    reader = csv.DictReader(io.StringIO(text, newline=''))
    try:
        fields = reader.fieldnames or []
    except csv.Error as exc:
        raise RestException(f'The CSV header (line 1) cannot be read: {exc}.') from None
    if 'itemId' not in fields and 'path' not in fields:
        raise RestException('The CSV needs an "itemId" or a "path" column (header on line 1).')
    keys = [a['key'] for a in project['settings']['artifacts']]
    unknown = sorted(set(fields) & (set(ARTIFACT_KEYS) - set(keys)))
    start = reader.line_num + 1
    while True:
        line = start
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            start = reader.line_num + 1
            yield line, {'error': f'the row cannot be read as CSV: {exc}.'}, []
            continue
        start = reader.line_num + 1
        try:
            if None in row:
                raise RowError('the row has more values than the header has columns.')
            row = {k: undefuse(v) for k, v in row.items()}
            decision = _csv_decision(row, keys)
            if decision and any((row.get(k) or '').strip() for k in unknown):
                raise RowError(f'artifact column(s) {", ".join(unknown)} are not in this '
                               'project\'s vocabulary.')
        except RowError as exc:
            yield line, {'error': str(exc)}, []
            continue
        yield line, row, [decision] if decision else []


def _json_rows(text: str):
    try:
        doc = json.loads(text)
    except RecursionError:
        raise RestException('The JSON cannot be read: it is nested too deeply (at most about '
                            f'{sys.getrecursionlimit()} levels).') from None
    except ValueError as exc:  # JSONDecodeError, and integers too long to convert
        raise RestException(f'The JSON cannot be read: {exc}.') from None
    entries = doc.get('scans') if isinstance(doc, dict) else doc
    if not isinstance(entries, list):
        raise RestException('The JSON must be a list of scans or an object with "scans".')
    for number, entry in enumerate(entries, 1):
        if not isinstance(entry, dict):
            yield number, {'error': 'each scan must be an object.'}, []
            continue
        decisions = entry.get('decisions') or []
        if not isinstance(decisions, list):
            yield number, {'error': '"decisions" must be a list.'}, []
            continue
        yield number, entry, decisions


def import_text(project: dict, user: dict, text: str, format: str,
                assetstoreId: str | None = None) -> dict:
    """Import a CSV or JSON file's rows (see IMPORT_NOTES); returns the report."""
    if format not in ('csv', 'json'):
        raise RestException('format must be csv or json.')
    if len(text) > MAX_IMPORT_BYTES:
        raise RestException(f'The import is larger than {MAX_IMPORT_BYTES} bytes.', code=413)
    rows = list(_csv_rows(project, text) if format == 'csv' else _json_rows(text))
    report = Importer(project, user, assetstoreId).run(rows)
    report['lineKind'] = 'line' if format == 'csv' else 'entry'
    if format == 'json' and access.can_admin(project, user):  # gold references and re-reads
        report['gold'] = calibration.import_gold(project, user, rows)
    return report
