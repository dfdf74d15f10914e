"""The two-tier workflow over REST: tiers, decisions, the bad rule, validation, queues, history."""

import json

import pytest
from pytest_girder.assertions import assertStatus, assertStatusOk

from .util import decide, make_scan, report_worker_model, set_assessment, state

pytestmark = pytest.mark.plugin('miqa')


def test_existing_images_become_scans_when_project_enabled(server, admin, fsAssetstore):
    from girder.models.folder import Folder

    folder = Folder().createFolder(admin, 'old', parentType='user', creator=admin)
    old = make_scan(folder, 'before.nii.gz', admin)
    assert 'miqa' not in old  # not a project yet: the upload hook leaves it alone
    Folder().createFolder(folder, 'notes', creator=admin)
    resp = server.request('/miqa/project', method='POST', user=admin,
                          params={'folderId': str(folder['_id'])})
    assertStatusOk(resp)
    assert resp.json['counts'] == {'unreviewed': 1, 'questionable': 0, 'good': 0, 'bad': 0,
                                   'total': 1}
    assert state(old)['state'] == 'unreviewed'
    assert resp.json['_id'] == str(folder['_id'])  # identified by its folder
    resp = server.request('/miqa/project', method='POST', user=admin,
                          params={'folderId': str(folder['_id'])})
    assertStatus(resp, 400)
    assert 'already' in resp.json['message']


def test_tier1_then_tier2(study):
    s = study
    item = make_scan(s.subfolder('sub-01'), 't1.nii.gz', s.admin)
    resp = decide(s.server, item, s.tier1, 'questionable', seconds=12.5, confidence=3,
                  artifacts={'ghosting_motion': 'present', 'lesion': 'absent'},
                  comment='ringing?', location={'ijk': [1, 2, 3], 'world': [1.5, -2, 30]})
    assertStatusOk(resp)
    d = resp.json['decision']
    assert (d['tier'], d['decision'], d['login'], d['seconds'], d['confidence']) == (
        1, 'questionable', 'tierone', 12.5, 3)
    assert d['artifacts'] == {'ghosting_motion': 'present', 'lesion': 'absent'}
    assert d['location'] == {'ijk': [1, 2, 3], 'world': [1.5, -2.0, 30.0]}
    assert d['assessment']['status'] == 'not_scheduled'
    assert resp.json['state']['state'] == 'questionable'

    # questionable scans leave the tier-1 queue and wait in the tier-2 queue
    q1 = s.server.request(f'/miqa/project/{s.id}/queue', user=s.tier1, params={'tier': 1})
    q2 = s.server.request(f'/miqa/project/{s.id}/queue', user=s.tier2, params={'tier': 2})
    assert q1.json['total'] == 0
    assert [i['_id'] for i in q2.json['items']] == [str(item['_id'])]
    assert q2.json['items'][0]['path'] == 'sub-01/t1.nii.gz'

    # tier 1 cannot decide at tier 2, nor mark bad
    resp = decide(s.server, item, s.tier1, 'bad', tier=2, comment='x')
    assertStatus(resp, 403)
    resp = decide(s.server, item, s.tier1, 'bad', comment='x')
    assertStatus(resp, 400)
    assert 'At tier 1' in resp.json['message']

    resp = decide(s.server, item, s.tier2, 'bad', artifacts={'ghosting_motion': True})
    assertStatusOk(resp)
    assert resp.json['decision']['tier'] == 2
    st = state(item)
    assert st['state'] == 'bad' and st['decisionCount'] == 2
    assert st['latestDecision']['login'] == 'tiertwo'
    assert st['tier1']['decision'] == 'questionable'

    # after tier 2, tier 1 can no longer change it; tier 2 may override itself
    resp = decide(s.server, item, s.tier1, 'good')
    assertStatus(resp, 409)
    assert 'tier 2' in resp.json['message']
    assertStatusOk(decide(s.server, item, s.tier2, 'good'))

    history = s.server.request(f'/item/{item["_id"]}/miqa/history', user=s.outsider)
    assertStatusOk(history)
    assert [(h['tier'], h['decision']) for h in history.json] == [
        (1, 'questionable'), (2, 'bad'), (2, 'good')]
    assert [h['seq'] for h in history.json] == [1, 2, 3]
    # the state is readable in the item's own JSON, and the generic endpoints cannot write it
    resp = s.server.request(f'/item/{item["_id"]}', user=s.tier1)
    assert resp.json['miqa']['state'] == 'good'
    resp = s.server.request(f'/item/{item["_id"]}', method='PUT', user=s.admin,
                            params={'name': 'renamed.nii.gz'},
                            body=json.dumps({'miqa': {'state': 'bad'}}),
                            type='application/json')
    assert state(item)['state'] == 'good'


