"""The import/export door keeps the record true: who imported what, tier rules, access, CSV
formula cells, exports that always import back, and bad input that is a row error or a 4xx."""

import csv
import io
import json

import pytest
from pytest_girder.assertions import assertStatus, assertStatusOk

from .test_exchange import do_import, export, wipe
from .util import decide, make_scan, state

pytestmark = pytest.mark.plugin('miqa')


def history(item):
    from girder_miqa.models.decision import Decision

    return Decision().history(item)


def post_raw(s, body: bytes, fmt='csv', user=None, headers=None):
    return s.server.request(f'/miqa/project/{s.id}/import', method='POST',
                            user=user or s.admin, params={'format': fmt}, body=body,
                            type='application/json' if fmt == 'json' else 'text/csv',
                            additionalHeaders=headers)


def agree(item):
    """The scan's stored count and latest decision agree with its trail."""
    st, trail = state(item), history(item)
    assert st['decisionCount'] == len(trail)
    if trail:
        assert st['latestDecision']['_id'] in {d['_id'] for d in trail}


# ------------------------------------------------------------------------------------------ A

def test_owner_import_records_importer_and_never_takes_another_account(study):
    s = study
    a = make_scan(s.subfolder('sub-01'), 't1.nii.gz', s.admin, seed=1)
    text = json.dumps([{'itemId': str(a['_id']), 'decisions': [
        {'decision': 'questionable', 'tier': 1, 'reviewer': 'tierone',
         'created': '2024-01-02T00:00:00Z'}]}])
    report = do_import(s, text, 'json', user=s.owner)
    assert report['errors'] == [] and report['decisionsAdded'] == 1
    [doc] = history(a)
    assert doc['userId'] is None
    assert doc['reviewerClaimed'] == 'tierone'
    assert doc['login'] != 'tierone'  # not counted as tierone's work
    assert doc['importedBy'] == {'userId': s.owner['_id'], 'login': 'owner'}
    assert doc['imported'] is not None and doc['source'] == 'import'
    summary = s.server.request(f'/miqa/project/{s.id}/summary', user=s.admin)
    assertStatusOk(summary)
    assert [(r['login'], r['userId']) for r in summary.json['reviewers']] == [
        ('tierone (unverified)', None)]
    # shown in the history and the export
    hist = s.server.request(f'/item/{a["_id"]}/miqa/history', user=s.admin).json
    assert hist[0]['importedBy']['login'] == 'owner' and hist[0]['reviewerClaimed'] == 'tierone'
    scan = json.loads(export(s, 'json'))['scans'][0]
    assert scan['decisions'][0]['importedBy']['login'] == 'owner'
    # the CSV export names the claimed reviewer, and imports back without a duplicate
    assert list(csv.DictReader(io.StringIO(export(s, 'csv'))))[0]['reviewer'] == 'tierone'
    assert do_import(s, export(s, 'csv'), 'csv', user=s.owner)['decisionsAdded'] == 0


def test_admin_import_takes_on_the_named_account(study):
    s = study
    a = make_scan(s.subfolder('sub-01'), 't1.nii.gz', s.admin, seed=1)
    text = json.dumps([{'itemId': str(a['_id']), 'decisions': [
        {'decision': 'questionable', 'tier': 1, 'reviewer': 'tierone',
         'created': '2024-01-02T00:00:00Z'}]}])
    do_import(s, text, 'json')
    [doc] = history(a)
    assert doc['userId'] == s.tier1['_id'] and doc['login'] == 'tierone'
    assert doc['importedBy']['login'] == s.admin['login']


def test_future_dates_are_row_errors(study):
    import datetime

    s = study
    a = make_scan(s.subfolder('sub-01'), 't1.nii.gz', s.admin, seed=1)
    soon = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(minutes=2)
    later = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)
    text = ('itemId,decision,tier,reviewer,decided\n'
            f'{a["_id"]},questionable,1,x,{later.isoformat()}\n'
            f'{a["_id"]},good,1,y,{soon.isoformat()}\n')
    report = do_import(s, text, 'csv')
    assert [e['line'] for e in report['errors']] == [2]
    assert 'future' in report['errors'][0]['reason']
    assert state(a)['state'] == 'good'


