"""Reasons and the triage score (issue #22.5): the queue follows the score, a scan with an
exclude deviation comes first, metric outliers of a site are reasons, and scans from before the
score still sort sensibly."""

import json

import pytest
from pytest_girder.assertions import assertStatusOk

from .util import make_scan, state

pytestmark = pytest.mark.plugin('miqa')

TRAINED = ['quality', 'incomplete_coverage', 'wraparound', 'ghosting_motion', 'inhomogeneity']
T1 = {'in_scope': True, 'contrast': 'T1w', 'reason': 'T1w', 'source': 'image'}


def assess(s, item, quality=7.0, probs=None, snr=12.0, parameters=None, problems=None):
    """A finished assessment through the worker's PUT, with metrics and acquisition."""
    body = {'status': 'done', 'quality': quality, 'artifacts': probs or {},
            'trainedOutputs': TRAINED, 'scope': T1,
            'model': {'name': 'miqa-default', 'version': '1'},
            'metrics': {'snr_wm': snr, 'cjv': 0.5, 'subsample_factor': 1.0},
            'acquisition': {'parameters': {'RepetitionTime': 2.3, 'EchoTime': 0.003,
                                           **(parameters or {})},
                            'sources': {}, 'problems': problems or []}}
    resp = s.server.request(f'/item/{item["_id"]}/miqa/assessment', method='PUT', user=s.admin,
                            type='application/json', body=json.dumps(body))
    assertStatusOk(resp)
    return resp.json


def queue(s) -> list[dict]:
    resp = s.server.request(f'/miqa/project/{s.id}/queue', user=s.tier1, params={'limit': 100})
    assertStatusOk(resp)
    return resp.json['items']


def names(rows) -> list[str]:
    return [row['name'].split('.')[0] for row in rows]


def site_study(s, n=10, site='site-a'):
    folder = s.subfolder('subject', s.subfolder(site))
    return [make_scan(folder, f'{site}-{i}.nii.gz', s.admin, seed=i) for i in range(n)]


def test_queue_follows_the_triage_score(study):
    s = study
    scans = site_study(s)
    snr = [10, 11, 12, 12, 13, 13, 14, 15, 16, 12.5]
    for i, item in enumerate(scans):
        assess(s, item, snr=snr[i])
    assess(s, scans[3], quality=3.0, snr=snr[3])  # quality reason: 10 + 10 * 2 / 5 = 14
    assess(s, scans[5], probs={'ghosting_motion': 0.75}, snr=snr[5])  # 10 + 10 * .25 / .5
    assess(s, scans[9], snr=4.0)  # the 12.5 becomes a low outlier
    rows = queue(s)
    assert names(rows)[:3] == ['site-a-5', 'site-a-3', 'site-a-9']
    by_name = {row['name'].split('.')[0]: row for row in rows}
    motion = by_name['site-a-5']
    assert motion['site'] == 'site-a'
    assert motion['miqa']['sort']['triage'] == 15.0
    assert motion['reasons'][0] == {
        'source': 'network', 'severity': 'warning', 'text': 'ghosting/motion likely (p = 0.75)',
        'label': 'ghosting/motion likely',
        'target': {'kind': 'indicator', 'key': 'ghosting_motion'}, 'weight': 15.0}
    assert by_name['site-a-3']['reasons'][0]['text'] == 'predicted quality 3.0 below 5'
    outlier = by_name['site-a-9']
    # snr_wm of the ten: 10 11 12 12 13 13 14 15 16 4 (see test_site_metrics)
    assert outlier['reasons'][0]['text'] == 'snr_wm low for site-a (z = −3.8)'
    assert outlier['miqa']['metrics']['group'] == 'site-a / T1w'
    assert outlier['miqa']['metrics']['peers'] == 10
    assert outlier['miqa']['metrics']['outliers'] == ['snr_wm']
    assert outlier['miqa']['sort']['triage'] == round(3.822 / 2, 3)
    # the rest tie at 0 and keep the old order (quality, then oldest first)
    assert all(by_name[f'site-a-{i}']['reasons'] == [] for i in (0, 1, 2, 4, 6, 7, 8))
    # the scan's own endpoint carries everything stored
    served = s.server.request(f'/item/{scans[9]["_id"]}/miqa', user=s.tier1).json
    assert served['reasons'] == state(scans[9])['reasons']
    assert served['metrics']['percentiles']['snr_wm'] == 5.0
    assert served['protocol']['deviations'] == []
    assert served['site'] == 'site-a' and served['scanType'] == 'T1w'