def test_tier2_reviews_directly_and_admin_acts_as_any_tier(study):
    s = study
    a = make_scan(s.folder, 'a.nii.gz', s.admin, seed=1)
    b = make_scan(s.folder, 'b.nii.gz', s.admin, seed=2)
    resp = decide(s.server, a, s.tier2, 'good')  # default: the user's highest tier
    assertStatusOk(resp)
    assert resp.json['decision']['tier'] == 2
    resp = decide(s.server, b, s.admin, 'questionable', tier=1)
    assertStatusOk(resp)
    resp = decide(s.server, b, s.admin, 'bad', tier=2, comment='motion beyond the vocabulary')
    assertStatusOk(resp)
    assert state(b)['state'] == 'bad'


def test_bad_needs_an_artifact_or_a_comment(study):
    s = study
    item = make_scan(s.folder, 'x.nii.gz', s.admin)
    for body in ({}, {'comment': '   '}, {'artifacts': {'lesion': 'absent'}},
                 {'artifacts': {'lesion': 'not_stated'}, 'comment': ''}):
        resp = decide(s.server, item, s.tier2, 'bad', **body)
        assertStatus(resp, 400)
        assert 'bad only if at least one artifact is marked present' in resp.json['message']
    assert state(item)['decisionCount'] == 0
    assertStatusOk(decide(s.server, item, s.tier2, 'bad', artifacts=['wraparound']))
    assertStatusOk(decide(s.server, item, s.tier2, 'bad', comment='scanner spike'))
    assert state(item)['decisionCount'] == 2


@pytest.mark.parametrize(('body', 'message'), [
    ({'decision': 'excellent'}, 'Unknown decision'),
    ({'decision': 'good', 'artifacts': {'aliens': 'present'}}, "Unknown artifact 'aliens'"),
    ({'decision': 'good', 'artifacts': {'lesion': 'maybe'}}, 'must be "present", "absent"'),
    ({'decision': 'good', 'artifacts': 'lesion'}, 'artifacts must be an object'),
    ({'decision': 'good', 'comment': 'x' * 10_001}, 'at most 10000'),
    ({'decision': 'good', 'seconds': -1}, 'seconds must be'),
    ({'decision': 'good', 'seconds': 'long'}, 'seconds must be'),
    ({'decision': 'good', 'confidence': 7}, 'confidence must be'),
    ({'decision': 'good', 'quality': 11}, 'quality must be'),
    ({'decision': 'good', 'tier': 3}, 'tier must be 1 or 2'),
    ({'decision': 'good', 'location': {'ijk': [1, 2]}}, 'location.ijk must be three'),
    ({'decision': 'good', 'location': {'ijk': [1.5, 2, 3]}}, 'voxel indices'),
    ({'decision': 'good', 'location': {'pixel': [1, 2, 3]}}, 'location must be'),
    ({'decision': 'good', 'reviewer': 'me'}, 'Unknown field'),
    ({'tier': 1}, 'decision is required'),
])
def test_invalid_decisions_are_400_and_write_nothing(study, body, message):
    s = study
    item = make_scan(s.folder, 'x.nii.gz', s.admin)
    before = state(item)
    resp = s.server.request(f'/item/{item["_id"]}/miqa/decision', method='POST', user=s.tier1,
                            body=json.dumps(body), type='application/json')
    assertStatus(resp, 400)
    assert message in resp.json['message']
    assert state(item) == before
    from girder_miqa.models.decision import Decision

    assert Decision().find({'itemId': item['_id']}).count() == 0


