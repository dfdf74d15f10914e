"""Blinded double reads (issue #23): reproducible draws, a second reader other than the first, the
first read invisible to everyone else through every GET, and disagreements sent to tier 2."""

import json

import pytest
from bson import ObjectId
from pytest_girder.assertions import assertStatus, assertStatusOk

from .util import decide, make_scan, state

pytestmark = pytest.mark.plugin('miqa')


def put_settings(s, settings, status=200):
    resp = s.server.request(f'/miqa/project/{s.id}/settings', method='PUT', user=s.owner,
                            body=json.dumps(settings), type='application/json')
    assertStatus(resp, status)
    return resp.json


def second_reader(s, login='tierthree'):
    """Another tier-1 reviewer of the study."""
    from girder.models.group import Group
    from girder.models.user import User

    user = User().createUser(login=login, password='password', firstName=login.title(),
                             lastName='Tester', email=f'{login}@miqa.test')
    Group().addUser(s.group1, user)
    return User().load(user['_id'], force=True)


def get(s, path, user, **params):
    resp = s.server.request(path, user=user, params=params)
    assertStatusOk(resp)
    return resp.json


def queue_ids(s, user, tier=1):
    return [ObjectId(row['_id']) for row in get(s, f'/miqa/project/{s.id}/queue', user,
                                                tier=tier)['items']]


def test_draws_are_reproducible_and_shares_only_add():
    from girder_miqa.models import calibration
    project = {'_id': ObjectId(), 'settings': {'doubleReadShare': 0.3, 'calibrationSeed': 7}}
    ids = [ObjectId() for _ in range(400)]
    drawn = {i for i in ids if calibration.is_double_read(project, i)}
    assert drawn == {i for i in ids if calibration.is_double_read(dict(project), i)}
    assert 0.2 < len(drawn) / len(ids) < 0.4
    more = {**project, 'settings': {**project['settings'], 'doubleReadShare': 0.6}}
    assert drawn < {i for i in ids if calibration.is_double_read(more, i)}
    other = {**project, 'settings': {**project['settings'], 'calibrationSeed': 8}}
    assert drawn != {i for i in ids if calibration.is_double_read(other, i)}
    hidden = {i for i in ids if calibration.in_arm(project | {'settings': {
        'hideAssessmentShare': 0.3, 'calibrationSeed': 7}}, i, 'hidden')}
    assert hidden != drawn  # the arms are drawn independently
    assert not any(calibration.is_double_read({**project, 'settings': {}}, i) for i in ids)


def test_settings_default_to_zero_and_are_checked(study):
    s = study
    settings = get(s, f'/miqa/project/{s.id}/settings', s.owner)
    assert (settings['doubleReadShare'], settings['goldRate'],
            settings['hideAssessmentShare']) == (0, 0, 0)
    for key in ('doubleReadShare', 'goldRate', 'hideAssessmentShare'):
        resp = put_settings(s, {key: 1.5}, status=400)
        assert resp['message'] == f'{key} must be a number from 0 to 1.'
        put_settings(s, {key: True}, status=400)
    assert put_settings(s, {'doubleReadShare': 0.25})['doubleReadShare'] == 0.25
    assert 'calibrationSeed must be an integer' in put_settings(
        s, {'calibrationSeed': 1.5}, status=400)['message']


def test_with_shares_zero_a_read_is_single_and_moves_the_scan_on(study):
    s = study
    item = make_scan(s.folder, 'a.nii.gz', s.admin)
    resp = decide(s.server, item, s.tier1, 'good')
    assertStatusOk(resp)
    assert resp.json['decision']['readKind'] == 'single'
    assert resp.json['decision']['assessmentHidden'] is False
    assert resp.json['state']['state'] == 'good' and state(item)['decisionCount'] == 1


