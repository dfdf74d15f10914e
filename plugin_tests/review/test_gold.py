"""Gold-standard scans (issue #23): references by hand and from CSV, unannounced re-reads served
at goldRate that never change the scan, and each reviewer's agreement with the references."""

import json

import pytest
from bson import ObjectId
from pytest_girder.assertions import assertStatus, assertStatusOk

from .util import decide, make_scan, state

pytestmark = pytest.mark.plugin('miqa')


def put_settings(s, settings):
    resp = s.server.request(f'/miqa/project/{s.id}/settings', method='PUT', user=s.owner,
                            body=json.dumps(settings), type='application/json')
    assertStatusOk(resp)


def put_gold(s, item, user, status=200, **body):
    resp = s.server.request(f'/item/{item["_id"]}/miqa/gold', method='PUT', user=user,
                            body=json.dumps(body), type='application/json')
    assertStatus(resp, status)
    return resp.json


def queue(s, user):
    resp = s.server.request(f'/miqa/project/{s.id}/queue', user=user, params={'tier': 1})
    assertStatusOk(resp)
    return resp.json['items']


def test_only_project_admins_mark_references(study):
    s = study
    item = make_scan(s.folder, 'a.nii.gz', s.admin)
    for user in (s.tier1, s.tier2, s.outsider):
        put_gold(s, item, user, status=403, decision='bad')
    assert 'reference decision is good, questionable or bad' in put_gold(
        s, item, s.owner, status=400, decision='awful')['message']
    assert 'Unknown artifact' in put_gold(s, item, s.owner, status=400, decision='bad',
                                          artifacts={'nope': 'present'})['message']
    ref = put_gold(s, item, s.owner, decision='bad', artifacts=['ghosting_motion'])
    assert ref['decision'] == 'bad' and ref['artifacts'] == {'ghosting_motion': 'present'}
    resp = s.server.request(f'/item/{item["_id"]}/miqa/gold', user=s.owner)
    assert resp.json['decision'] == 'bad'
    assertStatus(s.server.request(f'/item/{item["_id"]}/miqa/gold', user=s.tier1), 403)
    # a reviewer's view of the scan does not say it is a reference
    resp = s.server.request(f'/item/{item["_id"]}/miqa', user=s.tier1)
    assert 'gold' not in resp.json
    resp = s.server.request(f'/item/{item["_id"]}/miqa/gold', method='DELETE', user=s.owner)
    assert resp.json == {'removed': True}
    assert 'gold' not in state(item)


