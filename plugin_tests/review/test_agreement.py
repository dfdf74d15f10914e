"""Reviewer agreement (issue #23): several reviewers decide through the API, and the kappas the
server reports are checked against values computed here by hand from the confusion tables; names
only for project admins; the hidden-assessment arm; export and import carry the read kinds."""

import csv
import io
import json

import pytest
from bson import ObjectId
from pytest_girder.assertions import assertStatus, assertStatusOk

from .test_double_reads import put_settings, second_reader
from .util import decide, make_scan, set_assessment

pytestmark = pytest.mark.plugin('miqa')

G, Q = 'good', 'questionable'
# (first reader's, second reader's) decisions and ghosting_motion on each double-read scan
AB = [((G, 'present'), (G, 'present')), ((G, 'absent'), (G, 'absent')),
      ((G, 'absent'), (Q, 'absent')), ((Q, 'present'), (Q, 'present')),
      ((Q, 'absent'), (G, 'present')), ((G, 'absent'), (G, 'absent'))]
BC = [(G, G), (Q, Q), (Q, G), (G, Q)]
TIER2 = {2: 'bad', 3: 'bad', 4: 'good', 7: 'bad', 8: 'good', 9: 'good'}


def kappa_by_hand(pairs) -> float:
    """Cohen's kappa from the 2x2 table of (rater a, rater b) labels."""
    labels = sorted({x for pair in pairs for x in pair})
    n = len(pairs)
    table = {(a, b): sum(p == (a, b) for p in pairs) for a in labels for b in labels}
    observed = sum(table[(a, a)] for a in labels) / n
    expected = sum(sum(table[(a, b)] for b in labels) / n * sum(table[(b, a)] for b in labels)
                   / n for a in labels)
    return (observed - expected) / (1 - expected)


def fleiss_by_hand(rows) -> float:
    """Fleiss' kappa of scans each rated twice (Fleiss 1971)."""
    raters = len(rows[0])
    categories = sorted({x for row in rows for x in row})
    per_scan = [sum(row.count(c) ** 2 for c in categories) - raters for row in rows]
    p_bar = sum(per_scan) / (len(rows) * raters * (raters - 1))
    shares = [sum(row.count(c) for row in rows) / (len(rows) * raters) for c in categories]
    p_e = sum(p * p for p in shares)
    return (p_bar - p_e) / (1 - p_e)


def agreement(s, user, status=200):
    resp = s.server.request(f'/miqa/project/{s.id}/agreement', user=user)
    assertStatus(resp, status)
    return resp.json


@pytest.fixture
def decided(study):
    """Ten double-read scans: A and B read six, B and C four; tier 2 decides the flagged."""
    s = study
    b, c = second_reader(s, 'tierthree'), second_reader(s, 'tierfour')
    put_settings(s, {'doubleReadShare': 1})
    items = [make_scan(s.folder, f's{i}.nii.gz', s.admin, seed=i) for i in range(10)]
    for item, ((da, ga), (db, gb)) in zip(items[:6], AB, strict=True):
        assertStatusOk(decide(s.server, item, s.tier1, da, seconds=10,
                              artifacts={'ghosting_motion': ga}, confidence=4))
        assertStatusOk(decide(s.server, item, b, db, seconds=20,
                              artifacts={'ghosting_motion': gb}))
    for item, (db, dc) in zip(items[6:], BC, strict=True):
        assertStatusOk(decide(s.server, item, b, db, seconds=20))
        assertStatusOk(decide(s.server, item, c, dc))
    for i, verdict in TIER2.items():
        resp = decide(s.server, items[i], s.tier2, verdict,
                      artifacts={'ghosting_motion': 'present'} if verdict == 'bad' else {})
        assertStatusOk(resp)
    s.readers = (b, c)
    return s, items


