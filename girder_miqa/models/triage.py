"""Reasons and the triage score (issue #22.5): why a scan deserves a look, and how soon.

Every assessed scan carries one ordered list of reasons, each ``{'source': 'network' |
'protocol' | 'metrics', 'severity': 'exclude' | 'warning' | 'info', 'text', 'label',
'target': {'kind': 'indicator' | 'parameter' | 'metric', 'key'}, 'weight'}`` (``label`` is the
text without its numbers, what the group report counts), and ``sort.triage``, the sum of their
weights (higher = look sooner):

* protocol, exclude deviation: :data:`EXCLUDE_WEIGHT` (1000) each, more than everything else
  together, so a scan acquired with an excluded protocol comes first;
* network, predicted quality below the ``miqa.suspicion_thresholds`` quality: 10 to 20 (10 +
  10 x how far below, relative to the threshold);
* network, a trained indicator at or above the threshold probability: 10 to 20 (10 + 10 x how
  far above, relative to what is left up to 1);
* protocol, warning deviation or a problem reading the acquisition (a broken sidecar): 5;
* metrics, an outlier of a metric with a known good direction: |z| / 2, at most 5
  (``models/site_metrics.py``);
* info (outside the model's domain): 0; the queue's out-of-scope band places those scans.

The reasons are ordered by weight, then severity and source. ``refresh_group`` recomputes them
for a whole site x scan-type group whenever a result lands in it (its peers' distributions and
inferred protocols change with it); ``refresh_project`` does so for every group (``siteLevel``
or a reference protocol changed). Reads never compute or store any of this.
"""

from __future__ import annotations

import datetime
import logging

from girder import events
from girder.models.item import Item
from pymongo import UpdateOne

from .. import settings
from ..constants import ITEM_FIELD, AssessmentStatus
from . import review_state, site_metrics, sites
from .review_state import NETWORK_WEIGHT, network_reasons, network_score  # noqa: F401

logger = logging.getLogger(__name__)
P = ITEM_FIELD

EXCLUDE_WEIGHT = 1000.0
WARNING_WEIGHT = 5.0  # (the network's weights: review_state.network_reasons)
# Triggered by a group refresh with {'project', 'site', 'scanType', 'scans'}; the protocol
# checks answer {itemId: deviations} (handlers.on_protocol_check: ``protocol.check_group``),
# so this module needs no import of them (they refresh the triage when a reference changes).
PROTOCOL_CHECK_EVENT = 'miqa.triage.protocol'
SEVERITY_ORDER = {'exclude': 0, 'warning': 1, 'info': 2}
SOURCE_ORDER = {'protocol': 0, 'network': 1, 'metrics': 2}
UNITS = {'RepetitionTime': ' s', 'EchoTime': ' s', 'InversionTime': ' s', 'FlipAngle': '°',
         'SliceThickness': ' mm', 'VoxelSize': ' mm', 'MagneticFieldStrength': ' T'}
GROUP_FIELDS = {  # what a group refresh reads of each scan
    'name': 1, 'folderId': 1, f'{P}.projectId': 1, f'{P}.site': 1, f'{P}.scanType': 1,
    f'{P}.assessment': 1, f'{P}.reasons': 1, f'{P}.metrics': 1, f'{P}.protocol': 1,
    f'{P}.sort.triage': 1}


def _done(assessment: dict | None) -> bool:
    return bool(assessment) and assessment.get('status') == AssessmentStatus.DONE


def _value(value, parameter: str) -> str:
    """A parameter value for a reason's text."""
    if value is None:
        return 'unknown'
    unit = UNITS.get(parameter, '')
    if isinstance(value, (list, tuple)):
        return 'x'.join(_value(v, '') for v in value) + unit
    if isinstance(value, float):
        return f'{value:g}{unit}'
    return f'{value}{unit}'


