"""The review side says only what the model knows (issue #21): untrained outputs never raise a
scan, accepted suggestions are validated, stored, exported and imported, and scans outside the
model's domain rank in a band of their own."""

import csv
import io
import json

import pytest
from pytest_girder.assertions import assertStatus, assertStatusOk

from .util import decide, make_scan, state

pytestmark = pytest.mark.plugin('miqa')

TRAINED = ['quality', 'incomplete_coverage', 'wraparound', 'ghosting_motion', 'inhomogeneity']
T2_SCOPE = {'in_scope': False, 'contrast': 'T2w', 'reason': 'T2w is outside the domain (T1w)',
            'source': 'sidecar'}
T1_SCOPE = {'in_scope': True, 'contrast': 'T1w', 'reason': 'T1w', 'source': 'image'}


def assess(s, item, quality: float, probs: dict, trained=TRAINED, scope=None):
    """Store a finished assessment through the worker's PUT (what a job's result does)."""
    body = {'status': 'done', 'quality': quality, 'artifacts': probs,
            'model': {'name': 'miqa-default', 'version': '1'}}
    if trained is not None:
        body['trainedOutputs'] = trained
    if scope is not None:
        body['scope'] = scope
    resp = s.server.request(f'/item/{item["_id"]}/miqa/assessment', method='PUT', user=s.admin,
                            type='application/json', body=json.dumps(body))
    assertStatusOk(resp)
    return resp.json


def queue(s) -> list[str]:
    resp = s.server.request(f'/miqa/project/{s.id}/queue', user=s.tier1)
    assertStatusOk(resp)
    return [i['name'].split('.')[0] for i in resp.json['items']]


def put_settings(s, settings, status=200):
    resp = s.server.request(f'/miqa/project/{s.id}/settings', method='PUT', user=s.owner,
                            body=json.dumps(settings), type='application/json')
    assertStatus(resp, status)
    return resp.json


def test_untrained_outputs_never_raise_a_scan(study):
    s = study
    scans = {n: make_scan(s.folder, f'{n}.nii.gz', s.admin, seed=i)
             for i, n in enumerate(['lesion', 'motion', 'legacy', 'plain'])}
    # a near-certain untrained lesion counts for nothing; a trained indicator does
    lesion = assess(s, scans['lesion'], 6.0, {'lesion': 0.99, 'ghosting_motion': 0.1})
    assert lesion['sort']['artifact'] == -0.1
    # nor is it stored or served as a probability
    served = s.server.request(f'/item/{scans["lesion"]["_id"]}/miqa', user=s.tier1).json
    assert served['assessment']['artifacts'] == {'ghosting_motion': 0.1}
    assert state(scans['lesion'])['assessment']['artifacts'] == {'ghosting_motion': 0.1}
    assess(s, scans['motion'], 6.0, {'ghosting_motion': 0.7})
    # an older result without trainedOutputs: only the indicators its model trained count
    legacy = assess(s, scans['legacy'], 6.0, {'truncation': 0.95, 'wraparound': 0.05},
                    trained=None)
    assert legacy['sort']['artifact'] == -0.05
    assert state(scans['legacy'])['assessment']['artifacts'] == {'wraparound': 0.05}
    assess(s, scans['plain'], 6.0, {})
    assert queue(s) == ['motion', 'lesion', 'legacy', 'plain']
    summary = s.server.request(f'/miqa/project/{s.id}/summary', user=s.admin).json
    assert summary['assessment']['done'] == 4