def test_gold_rereads_are_unannounced_and_never_change_the_scan(study):
    s = study
    gold = make_scan(s.folder, 'gold.nii.gz', s.admin, seed=1)
    fresh = make_scan(s.folder, 'fresh.nii.gz', s.admin, seed=2)
    assertStatusOk(decide(s.server, gold, s.tier2, 'bad', artifacts={'ghosting_motion': 'present'}))
    put_gold(s, gold, s.owner, decision='bad', artifacts={'ghosting_motion': 'present'})
    before = state(gold)

    # goldRate 0: the decided reference is not served again
    assert [ObjectId(r['_id']) for r in queue(s, s.tier1)] == [fresh['_id']]
    put_settings(s, {'goldRate': 1})
    rows = queue(s, s.tier1)
    assert {ObjectId(r['_id']) for r in rows} == {gold['_id'], fresh['_id']}
    served = next(r for r in rows if ObjectId(r['_id']) == gold['_id'])
    assert served['miqa']['state'] == 'unreviewed' and served['miqa']['latestDecision'] is None
    assert 'gold' not in served['miqa']
    view = s.server.request(f'/item/{gold["_id"]}/miqa', user=s.tier1).json
    assert view['state'] == 'unreviewed' and view['decisionCount'] == 0
    assert s.server.request(f'/item/{gold["_id"]}/miqa/history', user=s.tier1).json == []
    item_json = s.server.request(f'/item/{gold["_id"]}', user=s.tier1).json['miqa']
    assert item_json['state'] == 'unreviewed' and item_json['latestDecision'] is None
    # tier 2 and the owner see the scan as it is
    assert s.server.request(f'/item/{gold["_id"]}/miqa', user=s.tier2).json['state'] == 'bad'

    assertStatusOk(s.server.request(f'/item/{gold["_id"]}/miqa/lock', method='POST',
                                    user=s.tier1))
    resp = decide(s.server, gold, s.tier1, 'good', seconds=12, confidence=2)
    assertStatusOk(resp)
    assert resp.json['decision']['readKind'] == 'single'  # unannounced, even now
    assert resp.json['state']['state'] == 'unreviewed'
    after = state(gold)
    assert (after['state'], after['decisionCount'], after['rev'], after['latestDecision']) == (
        before['state'], before['decisionCount'], before['rev'], before['latestDecision'])
    assert after['lock'] is None
    from girder_miqa.models.calibration import GoldRead
    from girder_miqa.models.decision import Decision

    reads = list(GoldRead().find({'itemId': gold['_id']}))
    assert [(r['login'], r['decision'], r['readKind'], r['agrees']) for r in reads] == [
        ('tierone', 'good', 'gold', False)]
    assert len(Decision().history(gold)) == 1  # the trail holds only tier 2's decision
    # not served again within the reviewer's recent entries
    assert gold['_id'] not in {ObjectId(r['_id']) for r in queue(s, s.tier1)}
    # the summary does not count it as a review
    summary = s.server.request(f'/miqa/project/{s.id}/summary', user=s.admin).json
    assert [(r['login'], r['decisions']) for r in summary['reviewers']] == [('tiertwo', 1)]

    agreement = s.server.request(f'/miqa/project/{s.id}/agreement', user=s.owner).json
    me = next(r for r in agreement['reviewers'] if r.get('login') == 'tierone')
    assert me['goldReads'] == 1 and me['gold']['agreement']['value'] == 0.0
    assert me['gold']['agreement']['n'] == 1
    assert [t['agree'] for t in me['gold']['timeline']] == [False]
    assert me['seconds']['median'] == 12 and me['confidence']['mean'] == 2
    assert agreement['gold'] == {'references': 1, 'reads': 1, 'agreement': {
        'value': 0.0, 'low': None, 'high': None, 'n': 1}}

    # the owner's JSON export carries the reference and its re-reads; a reviewer's does not
    def exported(user):
        resp = s.server.request(f'/miqa/project/{s.id}/export', user=user,
                                params={'format': 'json'}, isJson=False)
        return {x['name']: x for x in json.loads(resp.collapse_body().decode())['scans']}
    owned = exported(s.owner)['gold.nii.gz']
    assert owned['goldReference']['decision'] == 'bad'
    assert [r['decision'] for r in owned['goldReads']] == ['good']
    assert 'goldReference' not in exported(s.tier1)['gold.nii.gz']

    # and the owner's import brings them back (once)
    resp = s.server.request(f'/miqa/project/{s.id}/export', user=s.owner,
                            params={'format': 'json'}, isJson=False)
    text = resp.collapse_body().decode()
    from girder_miqa.models.calibration import Gold

    Gold().unmark(gold)
    GoldRead().collection.delete_many({})

    def do_import():
        resp = s.server.request(f'/miqa/project/{s.id}/import', method='POST', user=s.owner,
                                params={'format': 'json'}, body=text, type='application/json')
        assertStatusOk(resp)
        return resp.json['gold']
    assert do_import() == {'references': 1, 'reads': 1, 'readsSkipped': 0, 'unmatched': 0}
    assert Gold().findOne({'_id': gold['_id']})['artifacts'] == {'ghosting_motion': 'present'}
    assert state(gold)['gold'] is True
    back = list(GoldRead().find({'itemId': gold['_id']}))
    assert [(r['login'], r['decision'], r['readKind'], r['agrees'], r['seconds'])
            for r in back] == [('tierone', 'good', 'gold', False, 12)]
    assert do_import()['readsSkipped'] == 1 and GoldRead().collection.count_documents({}) == 1


def test_gold_csv_import_reports_bad_rows_by_line(study):
    s = study
    sub = s.subfolder('sub-01')
    a = make_scan(sub, 't1.nii.gz', s.admin, seed=1)
    b = make_scan(s.folder, 'b.nii.gz', s.admin, seed=2)
    text = ('path,itemId,decision,artifacts,comment\r\n'
            'sub-01/t1.nii.gz,,bad,"ghosting_motion lesion=absent",motion\r\n'
            f',{b["_id"]},good,,\r\n'
            'sub-01/missing.nii.gz,,good,,\r\n'
            f',{b["_id"]},awful,,\r\n'
            ',not-an-id,good,,\r\n')
    for user in (s.tier1, s.outsider):
        assertStatus(s.server.request(f'/miqa/project/{s.id}/gold', method='POST', user=user,
                                      body=text, type='text/csv'), 403)
    resp = s.server.request(f'/miqa/project/{s.id}/gold', method='POST', user=s.owner,
                            body=text, type='text/csv')
    assertStatusOk(resp)
    assert resp.json['marked'] == 2
    assert [e['line'] for e in resp.json['errors']] == [4, 5, 6]
    from girder_miqa.models.calibration import Gold

    refs = Gold().for_project({'_id': ObjectId(s.id)})
    assert refs[a['_id']]['artifacts'] == {'ghosting_motion': 'present', 'lesion': 'absent'}
    assert refs[a['_id']]['comment'] == 'motion' and refs[b['_id']]['decision'] == 'good'
    resp = s.server.request(f'/miqa/project/{s.id}/gold', method='POST', user=s.owner,
                            body='name,verdict\r\nx,y\r\n', type='text/csv')
    assertStatus(resp, 400)
    assert 'needs a decision column' in resp.json['message']