def test_malformed_ids_and_non_scans(study):
    s = study
    resp = decide(s.server, {'_id': 'nonsense'}, s.tier1, 'good')
    assertStatus(resp, 400)
    for path in ('/miqa/project/nonsense/queue', '/miqa/project/nonsense/summary',
                 '/miqa/project/000000000000000000000000/settings'):
        resp = s.server.request(path, user=s.admin)
        assertStatus(resp, 400)
    resp = s.server.request(f'/miqa/project/{s.id}/queue', user=s.admin, params={'tier': 3})
    assertStatus(resp, 400)
    resp = s.server.request(f'/miqa/project/{s.id}/queue', user=s.admin, params={'limit': 0})
    assertStatus(resp, 400)
    from girder.models.item import Item

    notes = Item().createItem('notes.txt', creator=s.admin, folder=s.folder)
    resp = decide(s.server, notes, s.admin, 'good')
    assertStatus(resp, 400)
    assert 'not a scan' in resp.json['message']


def test_non_members_get_403_and_unreadable_scans_are_invisible(study):
    from girder.constants import AccessType
    from girder.models.folder import Folder

    s = study
    open_ = make_scan(s.subfolder('sub-01'), 'a.nii.gz', s.admin)
    secret_folder = s.subfolder('sub-secret')
    Folder().setGroupAccess(secret_folder, s.group1, None, save=True)
    secret = make_scan(secret_folder, 'b.nii.gz', s.admin)

    resp = decide(s.server, open_, s.outsider, 'good')
    assertStatus(resp, 403)
    resp = s.server.request(f'/item/{open_["_id"]}/miqa/lock', method='POST', user=s.outsider)
    assertStatus(resp, 403)
    assert state(open_)['decisionCount'] == 0 and state(open_)['lock'] is None

    # tier 1 cannot read sub-secret: not in its queue, summary, counts or export
    q = s.server.request(f'/miqa/project/{s.id}/queue', user=s.tier1).json
    assert [i['_id'] for i in q['items']] == [str(open_['_id'])] and q['total'] == 1
    summary = s.server.request(f'/miqa/project/{s.id}/summary', user=s.tier1).json
    assert summary['counts']['total'] == 1
    project = s.server.request(f'/miqa/project/{s.id}', user=s.tier1).json
    assert project['counts']['unreviewed'] == 1 and project['myTiers'] == [1]
    export = s.server.request(f'/miqa/project/{s.id}/export', user=s.tier1,
                              params={'format': 'json'}, isJson=False)
    scans = json.loads(export.collapse_body())['scans']
    assert [x['itemId'] for x in scans] == [str(open_['_id'])]
    resp = decide(s.server, secret, s.tier1, 'good')
    assertStatus(resp, 403)  # no read access to the item itself
    # tier 2 still sees both
    q = s.server.request(f'/miqa/project/{s.id}/queue', user=s.tier2).json
    assert q['total'] == 2
    # a user who cannot read the project folder cannot see the project at all
    Folder().setUserAccess(s.folder, s.outsider, None, save=True)
    resp = s.server.request(f'/miqa/project/{s.id}/queue', user=s.outsider)
    assertStatus(resp, 403)
    assert s.server.request('/miqa/project', user=s.outsider).json == []
    Folder().setUserAccess(s.folder, s.outsider, AccessType.READ, save=True)