def test_an_acquisition_problem_is_a_reason(study):
    s = study
    item = site_study(s, n=1)[0]
    assess(s, item, problems=['sidecar scan7.json is not JSON (line 3: Expecting value)'])
    reasons = state(item)['reasons']
    assert reasons == [{'source': 'protocol', 'severity': 'warning',
                        'text': 'sidecar scan7.json is not JSON (line 3: Expecting value)',
                        'label': 'acquisition parameters unreadable',
                        'target': {'kind': 'parameter', 'key': 'acquisition'}, 'weight': 5.0}]
    metrics = state(item)['metrics']
    assert metrics['enough'] is False
    assert metrics['note'] == 'too few peers (1) for a distribution'


def test_exclude_deviation_comes_first(study):
    pytest.importorskip('girder_miqa.models.protocol', reason='the protocol checks (part P)')
    s = study
    scans = site_study(s, n=4)
    for item in scans:
        assess(s, item)
    assess(s, scans[1], quality=1.0, probs={'ghosting_motion': 0.99, 'wraparound': 0.99})
    resp = s.server.request(f'/miqa/project/{s.id}/protocol', method='PUT', user=s.owner,
                            type='application/json', body=json.dumps({
                                'scanType': 'T1w', 'site': None, 'parameters': {
                                    'RepetitionTime': {'value': 2.3, 'tolerance': 0.01,
                                                       'severity': 'exclude'}}}))
    assertStatusOk(resp)
    assess(s, scans[2], parameters={'RepetitionTime': 3.0})
    rows = queue(s)
    assert names(rows)[:2] == ['site-a-2', 'site-a-1']
    first = rows[0]['reasons'][0]
    assert first['source'] == 'protocol' and first['severity'] == 'exclude'
    assert first['target'] == {'kind': 'parameter', 'key': 'RepetitionTime'}
    assert first['text'].startswith('RepetitionTime 3 s (expected 2.3 s ± 0.01 s')
    assert rows[0]['miqa']['sort']['triage'] >= 1000


def test_site_level_change_regroups(study):
    s = study
    scans = site_study(s)
    for i, item in enumerate(scans):
        assess(s, item, snr=[10, 11, 12, 12, 13, 13, 14, 15, 16, 4][i])
    assert state(scans[9])['metrics']['group'] == 'site-a / T1w'
    resp = s.server.request(f'/miqa/project/{s.id}/settings', method='PUT', user=s.owner,
                            body=json.dumps({'siteLevel': 0}), type='application/json')
    assertStatusOk(resp)
    after = state(scans[9])
    assert after['site'] == 'mri' and after['metrics']['group'] == 'mri / T1w'
    assert after['reasons'][0]['text'] == 'snr_wm low for mri (z = −3.8)'


def test_scans_from_before_triage_sort_sensibly(study):
    from girder.models.item import Item

    from girder_miqa.models import triage

    s = study
    scans = {n: make_scan(s.folder, f'{n}.nii.gz', s.admin, seed=i)
             for i, n in enumerate(['new_plain', 'old_low', 'old_plain', 'unassessed'])}
    assess(s, scans['new_plain'], quality=8.0)
    assess(s, scans['old_low'], quality=2.0)
    assess(s, scans['old_plain'], quality=6.0)
    # as stored before this change: no triage anywhere
    Item().collection.update_many({'miqa.projectId': {'$exists': True}}, {'$unset': {
        'miqa.sort.triage': '', 'miqa.reasons': '', 'miqa.metrics': '', 'miqa.protocol': '',
        'miqa.site': '', 'miqa.scanType': ''}})
    assert names(queue(s)) == ['old_low', 'old_plain', 'new_plain', 'unassessed']  # quality
    assert triage.backfill() == 4 + 3  # the triage of all four, the place of the assessed
    assert triage.backfill() == 0  # idempotent
    assert state(scans['old_low'])['sort']['triage'] == 10 + 10 * 3 / 5
    assert (state(scans['old_low'])['site'], state(scans['old_low'])['scanType']) == (
        'mri', 'T1w')
    assert 'site' not in state(scans['unassessed'])
    assert state(scans['unassessed'])['sort']['triage'] == 0.0
    assert names(queue(s)) == ['old_low', 'old_plain', 'new_plain', 'unassessed']
    assert all(row['reasons'] == [] and row['site'] == 'mri' for row in queue(s))


