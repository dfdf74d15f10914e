"""Reference protocols and compliance (issue #22): inferred references (mode per site, the
project's for a small site), set references by REST (JSON and CSV) with tolerances and
severities, 400s naming the row and field, access, the compliance table, summary and export."""

import csv
import io
import json

import pytest
from pytest_girder.assertions import assertStatus, assertStatusOk

from .util import make_scan

pytestmark = pytest.mark.plugin('miqa')

NOMINAL = {'Manufacturer': 'SIEMENS', 'SoftwareVersions': 'syngo MR E11',
           'RepetitionTime': 2.3, 'EchoTime': 0.00298, 'FlipAngle': 9.0,
           'VoxelSize': [1.0, 1.0, 1.2], 'SeriesDescription': 't1_mprage'}


def _assessed(s, site: str, name: str, seed: int, **changed) -> dict:
    """A scan of ``site`` with a finished T1w assessment carrying these parameters."""
    from girder_miqa import scheduling
    from girder_miqa.models import review_state

    item = make_scan(s.subfolder(site), name, s.admin, seed=seed)
    review_state.set_assessment_result(item, {
        'status': 'done', 'quality': 7.0, 'artifacts': {},
        'model': scheduling.current_model('miqa-default', ask=False),
        'scope': {'in_scope': True, 'contrast': 'T1w', 'reason': 'test', 'source': 'header'},
        'acquisition': {'parameters': {**NOMINAL, **changed}, 'sources': {}, 'problems': []}})
    return item


@pytest.fixture
def sites(study):
    """site-a: four scans, one with TR 2.5; site-b: two scans (under the minimum), one with
    TR 2.5 and another software version."""
    s = study
    a = [_assessed(s, 'site-a', f'a{n}.nii.gz', n, **(
        {'RepetitionTime': 2.5} if n == 3 else {})) for n in range(4)]
    b = [_assessed(s, 'site-b', 'b0.nii.gz', 10, RepetitionTime=2.5,
                   SoftwareVersions='syngo MR XA30'),
         _assessed(s, 'site-b', 'b1.nii.gz', 11)]
    return s, a, b


def _get(s, path, user=None, status=200, **params):
    resp = s.server.request(f'/miqa/project/{s.id}/{path}', user=user or s.owner, params=params)
    assertStatus(resp, status)
    return resp.json


def _put(s, body, type='application/json', user=None, status=200):
    resp = s.server.request(f'/miqa/project/{s.id}/protocol', method='PUT',
                            user=user or s.owner, body=body, type=type)
    assertStatus(resp, status)
    return resp.json


def test_inferred_references_are_the_mode_per_site(sites):
    s, a, b = sites
    refs = {(r['site'], r['scanType']): r for r in _get(s, 'protocol')}
    assert set(refs) == {('site-a', 'T1w'), ('site-b', 'T1w')}
    site_a, site_b = refs['site-a', 'T1w'], refs['site-b', 'T1w']
    assert site_a['reference'] == 'inferred' and site_a['basis'] == 'site'
    assert site_a['scans'] == 4 and site_a['parameters']['RepetitionTime'] == {
        'value': 2.3, 'tolerance': 0.001, 'severity': 'warning', 'basis': 'project'}
    assert site_a['parameters']['Manufacturer']['basis'] == 'site'
    assert site_b['basis'] == 'project'  # 2 scans < MIN_SITE_SCANS: the project's 6
    assert site_b['parameters']['SoftwareVersions']['value'] == 'syngo MR E11'
    assert site_a['parameters']['VoxelSize']['value'] == [1.0, 1.0, 1.2]
    assert 'SeriesDescription' not in site_a['parameters']  # names are not inferred

    table = _get(s, 'compliance')['sites']
    # by hand: site-a 3 of 4 at TR 2.3; site-b one of 2 off on TR and software
    assert table['site-a']['T1w']['scans'] == 4 and table['site-a']['T1w']['compliant'] == 3
    assert table['site-a']['T1w']['parameters']['RepetitionTime'] == 75.0
    assert table['site-a']['T1w']['parameters']['FlipAngle'] == 100.0
    assert table['site-b']['T1w']['compliant'] == 1
    assert table['site-b']['T1w']['parameters']['SoftwareVersions'] == 50.0

    from bson import ObjectId
    from girder.models.item import Item

    from girder_miqa.models import protocol
    from girder_miqa.models.project import Project

    project = Project().load(ObjectId(s.id))
    found = protocol.check_group(project, 'site-a', 'T1w',
                                 [Item().load(i['_id'], force=True) for i in a])
    assert found[a[0]['_id']] == [] and found[a[3]['_id']] == [{
        'parameter': 'RepetitionTime', 'expected': 2.3, 'found': 2.5, 'severity': 'warning',
        'tolerance': 0.001, 'reference': 'inferred'}]


