"""The Python client and the ``miqa`` CLI against a real Girder over HTTP."""

import csv
import io
import json

import pytest
from click.testing import CliRunner

from girder_miqa.cli import main
from girder_miqa.client import MiqaClient

from .util import nifti_bytes, report_worker_model

pytestmark = pytest.mark.plugin('miqa')


def local_study(tmp_path):
    """A local study tree: two subjects, sessions, a DICOM series folder, and a non-image."""
    root = tmp_path / 'study'
    (root / 'sub-01' / 'ses-1').mkdir(parents=True)
    (root / 'sub-02' / 'dicom_t1').mkdir(parents=True)
    (root / 'sub-01' / 'ses-1' / 't1.nii.gz').write_bytes(nifti_bytes(1))
    (root / 'sub-01' / 'ses-1' / 'notes.txt').write_text('not a scan')
    (root / 'sub-02' / 't2.nii').write_bytes(nifti_bytes(2, compressed=False))
    for n in range(3):
        (root / 'sub-02' / 'dicom_t1' / f'IM{n:04d}.dcm').write_bytes(b'DICM' * 10)
    return root


def client_for(url, login):
    client = MiqaClient(apiUrl=url)
    client.authenticate(login, 'password')
    return client


def test_client_workflow(bound_study, tmp_path):
    from girder.models.folder import Folder

    s = bound_study
    admin = client_for(s.url, 'admin')
    folder = Folder().createFolder(s.collection, 'study2', parentType='collection',
                                   creator=s.admin, public=False)
    project = admin.create_project(folder['_id'], {'autoAssess': False})
    settings = admin.update_settings(project, tier1GroupId=str(s.group1['_id']),
                                     tier2GroupId=str(s.group2['_id']))
    assert settings['tier1GroupId'] == str(s.group1['_id'])
    admin.put(f'folder/{folder["_id"]}/access', parameters={'access': json.dumps({
        'users': [], 'groups': [{'id': str(s.group1['_id']), 'level': 0},
                                {'id': str(s.group2['_id']), 'level': 0}]})})

    ticks = []
    local = local_study(tmp_path)
    report = admin.upload_scans(local, folder['_id'], progress=ticks.append)
    assert report['uploaded'] == 3 and sum(ticks) == report['bytes']
    report = admin.upload_scans(local, folder['_id'], progress=False)
    assert report == {'uploaded': 0, 'skipped': 3, 'bytes': 0}  # re-running uploads nothing

    tier1 = client_for(s.url, 'tierone')
    page = tier1.queue(project, tier=1)
    assert sorted(x['path'] for x in page['items']) == [
        'sub-01/ses-1/t1.nii.gz', 'sub-02/dicom_t1.zip', 'sub-02/t2.nii']
    scan = page['items'][0]
    assert tier1.lock(scan)['lock']['login'] == 'tierone'
    result = tier1.decide(scan, 'questionable', artifacts={'wraparound': 'present'}, seconds=4)
    assert result['state']['state'] == 'questionable' and result['state']['lock'] is None
    tier2 = client_for(s.url, 'tiertwo')
    assert [x['_id'] for x in tier2.queue(project, tier=2)['items']] == [scan['_id']]
    tier2.decide(scan, 'bad', comment='wraps around the nose')
    assert [h['decision'] for h in tier1.history(scan)] == ['questionable', 'bad']
    assert tier1.me()['projects'][-1]['myTiers'] == [1]

    rows = list(csv.DictReader(io.StringIO(tier1.export(project, 'csv'))))
    assert {r['path']: r['state'] for r in rows}[scan['path']] == 'bad'
    exported = tier1.export(project, 'json')
    assert admin.import_text(project, exported, 'json')['decisionsAdded'] == 0
    # the same as a browser's multipart form upload
    report = admin.sendRestRequest('POST', f'miqa/project/{project["_id"]}/import',
                                   files={'file': ('export.json', exported.encode())})
    assert report['lineKind'] == 'entry' and report['scans'] == 3 and report['errors'] == []
    summary = admin.summary(project)
    assert summary['counts']['bad'] == 1 and summary['counts']['total'] == 3


def test_cli(bound_study, tmp_path, monkeypatch):
    s = bound_study
    runner = CliRunner()
    monkeypatch.setenv('MIQA_API_URL', s.url)

    def miqa(*args, login='admin'):
        return runner.invoke(main, ['--username', login, '--password', 'password', *args],
                             catch_exceptions=False)

    from girder.models.folder import Folder

    other = Folder().createFolder(s.collection, 'cli-project', parentType='collection',
                                  creator=s.admin)
    result = miqa('project', 'create', str(other['_id']), '--tier1-group', 'Tier 1',
                  '--tier2-group', str(s.group2['_id']), '--no-auto-assess')
    assert result.exit_code == 0, result.output
    created = json.loads(result.output)
    assert created['settings']['tier1GroupId'] == str(s.group1['_id'])
    assert created['settings']['autoAssess'] is False
    result = miqa('project', 'create', str(other['_id']), login='tierone')
    assert result.exit_code == 1 and 'Error 403' in result.output

    folder = Folder().createFolder(s.folder, 'cli-upload', creator=s.admin)
    result = miqa('upload', str(local_study(tmp_path)), str(folder['_id']))
    assert result.exit_code == 0, result.output
    assert 'uploaded 3 scans' in result.output

    report_worker_model()  # a worker reported miqa-default installed
    result = miqa('project', 'configure', s.id, '--model', 'miqa-default',
                  '--tier1-group', 'Tier 1')
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)['model'] == 'miqa-default'

    result = miqa('queue', s.id, '--tier', '1', login='tierone')
    assert result.exit_code == 0, result.output
    assert 'tier 1 queue: 3 scans' in result.output
    item_id = result.output.splitlines()[1].split()[0]

    result = miqa('decide', item_id, 'bad', '--tier', '2', login='tierone')
    assert result.exit_code == 1
    assert 'Error 403' in result.output and 'not a tier-2 reviewer' in result.output
    result = miqa('decide', item_id, 'bad', login='tiertwo')
    assert result.exit_code == 1 and 'bad only if' in result.output
    result = miqa('decide', item_id, 'bad', '-a', 'ghosting_motion', '-a', 'lesion=absent',
                  '--seconds', '9', '--confidence', '4', login='tiertwo')
    assert result.exit_code == 0, result.output
    assert 'recorded tier-2 bad by tiertwo; the scan is now bad' in result.output

    out = tmp_path / 'export.csv'
    result = miqa('export', s.id, '--format', 'csv', '-o', str(out))
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(out.open()))
    bad = next(r for r in rows if r['itemId'] == item_id)
    assert (bad['ghosting_motion'], bad['lesion'], bad['quality']) == ('true', 'false', '2.0')

    result = miqa('import', s.id, str(out))
    assert result.exit_code == 0, result.output
    assert '0 decisions added' in result.output
    broken = tmp_path / 'broken.csv'
    broken.write_text('itemId,decision\nnot-an-id,good\n')
    result = miqa('import', s.id, str(broken))
    assert result.exit_code == 2 and 'line 2' in result.output

    result = miqa('project', 'list', login='tiertwo')
    assert result.exit_code == 0 and 'bad 1' in result.output
    result = miqa('summary', s.id)
    assert json.loads(result.output)['counts']['bad'] == 1
    result = miqa('register', s.id)  # every image is a scan already
    assert result.exit_code == 0 and json.loads(result.output) == {'registered': 0}