def protocol_reasons(deviations: list[dict], problems: list | None = None) -> list[dict]:
    """The reasons of a scan's protocol deviations (``protocol.check_group``) and of the
    problems met reading its acquisition parameters."""
    out = []
    for dev in deviations or []:
        parameter = str(dev.get('parameter'))
        severity = 'exclude' if dev.get('severity') == 'exclude' else 'warning'
        tolerance = dev.get('tolerance')
        expected = _value(dev.get('expected'), parameter)
        if tolerance:
            expected += f' ± {_value(float(tolerance), parameter)}'
        inferred = ', inferred' if dev.get('reference') == 'inferred' else ''
        out.append({
            'source': 'protocol', 'severity': severity,
            'text': f'{parameter} {_value(dev.get("found"), parameter)} (expected {expected}'
                    f'{inferred})',
            'label': f'{parameter} deviates', 'target': {'kind': 'parameter', 'key': parameter},
            'weight': EXCLUDE_WEIGHT if severity == 'exclude' else WARNING_WEIGHT})
    for problem in problems or []:
        out.append({
            'source': 'protocol', 'severity': 'warning', 'text': str(problem),
            'label': 'acquisition parameters unreadable',
            'target': {'kind': 'parameter', 'key': 'acquisition'}, 'weight': WARNING_WEIGHT})
    return out


def order(reasons: list[dict]) -> list[dict]:
    """Reasons by weight, then severity, source and text."""
    return sorted(reasons, key=lambda r: (-r['weight'], SEVERITY_ORDER.get(r['severity'], 3),
                                          SOURCE_ORDER.get(r['source'], 3), r['text']))


def score(reasons: list[dict]) -> float:
    """The triage score: the sum of the reasons' weights."""
    return round(sum(r['weight'] for r in reasons), 3)


def _check_group(project: dict, site: str, scan_type: str, scans: list[dict]) -> dict:
    """The group's protocol deviations ({itemId: deviations}) from the protocol checks, asked
    through :data:`PROTOCOL_CHECK_EVENT`; nothing when none answers. A failure there costs the
    protocol reasons, never the assessment."""
    try:
        event = events.trigger(PROTOCOL_CHECK_EVENT, {
            'project': project, 'site': site, 'scanType': scan_type, 'scans': scans})
    except Exception:
        logger.exception('Protocol check of %s / %s failed', site, scan_type)
        return {}
    found = next((r for r in event.responses if isinstance(r, dict)), None) or {}
    return {str(key): value for key, value in found.items()}


def _labels(project: dict) -> dict:
    return {a['key']: a['label'] for a in (project.get('settings') or {}).get('artifacts') or []}


def refresh_group(project: dict, site: str, scan_type: str) -> int:
    """Recompute ``protocol``, ``metrics``, ``reasons`` and ``sort.triage`` of every assessed
    scan of one site and scan type (and, when the site is too small for a distribution of its
    own, of the other small sites of the type, which share the project-wide one). Returns how
    many scans changed."""
    pid = project['_id']
    docs = list(Item().collection.find(
        {f'{P}.projectId': pid, f'{P}.scanType': scan_type,
         f'{P}.assessment.status': AssessmentStatus.DONE}, GROUP_FIELDS))
    by_site: dict[str, list[dict]] = {}
    for doc in docs:
        by_site.setdefault(doc[P].get('site'), []).append(doc)
    values = {doc['_id']: site_metrics.metric_values(doc[P]['assessment']) for doc in docs}
    targets = {site}
    if len(by_site.get(site, [])) < site_metrics.MIN_PEERS:
        targets |= {s for s, group in by_site.items() if len(group) < site_metrics.MIN_PEERS}
    labels = _labels(project)
    thresholds = settings.suspicion_thresholds()
    now = datetime.datetime.now(datetime.timezone.utc)
    ops = []
    for target in sorted(t for t in targets if t in by_site):
        group = by_site[target]
        deviations = _check_group(project, target, scan_type, group)
        scored = site_metrics.score_site(
            target, scan_type, {doc['_id']: values[doc['_id']] for doc in group}, values)
        for doc in group:
            state = doc[P]
            assessment = state['assessment']
            devs = deviations.get(str(doc['_id']), [])
            metrics, metric_reasons = scored[doc['_id']]
            problems = (assessment.get('acquisition') or {}).get('problems') if isinstance(
                assessment.get('acquisition'), dict) else None
            reasons = order(network_reasons(assessment, labels, thresholds)
                            + protocol_reasons(devs, problems) + metric_reasons)
            triage = score(reasons)
            old_protocol = state.get('protocol') or {}
            if (state.get('reasons') == reasons and state.get('metrics') == metrics
                    and old_protocol.get('deviations') == devs
                    and (state.get('sort') or {}).get('triage') == triage):
                continue
            ops.append(UpdateOne(
                {'_id': doc['_id'], f'{P}.projectId': pid,
                 f'{P}.assessment.updated': assessment.get('updated')},
                {'$set': {f'{P}.protocol': {'deviations': devs, 'checked': now},
                          f'{P}.metrics': metrics, f'{P}.reasons': reasons,
                          f'{P}.sort.triage': triage}}))
    if not ops:
        return 0
    return Item().collection.bulk_write(ops, ordered=False).modified_count


