"""Export (CSV, JSON) and import: columns, line-numbered errors, idempotence, round trips."""

import csv
import io
import json

import pytest
from pytest_girder.assertions import assertStatus, assertStatusOk

from .util import decide, make_scan, nifti_bytes, set_assessment, state

pytestmark = pytest.mark.plugin('miqa')


def export(s, fmt, user=None):
    resp = s.server.request(f'/miqa/project/{s.id}/export', user=user or s.admin,
                            params={'format': fmt}, isJson=False)
    assertStatusOk(resp)
    return resp.collapse_body().decode()


def do_import(s, text, fmt=None, user=None, status=200):
    params = {'format': fmt} if fmt else {}
    resp = s.server.request(f'/miqa/project/{s.id}/import', method='POST',
                            user=user or s.admin, params=params, body=text,
                            type='application/json' if fmt == 'json' else 'text/csv')
    assertStatus(resp, status)
    return resp.json


def populate(s):
    """Four scans in two subjects with a realistic mix of decisions."""
    a = make_scan(s.subfolder('ses-1', s.subfolder('sub-01')), 't1.nii.gz', s.admin, seed=1)
    b = make_scan(s.subfolder('sub-02'), 't1.nii.gz', s.admin, seed=2)
    c = make_scan(s.folder, 'phantom.nii.gz', s.admin, seed=3)
    d = make_scan(s.folder, 'untouched.nii', s.admin, seed=4)
    set_assessment(a, 3.5, {'ghosting_motion': 0.8})
    assertStatusOk(decide(s.server, a, s.tier1, 'questionable', seconds=20,
                          artifacts={'ghosting_motion': 'present', 'lesion': 'absent'},
                          comment='stripes,\n"maybe" motion'))
    assertStatusOk(decide(s.server, a, s.tier2, 'bad', seconds=31.5, confidence=4,
                          artifacts={'ghosting_motion': 'present', 'lesion': 'absent'},
                          location={'ijk': [1, 2, 3], 'world': [0.5, -1.25, 7.0]}))
    assertStatusOk(decide(s.server, b, s.tier1, 'good', quality=7.5))
    assertStatusOk(decide(s.server, c, s.tier1, 'questionable'))
    return a, b, c, d


def comparable_state(item):
    st = state(item)
    latest = st['latestDecision']
    keep = ('decision', 'tier', 'login', 'artifacts', 'comment', 'location', 'seconds',
            'confidence', 'quality', 'created')
    return (st['state'], st['decisionCount'], (st['tier1'] or {}).get('decision'),
            {k: latest[k] for k in keep} if latest else None)


def comparable_history(item):
    from girder_miqa.models.decision import Decision

    keep = ('decision', 'tier', 'login', 'artifacts', 'comment', 'location', 'seconds',
            'confidence', 'quality', 'created')
    return [{k: h[k] for k in keep} for h in Decision().history(item)]


MODEL_COLUMNS = ('assessment_status', 'model', 'model_version', 'model_quality',
                 'model_max_artifact_probability',
                 'scan_type', 'triage', 'reasons')  # the triage of the assessment (#22)
DECISION_KEYS = ('decision', 'tier', 'login', 'artifacts', 'comment', 'location', 'seconds',
                 'confidence', 'quality', 'created')


def model_said(decision):
    """The model's scores a decision was made next to: its own snapshot, or after an import the
    file's, kept apart as unverified (test_exchange_integrity)."""
    snap = decision.get('assessment') or (decision.get('importedAssessment') or {}).get(
        'snapshot')
    return snap and (snap['status'], snap['quality'], snap['artifacts'])


def review_part(text, fmt):
    """What an export says about reviews (the model's current scores are not imported)."""
    if fmt == 'csv':  # one row per scan: the count of earlier decisions is not carried
        return [{k: v for k, v in row.items() if k not in (*MODEL_COLUMNS, 'decision_count')}
                for row in csv.DictReader(io.StringIO(text))]
    return [(x['path'], x['state'], x['quality'], x['artifacts'],
             [({k: d[k] for k in DECISION_KEYS}, model_said(d)) for d in x['decisions']])
            for x in json.loads(text)['scans']]


def wipe(s, items):
    """Forget every review state and decision, as on a fresh server holding the same items."""
    from girder.models.item import Item

    from girder_miqa.models.decision import Decision

    for item in items:
        Item().collection.update_one({'_id': item['_id']}, {'$unset': {'miqa': ''}})
    Decision().collection.delete_many({})