def test_first_read_is_blind_to_others_and_waits_for_a_second_reader(study):
    s = study
    other = second_reader(s)
    put_settings(s, {'doubleReadShare': 1})
    item = make_scan(s.folder, 'a.nii.gz', s.admin)
    assert item['_id'] in queue_ids(s, s.tier1)

    resp = decide(s.server, item, s.tier1, 'questionable', comment='SECRET-FIRST-READ',
                  artifacts={'ghosting_motion': 'present'})
    assertStatusOk(resp)
    first = resp.json['decision']
    assert first['readKind'] == 'double' and first['pending'] is True
    assert resp.json['state']['state'] == 'unreviewed'
    assert state(item)['state'] == 'unreviewed' and state(item)['decisionCount'] == 0

    # the first reader is not served it again, and may not read it twice
    assert item['_id'] not in queue_ids(s, s.tier1)
    assertStatus(decide(s.server, item, s.tier1, 'good'), 409)
    # nobody else sees anything of the first read, through any GET
    for viewer in (other, s.tier2, s.owner, s.admin, s.outsider):
        for path in (f'/item/{item["_id"]}/miqa', f'/item/{item["_id"]}',
                     f'/item/{item["_id"]}/miqa/history', f'/miqa/project/{s.id}/summary',
                     f'/miqa/project/{s.id}/queue', f'/miqa/project/{s.id}/agreement'):
            text = json.dumps(get(s, path, viewer))
            assert 'SECRET-FIRST-READ' not in text and 'tierone' not in text, (viewer, path)
        assert get(s, f'/item/{item["_id"]}/miqa', viewer)['latestDecision'] is None
        assert get(s, f'/item/{item["_id"]}/miqa/history', viewer) == []
        for fmt in ('csv', 'json'):
            resp = s.server.request(f'/miqa/project/{s.id}/export', user=viewer,
                                    params={'format': fmt}, isJson=False)
            assertStatusOk(resp)
            body = resp.collapse_body().decode()
            assert 'SECRET-FIRST-READ' not in body and 'tierone' not in body
    summary = get(s, f'/miqa/project/{s.id}/summary', s.admin)
    assert summary['reviewers'] == [] and summary['counts']['unreviewed'] == 1
    # its author sees it in the history
    mine = get(s, f'/item/{item["_id"]}/miqa/history', s.tier1)
    assert [d['comment'] for d in mine] == ['SECRET-FIRST-READ']
    # the second reader is served it
    assert item['_id'] in queue_ids(s, other)

    resp = decide(s.server, item, other, 'questionable', artifacts={'ghosting_motion': 'present'})
    assertStatusOk(resp)
    assert resp.json['state']['state'] == 'questionable'
    st = state(item)
    assert st['decisionCount'] == 2 and st['doubleRead']['agree'] is True
    history = get(s, f'/item/{item["_id"]}/miqa/history', s.tier2)
    assert [(d['login'], d['readKind'], d.get('pending')) for d in history] == [
        ('tierone', 'double', None), ('tierthree', 'double', None)]
    assert history[0]['doubleRead'] == {'secondId': history[1]['_id'], 'agree': True}


@pytest.mark.parametrize('second', [
    ('questionable', {}),                                 # another decision
    ('good', {'ghosting_motion': 'absent'}),              # an artifact present vs absent
])
def test_disagreeing_reads_go_to_tier_2_side_by_side(study, second):
    s = study
    other = second_reader(s)
    put_settings(s, {'doubleReadShare': 1})
    item = make_scan(s.folder, 'a.nii.gz', s.admin)
    assertStatusOk(decide(s.server, item, s.tier1, 'good',
                          artifacts={'ghosting_motion': 'present'}))
    resp = decide(s.server, item, other, second[0], artifacts=second[1])
    assertStatusOk(resp)
    assert resp.json['state']['state'] == 'questionable'
    assert item['_id'] in queue_ids(s, s.tier2, tier=2)
    reads = get(s, f'/item/{item["_id"]}/miqa', s.tier2)['doubleRead']
    assert reads['agree'] is False and reads['reads'] == 2
    assert [(r['login'], r['decision'], r['artifacts']) for r in reads['decisions']] == [
        ('tierone', 'good', {'ghosting_motion': 'present'}),
        ('tierthree', second[0], second[1])]
    # tier 2 decides as ever
    resp = decide(s.server, item, s.tier2, 'bad', artifacts={'ghosting_motion': 'present'})
    assertStatusOk(resp)
    assert resp.json['state']['state'] == 'bad'