def test_set_references_by_json_and_csv_with_tolerance_and_severity(sites):
    from girder.models.item import Item

    s, a, b = sites
    body = [{'scanType': 'T1w', 'site': None, 'parameters': {
        'RepetitionTime': {'value': 2.5, 'tolerance': 0.05, 'severity': 'exclude'},
        'Manufacturer': {'value': 'SIEMENS'}}}]
    refs = _put(s, json.dumps(body))
    assert [r['reference'] for r in refs] == ['set']  # no group is inferred any more
    assert refs[0]['scans'] == 6 and refs[0]['parameters']['Manufacturer'] == {
        'value': 'SIEMENS', 'tolerance': None, 'severity': 'warning'}
    table = _get(s, 'compliance')['sites']
    assert table['site-a']['T1w']['parameters'] == {'RepetitionTime': 25.0, 'Manufacturer': 100.0}
    assert table['site-b']['T1w']['compliant'] == 1 and table['site-a']['T1w']['reference'] == (
        'set')
    stored = Item().load(a[0]['_id'], force=True)['miqa']['protocol']['deviations']
    assert stored == [{'parameter': 'RepetitionTime', 'expected': 2.5, 'found': 2.3,
                       'severity': 'exclude', 'tolerance': 0.05, 'reference': 'set'}]

    # a site's own reference (CSV) adds to and overrides the all-sites one for that site
    text = ('scanType,site,parameter,value,tolerance,severity\n'
            'T1w,site-a,RepetitionTime,2.3,0.01,warning\n'
            'T1w,site-a,VoxelSize,1 1 1.2,0.05,exclude\n')
    refs = _put(s, text, type='text/csv')
    assert {(r['site'], r['reference']) for r in refs} == {(None, 'set'), ('site-a', 'set')}
    table = _get(s, 'compliance')['sites']
    assert table['site-a']['T1w']['parameters'] == {
        'RepetitionTime': 75.0, 'Manufacturer': 100.0, 'VoxelSize': 100.0}
    assert table['site-b']['T1w']['parameters']['RepetitionTime'] == 50.0

    # removed: site-a is back on the all-sites reference
    resp = s.server.request(f'/miqa/project/{s.id}/protocol', method='DELETE', user=s.owner,
                            params={'scanType': 'T1w', 'site': 'site-a'})
    assertStatusOk(resp)
    assert _get(s, 'compliance')['sites']['site-a']['T1w']['parameters']['RepetitionTime'] == (
        25.0)
    resp = s.server.request(f'/miqa/project/{s.id}/protocol', method='DELETE', user=s.owner,
                            params={'scanType': 'T1w', 'site': 'site-a'})
    assertStatus(resp, 400)
    assert "No set reference of scan type 'T1w' for site 'site-a'" in resp.json['message']


