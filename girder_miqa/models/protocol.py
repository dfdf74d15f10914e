"""Reference protocols and protocol compliance (issue #22, items 2 and 3).

A *reference* says, for one project, scan type and site (``site`` None: every site), what each
acquisition parameter should be: ``{Key: {'value', 'tolerance', 'severity'}}``. A project admin
sets references (``PUT /miqa/project/{id}/protocol``, ``miqa protocol set``); a group (site x
scan type) with no set reference, neither its own nor its scan type's all-sites one, gets an
*inferred* reference: for each parameter of :data:`INFERRED_PARAMETERS` the most common value
among the site's scans of that type for the scanner's own parameters (:data:`SITE_PARAMETERS`:
manufacturer, model, software, field strength, coil) and among the project's scans of that
type for the sequence's (TR, TE, TI, flip angle, voxel size, matrix ...: one protocol for the
study), and among the project's for all when the site has fewer than :data:`MIN_SITE_SCANS`
scans of the type; ties go to the value more common in the whole project, then the smallest.
Inferred references warn, with :data:`DEFAULT_TOLERANCES`.

A scan *deviates* on a parameter when its value (``assessment.acquisition.parameters``) is
not the reference's: numbers differ by more than the tolerance (absolute, in the parameter's
BIDS unit; none: equal), lists element-wise (and of the same length), text exactly. A value the
scan does not know deviates from a set reference only. Each deviation is
``{'parameter', 'expected', 'found', 'severity', 'tolerance', 'reference': 'set'|'inferred'}``.
"""

from __future__ import annotations

import csv
import datetime
import io
import json
import math
from collections import Counter
from collections.abc import Iterable
from typing import Any

from girder.constants import AccessType
from girder.exceptions import ValidationException
from girder.models.folder import Folder
from girder.models.item import Item
from girder.models.model_base import Model

from ..constants import ITEM_FIELD, AssessmentStatus
from . import sites

P = ITEM_FIELD
COLLECTION = 'miqa_protocol'
SEVERITIES = ('warning', 'exclude')
#: A site with fewer scans of a type than this is checked against the project's inferred
#: reference of that type (a mode of two scans says little).
MIN_SITE_SCANS = 3
#: Inferred from the site's own scans (when it has enough): what a site's scanner fixes. The
#: others, the sequence (TR, TE, voxel size ...), are inferred from the whole project's scans
#: of the type, as a multi-site study runs one protocol: a site scanning with another TR
#: deviates from the project's mode.
SITE_PARAMETERS = ('Manufacturer', 'ManufacturersModelName', 'SoftwareVersions',
                   'MagneticFieldStrength', 'ReceiveCoilName')
#: What an inferred reference checks: the parameters a protocol fixes (not the names, dates or
#: the site's own identity: institution, station, serial number).
INFERRED_PARAMETERS = (
    'Manufacturer', 'ManufacturersModelName', 'SoftwareVersions', 'MagneticFieldStrength',
    'ScanningSequence', 'SequenceVariant', 'SequenceName', 'MRAcquisitionType',
    'RepetitionTime', 'EchoTime', 'InversionTime', 'FlipAngle', 'VoxelSize', 'Matrix',
    'SliceThickness', 'Orientation', 'PixelBandwidth', 'ParallelReductionFactorInPlane',
    'PhaseEncodingDirection', 'ReceiveCoilName')
#: Every parameter a reference may name (the worker's ``acquisition.PARAMETERS``).
PARAMETERS = (
    'Manufacturer', 'ManufacturersModelName', 'SoftwareVersions', 'MagneticFieldStrength',
    'SeriesDescription', 'ProtocolName', 'ScanningSequence', 'SequenceVariant', 'SequenceName',
    'MRAcquisitionType', 'RepetitionTime', 'EchoTime', 'InversionTime', 'FlipAngle',
    'VoxelSize', 'Matrix', 'SliceThickness', 'Orientation', 'AcquisitionDate',
    'PixelBandwidth', 'ParallelReductionFactorInPlane', 'PhaseEncodingDirection',
    'ReceiveCoilName', 'InstitutionName', 'StationName', 'DeviceSerialNumber')