def test_csv_export_is_a_training_label_file(study):
    s = study
    populate(s)
    rows = list(csv.DictReader(io.StringIO(export(s, 'csv'))))
    by_path = {r['path']: r for r in rows}
    assert sorted(by_path) == ['phantom.nii.gz', 'sub-01/ses-1/t1.nii.gz', 'sub-02/t1.nii.gz',
                               'untouched.nii']
    a = by_path['sub-01/ses-1/t1.nii.gz']
    assert (a['subject_id'], a['quality'], a['state'], a['tier'], a['reviewer']) == (
        'sub-01', '2.0', 'bad', '2', 'tiertwo')
    assert (a['ghosting_motion'], a['lesion'], a['wraparound']) == ('true', 'false', '')
    assert (a['model_quality'], a['model_max_artifact_probability']) == ('3.5', '0.8')
    assert a['location_ijk'] == '1 2 3' and a['decision_count'] == '2'
    assert by_path['sub-02/t1.nii.gz']['quality'] == '7.5'  # the reviewer's own score
    assert by_path['phantom.nii.gz']['quality'] == '5.0'
    assert by_path['phantom.nii.gz']['subject_id'] == 'phantom'
    assert by_path['untouched.nii']['quality'] == '' and by_path['untouched.nii']['state'] == (
        'unreviewed')
    header = rows[0].keys()
    from miqa_worker.constants import ARTIFACT_KEYS

    assert {'path', 'subject_id', 'quality', *ARTIFACT_KEYS} <= set(header)

    doc = json.loads(export(s, 'json'))
    scan = next(x for x in doc['scans'] if x['path'] == 'sub-01/ses-1/t1.nii.gz')
    assert [d['decision'] for d in scan['decisions']] == ['questionable', 'bad']
    assert scan['assessment']['quality'] == 3.5
    assert scan['decisions'][0]['assessment']['artifacts'] == {'ghosting_motion': 0.8}


@pytest.mark.parametrize('fmt', ['json', 'csv'])
def test_export_imports_back_to_the_same_state(study, fmt):
    s = study
    items = populate(s)
    text = export(s, fmt)
    before = [comparable_state(i) for i in items]
    history_before = [comparable_history(i) for i in items]

    # importing into the unchanged project adds nothing
    report = do_import(s, text, fmt)
    assert report['errors'] == [] and report['decisionsAdded'] == 0
    assert [comparable_state(i) for i in items] == before

    wipe(s, items)
    report = do_import(s, text, fmt)
    assert report['errors'] == [], report
    assert report['scans'] == 4
    if fmt == 'json':
        assert [comparable_state(i) for i in items] == before
    else:  # the CSV holds each scan's latest decision: same state and latest decision
        assert [(c[0], c[3]) for c in map(comparable_state, items)] == [
            (b[0], b[3]) for b in before]
    if fmt == 'json':  # JSON carries every decision; the CSV the latest of each scan
        assert [comparable_history(i) for i in items] == history_before
        assert report['decisionsAdded'] == 4
    else:
        assert [len(comparable_history(i)) for i in items] == [1, 1, 1, 0]
    assert review_part(export(s, fmt), fmt) == review_part(text, fmt)

    # and once more: idempotent
    after = [comparable_state(i) for i in items]
    report = do_import(s, text, fmt)
    assert report['decisionsAdded'] == 0 and report['decisionsSkipped'] >= 3
    assert [comparable_state(i) for i in items] == after


def test_bad_rows_are_reported_by_line_and_do_not_stop_good_rows(study):
    from girder.models.folder import Folder

    s = study
    a = make_scan(s.subfolder('sub-01'), 't1.nii.gz', s.admin, seed=1)
    b = make_scan(s.subfolder('sub-02'), 't1.nii.gz', s.admin, seed=2)
    elsewhere = Folder().createFolder(s.admin, 'elsewhere', parentType='user', creator=s.admin)
    outside = make_scan(elsewhere, 'x.nii.gz', s.admin)
    text = (
        'path,itemId,decision,tier,reviewer,decided,comment,lesion,ghosting_motion\n'  # 1
        'sub-01/t1.nii.gz,,questionable,1,alice,2024-01-02T03:04:05Z,"two\nlines",true,\n'  # 2-3
        ',nonsense,good,1,alice,,,,\n'  # 4
        'sub-09/t1.nii.gz,,good,,alice,,,,\n'  # 5
        f',{b["_id"]},bad,2,bob,2024-01-03T00:00:00Z,,false,\n'  # 6: bad without a reason
        f',{b["_id"]},excellent,1,bob,,,,\n'  # 7
        f',{b["_id"]},good,1,bob,yesterday,,,\n'  # 8
        f',{outside["_id"]},good,1,bob,,,,\n'  # 9
        f',{b["_id"]},good,1,bob,,,maybe,\n'  # 10
        f',{b["_id"]},bad,2,bob,2024-01-04T00:00:00+00:00,,,true\n'  # 11: fine
        ',,good,1,bob,,,,\n'  # 12
    )
    report = do_import(s, text, 'csv')
    errors = {e['line']: e['reason'] for e in report['errors']}
    assert sorted(errors) == [4, 5, 6, 7, 8, 9, 10, 12], errors
    assert 'not an ObjectId' in errors[4]
    assert "no folder 'sub-09'" in errors[5]
    assert 'bad only if' in errors[6]
    assert 'Unknown decision' in errors[7]
    assert 'ISO 8601' in errors[8]
    assert 'not in this project' in errors[9]
    assert "'lesion' must be" in errors[10]
    assert 'itemId or a path' in errors[12]
    assert report['decisionsAdded'] == 2
    sa, sb = state(a), state(b)
    assert sa['state'] == 'questionable' and sa['latestDecision']['login'] == 'alice'
    assert sa['latestDecision']['userId'] is None  # reviewers need not be Girder users
    assert sa['latestDecision']['comment'] == 'two\nlines'
    assert sb['state'] == 'bad' and sb['decisionCount'] == 1
    assert 'miqa' not in __import__('girder.models.item', fromlist=['Item']).Item().load(
        outside['_id'], force=True)

    again = do_import(s, text, 'csv')
    assert again['decisionsAdded'] == 0 and len(again['errors']) == 8
    assert state(a)['decisionCount'] == 1 and state(b)['decisionCount'] == 1