def test_tier2_is_final_in_imports(study):
    s = study
    a = make_scan(s.subfolder('sub-01'), 't1.nii.gz', s.admin, seed=1)
    b = make_scan(s.subfolder('sub-02'), 't1.nii.gz', s.admin, seed=2)
    # one file: tier-2 bad, then a tier-1 good dated after it
    text = ('itemId,decision,tier,reviewer,decided,comment\n'
            f'{a["_id"]},bad,2,x,2024-01-02T00:00:00Z,motion\n'
            f'{a["_id"]},good,1,y,2024-01-03T00:00:00Z,\n')
    report = do_import(s, text, 'csv')
    assert state(a)['state'] == 'bad' and state(a)['latestDecision']['tier'] == 2
    assert [e['line'] for e in report['errors']] == [3]
    agree(a)
    # a live tier-2 bad is not silently reverted by a later tier-1 import
    assertStatusOk(decide(s.server, b, s.tier2, 'bad', comment='ghosting'))
    report = do_import(s, f'itemId,decision,tier,reviewer\n{b["_id"]},good,1,y\n', 'csv')
    assert state(b)['state'] == 'bad'
    assert report['errors'] and report['errors'][0]['line'] == 2
    agree(b)
    # an earlier-dated tier-1 decision joins the trail but does not change the state
    report = do_import(s, f'itemId,decision,tier,reviewer,decided\n{b["_id"]},good,1,y,'
                          '2020-01-01T00:00:00Z\n', 'csv')
    assert report['errors'] == [] and report['decisionsAdded'] == 1
    assert state(b)['state'] == 'bad' and state(b)['latestDecision']['tier'] == 2
    agree(b)


def test_unreadable_scans_look_missing(study):
    from girder.constants import AccessType
    from girder.models.folder import Folder

    s = study
    hidden = s.subfolder('hidden')
    Folder().setUserAccess(hidden, s.owner, None, save=False)
    hidden = Folder().save(hidden)
    Folder().setUserAccess(hidden, s.admin, AccessType.ADMIN, save=True)
    h = make_scan(hidden, 't1.nii.gz', s.admin, seed=1)
    missing = '0123456789abcdef01234567'
    rows = [{'itemId': str(h['_id'])}, {'itemId': missing},
            {'path': 'hidden/t1.nii.gz'}, {'path': 'nowhere/t1.nii.gz'},
            {'path': 'hidden/none.nii.gz'}]
    report = do_import(s, json.dumps(rows), 'json', user=s.owner)
    reasons = [e['reason'] for e in report['errors']]
    assert len(reasons) == 5
    assert reasons[0] == reasons[1].replace(missing, str(h['_id']))
    assert reasons[2] == reasons[3].replace('nowhere', 'hidden')
    assert history(h) == []


def test_imported_assessment_is_not_the_models(study):
    s = study
    a = make_scan(s.subfolder('sub-01'), 't1.nii.gz', s.admin, seed=1)
    text = json.dumps([{'itemId': str(a['_id']), 'decisions': [
        {'decision': 'questionable', 'reviewer': 'x', 'created': '2024-01-02T00:00:00Z',
         'assessment': {'status': 'done', 'model': 'miqa-default', 'quality': 9.9,
                        'artifacts': {'lesion': 0.01}}}]}])
    do_import(s, text, 'json', user=s.owner)
    [doc] = history(a)
    assert doc.get('assessment') is None
    assert state(a)['latestDecision'].get('assessment') is None
    snap = doc.get('importedAssessment')
    assert snap is None or snap.get('unverified') is True


# ------------------------------------------------------------------------------------------ B, C