def test_kappas_match_the_confusion_tables(decided):
    s, items = decided
    out = agreement(s, s.owner)
    assert out['named'] is True
    pairs = {tuple(p['raters']): p for p in out['pairs']}
    ab = [(a[0], b[0]) for a, b in AB]
    bc = BC
    got_ab = pairs.get(('tierone', 'tierthree')) or pairs[('tierthree', 'tierone')]
    got_bc = pairs.get(('tierthree', 'tierfour')) or pairs[('tierfour', 'tierthree')]
    assert got_ab['kappa']['value'] == pytest.approx(kappa_by_hand(ab)) == pytest.approx(0.25)
    assert got_ab['kappa']['n'] == 6 and got_ab['agreement']['value'] == pytest.approx(4 / 6)
    assert got_ab['kappa']['low'] <= got_ab['kappa']['value'] <= got_ab['kappa']['high']
    assert got_bc['kappa']['value'] == pytest.approx(kappa_by_hand(bc)) == pytest.approx(0.0)
    assert got_bc['kappa']['n'] == 4
    assert ('tierone', 'tierfour') not in pairs and ('tierfour', 'tierone') not in pairs

    rows = ab + bc
    assert out['fleiss']['value'] == pytest.approx(fleiss_by_hand(rows)) == pytest.approx(1 / 6)
    assert out['fleiss']['n'] == 10

    ghost = next(a for a in out['artifacts'] if a['key'] == 'ghosting_motion')
    ghost_pairs = [(a[1], b[1]) for a, b in AB]
    assert ghost['kappa']['value'] == pytest.approx(kappa_by_hand(ghost_pairs))
    assert ghost['kappa']['value'] == pytest.approx(2 / 3) and ghost['kappa']['n'] == 6

    # tier 1 (the scan's latest tier-1 read flagged) against tier 2 (bad)
    latest = {i: (AB[i][1][0] if i < 6 else BC[i - 6][1]) for i in TIER2}
    t12 = [(latest[i] == Q, verdict == 'bad') for i, verdict in TIER2.items()]
    assert out['tier1VsTier2']['kappa']['value'] == pytest.approx(kappa_by_hand(t12))
    assert out['tier1VsTier2']['kappa']['n'] == 6

    me = next(r for r in out['reviewers'] if r['reviewer'] == 'tierone')
    assert (me['decisions'], me['tier1'], me['seconds']['median'], me['confidence']) == (
        6, 6, 10, {'mean': 4, 'n': 6})
    # the seeded bootstrap gives the same interval every time
    assert agreement(s, s.owner)['pairs'] == out['pairs']


def test_names_for_project_admins_pseudonyms_for_others(decided):
    s, _items = decided
    b, _c = s.readers
    mine = agreement(s, s.tier1)
    assert mine['named'] is False
    labels = {r['reviewer'] for r in mine['reviewers']}
    assert 'tierone' in labels and not labels & {'tierthree', 'tierfour', 'tiertwo'}
    assert all('login' not in r for r in mine['reviewers'] if r['reviewer'] != 'tierone')
    text = json.dumps(agreement(s, s.outsider))
    assert not any(login in text for login in ('tierone', 'tierthree', 'tierfour', 'tiertwo'))
    assert agreement(s, s.owner)['reviewers'][0].get('login')
    # users without read access see none of it
    from girder.models.user import User

    stranger = User().createUser(login='stranger', password='password', firstName='S',
                                 lastName='T', email='stranger@miqa.test')
    agreement(s, stranger, status=403)
    agreement(s, None, status=401)  # anonymous: Girder's 401