#: Absolute tolerances of inferred references (BIDS units: s, degrees, mm, T, Hz/px).
DEFAULT_TOLERANCES = {
    'RepetitionTime': 0.001, 'EchoTime': 0.0001, 'InversionTime': 0.001, 'FlipAngle': 0.5,
    'VoxelSize': 0.01, 'SliceThickness': 0.01, 'MagneticFieldStrength': 0.05,
    'PixelBandwidth': 1.0, 'ParallelReductionFactorInPlane': 0.0, 'Matrix': 0.0}
#: The parameters exports and tables show as their own columns (``acq_<Key>``).
MAIN_PARAMETERS = ('Manufacturer', 'ManufacturersModelName', 'SoftwareVersions',
                   'MagneticFieldStrength', 'SeriesDescription', 'RepetitionTime', 'EchoTime',
                   'InversionTime', 'FlipAngle', 'VoxelSize', 'Matrix', 'SliceThickness',
                   'Orientation', 'AcquisitionDate')
CSV_COLUMNS = ('scanType', 'site', 'parameter', 'value', 'tolerance', 'severity')
MAX_REFERENCES = 1000


class Protocol(Model):
    """The ``miqa_protocol`` collection: one set reference per (project, scan type, site)."""

    def initialize(self):
        self.name = COLLECTION
        self.ensureIndices([([('projectId', 1), ('scanType', 1), ('site', 1)], {'unique': True})])

    def validate(self, doc):
        doc['parameters'] = validate_parameters(doc.get('parameters'), '')
        for key in ('scanType',):
            if not isinstance(doc.get(key), str) or not doc[key].strip():
                raise ValidationException('scanType must be a non-empty string.', 'scanType')
        if doc.get('site') is not None and (not isinstance(doc['site'], str)
                                            or not doc['site'].strip()):
            raise ValidationException('site must be a non-empty string or null (all sites).',
                                      'site')
        return doc

    def set_reference(self, project: dict, user: dict, scanType: str, site: str | None,
                      parameters: dict) -> dict:
        """Create or replace the set reference of (project, scanType, site)."""
        doc = self.validate({'projectId': project['_id'], 'scanType': scanType.strip(),
                             'site': site.strip() if site else None, 'parameters': parameters,
                             'userId': user['_id'], 'updated': _now()})
        self.collection.replace_one({'projectId': doc['projectId'], 'scanType': doc['scanType'],
                                     'site': doc['site']}, doc, upsert=True)
        return self.collection.find_one({'projectId': doc['projectId'],
                                         'scanType': doc['scanType'], 'site': doc['site']})

    def remove_reference(self, project: dict, scanType: str, site: str | None) -> bool:
        return self.collection.delete_one({'projectId': project['_id'], 'scanType': scanType,
                                           'site': site or None}).deleted_count == 1

    def of_project(self, project: dict) -> list[dict]:
        return list(self.collection.find({'projectId': project['_id']}).sort(
            [('scanType', 1), ('site', 1)]))


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


# ---- validation of set references ----


def _bad(message: str, where: str, field: str = 'parameters') -> ValidationException:
    return ValidationException(f'{where}{message}', field)


def _valid_value(parameter: str, value: Any, where: str) -> Any:
    if isinstance(value, bool) or value is None:
        raise _bad(f'value of {parameter} must be a number, text or a list of numbers, not '
                   f'{json.dumps(value)}.', where, 'value')
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise _bad(f'value of {parameter} must be finite.', where, 'value')
        return float(value)
    if isinstance(value, str):
        if not value.strip():
            raise _bad(f'value of {parameter} is empty.', where, 'value')
        return value.strip()
    if isinstance(value, list) and value and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            for v in value):
        return [float(v) if parameter != 'Matrix' else int(v) for v in value]
    raise _bad(f'value of {parameter} must be a number, text or a list of numbers, not '
               f'{json.dumps(value)[:40]}.', where, 'value')