@pytest.mark.parametrize(('body', 'type', 'message'), [
    ('scanType,site,parameter,value,tolerance,severity\nT1w,,EchoTime,0.003,,warning\n'
     'T1w,,FlipAngle,9,,fatal\n', 'text/csv',
     "row 3: severity of FlipAngle must be warning or exclude, not 'fatal'"),
    ('scanType,site,parameter,value,tolerance,severity\nT1w,,EchoTime,0.003,-1,warning\n',
     'text/csv', 'row 2: tolerance of EchoTime must be a number >= 0'),
    ('scanType,site,parameter,value\nT1w,,EchoTime,0.003\n', 'text/csv',
     'missing: tolerance, severity'),
    (json.dumps([{'scanType': 'T1w', 'parameters': {'TR': {'value': 2}}}]), 'application/json',
     "reference 1: unknown parameter 'TR'"),
    (json.dumps([{'scanType': 'T1w', 'parameters': {
        'Manufacturer': {'value': 'GE', 'tolerance': 1}}}]), 'application/json',
     'reference 1: tolerance of Manufacturer applies to numbers only'),
    (json.dumps([{'scanType': '', 'parameters': {'EchoTime': 0.003}}]), 'application/json',
     'reference 1: scanType must be a non-empty string'),
    ('[{"scanType": "T1w",', 'application/json', 'The body is not JSON'),
])
def test_bad_references_are_400_naming_the_field(study, body, type, message):
    resp = study.server.request(f'/miqa/project/{study.id}/protocol', method='PUT',
                                user=study.owner, body=body, type=type)
    assertStatus(resp, 400)
    assert message in resp.json['message']
    assert _get(study, 'protocol') == []


def test_only_project_admins_set_references(sites):
    s, _, _ = sites
    body = json.dumps([{'scanType': 'T1w', 'parameters': {'EchoTime': 0.003}}])
    for user in (s.tier1, s.tier2, s.outsider):
        _put(s, body, user=user, status=403)
        resp = s.server.request(f'/miqa/project/{s.id}/protocol', method='DELETE', user=user,
                                params={'scanType': 'T1w'})
        assertStatus(resp, 403)
    assert all(r['reference'] == 'inferred' for r in _get(s, 'protocol', user=s.tier1))
    assert 'site-a' in _get(s, 'compliance', user=s.tier1)['sites']
    resp = s.server.request(f'/miqa/project/{s.id}/compliance')  # anonymous: no read access
    assert resp.output_status[:3] in (b'401', b'403')


def test_summary_and_export_carry_compliance_and_parameters(sites):
    s, a, b = sites
    summary = _get(s, 'summary')
    assert summary['compliance']['sites']['site-a']['T1w']['parameters']['RepetitionTime'] == (
        75.0)
    resp = s.server.request(f'/miqa/project/{s.id}/export', user=s.owner,
                            params={'format': 'csv'}, isJson=False)
    assertStatusOk(resp)
    text = resp.collapse_body().decode()
    rows = {r['name']: r for r in csv.DictReader(io.StringIO(text))}
    assert rows['a3.nii.gz']['acq_RepetitionTime'] == '2.5'
    assert rows['a0.nii.gz']['acq_VoxelSize'] == '1x1x1.2'
    assert rows['a0.nii.gz']['acq_Manufacturer'] == 'SIEMENS'
    assert rows['a3.nii.gz']['protocol_deviations'] == 'RepetitionTime: 2.5≠2.3 (warning)'
    assert rows['a0.nii.gz']['protocol_deviations'] == ''


def test_inferred_rule_finds_a_site_on_another_tr_and_a_software_upgrade():
    """Three sites of four scans: site-b all on TR 2.5 (the project's mode is 2.3: sequence
    parameters are the project's), site-c upgraded halfway (a tie at the site, broken by the
    project's more common version: scanner parameters are the site's)."""
    from girder_miqa.models.protocol import deviations, infer

    def scan(**changed):
        return {**NOMINAL, **changed}

    study = {'site-a': [scan() for _ in range(4)],
             'site-b': [scan(RepetitionTime=2.5) for _ in range(4)],
             'site-c': [scan(), scan(), scan(SoftwareVersions='syngo MR XA30'),
                        scan(SoftwareVersions='syngo MR XA30')]}
    everyone = [p for group in study.values() for p in group]
    found = {}
    for site, group in study.items():
        reference = infer(group, everyone)
        found[site] = [[(d['parameter'], d['found']) for d in deviations(reference, p,
                                                                          'inferred')]
                       for p in group]
    assert found['site-a'] == [[]] * 4
    assert found['site-b'] == [[('RepetitionTime', 2.5)]] * 4
    assert found['site-c'] == [[], [], [('SoftwareVersions', 'syngo MR XA30')]] + [
        [('SoftwareVersions', 'syngo MR XA30')]]
    mixed = infer([scan(Manufacturer='GE')] * 3, everyone + [scan(Manufacturer='GE')] * 3)
    assert mixed['Manufacturer'] == {'value': 'GE', 'tolerance': None, 'severity': 'warning',
                                     'basis': 'site'}  # a GE site is not a deviation
    assert mixed['RepetitionTime']['basis'] == 'project'


