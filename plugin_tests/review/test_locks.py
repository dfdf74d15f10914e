"""Review locks (409 naming the holder, breaking, expiry) and racing decisions over real HTTP."""

import threading
import time

import pytest
import requests
from pytest_girder.assertions import assertStatus, assertStatusOk

from .util import decide, make_scan, state

pytestmark = pytest.mark.plugin('miqa')


def lock(server, item, user, method='POST', **params):
    return server.request(f'/item/{item["_id"]}/miqa/lock', method=method, user=user,
                          params=params)


def test_lock_conflicts_renewal_and_breaking(study):
    from girder.models.group import Group

    s = study
    other = s.outsider
    Group().addUser(s.group1, other)
    item = make_scan(s.folder, 'a.nii.gz', s.admin)

    resp = lock(s.server, item, s.tier1)
    assertStatusOk(resp)
    held = resp.json['lock']
    assert held['login'] == 'tierone'
    time.sleep(0.01)
    renewed = lock(s.server, item, s.tier1).json['lock']  # renewing keeps the lock
    assert renewed['acquired'] == held['acquired'] and renewed['expires'] > held['expires']

    resp = lock(s.server, item, other)
    assertStatus(resp, 409)
    assert 'Tierone Tester (tierone)' in resp.json['message']
    resp = lock(s.server, item, other, force='true')
    assertStatus(resp, 403)  # tier 1 may not break locks
    resp = decide(s.server, item, other, 'good')
    assertStatus(resp, 409)
    assert 'tierone' in resp.json['message']
    resp = lock(s.server, item, other, method='DELETE')
    assertStatus(resp, 409)
    # locks never block reading
    assertStatusOk(s.server.request(f'/item/{item["_id"]}/miqa', user=other))
    assertStatusOk(s.server.request(f'/item/{item["_id"]}/miqa/history', user=other))
    assert state(item)['decisionCount'] == 0

    # even tier 2 must break the lock before deciding
    assertStatus(decide(s.server, item, s.tier2, 'good'), 409)
    resp = lock(s.server, item, s.tier2, force='true')
    assertStatusOk(resp)
    assert resp.json['lock']['login'] == 'tiertwo'
    assert resp.json['lock']['broke']['login'] == 'tierone'
    assertStatus(decide(s.server, item, s.tier1, 'good'), 409)
    # deciding releases the decider's own lock
    resp = decide(s.server, item, s.tier2, 'good')
    assertStatusOk(resp)
    assert resp.json['state']['lock'] is None

    assertStatusOk(lock(s.server, item, s.admin))
    assertStatus(lock(s.server, item, s.tier2, method='DELETE'), 409)
    resp = lock(s.server, item, s.tier2, method='DELETE', force='true')
    assertStatusOk(resp)
    assert resp.json['lock'] is None
    assertStatusOk(lock(s.server, item, s.tier1, method='DELETE'))  # nobody holds it: fine


def test_lock_expires(study):
    from girder.models.setting import Setting

    from girder_miqa.constants import PluginSettings

    s = study
    Setting().set(PluginSettings.LOCK_SECONDS, 1)
    item = make_scan(s.folder, 'a.nii.gz', s.admin)
    assertStatusOk(lock(s.server, item, s.tier1))
    assertStatus(lock(s.server, item, s.admin), 409)
    time.sleep(1.1)
    assert s.server.request(f'/item/{item["_id"]}/miqa', user=s.tier2).json['lock'] is None
    resp = decide(s.server, item, s.tier2, 'good')  # an expired lock blocks nobody
    assertStatusOk(resp)
    resp = lock(s.server, item, s.admin)
    assertStatusOk(resp)
    assert resp.json['lock']['login'] == 'admin'
    assert 'broke' not in resp.json['lock']


def _session(port: int, login: str) -> requests.Session:
    session = requests.Session()
    resp = session.get(f'http://127.0.0.1:{port}/api/v1/user/authentication',
                       auth=(login, 'password'))
    resp.raise_for_status()
    session.headers['Girder-Token'] = resp.json()['authToken']['token']
    return session


def _race(functions):
    barrier = threading.Barrier(len(functions))
    results = [None] * len(functions)

    def run(index, fn):
        barrier.wait()
        results[index] = fn()

    threads = [threading.Thread(target=run, args=(i, fn)) for i, fn in enumerate(functions)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results


def test_racing_decisions_lose_no_record(boundServer, bound_study):
    from girder_miqa.models.decision import Decision

    s = bound_study
    port = boundServer.boundPort
    base = f'http://127.0.0.1:{port}/api/v1'
    item = make_scan(s.folder, 'a.nii.gz', s.admin)
    sessions = [_session(port, login) for login in ('tiertwo', 'admin')] * 4
    decisions = ['good', 'bad'] * 4

    def post(session, decision, n):
        return lambda: session.post(f'{base}/item/{item["_id"]}/miqa/decision', json={
            'decision': decision, 'tier': 2, 'comment': f'racer {n}', 'seconds': n})

    results = _race([post(sess, dec, n) for n, (sess, dec) in enumerate(
        zip(sessions, decisions, strict=True))])
    assert [r.status_code for r in results] == [200] * 8, [r.text for r in results]
    history = Decision().history(item)
    assert len(history) == 8
    assert sorted(h['seq'] for h in history) == list(range(1, 9))
    st = state(item)
    assert st['rev'] == 8 and st['decisionCount'] == 8
    last = max(history, key=lambda h: h['seq'])
    assert st['latestDecision']['_id'] == last['_id'] and st['state'] == last['decision']


def test_racing_tiers_and_locks_stay_consistent(boundServer, bound_study):
    from girder.models.group import Group

    from girder_miqa.models.decision import Decision

    s = bound_study
    port = boundServer.boundPort
    base = f'http://127.0.0.1:{port}/api/v1'
    Group().addUser(s.group1, s.owner)
    t1, t1b, t2 = (_session(port, login) for login in ('tierone', 'owner', 'tiertwo'))
    for n in range(5):
        item = make_scan(s.folder, f'r{n}.nii.gz', s.admin, seed=n)
        url = f'{base}/item/{item["_id"]}/miqa'
        # two reviewers open the same scan at once: exactly one gets the lock
        results = _race([lambda url=url: t1.post(f'{url}/lock'),
                         lambda url=url: t1b.post(f'{url}/lock')])
        codes = sorted(r.status_code for r in results)
        assert codes == [200, 409], [r.text for r in results]
        holder = t1 if results[0].status_code == 200 else t1b
        holder.delete(f'{url}/lock').raise_for_status()
        # tier 1 and tier 2 decide at once: tier 2's decision always ends up standing, and
        # tier 1's is either recorded before it or refused (409), never lost or half-applied
        results = _race([
            lambda url=url: t1.post(f'{url}/decision', json={'decision': 'questionable'}),
            lambda url=url: t2.post(f'{url}/decision',
                                    json={'decision': 'bad', 'comment': 'spike'}),
        ])
        assert results[1].status_code == 200
        history = Decision().history(item)
        st = state(item)
        assert st['state'] == 'bad' and st['decisionCount'] == len(history)
        if results[0].status_code == 200:
            assert [h['decision'] for h in history] == ['questionable', 'bad']
        else:
            assert results[0].status_code == 409
            assert [h['decision'] for h in history] == ['bad']