def test_import_files_from_the_server_filesystem(study, tmp_path):
    from girder.models.folder import Folder
    from girder.models.item import Item

    s = study
    for n, name in enumerate(['s1.nii.gz', 's2.nii.gz']):
        (tmp_path / name).write_bytes(nifti_bytes(n))
    (tmp_path / 'notes.txt').write_text('hello')
    entries = [
        {'path': str(tmp_path / 's1.nii.gz'), 'folder': 'sub-01/ses-1',
         'decisions': [{'decision': 'good', 'reviewer': 'carol',
                        'created': '2023-05-01T10:00:00Z'}]},
        {'path': str(tmp_path / 's2.nii.gz'), 'folder': 'sub-02'},
        {'path': str(tmp_path / 'notes.txt')},
        {'path': str(tmp_path / 'missing.nii.gz')},
        {'path': str(tmp_path / 's2.nii.gz'), 'decisions': [{'decision': 'bad', 'tier': 2}]},
    ]
    text = json.dumps({'scans': entries})
    report = do_import(s, text, 'json')
    errors = {e['line']: e['reason'] for e in report['errors']}
    assert sorted(errors) == [3, 4, 5] and 'not an image' in errors[3]
    assert 'no file' in errors[4] and 'bad only if' in errors[5]
    assert report['filesImported'] == 2 and report['scans'] == 2

    report = do_import(s, text, 'json')  # again: no new items, files or decisions
    assert report['filesImported'] == 0 and report['decisionsAdded'] == 0
    sub1 = Folder().findOne({'parentId': s.folder['_id'], 'name': 'sub-01'})
    ses1 = Folder().findOne({'parentId': sub1['_id'], 'name': 'ses-1'})
    items = list(Item().find({'folderId': ses1['_id']}))
    assert [i['name'] for i in items] == ['s1.nii.gz']
    assert items[0]['miqa']['state'] == 'good' and items[0]['miqa']['decisionCount'] == 1
    queue = s.server.request(f'/miqa/project/{s.id}/queue', user=s.tier1).json
    assert [i['path'] for i in queue['items']] == ['sub-02/s2.nii.gz']

    # a project owner who is not a site admin may not import server files
    report = do_import(s, json.dumps([{'path': str(tmp_path / 's1.nii.gz')}]), 'json',
                       user=s.owner)
    assert 'only admins' in report['errors'][0]['reason']


def test_import_permissions_and_malformed_files(study):
    s = study
    do_import(s, 'path\nx.nii.gz\n', 'csv', user=s.tier2, status=403)
    assert 'JSON cannot be read' in do_import(s, '{"scans": [', 'json', status=400)['message']
    assert '"itemId" or a "path" column' in do_import(s, 'name\nx\n', 'csv', status=400)[
        'message']
    assert do_import(s, '{"scans": 3}', 'json', status=400)['message'].startswith('The JSON')
    report = do_import(s, json.dumps([1, {'itemId': 'x', 'decisions': 'good'}]), 'json')
    assert [e['line'] for e in report['errors']] == [1, 2]
    assert report['lineKind'] == 'entry'


def test_import_from_another_server_finds_scans_by_path(study):
    s = study
    a = make_scan(s.subfolder('sub-01'), 't1.nii.gz', s.admin, seed=1)
    text = json.dumps([{'itemId': '0123456789abcdef01234567', 'path': 'sub-01/t1.nii.gz',
                        'decisions': [{'decision': 'questionable', 'login': 'dave',
                                       'created': '2022-02-02T00:00:00Z'}]},
                       {'itemId': '0123456789abcdef01234568'}])
    report = do_import(s, text, 'json')
    assert report['decisionsAdded'] == 1
    assert [e['line'] for e in report['errors']] == [2]
    assert 'no item has the id' in report['errors'][0]['reason']
    assert state(a)['state'] == 'questionable'