def test_a_restart_clears_the_reasons(study):
    from girder_miqa.models import review_state

    s = study
    item = site_study(s, n=1)[0]
    assess(s, item, quality=2.0)
    assert state(item)['reasons'][0]['label'] == 'predicted quality low'
    review_state.restart(item['_id'], 'file_changed')
    after = state(item)
    assert after['reasons'] == [] and after['metrics'] is None
    assert after['sort']['triage'] == 0.0 and after['sort']['rank'] == 1


def test_report_and_export_carry_the_triage(study):
    import csv
    import io

    s = study
    scans = site_study(s) + site_study(s, n=2, site='site-b')
    snr = [10, 11, 12, 12, 13, 13, 14, 15, 16, 4, 12, 30]
    for i, item in enumerate(scans):
        assess(s, item, snr=snr[i], quality=3.0 if i == 10 else 7.0)
    resp = s.server.request(f'/miqa/project/{s.id}/report', user=s.tier1)
    assertStatusOk(resp)
    report = resp.json
    assert report['sites'] == ['site-a', 'site-b'] and report['scans'] == 12
    points = {p['name'].split('.')[0]: p for p in report['metrics']['snr_wm']}
    assert set(report['metrics']) == {'snr_wm', 'cjv'}
    assert points['site-a-9'] == {'itemId': str(scans[9]['_id']), 'name': 'site-a-9.nii.gz',
                                  'site': 'site-a', 'scanType': 'T1w', 'value': 4.0,
                                  'z': state(scans[9])['metrics']['z']['snr_wm'],
                                  'outlier': True}
    assert not points['site-a-0']['outlier']
    assert report['reasons']['site-a'] == [{'text': 'snr_wm low', 'source': 'metrics',
                                            'count': 1}]
    # site-b has two scans: compared with all twelve T1w scans, 4 and 30 are outside the fences
    assert state(scans[11])['metrics']['group'] == 'all sites / T1w'
    assert {r['text']: r['count'] for r in report['reasons']['site-b']} == {
        'predicted quality low': 1}
    assert 'sites' in report['compliance']
    assert report['directions']['cjv']['direction'] == 'lower is better'

    resp = s.server.request(f'/miqa/project/{s.id}/report', user=s.tier1,
                            params={'format': 'csv'}, isJson=False)
    assertStatusOk(resp)
    body = b''.join(resp.body).decode() if not isinstance(resp.body, str) else resp.body
    rows = {r['name']: r for r in csv.DictReader(io.StringIO(body))}
    assert len(rows) == 12
    assert rows['site-a-9.nii.gz']['site'] == 'site-a'
    assert rows['site-a-9.nii.gz']['reasons'].startswith('snr_wm low for site-a (z = −3.8)')
    assert rows['site-a-9.nii.gz']['outliers'] == 'snr_wm'
    assert rows['site-a-9.nii.gz']['snr_wm'] == '4'
    assert rows['site-b-0.nii.gz']['triage'] == '14'

    resp = s.server.request(f'/miqa/project/{s.id}/export', user=s.admin,
                            params={'format': 'csv'}, isJson=False)
    assertStatusOk(resp)
    body = b''.join(resp.body).decode() if not isinstance(resp.body, str) else resp.body
    rows = {r['name']: r for r in csv.DictReader(io.StringIO(body))}
    assert rows['site-b-0.nii.gz']['site'] == 'site-b'
    assert rows['site-b-0.nii.gz']['scan_type'] == 'T1w'
    assert rows['site-b-0.nii.gz']['triage'] == '14'
    assert rows['site-b-0.nii.gz']['reasons'] == 'predicted quality 3.0 below 5'
    resp = s.server.request(f'/miqa/project/{s.id}/export', user=s.admin,
                            params={'format': 'json'}, isJson=False)
    body = b''.join(resp.body).decode() if not isinstance(resp.body, str) else resp.body
    exported = {x['name']: x for x in json.loads(body)['scans']}
    assert exported['site-a-9.nii.gz']['site'] == 'site-a'
    assert exported['site-a-9.nii.gz']['reasons'][0]['label'] == 'snr_wm low'
    # an outsider of the project reads nothing of it
    resp = s.server.request(f'/miqa/project/{s.id}/report', user=None)
    assert resp.output_status[:3] in (b'401', b'403')