def test_settings_owner_only_and_validated(study):
    s = study
    report_worker_model()  # a worker reported miqa-default installed
    url = f'/miqa/project/{s.id}/settings'
    body = json.dumps({'autoAssess': True, 'model': 'miqa-default'})
    for user in (s.tier1, s.tier2, s.outsider):
        resp = s.server.request(url, method='PUT', user=user, body=body,
                                type='application/json')
        assertStatus(resp, 403)
    resp = s.server.request(url, method='PUT', user=s.owner, body=body, type='application/json')
    assertStatusOk(resp)
    assert resp.json['model'] == 'miqa-default' and resp.json['autoAssess'] is True
    assert resp.json['tier1GroupId'] == str(s.group1['_id'])  # untouched settings kept
    for bad, message in [({'autoAssess': 'yes'}, 'autoAssess'),
                         ({'tier1GroupId': 'nope'}, 'group id'),
                         ({'tier2GroupId': '0' * 24}, 'no group'),
                         ({'artifacts': [{'key': 'Bad Key'}]}, 'lower case'),
                         ({'artifacts': ['lesion', 'lesion']}, 'twice'),
                         ({'colour': 'red'}, 'Unknown setting')]:
        resp = s.server.request(url, method='PUT', user=s.admin, body=json.dumps(bad),
                                type='application/json')
        assertStatus(resp, 400)
        assert message in resp.json['message']
    assert s.server.request(url, user=s.tier1).json['model'] == 'miqa-default'

    # an edited vocabulary is what decisions are checked against
    resp = s.server.request(url, method='PUT', user=s.owner, type='application/json',
                            body=json.dumps({'artifacts': [{'key': 'lesion', 'label': 'Lesion'},
                                                           {'key': 'dental_braces'}]}))
    assertStatusOk(resp)
    item = make_scan(s.folder, 'x.nii.gz', s.admin)
    assertStatus(decide(s.server, item, s.tier2, 'bad', artifacts={'wraparound': 'present'}),
                 400)
    assertStatusOk(decide(s.server, item, s.tier2, 'bad',
                          artifacts={'dental_braces': 'present'}))


def test_me_and_project_json(study):
    s = study
    me = s.server.request('/miqa/me', user=s.tier2).json
    assert me['user']['login'] == 'tiertwo'
    assert me['projects'] == [{'_id': s.id, 'name': 'mri', 'myTiers': [2], 'canAdmin': False}]
    me = s.server.request('/miqa/me', user=s.owner).json
    assert me['projects'][0]['canAdmin'] is True and me['projects'][0]['myTiers'] == []
    projects = s.server.request('/miqa/project', user=s.admin).json
    assert projects[0]['folder']['path'] == '/collection/Study/mri'
    assert projects[0]['myTiers'] == [1, 2] and projects[0]['tier1Group']['name'] == 'Tier 1'


def test_queue_order_and_pagination(study):
    s = study
    scans = {name: make_scan(s.folder, f'{name}.nii.gz', s.admin, seed=i)
             for i, name in enumerate(['old_unassessed', 'new_unassessed', 'q3', 'q7',
                                       'q3_highprob', 'failed'])}
    resp = s.server.request(f'/item/{scans["q7"]["_id"]}/miqa/assessment', method='PUT',
                            user=s.admin, type='application/json', body=json.dumps({
                                'status': 'done', 'quality': 7.0,
                                'artifacts': {'ghosting_motion': 0.1},
                                'model': {'name': 'miqa-default', 'version': '1'}}))
    assertStatusOk(resp)  # the worker's write sets the sort keys too
    assert resp.json['sort']['rank'] == 0 and resp.json['sort']['artifact'] == -0.1
    set_assessment(scans['q3'], 3.0, {'ghosting_motion': 0.2})
    set_assessment(scans['q3_highprob'], 3.0, {'ghosting_motion': 0.2, 'wraparound': 0.9})
    from girder_miqa.models import review_state

    review_state.set_assessment_result(scans['failed'], {'status': 'failed', 'reason': 'x'})
    expected = ['q3_highprob', 'q3', 'q7', 'old_unassessed', 'new_unassessed', 'failed']
    resp = s.server.request(f'/miqa/project/{s.id}/queue', user=s.tier1)
    assert [i['name'][:-7] for i in resp.json['items']] == expected
    pages = []
    for offset in (0, 2, 4):
        resp = s.server.request(f'/miqa/project/{s.id}/queue', user=s.tier1,
                                params={'limit': 2, 'offset': offset})
        assert resp.json['total'] == 6
        pages += [i['name'][:-7] for i in resp.json['items']]
    assert pages == expected