def validate_parameters(parameters: Any, where: str) -> dict:
    """A reference's ``parameters`` checked and normalised; ValidationException naming the
    parameter and the field (value, tolerance, severity) otherwise."""
    if not isinstance(parameters, dict) or not parameters:
        raise _bad('parameters must be an object {Parameter: {value, tolerance, severity}} '
                   'with at least one parameter.', where)
    out = {}
    for parameter, spec in parameters.items():
        if parameter not in PARAMETERS:
            raise _bad(f'unknown parameter {parameter!r} (known: {", ".join(PARAMETERS)}).',
                       where, 'parameter')
        if not isinstance(spec, dict):
            spec = {'value': spec}
        unknown = set(spec) - {'value', 'tolerance', 'severity'}
        if unknown:
            raise _bad(f'{parameter} has unknown fields {sorted(unknown)} (value, tolerance, '
                       'severity).', where, 'parameter')
        value = _valid_value(parameter, spec.get('value'), where)
        tolerance = spec.get('tolerance')
        if tolerance is not None:
            if isinstance(tolerance, str) and tolerance.strip() == '':
                tolerance = None
            else:
                try:
                    tolerance = float(tolerance)
                except (TypeError, ValueError):
                    tolerance = -1.0
                if isinstance(spec.get('tolerance'), bool) or not math.isfinite(
                        tolerance) or tolerance < 0:
                    raise _bad(f'tolerance of {parameter} must be a number >= 0 or empty, not '
                               f'{spec.get("tolerance")!r}.', where, 'tolerance')
                if isinstance(value, str):
                    raise _bad(f'tolerance of {parameter} applies to numbers only; text is '
                               'compared exactly.', where, 'tolerance')
        severity = spec.get('severity') or 'warning'
        if severity not in SEVERITIES:
            raise _bad(f'severity of {parameter} must be warning or exclude, not {severity!r}.',
                       where, 'severity')
        out[parameter] = {'value': value, 'tolerance': tolerance, 'severity': severity}
    return out


def parse_references(text: str, fmt: str) -> list[dict]:
    """References from a PUT body: a JSON list of ``{scanType, site, parameters}`` or CSV
    with the columns of :data:`CSV_COLUMNS` (one row per parameter). ValidationException naming
    the entry or row and the field otherwise."""
    if fmt == 'json':
        try:
            raw = json.loads(text)
        except ValueError as exc:
            raise ValidationException(f'The body is not JSON: {exc}.', 'body') from None
        if isinstance(raw, dict):
            raw = [raw]
        if not isinstance(raw, list) or not raw:
            raise ValidationException('The body must be a JSON list of references '
                                      '{scanType, site, parameters}.', 'body')
        out = []
        for n, ref in enumerate(raw, 1):
            where = f'reference {n}: '
            if not isinstance(ref, dict):
                raise ValidationException(f'{where}must be an object.', 'body')
            unknown = set(ref) - {'scanType', 'site', 'parameters'}
            if unknown:
                raise ValidationException(f'{where}unknown fields {sorted(unknown)}.', 'body')
            out.append({'scanType': _scan_type(ref.get('scanType'), where),
                        'site': _site(ref.get('site'), where),
                        'parameters': validate_parameters(ref.get('parameters'), where)})
    else:
        rows = list(csv.DictReader(io.StringIO(text)))
        missing = [c for c in CSV_COLUMNS if c not in (rows[0].keys() if rows else ())]
        if not rows or missing:
            raise ValidationException(
                f'The CSV needs a header row with the columns {", ".join(CSV_COLUMNS)}'
                + (f' (missing: {", ".join(missing)})' if rows else ' and at least one row')
                + '.', 'body')
        grouped: dict[tuple, dict] = {}
        for n, row in enumerate(rows, 2):
            where = f'row {n}: '
            key = (_scan_type(row.get('scanType'), where), _site(row.get('site'), where))
            parameter = (row.get('parameter') or '').strip()
            spec = {'value': _csv_value(row.get('value') or ''),
                    'tolerance': (row.get('tolerance') or '').strip() or None,
                    'severity': (row.get('severity') or '').strip() or 'warning'}
            checked = validate_parameters({parameter: spec}, where)
            grouped.setdefault(key, {}).update(checked)
        out = [{'scanType': k[0], 'site': k[1], 'parameters': v} for k, v in grouped.items()]
    if len(out) > MAX_REFERENCES:
        raise ValidationException(f'At most {MAX_REFERENCES} references at once.', 'body')
    return out