NASTY = ['=HYPERLINK("http://x","y")', '+1+1', '-2', '@SUM(A1)', '\tx', '\rcarriage',
         'a\rb', 'a\nb', 'a\r\nb', 'say "hi", then', "'=already", "'plain", 'fine']


def test_csv_export_defuses_formulas_and_imports_back(study):
    s = study
    scans = []
    for n, comment in enumerate(NASTY):
        item = make_scan(s.subfolder(f'sub-{n:02d}'), 't1.nii.gz', s.admin, seed=n)
        assertStatusOk(decide(s.server, item, s.tier2, 'bad', comment=comment,
                              location={'ijk': [1, 2, 3], 'world': [-12.5, 3, 4]}))
        scans.append(item)
    text = export(s, 'csv')
    for row in csv.reader(io.StringIO(text, newline='')):
        for cell in row:
            assert not cell or cell[0] not in '=+-@\t\r', repr(cell)
    before = [(state(i)['state'], state(i)['latestDecision']['comment'],
               state(i)['latestDecision']['location']) for i in scans]
    wipe(s, scans)
    report = do_import(s, text, 'csv')
    assert report['errors'] == [], report['errors']
    after = [(state(i)['state'], state(i)['latestDecision']['comment'],
              state(i)['latestDecision']['location']) for i in scans]
    assert after == before
    assert [c for _, c, _ in after] == NASTY


# ------------------------------------------------------------------------------------------ D

def test_deep_json_is_a_400(study):
    s = study
    for depth in (5_000, 100_000):
        body = '[' * depth + ']' * depth
        resp = post_raw(s, body.encode(), 'json')
        assertStatus(resp, 400)
        assert 'JSON' in resp.json['message']
    a = make_scan(s.subfolder('sub-01'), 't1.nii.gz', s.admin, seed=1)
    deep = {'x': 1}
    for _ in range(300):
        deep = {'x': deep}
    text = json.dumps([{'itemId': str(a['_id']), 'decisions': [
        {'decision': 'questionable', 'reviewer': 'x', 'assessment': deep,
         'comment': [[[]]]}]},
        {'itemId': str(a['_id']), 'decisions': [{'decision': 'good', 'reviewer': 'y'}]}])
    report = do_import(s, text, 'json')
    assert [e['line'] for e in report['errors']] == [1]
    assert state(a)['state'] == 'good'
    agree(a)


def test_huge_field_and_extreme_dates_are_row_errors(study):
    s = study
    a = make_scan(s.subfolder('sub-01'), 't1.nii.gz', s.admin, seed=1)
    b = make_scan(s.subfolder('sub-02'), 't1.nii.gz', s.admin, seed=2)
    big = 'x' * 200_000
    text = ('itemId,decision,tier,reviewer,decided,comment\n'
            f'{a["_id"]},questionable,1,x,2024-01-01T00:00:00Z,\n'  # 2
            f'{a["_id"]},good,1,y,2024-01-02T00:00:00Z,{big}\n'  # 3
            f'{a["_id"]},good,1,y,0001-01-01T00:00:00+14:00,\n'  # 4
            f'{a["_id"]},good,1,y,9999-12-31T23:59:59-10:00,\n'  # 5
            f'{b["_id"]},good,1,z,2024-01-03T00:00:00Z,\n')  # 6
    report = do_import(s, text, 'csv')
    assert sorted(e['line'] for e in report['errors']) == [3, 4, 5], report['errors']
    assert state(a)['state'] == 'questionable' and state(b)['state'] == 'good'
    agree(a)
    agree(b)


def test_body_size_limit_is_413(study):
    from girder_miqa.models import exchange

    s = study
    limit = exchange.MAX_IMPORT_BYTES
    assert limit <= 64 * 1024 * 1024
    resp = post_raw(s, b'path\n' + b'x' * (limit + 10), 'csv')
    assertStatus(resp, 413)
    assert str(limit) in resp.json['message'] or 'MB' in resp.json['message']