def test_agreeing_reads_move_the_scan_on_as_a_single_read(study):
    s = study
    other = second_reader(s)
    put_settings(s, {'doubleReadShare': 1})
    item = make_scan(s.folder, 'a.nii.gz', s.admin)
    assertStatusOk(decide(s.server, item, s.tier1, 'good', artifacts={'lesion': 'absent'}))
    # an artifact one did not state is no disagreement
    resp = decide(s.server, item, other, 'good', artifacts={'ghosting_motion': 'absent'})
    assert resp.json['state']['state'] == 'good'
    assert get(s, f'/miqa/project/{s.id}/summary', s.admin)['counts']['good'] == 1


def test_tier_2_settles_a_pair_still_waiting(study):
    s = study
    put_settings(s, {'doubleReadShare': 1})
    item = make_scan(s.folder, 'a.nii.gz', s.admin)
    assertStatusOk(decide(s.server, item, s.tier1, 'questionable', comment='first'))
    assertStatusOk(decide(s.server, item, s.tier2, 'good'))
    history = get(s, f'/item/{item["_id"]}/miqa/history', s.tier2)
    assert [d['comment'] for d in history] == ['first', '']
    assert state(item)['state'] == 'good'


def test_a_restarted_review_forgets_a_pending_read(study):
    from girder_miqa.models import review_state

    s = study
    put_settings(s, {'doubleReadShare': 1})
    item = make_scan(s.folder, 'a.nii.gz', s.admin)
    assertStatusOk(decide(s.server, item, s.tier1, 'good'))
    assert state(item)['doubleRead'] == {'reads': 1}
    assert review_state.restart(item['_id'], 'moved', keep_file=True, keep_assessment=True)
    assert state(item)['doubleRead'] is None
    assert item['_id'] in queue_ids(s, s.tier1)  # the superseded read no longer counts
    resp = decide(s.server, item, s.tier1, 'questionable')
    assertStatusOk(resp)
    assert resp.json['decision']['pending'] is True and state(item)['state'] == 'unreviewed'


def test_a_disagreeing_pair_imports_back_to_tier_2(study):
    from girder.models.item import Item

    from girder_miqa.models.decision import Decision

    s = study
    other = second_reader(s)
    put_settings(s, {'doubleReadShare': 1})
    item = make_scan(s.folder, 'a.nii.gz', s.admin)
    assertStatusOk(decide(s.server, item, s.tier1, 'good'))
    assertStatusOk(decide(s.server, item, other, 'questionable'))
    assert state(item)['state'] == 'questionable'
    resp = s.server.request(f'/miqa/project/{s.id}/export', user=s.admin,
                            params={'format': 'json'}, isJson=False)
    text = resp.collapse_body().decode()
    Item().collection.update_one({'_id': item['_id']}, {'$unset': {'miqa': ''}})
    Decision().collection.delete_many({})
    resp = s.server.request(f'/miqa/project/{s.id}/import', method='POST', user=s.admin,
                            params={'format': 'json'}, body=text, type='application/json')
    assertStatusOk(resp)
    assert resp.json['errors'] == []
    st = state(item)
    assert (st['state'], st['decisionCount'], st['tier1']['decision']) == ('questionable', 2,
                                                                          'questionable')
    assert [d['readKind'] for d in Decision().history(item)] == ['double', 'double']
    assert item['_id'] in queue_ids(s, s.tier2, tier=2)