def test_summary_agreement(study):
    s = study
    cases = [  # (model quality, max artifact prob, tier-1 decision)
        (3.0, 0.1, 'questionable'), (8.0, 0.9, 'questionable'), (8.0, 0.1, 'good'),
        (8.0, 0.2, 'questionable'), (2.0, 0.0, 'good'),
    ]
    for n, (quality, prob, decision) in enumerate(cases):
        item = make_scan(s.folder, f's{n}.nii.gz', s.admin, seed=n)
        set_assessment(item, quality, {'ghosting_motion': prob})
        assertStatusOk(decide(s.server, item, s.tier1, decision, seconds=10,
                              artifacts={'lesion': 'present'} if n == 0 else {}))
    make_scan(s.folder, 'unassessed.nii.gz', s.admin, seed=9)
    summary = s.server.request(f'/miqa/project/{s.id}/summary', user=s.admin).json
    agreement = summary['agreement']
    assert (agreement['n'], agreement['both'], agreement['modelOnly'], agreement['humanOnly'],
            agreement['neither']) == (5, 2, 1, 1, 1)
    assert agreement['percent'] == pytest.approx(60.0)
    # kappa = (0.6 - (0.6*0.6 + 0.4*0.4)) / (1 - 0.52)
    assert agreement['kappa'] == pytest.approx((0.6 - 0.52) / 0.48)
    assert summary['counts'] == {'unreviewed': 1, 'questionable': 3, 'good': 2, 'bad': 0,
                                 'total': 6}
    assert summary['reviewers'][0]['login'] == 'tierone'
    assert summary['reviewers'][0]['tier1'] == {'good': 2, 'questionable': 3}
    assert summary['reviewers'][0]['seconds'] == 50
    lesion = next(a for a in summary['artifacts'] if a['key'] == 'lesion')
    assert lesion['present'] == 1
    assert summary['assessment']['done'] == 5 and summary['assessment']['not_scheduled'] == 1


def test_assess_endpoints_schedule_through_the_lead_hook(study, purged_broker):
    s = study
    a = make_scan(s.folder, 'a.nii.gz', s.admin, seed=1)
    b = make_scan(s.folder, 'b.nii.gz', s.admin, seed=2)
    report_worker_model()  # the workers' model, as they reported it
    # A worker left running by an earlier test in the session answers the ask with its own
    # weights, which then are the current model: ask first, as the endpoint will.
    from girder_miqa.scheduling import current_model

    current_model(None)
    set_assessment(b, 6.0, {'ghosting_motion': 0.1})  # assessed by the current model
    old = make_scan(s.folder, 'old.nii.gz', s.admin, seed=3)
    set_assessment(old, 6.0, {'ghosting_motion': 0.1}, model={  # same name, older weights
        'name': 'miqa-default', 'version': '0.0.1', 'sha256': '0' * 64})
    resp = s.server.request(f'/miqa/project/{s.id}/assess', method='POST', user=s.tier1)
    assertStatus(resp, 403)
    resp = s.server.request(f'/miqa/project/{s.id}/assess', method='POST', user=s.owner)
    assertStatusOk(resp)
    assert resp.json['scans'] == 3 and resp.json['alreadyAssessed'] == 1
    assert resp.json['scheduled'] == 2
    assert state(a)['assessment']['status'] == 'queued'
    assert state(old)['assessment']['status'] == 'queued'
    resp = s.server.request(f'/miqa/project/{s.id}/assess', method='POST', user=s.owner)
    assert resp.json['inProgress'] == 2 and resp.json['scheduled'] == 0
    resp = s.server.request(f'/item/{b["_id"]}/miqa/assess', method='POST', user=s.tier1)
    assertStatusOk(resp)
    assert resp.json['scheduled'] is True and resp.json['state']['assessment']['status'] == 'queued'
    resp = s.server.request(f'/item/{b["_id"]}/miqa/assess', method='POST', user=s.outsider)
    assertStatus(resp, 403)