def test_miqa_report_writes_json_csv_and_pngs(bound_study, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from girder_miqa.cli import main

    s = bound_study
    pytest.importorskip('matplotlib', reason='miqa report draws with matplotlib')
    scans = site_study(s) + site_study(s, n=3, site='site-b')
    snr = [10, 11, 12, 12, 13, 13, 14, 15, 16, 4, 12, 13, 12]
    for i, item in enumerate(scans):
        assess(s, item, snr=snr[i], quality=3.0 if i == 11 else 7.0)
    monkeypatch.setenv('MIQA_API_URL', s.url)
    out = tmp_path / 'report'
    result = CliRunner().invoke(main, ['--username', 'tierone', '--password', 'password',
                                       'report', str(s.id), '-o', str(out)],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert 'wrote report.json, report.csv, metrics_by_site.png' in result.output
    assert '(13 scans, 2 sites)' in result.output
    report = json.loads((out / 'report.json').read_text())
    assert report['reasons']['site-a'][0] == {'text': 'snr_wm low', 'source': 'metrics',
                                              'count': 1}
    assert (out / 'report.csv').read_text().count('\n') == 14
    for name in ('metrics_by_site.png', 'reasons_by_site.png'):
        assert (out / name).read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
        assert (out / name).stat().st_size > 5000
    result = CliRunner().invoke(main, ['--username', 'tierone', '--password', 'password',
                                       'report', '0123456789abcdef01234567', '-o',
                                       str(tmp_path / 'none')])
    assert result.exit_code == 1 and 'Error 400: No MIQA project has the id' in result.output


def test_the_queue_index_from_before_triage_is_rebuilt(study):
    from girder.models.item import Item

    from girder_miqa.models import scans

    s = study
    item = make_scan(s.folder, 'a.nii.gz', s.admin)
    assess(s, item, quality=2.0)
    old = [(k, v) for k, v in scans.QUEUE_INDEX if k != 'miqa.sort.triage']
    Item().collection.drop_index('miqa_queue')
    Item().collection.create_index(old, name='miqa_queue', partialFilterExpression={
        'miqa.projectId': {'$exists': True}})
    scans.ensure_indices()
    keys = list(Item().collection.index_information()['miqa_queue']['key'])
    assert [tuple(k) for k in keys] == [tuple(k) for k in scans.QUEUE_INDEX]
    assert ('miqa.sort.triage', -1) in [tuple(k) for k in keys]
    assert names(queue(s)) == ['a']


def test_a_moved_scan_joins_its_new_sites_group(study):
    """Moving a scan to another site's folder places it there at once: its site, its metrics
    group and peers, and the peers of the group it left (a cache may lag; this one does not)."""
    s = study
    a = site_study(s, n=9, site='site-a')
    b = site_study(s, n=9, site='site-b')
    for i, item in enumerate(a + b):
        assess(s, item, snr=10 + i % 5)
    moved = a[0]
    assert state(moved)['site'] == 'site-a' and state(moved)['metrics']['peers'] == 9
    target = s.subfolder('subject', s.subfolder('site-b'))
    resp = s.server.request(f'/item/{moved["_id"]}', method='PUT', user=s.admin,
                            params={'folderId': str(target['_id'])})
    assertStatusOk(resp)
    now = state(moved)
    assert now['site'] == 'site-b'
    assert now['metrics']['group'].startswith('site-b') and now['metrics']['peers'] == 10
    assert state(a[1])['metrics']['peers'] == 8  # the group it left was refreshed too
    assert state(b[0])['metrics']['peers'] == 10
    rows = {row['name']: row for row in queue(s)}
    assert rows[moved['name']]['site'] == 'site-b'
