"""The group report (issue #22.6): each metric by site, the compliance table, the reasons most
often seen per site; what ``GET /miqa/project/{id}/report`` and ``miqa report`` show.

Computed on request from what the scans have stored (``models/triage.py``), over the scans the
user can read; nothing is stored.
"""

from __future__ import annotations

import csv
import io

from girder.models.item import Item

from .. import access
from ..constants import ITEM_FIELD, AssessmentStatus
from . import calibration, site_metrics
from .scans import relative_paths, visible_filter
from .sites import site_of

P = ITEM_FIELD
METRICS = tuple(site_metrics.DIRECTIONS)  # the metrics the report plots: those with a direction
CSV_FIXED = ('itemId', 'name', 'path', 'site', 'scanType', 'triage', 'outliers', 'reasons')


def _compliance(project: dict, user: dict | None) -> dict:
    """P's compliance table (``protocol.compliance``), or an empty one while it is absent."""
    try:
        from . import protocol
    except ImportError:
        return {'sites': {}}
    return protocol.compliance(project, user)


def _scans(project: dict, user: dict | None) -> list[dict]:
    """The assessed scans the user can read, with their site, type, path and stored triage."""
    query = visible_filter(project, user, **{f'{P}.assessment.status': AssessmentStatus.DONE})
    docs = list(Item().collection.find(query, {
        'name': 1, 'folderId': 1, f'{P}.site': 1, f'{P}.scanType': 1, f'{P}.reasons': 1,
        f'{P}.metrics': 1, f'{P}.sort.triage': 1, f'{P}.assessment.metrics': 1},
        sort=[('_id', 1)]))
    paths = relative_paths(project, {doc['folderId'] for doc in docs})
    tiers, admin = access.user_tiers(project, user), access.can_admin(project, user)
    out = []
    for doc in docs:  # the hidden arm's network reasons stay hidden from tier 1 here too
        state = calibration.hide_assessment(doc[P], project, doc['_id'], tiers, admin)
        folder = paths.get(doc['folderId'], '')
        site = state.get('site') or site_of(doc, project, [project.get('name', '')] + (
            folder.split('/') if folder else []))
        out.append({
            'itemId': doc['_id'], 'name': doc['name'],
            'path': f'{folder}/{doc["name"]}' if folder else doc['name'],
            'site': site, 'scanType': state.get('scanType') or 'unknown',
            'triage': (state.get('sort') or {}).get('triage'),
            'reasons': state.get('reasons') or [],
            'outliers': (state.get('metrics') or {}).get('outliers') or [],
            'z': (state.get('metrics') or {}).get('z') or {},
            'values': site_metrics.metric_values(doc[P].get('assessment')),
        })
    return out


def report(project: dict, user: dict | None) -> dict:
    """``{'metrics': {name: [{itemId, name, site, scanType, value, z, outlier}]}, 'compliance':
    protocol.compliance, 'reasons': {site: [{text, source, count}]}, 'sites', 'scans',
    'directions': {name: {direction, why}}}``; reasons are counted by their label (the text
    without its numbers), most often seen first."""
    scans = _scans(project, user)
    metrics: dict[str, list[dict]] = {name: [] for name in METRICS}
    reasons: dict[str, dict[tuple, int]] = {}
    for scan in scans:
        for name in METRICS:
            if name in scan['values']:
                metrics[name].append({
                    'itemId': scan['itemId'], 'name': scan['name'], 'site': scan['site'],
                    'scanType': scan['scanType'], 'value': scan['values'][name],
                    'z': scan['z'].get(name), 'outlier': name in scan['outliers']})
        counts = reasons.setdefault(scan['site'], {})
        for reason in scan['reasons']:
            key = (reason.get('label') or reason['text'], reason['source'])
            counts[key] = counts.get(key, 0) + 1
    return {
        'metrics': {name: rows for name, rows in metrics.items() if rows},
        'compliance': _compliance(project, user),
        'reasons': {site: [{'text': text, 'source': source, 'count': n} for (text, source), n in
                           sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]
                    for site, counts in sorted(reasons.items())},
        'sites': sorted({scan['site'] for scan in scans}),
        'scans': len(scans),
        'directions': {name: {'direction': d, 'why': why}
                       for name, (d, why) in site_metrics.DIRECTIONS.items()},
    }


def report_csv(project: dict, user: dict | None) -> str:
    """One row per assessed scan: its site, type, triage, outliers and reasons, and the value of
    each reported metric (the report's points, for a spreadsheet)."""
    scans = _scans(project, user)
    names = [name for name in METRICS if any(name in s['values'] for s in scans)]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=[*CSV_FIXED, *names], lineterminator='\n')
    writer.writeheader()
    for scan in scans:
        writer.writerow({
            'itemId': str(scan['itemId']), 'name': scan['name'], 'path': scan['path'],
            'site': scan['site'], 'scanType': scan['scanType'],
            'triage': '' if scan['triage'] is None else f'{scan["triage"]:g}',
            'outliers': ' '.join(scan['outliers']),
            'reasons': '; '.join(r['text'] for r in scan['reasons']),
            **{name: '' if name not in scan['values'] else f'{scan["values"][name]:g}'
               for name in names}})
    return buffer.getvalue()