def test_project_counts_stay_exact(study):
    from girder.models.item import Item

    from girder_miqa.models import review_state
    from girder_miqa.models.project import Project

    s = study
    items = [make_scan(s.folder, f'{n}.nii.gz', s.admin, seed=n) for n in range(4)]
    assertStatusOk(decide(s.server, items[0], s.tier1, 'questionable'))
    assertStatusOk(decide(s.server, items[0], s.tier2, 'bad', comment='spike'))
    assertStatusOk(decide(s.server, items[1], s.tier1, 'good'))
    assertStatusOk(decide(s.server, items[1], s.tier1, 'good'))  # same state again
    Item().remove(Item().load(items[2]['_id'], force=True))
    kept = Project().load(s.folder['_id'])['counts']
    assert kept == {'unreviewed': 1, 'questionable': 0, 'good': 1, 'bad': 1}
    assert review_state.recount(s.folder['_id']) == kept
    project = s.server.request(f'/miqa/project/{s.id}', user=s.tier1).json
    assert project['counts']['total'] == 3


def test_revoked_folder_access_hides_scans_at_once(study):
    from girder.models.folder import Folder

    s = study
    session = s.subfolder('sub-01')
    item = make_scan(session, 'a.nii.gz', s.admin)
    make_scan(s.folder, 'b.nii.gz', s.admin)
    q = s.server.request(f'/miqa/project/{s.id}/queue', user=s.tier1).json
    assert q['total'] == 2 and len(q['items']) == 2
    Folder().setGroupAccess(session, s.group1, None, save=True)  # no new scans: caches stay
    q = s.server.request(f'/miqa/project/{s.id}/queue', user=s.tier1).json
    assert [i['name'] for i in q['items']] == ['b.nii.gz']
    assertStatus(s.server.request(f'/item/{item["_id"]}/miqa', user=s.tier1), 403)


def test_endpoints_are_documented_in_the_api_page(server):
    resp = server.request('/describe')
    assertStatusOk(resp)
    paths = resp.json['paths']
    for path, method in [
            ('/miqa/project', 'post'), ('/miqa/project', 'get'), ('/miqa/me', 'get'),
            ('/miqa/project/{id}/settings', 'get'), ('/miqa/project/{id}/settings', 'put'),
            ('/miqa/project/{id}/summary', 'get'), ('/miqa/project/{id}/queue', 'get'),
            ('/miqa/project/{id}/export', 'get'), ('/miqa/project/{id}/import', 'post'),
            ('/miqa/project/{id}/assess', 'post'), ('/item/{id}/miqa', 'get'),
            ('/item/{id}/miqa/decision', 'post'), ('/item/{id}/miqa/history', 'get'),
            ('/item/{id}/miqa/lock', 'post'), ('/item/{id}/miqa/lock', 'delete'),
            ('/item/{id}/miqa/assessment', 'put'), ('/item/{id}/miqa/assess', 'post')]:
        assert method in paths[path], (path, method)
        assert paths[path][method]['summary']
    assert 'bad only if' in paths['/item/{id}/miqa/decision']['post']['description']