def test_export_and_import_carry_the_read_kinds(decided):
    s, items = decided
    from girder.models.item import Item

    from girder_miqa.models.decision import Decision

    resp = s.server.request(f'/miqa/project/{s.id}/export', user=s.admin,
                            params={'format': 'csv'}, isJson=False)
    rows = list(csv.DictReader(io.StringIO(resp.collapse_body().decode())))
    kinds = {r['name']: r['read_kind'] for r in rows}  # of each scan's latest decision
    assert kinds == {f's{i}.nii.gz': 'single' if i in TIER2 else 'double' for i in range(10)}
    assert {r['assessment_hidden'] for r in rows} == {'false'}
    resp = s.server.request(f'/miqa/project/{s.id}/export', user=s.admin,
                            params={'format': 'json'}, isJson=False)
    text = resp.collapse_body().decode()
    before = [(d['readKind'], d['assessmentHidden'], d['decision'])
              for item in items for d in Decision().history(item)]
    for item in items:  # a fresh server holding the same items
        Item().collection.update_one({'_id': item['_id']}, {'$unset': {'miqa': ''}})
    Decision().collection.delete_many({})
    resp = s.server.request(f'/miqa/project/{s.id}/import', method='POST', user=s.admin,
                            params={'format': 'json'}, body=text, type='application/json')
    assertStatusOk(resp)
    assert resp.json['errors'] == []
    after = [(d['readKind'], d['assessmentHidden'], d['decision'])
             for item in items for d in Decision().history(item)]
    assert after == before and before.count(('double', False, G)) > 0
    # a bad kind in an import is a line-numbered error
    doc = json.loads(text)
    doc['scans'][0]['decisions'][0]['readKind'] = 'triple'
    resp = s.server.request(f'/miqa/project/{s.id}/import', method='POST', user=s.admin,
                            params={'format': 'json'}, body=json.dumps(doc),
                            type='application/json')
    assert any('readKind must be one of' in e['reason'] for e in resp.json['errors'])


def test_hidden_assessment_arm(study):
    s = study
    put_settings(s, {'hideAssessmentShare': 1})
    item = make_scan(s.folder, 'a.nii.gz', s.admin)
    set_assessment(item, 3.0, {'ghosting_motion': 0.9})
    view = s.server.request(f'/item/{item["_id"]}/miqa', user=s.tier1).json
    assert view['assessment'] is None and view['assessmentHidden'] is True
    full = s.server.request(f'/item/{item["_id"]}/miqa', user=s.tier2).json
    assert any(r['source'] == 'network' for r in full['reasons'])  # what tier 1 must not see
    assert not any(r['source'] == 'network' for r in view['reasons'])
    row = s.server.request(f'/miqa/project/{s.id}/queue', user=s.tier1,
                           params={'tier': 1}).json['items'][0]
    assert row['miqa']['assessment'] is None and row['miqa']['sort']['quality'] is None
    # Girder's own item JSON hides it too, alone and in folder listings
    assert s.server.request(f'/item/{item["_id"]}', user=s.tier1).json['miqa'][
        'assessment'] is None
    listed = s.server.request('/item', user=s.tier1, params={'folderId': str(s.folder['_id'])})
    assert [x['miqa']['assessment'] for x in listed.json] == [None]
    assert s.server.request(f'/item/{item["_id"]}', user=s.tier2).json['miqa'][
        'assessment']['quality'] == 3.0
    # the export and the group report keep it from tier 1 as well; tier 2 gets it
    for user, shown in ((s.tier1, False), (s.tier2, True)):
        resp = s.server.request(f'/miqa/project/{s.id}/export', user=user,
                                params={'format': 'csv'}, isJson=False)
        assertStatusOk(resp)
        exported = next(csv.DictReader(io.StringIO(resp.collapse_body().decode())))
        assert (exported['model_quality'] == '3.0') is shown, exported['model_quality']
        assert ('ghosting' in exported['reasons']) is shown
        resp = s.server.request(f'/miqa/project/{s.id}/report', user=user,
                                params={'format': 'csv'}, isJson=False)
        assertStatusOk(resp)
        reported = next(csv.DictReader(io.StringIO(resp.collapse_body().decode())))
        assert ('ghosting' in reported['reasons']) is shown, reported['reasons']
    for user in (s.tier2, s.owner, s.admin):  # tier 2 and admins still see the model
        assert s.server.request(f'/item/{item["_id"]}/miqa',
                                user=user).json['assessment']['quality'] == 3.0
    resp = decide(s.server, item, s.tier1, Q, seconds=30, artifacts={'ghosting_motion': 'present'})
    assertStatusOk(resp)
    assert resp.json['decision']['assessmentHidden'] is True
    assert resp.json['decision']['assessment'] is None  # kept in the trail, not shown to tier 1
    history = s.server.request(f'/item/{item["_id"]}/miqa/history', user=s.tier1).json
    assert [h['assessment'] for h in history] == [None]
    assertStatusOk(decide(s.server, item, s.tier2, 'bad', artifacts={'ghosting_motion': 'present'}))
    # a scan outside the arm, read with the assessment shown
    put_settings(s, {'hideAssessmentShare': 0})
    other = make_scan(s.folder, 'b.nii.gz', s.admin, seed=5)
    set_assessment(other, 8.0, {})
    assertStatusOk(decide(s.server, other, s.tier1, G, seconds=5))
    assertStatusOk(decide(s.server, other, s.tier2, 'bad', comment='missed by tier 1'))
    arms = agreement(s, s.owner)['arms']
    assert arms['hidden']['reads'] == 1 and arms['shown']['reads'] == 1
    assert arms['hidden']['seconds']['value'] == 30 and arms['shown']['seconds']['value'] == 5
    assert arms['hidden']['caught'] == {'value': 1.0, 'low': None, 'high': None, 'n': 1}
    assert arms['shown']['caught']['value'] == 0.0
    assert arms['shown']['tier2Agreement']['value'] == 0.0
    humans = agreement(s, s.owner)['humansVsModel']
    assert humans['kappa']['n'] == 1  # the hidden read is left out
    assert ObjectId(item['_id'])  # the item ids stay ObjectIds through the API