def place(itemId, project: dict) -> tuple[str, str] | None:
    """Store a scan's ``site`` and ``scanType`` (from its folder and assessment); returns them
    (None if it is no scan of ``project``)."""
    doc = Item().collection.find_one({'_id': itemId, f'{P}.projectId': project['_id']},
                                     {'folderId': 1, P: 1})
    if not doc:
        return None
    site, kind = sites.site_of(doc, project), sites.scan_type(doc[P])
    if (doc[P].get('site'), doc[P].get('scanType')) != (site, kind):
        Item().collection.update_one({'_id': itemId}, {'$set': {
            f'{P}.site': site, f'{P}.scanType': kind}})
    return site, kind


def assessment_stored(itemId) -> None:
    """A result was stored on a scan (``review_state.set_assessment_result``): place it and
    refresh its group, and the group it left. A failure is logged, never raised: the result
    itself is stored already."""
    try:
        doc = Item().collection.find_one({'_id': itemId}, {
            f'{P}.projectId': 1, f'{P}.site': 1, f'{P}.scanType': 1,
            f'{P}.assessment.status': 1})
        state = (doc or {}).get(P)
        if not state:
            return
        project = review_state._projects().find_one({'_id': state.get('projectId')})
        if not project:
            return
        before = (state.get('site'), state.get('scanType'))
        if not _done(state.get('assessment')):
            Item().collection.update_one({'_id': itemId}, {'$set': {
                f'{P}.reasons': [], f'{P}.metrics': None, f'{P}.protocol': None}})
            if None not in before:
                refresh_group(project, *before)
            return
        placed = place(itemId, project)
        if placed:
            refresh_group(project, *placed)
        if None not in before and before != placed:
            refresh_group(project, *before)
    except Exception:
        logger.exception('Could not refresh the triage of scan %s', itemId)


def item_moved(itemId, projectId, site: str | None, scan_type: str | None) -> None:
    """A scan moved to another folder (``moves.item_saved``): place it in its new group and
    refresh that group and the one it left, in whichever project that was. Never raises: the
    move itself is done."""
    try:
        assessment_stored(itemId)  # its new group, and the one it left in the same project
        now = ((Item().collection.find_one({'_id': itemId}, {f'{P}.projectId': 1}) or {}).get(
            P) or {}).get('projectId')
        if None not in (projectId, site, scan_type) and projectId != now:
            project = review_state._projects().find_one({'_id': projectId})
            if project:
                refresh_group(project, site, scan_type)
    except Exception:
        logger.exception('Could not refresh the triage of moved scan %s', itemId)


def project_regrouped(project: dict) -> None:
    """Scans moved into or inside a project together (a folder moved): place them all again
    and refresh its groups. Never raises."""
    try:
        refresh_project(project)
    except Exception:
        logger.exception('Could not refresh the triage of project %s', project.get('_id'))