def test_accepted_suggestions_are_validated_and_stored(study):
    s = study
    item = make_scan(s.folder, 'a.nii.gz', s.admin)
    assess(s, item, 4.0, {'ghosting_motion': 0.8, 'inhomogeneity': 0.3, 'lesion': 0.9})
    present = {'ghosting_motion': 'present', 'inhomogeneity': 'present', 'lesion': 'present'}
    for accepted, name in [(['lesion'], 'lesion'),  # untrained: never a suggestion
                           (['inhomogeneity'], 'inhomogeneity'),  # below the threshold
                           (['wraparound'], 'wraparound'),  # not marked present
                           (['ghosting_motion', 3], None)]:  # not a list of keys
        resp = decide(s.server, item, s.tier1, 'questionable', artifacts=present,
                      acceptedSuggestions=accepted)
        assertStatus(resp, 400)
        assert (name or 'list') in resp.json['message']
        assert state(item)['decisionCount'] == 0
    resp = decide(s.server, item, s.tier1, 'questionable', artifacts=present,
                  acceptedSuggestions=['ghosting_motion'])
    assertStatusOk(resp)
    assert resp.json['decision']['acceptedSuggestions'] == ['ghosting_motion']
    assert state(item)['latestDecision']['acceptedSuggestions'] == ['ghosting_motion']
    # the model's snapshot in the decision holds the trained indicators only
    assert resp.json['decision']['assessment']['artifacts'] == {'ghosting_motion': 0.8,
                                                                 'inhomogeneity': 0.3}
    history = s.server.request(f'/item/{item["_id"]}/miqa/history', user=s.tier1).json
    entries = history if isinstance(history, list) else history['decisions']
    assert [d['acceptedSuggestions'] for d in entries] == [['ghosting_motion']]
    # the suggestion threshold is the server's setting, and the rules give it to the page
    resp = s.server.request('/system/setting', method='PUT', user=s.admin, params={
        'key': 'miqa.suspicion_thresholds',
        'value': json.dumps({'quality': 5, 'probability': 0.85})})
    assertStatusOk(resp)
    assert s.server.request('/miqa/rules').json['suggestionThreshold'] == 0.85
    resp = decide(s.server, item, s.tier1, 'questionable', artifacts=present,
                  acceptedSuggestions=['ghosting_motion'])  # 0.8 < 0.85: no longer suggested
    assertStatus(resp, 400)
    assert 'ghosting_motion' in resp.json['message']
    # tier 2 states its own: no suggestion accepted is the default
    resp = decide(s.server, item, s.tier2, 'bad', artifacts={'ghosting_motion': 'present'})
    assertStatusOk(resp)
    assert resp.json['decision']['acceptedSuggestions'] == []


def test_export_carries_scope_and_accepted_suggestions_and_import_keeps_them(study):
    s = study
    a = make_scan(s.folder, 'a.nii.gz', s.admin, seed=1)
    b = make_scan(s.folder, 'b.nii.gz', s.admin, seed=2)
    c = make_scan(s.folder, 'c.nii.gz', s.admin, seed=3)
    assess(s, a, 4.0, {'ghosting_motion': 0.8, 'lesion': 0.99}, scope=T1_SCOPE)
    assess(s, b, 9.0, {'ghosting_motion': 0.1}, scope=T2_SCOPE)
    assertStatusOk(decide(s.server, a, s.tier1, 'questionable',
                          artifacts={'ghosting_motion': 'present'},
                          acceptedSuggestions=['ghosting_motion']))
    resp = s.server.request(f'/miqa/project/{s.id}/export', user=s.admin,
                            params={'format': 'csv'}, isJson=False)
    assertStatusOk(resp)
    text = resp.collapse_body().decode()
    rows = {r['name']: r for r in csv.DictReader(io.StringIO(text))}
    assert rows['a.nii.gz']['accepted_suggestions'] == 'ghosting_motion'
    assert rows['a.nii.gz']['model_max_artifact_probability'] == '0.8'  # not the lesion's
    assert (rows['a.nii.gz']['in_scope'], rows['a.nii.gz']['contrast']) == ('true', 'T1w')
    assert (rows['b.nii.gz']['in_scope'], rows['b.nii.gz']['contrast'],
            rows['b.nii.gz']['scope_reason']) == ('false', 'T2w', T2_SCOPE['reason'])
    assert (rows['c.nii.gz']['in_scope'], rows['c.nii.gz']['accepted_suggestions']) == ('', '')
    resp = s.server.request(f'/miqa/project/{s.id}/export', user=s.admin,
                            params={'format': 'json'}, isJson=False)
    scans = {x['name']: x for x in json.loads(resp.collapse_body().decode())['scans']}
    assert scans['b.nii.gz']['assessment']['scope'] == T2_SCOPE
    assert scans['a.nii.gz']['assessment']['artifacts'] == {'ghosting_motion': 0.8}
    assert scans['a.nii.gz']['decisions'][0]['acceptedSuggestions'] == ['ghosting_motion']

    # the export's row, moved onto scan c, imports back with its accepted suggestions; the
    # scope columns are the model's word and are ignored
    row = dict(rows['a.nii.gz'], itemId=str(c['_id']), path='c.nii.gz', name='c.nii.gz',
               in_scope='false', contrast='FLAIR')
    out = io.StringIO()
    writer = csv.DictWriter(out, list(row), lineterminator='\r\n')
    writer.writeheader()
    writer.writerow(row)
    bad = dict(row, itemId=str(b['_id']), path='b.nii.gz', name='b.nii.gz',
               accepted_suggestions='wraparound')
    writer.writerow(bad)
    resp = s.server.request(f'/miqa/project/{s.id}/import', method='POST', user=s.admin,
                            body=out.getvalue(), type='text/csv')
    assertStatusOk(resp)
    assert resp.json['decisionsAdded'] == 1
    assert [e['line'] for e in resp.json['errors']] == [3]
    assert 'wraparound' in resp.json['errors'][0]['reason']
    imported = state(c)['latestDecision']
    assert imported['acceptedSuggestions'] == ['ghosting_motion']
    assert imported['artifacts']['ghosting_motion'] == 'present'
    assert state(c)['assessment'].get('scope') is None
    # JSON decisions carry acceptedSuggestions too
    doc = {'scans': [{'itemId': str(b['_id']), 'decisions': [
        {'decision': 'questionable', 'tier': 1, 'reviewer': 'someone',
         'artifacts': {'wraparound': 'present'}, 'acceptedSuggestions': ['wraparound']}]}]}
    resp = s.server.request(f'/miqa/project/{s.id}/import', method='POST', user=s.admin,
                            params={'format': 'json'}, body=json.dumps(doc),
                            type='application/json')
    assertStatusOk(resp)
    assert resp.json['decisionsAdded'] == 1, resp.json
    assert state(b)['latestDecision']['acceptedSuggestions'] == ['wraparound']