def test_cli_agreement_and_gold(bound_study, monkeypatch, tmp_path):
    from click.testing import CliRunner

    from girder_miqa.cli import main

    s = bound_study
    monkeypatch.setenv('MIQA_API_URL', s.url)
    runner = CliRunner()

    def miqa(*args, login='admin'):
        return runner.invoke(main, ['--username', login, '--password', 'password', *args],
                             catch_exceptions=False)

    items = [make_scan(s.folder, f's{i}.nii.gz', s.admin, seed=i) for i in range(3)]
    for item, verdict in zip(items, (G, Q, G), strict=True):
        assertStatusOk(decide(s.server, item, s.tier1, verdict))
    result = miqa('gold', 'mark', str(items[0]['_id']), 'bad', '-a', 'ghosting_motion',
                  login='tierone')
    assert result.exit_code == 1 and 'Error 403' in result.output
    result = miqa('gold', 'mark', str(items[0]['_id']), 'bad', '-a', 'ghosting_motion')
    assert result.exit_code == 0 and 'is a bad reference' in result.output, result.output
    gold_csv = tmp_path / 'gold.csv'
    gold_csv.write_text('path,decision,artifacts\ns1.nii.gz,bad,lesion\nnope.nii.gz,good,\n')
    result = miqa('gold', 'import', s.id, str(gold_csv))
    assert result.exit_code == 1 and 'marked 1 references' in result.output
    assert 'line 3: ' in result.output
    result = miqa('agreement', s.id)
    assert result.exit_code == 0, result.output
    # tier one's reads of the two references (good, questionable) against bad: one agrees
    assert 'gold agreement:          0.50 n=2' in result.output
    assert 'tierone: 3 decisions' in result.output
    result = miqa('agreement', s.id, '--json', login='tierone')
    assert json.loads(result.output)['named'] is False
    result = miqa('gold', 'unmark', str(items[0]['_id']))
    assert 'is no longer a reference' in result.output