def refresh_project(project: dict) -> int:
    """Place every assessed scan of a project again and refresh all its groups (its
    ``siteLevel`` or a reference protocol changed); returns how many scans changed."""
    pid = project['_id']
    cache: dict = {}
    ops, groups = [], set()
    for doc in Item().collection.find(
            {f'{P}.projectId': pid, f'{P}.assessment.status': AssessmentStatus.DONE},
            {'folderId': 1, f'{P}.site': 1, f'{P}.scanType': 1, f'{P}.assessment.scope': 1,
             f'{P}.assessment.acquisition.parameters.SeriesDescription': 1}):
        site = sites.site_of(doc, project, sites.folder_path(doc, project, cache))
        kind = sites.scan_type(doc[P])
        groups.add((site, kind))
        if (doc[P].get('site'), doc[P].get('scanType')) != (site, kind):
            ops.append(UpdateOne({'_id': doc['_id']}, {'$set': {
                f'{P}.site': site, f'{P}.scanType': kind}}))
    if ops:
        Item().collection.bulk_write(ops, ordered=False)
    changed = 0
    for site, kind in sorted(groups):
        changed += refresh_group(project, site, kind)
    return changed


def backfill() -> int:
    """Give scans from before triage a ``sort.triage`` (their network score; 0 when not
    assessed), so the queue orders them among the others, and their site and scan type, so
    they count among their group's peers; run at startup, idempotent. Their reasons come with
    the next refresh of their group. Returns how many scans changed."""
    missing = {f'{P}.projectId': {'$exists': True}, f'{P}.sort.triage': {'$exists': False}}
    changed = Item().collection.update_many(
        {**missing, f'{P}.assessment.status': {'$ne': AssessmentStatus.DONE}},
        {'$set': {f'{P}.sort.triage': 0.0}}).modified_count
    thresholds = settings.suspicion_thresholds()
    ops = [UpdateOne({'_id': doc['_id'], f'{P}.sort.triage': {'$exists': False}},
                     {'$set': {f'{P}.sort.triage': network_score(doc[P]['assessment'],
                                                                 thresholds)}})
           for doc in Item().collection.find(
               {**missing, f'{P}.assessment.status': AssessmentStatus.DONE},
               {f'{P}.assessment': 1})]
    projects: dict = {}
    caches: dict = {}
    for doc in Item().collection.find(
            {f'{P}.projectId': {'$exists': True}, f'{P}.scanType': {'$exists': False},
             f'{P}.assessment.status': AssessmentStatus.DONE},
            {'folderId': 1, f'{P}.projectId': 1, f'{P}.assessment.scope': 1,
             f'{P}.assessment.acquisition.parameters.SeriesDescription': 1}):
        pid = doc[P]['projectId']
        if pid not in projects:
            projects[pid] = review_state._projects().find_one({'_id': pid})
        project = projects[pid]
        if project:
            site = sites.site_of(doc, project, sites.folder_path(
                doc, project, caches.setdefault(pid, {})))
            ops.append(UpdateOne({'_id': doc['_id'], f'{P}.scanType': {'$exists': False}},
                                 {'$set': {f'{P}.site': site,
                                           f'{P}.scanType': sites.scan_type(doc[P])}}))
    for start in range(0, len(ops), 1000):
        changed += Item().collection.bulk_write(ops[start:start + 1000],
                                                ordered=False).modified_count
    return changed


EXPORT_COLUMNS = ('site', 'scan_type', 'triage', 'reasons')  # the export's (models/exchange.py)


def export_columns(state: dict, path: str, project: dict) -> dict[str, str]:
    """A scan's triage cells in the CSV export: its site (stored, else from its path), scan
    type, triage score and reasons ("; "-separated texts, in order)."""
    folders = path.split('/')[:-1]
    site = state.get('site') or sites.site_of({}, project, [project.get('name', '')] + folders)
    triage = (state.get('sort') or {}).get('triage')
    return {'site': site, 'scan_type': state.get('scanType') or '',
            'triage': '' if triage is None else f'{triage:g}',
            'reasons': '; '.join(r.get('text', '') for r in state.get('reasons') or [])}


def hide_network(state: dict) -> dict:
    """A scan's state without what would tell a reviewer what the network said (for the
    hidden-assessment arm, ``calibration.redact_state``): its network reasons and the triage
    score they raise. The protocol and metric reasons stay."""
    out = dict(state)
    if out.get('reasons'):
        out['reasons'] = [r for r in out['reasons'] if r.get('source') != 'network']
    if out.get('sort'):
        out['sort'] = {**out['sort'], 'triage': None}
    return out