def _scan_type(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValidationException(f'{where}scanType must be a non-empty string (e.g. T1w).',
                                  'scanType')
    return value.strip()


def _site(value: Any, where: str) -> str | None:
    if value is None or (isinstance(value, str) and value.strip() in ('', '*')):
        return None
    if not isinstance(value, str):
        raise ValidationException(f'{where}site must be a site name, or empty for all sites.',
                                  'site')
    return value.strip()


def _csv_value(text: str) -> Any:
    """A CSV cell: a number, a list ("[1, 1, 1.2]" or "1 1 1.2"), else the text."""
    text = text.strip()
    try:
        value = json.loads(text)
        if isinstance(value, (int, float, list)) and not isinstance(value, bool):
            return value
    except ValueError:
        pass
    parts = text.replace(',', ' ').replace('x', ' ').split()
    try:
        numbers = [float(p) for p in parts]
        return numbers if len(numbers) > 1 else text
    except ValueError:
        return text


# ---- comparison ----


def _equal(expected: Any, found: Any, tolerance: float | None) -> bool:
    slack = tolerance if tolerance is not None else 0.0
    if isinstance(expected, (int, float)) and isinstance(found, (int, float)):
        return abs(float(found) - float(expected)) <= slack + 1e-9 * max(1.0, abs(expected))
    if isinstance(expected, list) and isinstance(found, (list, tuple)):
        return len(expected) == len(found) and all(
            e is not None and f is not None and _equal(e, f, tolerance)
            for e, f in zip(expected, found, strict=True))
    if isinstance(expected, str) and isinstance(found, str):
        return expected.strip() == found.strip()
    if isinstance(expected, str) and isinstance(found, (int, float)):  # "3" against 3.0
        try:
            return _equal(float(expected), found, tolerance)
        except ValueError:
            return False
    return expected == found


def deviations(reference: dict, found: dict, kind: str) -> list[dict]:
    """A scan's deviations from one reference (``{Key: {value, tolerance, severity}}``)."""
    out = []
    for parameter, spec in reference.items():
        value = found.get(parameter)
        if value is None and kind == 'inferred':
            continue
        if value is None or not _equal(spec['value'], value, spec.get('tolerance')):
            out.append({'parameter': parameter, 'expected': spec['value'], 'found': value,
                        'severity': spec.get('severity') or 'warning',
                        'tolerance': spec.get('tolerance'), 'reference': kind})
    return out


def _hashable(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def infer(scans: Iterable[dict], project_scans: Iterable[dict] | None = None) -> dict:
    """The inferred reference of a site's scans (their parameters, ``{Key: value}`` dicts)
    among the project's of the type: per parameter the most common known value, of the site's
    scans for :data:`SITE_PARAMETERS` when it has :data:`MIN_SITE_SCANS`, else of the
    project's; ties to the value more common in the project, then the smallest. Each entry
    says its ``basis``, 'site' or 'project'."""
    scans = list(scans)
    project_scans = list(scans if project_scans is None else project_scans)
    own = len(scans) >= MIN_SITE_SCANS
    wide: dict[str, Counter] = {}
    for params in project_scans:
        for key in INFERRED_PARAMETERS:
            if params.get(key) is not None:
                wide.setdefault(key, Counter())[_hashable(params[key])] += 1
    out = {}
    for key in INFERRED_PARAMETERS:
        basis = 'site' if own and key in SITE_PARAMETERS else 'project'
        counts = Counter(_hashable(p[key]) for p in (scans if basis == 'site' else project_scans)
                         if p.get(key) is not None)
        if not counts:
            continue
        best = max(counts.items(), key=lambda kv: (
            kv[1], wide.get(key, Counter())[kv[0]], _order(kv[0])))[0]
        value = list(best) if isinstance(best, tuple) else best
        out[key] = {'value': value, 'tolerance': DEFAULT_TOLERANCES.get(key),
                    'severity': 'warning', 'basis': basis}
    return out


def _order(value: Any) -> tuple:
    """A key that makes the smallest value win a tie (max() over its negation)."""
    text = json.dumps(value, default=str)
    return tuple(-ord(c) for c in text)


# ---- scans and references of a project ----


def parameters_of(doc: dict) -> dict:
    """A scan document's acquisition parameters ({} when it has none)."""
    assessment = ((doc.get(P) or {}) if P in doc else doc).get('assessment') or {}
    acquisition = assessment.get('acquisition')
    found = acquisition.get('parameters') if isinstance(acquisition, dict) else None
    return found if isinstance(found, dict) else {}


def _group_of(doc: dict, project: dict, cache: dict) -> tuple[str, str]:
    state = doc.get(P) or {}
    site = state.get('site')
    if not isinstance(site, str):
        site = sites.site_of(doc, project, sites.folder_path(doc, project, cache))
    kind = state.get('scanType')
    if not isinstance(kind, str):
        kind = sites.scan_type(state)
    return site, kind


_SCAN_FIELDS = {'name': 1, 'folderId': 1, f'{P}.site': 1, f'{P}.scanType': 1,
                f'{P}.assessment.scope': 1, f'{P}.assessment.acquisition': 1}


def project_scans(project: dict, query: dict | None = None) -> list[tuple[dict, str, str]]:
    """(scan document, site, scan type) of the project's assessed scans."""
    cache: dict = {}
    docs = Item().collection.find({f'{P}.projectId': project['_id'],
                                   f'{P}.assessment.status': AssessmentStatus.DONE,
                                   **(query or {})}, _SCAN_FIELDS)
    return [(doc, *_group_of(doc, project, cache)) for doc in docs]


def reference_for(project: dict, site: str, scan_type: str, group: list[dict],
                  everyone: list[dict] | None = None, set_refs: list[dict] | None = None
                  ) -> tuple[dict, str]:
    """(reference parameters, 'set' | 'inferred') in force for one group.

    Args:
        group: the parameters of the site's scans of the type.
        everyone: the parameters of the project's scans of the type (looked up when None).
        set_refs: the project's set references (looked up when None).
    """
    set_refs = Protocol().of_project(project) if set_refs is None else set_refs
    mine = [r for r in set_refs if r['scanType'] == scan_type and r.get('site') in (None, site)]
    if mine:
        merged: dict = {}
        for ref in sorted(mine, key=lambda r: r.get('site') is not None):  # a site's wins
            merged.update(ref['parameters'])
        return merged, 'set'
    if everyone is None:
        stored = {'$or': [{f'{P}.scanType': scan_type}, {f'{P}.scanType': {'$exists': False}}]}
        everyone = [parameters_of(d) for d, _, kind in project_scans(project, stored)
                    if kind == scan_type]
    return infer(group, everyone), 'inferred'


def check_group(project: dict, site: str, scan_type: str, scans: list[dict]) -> dict:
    """The deviations of one group's scans: ``{itemId: [deviation]}`` (every scan given has an
    entry, [] when compliant).

    Args:
        project: the project document.
        site, scan_type: the group (``sites.site_of``, ``sites.scan_type``).
        scans: the group's item documents (with ``miqa.assessment.acquisition``).
    """
    group = [parameters_of(doc) for doc in scans]
    reference, kind = reference_for(project, site, scan_type, group)
    return {doc['_id']: deviations(reference, params, kind)
            for doc, params in zip(scans, group, strict=True)}


def in_force(project: dict) -> list[dict]:
    """The references in force: every set reference, and the inferred one of each group
    (site x scan type with assessed scans) that has no set reference."""
    set_refs = Protocol().of_project(project)
    out = [{'_id': r['_id'], 'scanType': r['scanType'], 'site': r.get('site'),
            'reference': 'set', 'parameters': r['parameters'], 'updated': r.get('updated'),
            'userId': r.get('userId')} for r in set_refs]
    by_group: dict[tuple[str, str], list[dict]] = {}
    by_type: dict[str, list[dict]] = {}
    for doc, site, kind in project_scans(project):
        by_group.setdefault((site, kind), []).append(parameters_of(doc))
        by_type.setdefault(kind, []).append(parameters_of(doc))
    for (site, kind), group in sorted(by_group.items()):
        reference, how = reference_for(project, site, kind, group, by_type[kind], set_refs)
        for entry in out:
            if entry['reference'] == 'set' and entry['scanType'] == kind:
                entry['scans'] = entry.get('scans', 0) + (
                    len(group) if entry['site'] in (None, site) else 0)
        if how == 'inferred':
            out.append({'_id': None, 'scanType': kind, 'site': site, 'reference': 'inferred',
                        'parameters': reference, 'scans': len(group),
                        'basis': 'site' if len(group) >= MIN_SITE_SCANS else 'project'})
    for entry in out:
        entry.setdefault('scans', 0)
    return out


def _readable(project: dict, user: dict | None) -> dict:
    """A query part for the project's scans in folders the user can read (Girder's access
    check per folder holding scans; site admins read all)."""
    if user and user.get('admin'):
        return {}
    folderIds = Item().collection.distinct('folderId', {f'{P}.projectId': project['_id']})
    model = Folder()
    unreadable = [f for f in folderIds if not model.hasAccess(
        model.load(f, force=True) or {}, user=user, level=AccessType.READ)]
    return {'folderId': {'$nin': sorted(unreadable)}} if unreadable else {}


def compliance(project: dict, user: dict | None, visible: dict | None = None) -> dict:
    """The compliance table of the scans the user can read: ``{'sites': {site: {scanType:
    {'scans', 'compliant', 'reference', 'parameters': {Key: percent of scans within the
    reference}}}}}``; computed now, nothing stored.

    Args:
        visible: the query of the scans the user can read (``scans.visible_filter``), when
            the caller has it; checked here otherwise.
    """
    query = dict(visible) if visible is not None else _readable(project, user)
    query.pop(f'{P}.projectId', None)
    visible = project_scans(project, query)
    everyone_docs = project_scans(project)
    set_refs = Protocol().of_project(project)
    by_type: dict[str, list[dict]] = {}
    groups: dict[tuple[str, str], list[dict]] = {}
    for doc, site, kind in everyone_docs:
        by_type.setdefault(kind, []).append(parameters_of(doc))
        groups.setdefault((site, kind), []).append(parameters_of(doc))
    out: dict[str, dict] = {}
    shown: dict[tuple[str, str], list[dict]] = {}
    for doc, site, kind in visible:
        shown.setdefault((site, kind), []).append(parameters_of(doc))
    for (site, kind), params in sorted(shown.items()):
        reference, how = reference_for(project, site, kind, groups.get((site, kind), params),
                                       by_type.get(kind, params), set_refs)
        found = [deviations(reference, p, how) for p in params]
        entry = {'scans': len(params), 'compliant': sum(1 for d in found if not d),
                 'reference': how, 'parameters': {}}
        for parameter in reference:
            off = sum(1 for d in found if any(x['parameter'] == parameter for x in d))
            entry['parameters'][parameter] = round(100.0 * (len(params) - off) / len(params), 1)
        out.setdefault(site, {})[kind] = entry
    return {'sites': out, 'minimumSiteScans': MIN_SITE_SCANS}


def groups_of(project: dict, scan_type: str | None = None, site: str | None = None
              ) -> list[tuple[str, str]]:
    """The (site, scan type) groups with assessed scans that a reference of ``scan_type`` and
    ``site`` (None: every) applies to: those whose triage a change of it must recompute."""
    return sorted({(s, k) for _, s, k in project_scans(project)
                   if (scan_type is None or k == scan_type) and (site is None or s == site)})


# ---- export ----


def _cell(value: Any) -> str:
    if value is None:
        return ''
    if isinstance(value, (list, tuple)):
        return 'x'.join(_cell(v) for v in value)
    if isinstance(value, float):
        return f'{value:g}'
    return str(value)


def export_columns(state: dict) -> dict[str, str]:
    """A scan's export cells: ``acq_<Key>`` for :data:`MAIN_PARAMETERS` and
    ``protocol_deviations`` ("Key: found≠expected (severity)", "; "-separated) from the
    deviations its last triage refresh stored."""
    found = parameters_of({P: state})
    out = {f'acq_{key}': _cell(found.get(key)) for key in MAIN_PARAMETERS}
    devs = ((state.get('protocol') or {}).get('deviations')) or []
    out['protocol_deviations'] = '; '.join(
        f'{d["parameter"]}: {_cell(d.get("found")) or "unknown"}≠{_cell(d.get("expected"))} '
        f'({d.get("severity", "warning")})' for d in devs)
    return out


EXPORT_COLUMNS = (*[f'acq_{key}' for key in MAIN_PARAMETERS], 'protocol_deviations')