def test_out_of_scope_scans_rank_in_a_band_of_their_own(study):
    s = study
    scans = {n: make_scan(s.folder, f'{n}.nii.gz', s.admin, seed=i)
             for i, n in enumerate(['q3', 'q7', 'unassessed', 'bold2'])}
    assess(s, scans['q3'], 3.0, {}, scope=T1_SCOPE)
    assess(s, scans['q7'], 7.0, {})
    out = assess(s, scans['bold2'], 2.0, {'ghosting_motion': 0.9},
                 scope={**T2_SCOPE, 'contrast': 'bold'})
    assert out['sort']['outOfScope'] is True and out['sort']['quality'] == 2.0  # scores kept
    assert s.server.request(f'/miqa/project/{s.id}/settings',
                            user=s.owner).json['outOfScope'] == 'last'
    assert queue(s) == ['q3', 'q7', 'unassessed', 'bold2']
    assert put_settings(s, {'outOfScope': 'first'})['outOfScope'] == 'first'
    assert queue(s) == ['bold2', 'q3', 'q7', 'unassessed']
    put_settings(s, {'outOfScope': 'mixed'})
    assert queue(s) == ['bold2', 'q3', 'q7', 'unassessed']
    assess(s, scans['bold2'], 5.0, {}, scope=T2_SCOPE)  # a new result lands in the band
    assert queue(s) == ['q3', 'bold2', 'q7', 'unassessed']
    put_settings(s, {'outOfScope': 'last'})
    assert queue(s) == ['q3', 'q7', 'unassessed', 'bold2']
    resp = put_settings(s, {'outOfScope': 'sometimes'}, status=400)
    assert 'outOfScope must be one of first, mixed, last' in resp['message']


def test_a_malformed_scope_or_trained_list_is_a_400(study):
    s = study
    item = make_scan(s.folder, 'a.nii.gz', s.admin)
    base = {'status': 'done', 'quality': 5.0, 'artifacts': {}, 'model': {'name': 'm'}}
    for extra, message in [({'trainedOutputs': 'quality'}, 'trainedOutputs'),
                           ({'scope': {'in_scope': 'no'}}, 'scope'), ({'scope': 'T2w'}, 'scope')]:
        resp = s.server.request(f'/item/{item["_id"]}/miqa/assessment', method='PUT',
                                user=s.admin, type='application/json',
                                body=json.dumps({**base, **extra}))
        assertStatus(resp, 400)
        assert message in resp.json['message']
    assert state(item)['assessment']['status'] == 'not_scheduled'
