"""End to end (issue #22.7): generated DICOM series of three sites, one with a wrong TR and one
with a software upgrade halfway, uploaded through the real stack and assessed by a real
girder-worker; then the deviations and reasons on each scan, the queue order, the export
columns, the group report (JSON, CSV) and the PNGs of ``miqa report``."""

import csv
import io
import json

import pytest

from ..dicom_series import protocol_study
from .test_pipeline import _wait_assessed

SCANS_PER_SITE = 3


@pytest.fixture
def study_setup(boundServer, admin, fsAssetstore, worker_process, purged_broker):
    import girder_client
    from girder.models.folder import Folder
    from girder.models.setting import Setting

    from girder_miqa.models.project import Project

    api = f'http://127.0.0.1:{boundServer.boundPort}/api/v1'
    Setting().set('worker.api_url', api)
    parent = Folder().findOne({'parentId': admin['_id'], 'name': 'Public'})
    folder = Folder().createFolder(parent, 'MultiSite', creator=admin)
    project = Project().createProject(folder, admin)
    gc = girder_client.GirderClient(apiUrl=api)
    gc.authenticate('admin', 'password')
    return gc, folder, project, api


@pytest.mark.stack
@pytest.mark.plugin('miqa')
def test_three_sites_through_the_stack(study_setup, tmp_path, wait, monkeypatch):
    gc, folder, project, api = study_setup
    study = protocol_study(tmp_path / 'study', scans=SCANS_PER_SITE, shape=(48, 56, 40))
    ids: dict[str, list[str]] = {}
    for site, scans in study.items():
        site_folder = gc.createFolder(str(folder['_id']), site)
        for path, _changed in scans:
            subject = gc.createFolder(site_folder['_id'], path.parent.name)
            gc.uploadFileToFolder(subject['_id'], str(path))
            ids.setdefault(site, []).append(next(gc.listItem(subject['_id']))['_id'])
    states = {item: _wait_assessed(gc, item, wait, timeout=300)
              for items in ids.values() for item in items}
    assert all(s['assessment']['status'] == 'done' for s in states.values()), states
    # the group's refresh runs in the worker's PUT just after the result is stored
    states = {item: wait(lambda item=item: (lambda s: s if 'site' in s else None)(
        gc.get(f'item/{item}/miqa')), timeout=30) for item in states}
    assert all(states.values()), states
    acquisition = states[ids['site-b'][0]]['assessment']['acquisition']
    assert acquisition['parameters']['RepetitionTime'] == pytest.approx(2.5)
    assert acquisition['sources']['RepetitionTime'] == 'dicom'
    assert {s['site'] for s in states.values()} == {'site-a', 'site-b', 'site-c'}
    kinds = {s['scanType'] for s in states.values()}
    assert len(kinds) == 1, kinds
    kind = kinds.pop()

    # The site's protocol: TR 2.3 s (exclude), the software of the first scans (warning).
    gc.sendRestRequest('PUT', f'miqa/project/{project["_id"]}/protocol', data=json.dumps({
        'scanType': kind, 'site': None, 'parameters': {
            'RepetitionTime': {'value': 2.3, 'tolerance': 0.01, 'severity': 'exclude'},
            'SoftwareVersions': {'value': 'syngo MR E11', 'tolerance': None,
                                 'severity': 'warning'}}}),
        headers={'Content-Type': 'application/json'})
    states = {item: gc.get(f'item/{item}/miqa') for items in ids.values() for item in items}
    for item in ids['site-b']:
        state = states[item]
        first = state['reasons'][0]
        assert first['source'] == 'protocol' and first['severity'] == 'exclude', state['reasons']
        assert first['target'] == {'kind': 'parameter', 'key': 'RepetitionTime'}
        assert first['text'].startswith('RepetitionTime 2.5 s (expected 2.3 s')
        assert [d['parameter'] for d in state['protocol']['deviations']] == ['RepetitionTime']
        assert state['sort']['triage'] >= 1000
    upgraded = ids['site-c'][SCANS_PER_SITE // 2:]
    for item in ids['site-c']:
        deviations = [d['parameter'] for d in states[item]['protocol']['deviations']]
        assert deviations == (['SoftwareVersions'] if item in upgraded else []), item
    software = next(r for r in states[upgraded[0]]['reasons'] if r['source'] == 'protocol')
    assert software['severity'] == 'warning' and software['text'].startswith(
        'SoftwareVersions syngo MR XA30 (expected syngo MR E11')
    for item in ids['site-a']:
        assert states[item]['protocol']['deviations'] == []
        # three scans a site: the metrics compare with the project's nine
        assert states[item]['metrics']['group'] == f'all sites / {kind}'
        assert states[item]['metrics']['peers'] == 3 * SCANS_PER_SITE

    # The queue: the excluded TRs first, then by score
    queue = gc.get(f'miqa/project/{project["_id"]}/queue', parameters={'limit': 50})['items']
    assert {row['_id'] for row in queue[:SCANS_PER_SITE]} == set(ids['site-b'])
    scores = [row['miqa']['sort']['triage'] for row in queue]
    assert scores == sorted(scores, reverse=True)
    assert queue[0]['site'] == 'site-b' and queue[0]['reasons'][0]['severity'] == 'exclude'
    assert all(len(row['reasons']) <= 3 for row in queue)

    # The export
    text = gc.sendRestRequest('GET', f'miqa/project/{project["_id"]}/export',
                              parameters={'format': 'csv'}, jsonResp=False).content.decode()
    rows = {r['itemId']: r for r in csv.DictReader(io.StringIO(text))}
    row = rows[ids['site-b'][0]]
    assert row['site'] == 'site-b' and row['scan_type'] == kind
    assert float(row['triage']) >= 1000 and row['reasons'].startswith('RepetitionTime 2.5 s')
    assert rows[upgraded[0]]['acq_SoftwareVersions'] == 'syngo MR XA30'

    # The group report, JSON and CSV
    report = gc.get(f'miqa/project/{project["_id"]}/report')
    assert report['sites'] == ['site-a', 'site-b', 'site-c'] and report['scans'] == 9
    assert {p['site'] for p in report['metrics']['snr_wm']} == {'site-a', 'site-b', 'site-c'}
    table = report['compliance']['sites']
    assert table['site-b'][kind]['parameters']['RepetitionTime'] == 0.0
    assert table['site-a'][kind]['compliant'] == SCANS_PER_SITE
    counts = {(r['text'], r['source']): r['count'] for r in report['reasons']['site-b']}
    assert counts[('RepetitionTime deviates', 'protocol')] == SCANS_PER_SITE
    counts = {(r['text'], r['source']): r['count'] for r in report['reasons']['site-c']}
    assert counts[('SoftwareVersions deviates', 'protocol')] == len(upgraded)
    text = gc.sendRestRequest('GET', f'miqa/project/{project["_id"]}/report',
                              parameters={'format': 'csv'}, jsonResp=False).content.decode()
    assert len(list(csv.DictReader(io.StringIO(text)))) == 9

    # miqa report: the same as files, with the figures
    pytest.importorskip('matplotlib', reason='miqa report draws with matplotlib')
    from click.testing import CliRunner

    from girder_miqa.cli import main

    monkeypatch.setenv('MIQA_API_URL', api)
    out = tmp_path / 'report'
    result = CliRunner().invoke(main, ['--username', 'admin', '--password', 'password',
                                       'report', str(project['_id']), '-o', str(out)],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    for name in ('report.json', 'report.csv', 'metrics_by_site.png', 'compliance.png',
                 'reasons_by_site.png'):
        assert (out / name).stat().st_size > 100, name
    assert json.loads((out / 'report.json').read_text())['scans'] == 9