def test_miqa_protocol_commands(bound_study, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from girder_miqa.cli import main

    s = bound_study
    for n in range(3):
        _assessed(s, 'site-a', f'a{n}.nii.gz', n, **({'EchoTime': 0.004} if n == 2 else {}))
    monkeypatch.setenv('MIQA_API_URL', s.url)

    def miqa(*args, login='owner'):
        return CliRunner().invoke(main, ['--username', login, '--password', 'password', *args],
                                  catch_exceptions=False)

    result = miqa('protocol', s.id)
    assert result.exit_code == 0, result.output
    assert 'site-a  T1w  inferred reference  3 scans  2 compliant (67 %)' in result.output
    assert '    EchoTime                          66.7 %' in result.output
    shown = miqa('protocol', 'show', s.id)
    assert 'T1w  site-a  inferred  (3 scans)' in shown.output
    assert 'RepetitionTime                   2.3 ± 0.001  warning' in shown.output

    refs = tmp_path / 'refs.csv'
    refs.write_text('scanType,site,parameter,value,tolerance,severity\n'
                    'T1w,,EchoTime,0.004,0.0005,exclude\n')
    result = miqa('protocol', 'set', s.id, str(refs))
    assert result.exit_code == 0, result.output
    assert '1 set references in force, 0 inferred' in result.output
    assert '1 compliant (33 %)' in miqa('protocol', s.id).output
    bad = tmp_path / 'bad.json'
    bad.write_text(json.dumps([{'scanType': 'T1w', 'parameters': {'EchoTime': {
        'value': 0.004, 'severity': 'maybe'}}}]))
    result = miqa('protocol', 'set', s.id, str(bad))
    assert result.exit_code == 1
    assert "Error 400: reference 1: severity of EchoTime must be warning or exclude" in (
        result.output)
    assert miqa('protocol', 'set', s.id, str(refs), login='tierone').exit_code == 1


def test_compliance_counts_only_the_scans_a_reviewer_can_read(sites):
    from bson import ObjectId
    from girder.models.folder import Folder

    from girder_miqa.models import protocol
    from girder_miqa.models.project import Project

    s, _, _ = sites
    site_b = s.subfolder('site-b')
    Folder().setGroupAccess(site_b, s.group1, None, save=True)  # tier 1 no longer reads it
    assert set(_get(s, 'compliance', user=s.tier1)['sites']) == {'site-a'}
    assert set(_get(s, 'summary', user=s.tier1)['compliance']['sites']) == {'site-a'}
    project = Project().load(ObjectId(s.id))
    assert set(protocol.compliance(project, s.tier1)['sites']) == {'site-a'}  # checked itself
    assert set(protocol.compliance(project, s.admin)['sites']) == {'site-a', 'site-b'}
    # the reference of site-a is still inferred from every scan, readable or not
    assert _get(s, 'compliance', user=s.tier1)['sites']['site-a']['T1w']['compliant'] == 3


def test_the_worker_result_keeps_its_acquisition_through_rest(study):
    from girder_miqa import scheduling

    s = study
    item = make_scan(s.subfolder('site-a'), 'w.nii.gz', s.admin)
    acquisition = {'parameters': {**NOMINAL, 'InversionTime': None},
                   'sources': {'RepetitionTime': 'sidecar', 'VoxelSize': 'nifti'},
                   'problems': ['sidecar w.json names another scan (its IntendedFor names x)']}
    result = {'status': 'done', 'quality': 6.5, 'artifacts': {}, 'tileMap': {},
              'model': scheduling.current_model('miqa-default', ask=False),
              'volume': {}, 'timings': {}, 'metrics': {}, 'acquisition': acquisition}
    resp = s.server.request(f'/item/{item["_id"]}/miqa/assessment', method='PUT', user=s.admin,
                            body=json.dumps(result), type='application/json')
    assertStatusOk(resp)
    resp = s.server.request(f'/item/{item["_id"]}/miqa', user=s.tier1)
    assertStatusOk(resp)
    assert resp.json['assessment']['acquisition'] == acquisition
