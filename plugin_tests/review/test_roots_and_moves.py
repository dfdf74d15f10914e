"""Collection projects, nested projects, and scans that move into, out of or between projects."""

import csv
import io
import json

import pytest
from pytest_girder.assertions import assertStatus, assertStatusOk

from .util import decide, make_scan, report_worker_model, state

pytestmark = pytest.mark.plugin('miqa')


def exact_counts(projectId) -> dict:
    """The project's stored counts, checked against a full recount of its scans."""
    from bson import ObjectId
    from girder.models.item import Item

    from girder_miqa.models.project import Project

    projectId = ObjectId(str(projectId))
    stored = {k: v for k, v in Project().load(projectId)['counts'].items()}
    actual = dict.fromkeys(stored, 0)
    for item in Item().collection.find({'miqa.projectId': projectId}, {'miqa.state': 1}):
        actual[item['miqa']['state']] += 1
    assert stored == actual
    return stored


class Cohort:
    """A collection project 'Cohort' with top-level folders site-a (with sub-01) and site-b."""

    def __init__(self, study):
        from girder.constants import AccessType
        from girder.models.collection import Collection
        from girder.models.folder import Folder

        s = self.s = study
        coll = Collection().createCollection('Cohort', creator=s.admin, public=False)
        for group in (s.group1, s.group2):
            Collection().setGroupAccess(coll, group, AccessType.READ, save=False)
        Collection().setUserAccess(coll, s.owner, AccessType.ADMIN, save=False)
        self.collection = Collection().save(coll)
        # folders copy the collection's access when created
        self.siteA = Folder().createFolder(coll, 'site-a', parentType='collection',
                                           creator=s.admin)
        self.sub01 = Folder().createFolder(self.siteA, 'sub-01', creator=s.admin)
        self.siteB = Folder().createFolder(coll, 'site-b', parentType='collection',
                                           creator=s.admin)
        self.before = make_scan(self.siteA, 'before.nii.gz', s.admin)  # not a project yet
        self.project = s.enable(collectionId=coll['_id'])
        self.id = self.project['_id']


@pytest.fixture
def cohort(study):
    return Cohort(study)


def test_collection_project_create_and_errors(cohort):
    c, s = cohort, cohort.s
    p = c.project
    assert p['_id'] == str(c.collection['_id'])
    assert (p['rootType'], p['rootId'], p['folderId']) == ('collection', p['_id'], None)
    assert p['folder'] == {'_id': p['_id'], 'type': 'collection', 'name': 'Cohort',
                           'path': '/collection/Cohort'}
    assert p['counts']['unreviewed'] == 1  # the image already there became a scan
    assert state(c.before)['projectId'] == c.collection['_id']

    folder = str(s.folder['_id'])
    for params, message in [({}, 'exactly one'),
                            ({'folderId': folder, 'collectionId': p['_id']}, 'exactly one'),
                            ({'collectionId': p['_id']}, 'already'),
                            ({'collectionId': 'nonsense'}, 'not an ObjectId'),
                            ({'collectionId': '0' * 24}, 'No collection')]:
        resp = s.server.request('/miqa/project', method='POST', user=s.admin, params=params)
        assertStatus(resp, 400)
        assert message in resp.json['message'], params
    resp = s.server.request('/miqa/project', method='POST', user=s.owner,
                            params={'collectionId': p['_id']})
    assertStatus(resp, 403)  # enabling projects is for admins


def test_collection_project_workflow(cohort):
    from girder.models.folder import Folder

    c, s = cohort, cohort.s
    t1 = make_scan(c.sub01, 't1.nii.gz', s.admin, seed=1)
    t2 = make_scan(c.siteB, 't2.nii.gz', s.admin, seed=2)
    assert state(t1)['projectId'] == state(t2)['projectId'] == c.collection['_id']

    q = s.server.request(f'/miqa/project/{c.id}/queue', user=s.tier1).json
    assert sorted(i['path'] for i in q['items']) == [
        'site-a/before.nii.gz', 'site-a/sub-01/t1.nii.gz', 'site-b/t2.nii.gz']
    assertStatusOk(decide(s.server, t1, s.tier1, 'questionable', comment='motion?'))
    q2 = s.server.request(f'/miqa/project/{c.id}/queue', user=s.tier2, params={'tier': 2}).json
    assert [i['_id'] for i in q2['items']] == [str(t1['_id'])]
    assertStatusOk(decide(s.server, t1, s.tier2, 'bad', artifacts={'ghosting_motion': 'yes'}))
    assert [h['decision'] for h in s.server.request(
        f'/item/{t1["_id"]}/miqa/history', user=s.tier1).json] == ['questionable', 'bad']

    summary = s.server.request(f'/miqa/project/{c.id}/summary', user=s.tier2).json
    assert summary['counts'] == {'unreviewed': 2, 'questionable': 0, 'good': 0, 'bad': 1,
                                 'total': 3}
    assert exact_counts(c.id)['bad'] == 1

    export = s.server.request(f'/miqa/project/{c.id}/export', user=s.tier1, isJson=False)
    assertStatusOk(export)
    rows = {r['path']: r for r in csv.DictReader(io.StringIO(export.collapse_body().decode()))}
    assert set(rows) == {'site-a/before.nii.gz', 'site-a/sub-01/t1.nii.gz', 'site-b/t2.nii.gz'}
    assert rows['site-a/sub-01/t1.nii.gz']['subject_id'] == 'site-a'  # the top-level folder
    assert rows['site-a/sub-01/t1.nii.gz']['state'] == 'bad'
    exported = json.loads(s.server.request(f'/miqa/project/{c.id}/export', user=s.tier1,
                                           params={'format': 'json'},
                                           isJson=False).collapse_body().decode())
    assert exported['project']['rootType'] == 'collection'

    # import by path inside the collection (the first part is the top-level folder)
    text = ('path,decision,tier,reviewer\n'
            'site-b/t2.nii.gz,good,1,tierone\n'
            't2.nii.gz,good,1,tierone\n'
            'site-c/x.nii.gz,good,1,tierone\n')
    resp = s.server.request(f'/miqa/project/{c.id}/import', method='POST', user=s.owner,
                            body=text, type='text/csv')
    assertStatusOk(resp)
    assert resp.json['decisionsAdded'] == 1 and resp.json['scans'] == 1
    assert [e['line'] for e in resp.json['errors']] == [3, 4]
    assert 'top-level folder' in resp.json['errors'][0]['reason']
    assert state(t2)['state'] == 'good'
    # re-importing the JSON export adds nothing
    resp = s.server.request(f'/miqa/project/{c.id}/import', method='POST', user=s.owner,
                            body=json.dumps(exported), type='application/json')
    assertStatusOk(resp)
    assert resp.json['decisionsAdded'] == 0 and resp.json['errors'] == []
    assert exact_counts(c.id) == {'unreviewed': 1, 'questionable': 0, 'good': 1, 'bad': 1}

    # permissions come from the collection (project) and the folders (scans)
    report_worker_model()  # a worker reported miqa-default installed
    body = json.dumps({'model': 'miqa-default'})
    resp = s.server.request(f'/miqa/project/{c.id}/settings', method='PUT', user=s.tier2,
                            body=body, type='application/json')
    assertStatus(resp, 403)
    resp = s.server.request(f'/miqa/project/{c.id}/settings', method='PUT', user=s.owner,
                            body=body, type='application/json')
    assertStatusOk(resp)
    assert s.server.request(f'/miqa/project/{c.id}', user=s.owner).json['canAdmin'] is True
    me = s.server.request('/miqa/me', user=s.tier1).json
    assert {'_id': c.id, 'name': 'Cohort', 'myTiers': [1], 'canAdmin': False} in me['projects']
    assertStatus(s.server.request(f'/miqa/project/{c.id}', user=s.outsider), 403)
    assert c.id not in [p['_id'] for p in s.server.request(
        '/miqa/project', user=s.outsider).json]
    Folder().setGroupAccess(c.siteB, s.group1, None, save=True)
    q = s.server.request(f'/miqa/project/{c.id}/queue', user=s.tier1).json
    assert [i['path'] for i in q['items']] == ['site-a/before.nii.gz'] and q['total'] == 1


def test_nested_projects_nearest_root_wins(cohort):
    from girder.models.folder import Folder

    from girder_miqa.models.project import Project

    c, s = cohort, cohort.s
    deep = Folder().createFolder(c.sub01, 'ses-1', creator=s.admin)
    a = make_scan(deep, 'a.nii.gz', s.admin)
    b = make_scan(c.siteB, 'b.nii.gz', s.admin)
    assertStatusOk(decide(s.server, a, s.tier1, 'questionable'))
    assert exact_counts(c.id)['questionable'] == 1

    # a folder project inside the collection project takes over the scans below it, with state
    resp = s.server.request('/miqa/project', method='POST', user=s.admin,
                            params={'folderId': str(c.siteA['_id'])})
    assertStatusOk(resp)
    siteA = resp.json
    assert (siteA['rootType'], siteA['folderId']) == ('folder', str(c.siteA['_id']))
    assert siteA['counts'] == {'unreviewed': 1, 'questionable': 1, 'good': 0, 'bad': 0,
                               'total': 2}
    assert exact_counts(c.id) == {'unreviewed': 1, 'questionable': 0, 'good': 0, 'bad': 0}
    assert state(a)['state'] == 'questionable' and state(a)['decisionCount'] == 1
    # and one inside that one, deeper still
    resp = s.server.request('/miqa/project', method='POST', user=s.admin,
                            params={'folderId': str(c.sub01['_id'])})
    assertStatusOk(resp)
    exact_counts(siteA['_id'])

    def nearest(item):
        return str(Project().findForItem(item)['_id'])

    assert nearest(a) == str(c.sub01['_id'])  # the nearest of three nested roots
    assert nearest(c.before) == siteA['_id']
    assert nearest(b) == c.id
    later = make_scan(deep, 'later.nii.gz', s.admin, seed=3)
    assert state(later)['projectId'] == c.sub01['_id']
    q = s.server.request(f'/miqa/project/{c.sub01["_id"]}/queue', user=s.tier1).json
    assert sorted(i['path'] for i in q['items']) == ['ses-1/later.nii.gz']  # a is in tier 2
    q = s.server.request(f'/miqa/project/{c.id}/queue', user=s.tier1).json
    assert [i['path'] for i in q['items']] == ['site-b/b.nii.gz']


def keep_state_on_move(s, *projectIds):
    """Turn ``restartOnMove`` off (it is on by default: a reviewed scan moved in from another
    project starts over, see test_copies_and_files.py); these tests check the state carried."""
    for projectId in projectIds:
        assertStatusOk(s.server.request(
            f'/miqa/project/{projectId}/settings', method='PUT', user=s.admin,
            body=json.dumps({'restartOnMove': False}), type='application/json'))


def move(server, user, item, folder):
    """Move an item through Girder's own REST endpoint; the item JSON it returns."""
    resp = server.request(f'/item/{item["_id"]}', method='PUT', user=user,
                          params={'folderId': str(folder['_id'])})
    assertStatusOk(resp)
    return resp.json


def test_item_moves_between_into_and_out_of_projects(cohort):
    from girder.models.folder import Folder
    from girder.models.item import Item

    c, s = cohort, cohort.s
    keep_state_on_move(s, c.id, s.id)
    outside = Folder().createFolder(s.admin, 'outside', parentType='user', creator=s.admin)
    scan = make_scan(s.subfolder('sub-01'), 'moving.nii.gz', s.admin)
    assertStatusOk(decide(s.server, scan, s.tier1, 'questionable', comment='ring'))
    assertStatusOk(s.server.request(f'/item/{scan["_id"]}/miqa/lock', method='POST',
                                    user=s.tier2))
    before = exact_counts(c.id)

    # between projects (a folder project to a collection project): state and history kept
    moved = move(s.server, s.admin, scan, c.siteB)
    assert moved['miqa']['projectId'] == c.id and moved['miqa']['state'] == 'questionable'
    st = state(scan)
    assert (st['projectId'], st['state'], st['decisionCount'], st['lock']) == (
        c.collection['_id'], 'questionable', 1, None)
    assert exact_counts(s.id)['questionable'] == 0
    assert exact_counts(c.id) == {**before, 'questionable': before['questionable'] + 1}
    q2 = s.server.request(f'/miqa/project/{c.id}/queue', user=s.tier2, params={'tier': 2}).json
    assert [i['path'] for i in q2['items']] == ['site-b/moving.nii.gz']
    assert s.server.request(f'/miqa/project/{s.id}/queue', user=s.tier2,
                            params={'tier': 2}).json['total'] == 0
    history = s.server.request(f'/item/{scan["_id"]}/miqa/history', user=s.tier1).json
    assert [(h['decision'], h['projectId']) for h in history] == [('questionable', s.id)]
    exported = json.loads(s.server.request(f'/miqa/project/{c.id}/export', user=s.tier1,
                                           params={'format': 'json'},
                                           isJson=False).collapse_body().decode())
    entry = next(x for x in exported['scans'] if x['itemId'] == str(scan['_id']))
    assert [d['comment'] for d in entry['decisions']] == ['ring']  # its history came along
    assertStatusOk(decide(s.server, scan, s.tier2, 'good'))  # reviewed in its new project
    assert exact_counts(c.id)['good'] == before['good'] + 1

    # renaming (a save without a move) changes nothing
    resp = s.server.request(f'/item/{scan["_id"]}', method='PUT', user=s.admin,
                            params={'name': 'renamed.nii.gz'})
    assertStatusOk(resp)
    assert resp.json['miqa']['state'] == 'good' and state(scan)['decisionCount'] == 2

    # out of every project: out of the queues and counts, its state kept aside
    moved = move(s.server, s.admin, scan, outside)
    assert 'miqa' not in moved and 'miqaDetached' not in moved
    stored = Item().load(scan['_id'], force=True)
    assert 'miqa' not in stored
    assert stored['miqaDetached']['state'] == 'good'
    assert stored['miqaDetached']['detachedFrom'] == c.collection['_id']
    assert exact_counts(c.id) == before
    resp = s.server.request(f'/item/{scan["_id"]}/miqa', user=s.admin)
    assertStatus(resp, 400)
    assertStatus(s.server.request(f'/item/{scan["_id"]}/miqa/history', user=s.admin), 400)
    assert str(scan['_id']) not in s.server.request(
        f'/miqa/project/{c.id}/export', user=s.admin, isJson=False).collapse_body().decode()
    assert s.server.request(f'/miqa/project/{c.id}/summary',
                            user=s.admin).json['counts']['good'] == before['good']

    # into a project from outside: it gets its kept state back
    moved = move(s.server, s.admin, scan, s.folder)
    assert moved['miqa']['projectId'] == s.id and moved['miqa']['state'] == 'good'
    assert 'detached' not in moved['miqa'] and 'miqaDetached' not in Item().load(
        scan['_id'], force=True)
    assert exact_counts(s.id)['good'] == 1
    assert len(s.server.request(f'/item/{scan["_id"]}/miqa/history', user=s.tier1).json) == 2

    # an image that never was a scan is registered like a new one; other items are not
    fresh = make_scan(outside, 'fresh.nii.gz', s.admin, seed=5)
    notes = Item().createItem('notes.txt', creator=s.admin, folder=outside)
    assert 'miqa' not in fresh
    moved = move(s.server, s.admin, fresh, c.sub01)
    assert moved['miqa']['state'] == 'unreviewed' and moved['miqa']['projectId'] == c.id
    assert 'miqa' not in move(s.server, s.admin, notes, c.sub01)
    assert exact_counts(c.id)['unreviewed'] == before['unreviewed'] + 1
    q = s.server.request(f'/miqa/project/{c.id}/queue', user=s.tier1).json
    assert 'site-a/sub-01/fresh.nii.gz' in [i['path'] for i in q['items']]
    # moving within a project changes nothing but the path
    moved = move(s.server, s.admin, fresh, c.siteB)
    assert moved['miqa']['projectId'] == c.id and exact_counts(c.id)['unreviewed'] == (
        before['unreviewed'] + 1)


def test_folder_moves_carry_their_scans(cohort):
    from girder.models.folder import Folder

    c, s = cohort, cohort.s
    keep_state_on_move(s, c.id, s.id)
    session = s.subfolder('ses-move', s.subfolder('sub-09'))
    x = make_scan(session, 'x.nii.gz', s.admin, seed=1)
    y = make_scan(session, 'y.nii.gz', s.admin, seed=2)
    assertStatusOk(decide(s.server, x, s.tier2, 'bad', comment='noise'))
    assert exact_counts(s.id) == {'unreviewed': 1, 'questionable': 0, 'good': 0, 'bad': 1}

    def move_folder(parent, parentType='folder'):
        resp = s.server.request(f'/folder/{session["_id"]}', method='PUT', user=s.admin,
                                params={'parentId': str(parent['_id']),
                                        'parentType': parentType})
        assertStatusOk(resp)

    move_folder(c.siteB)
    assert state(x)['projectId'] == state(y)['projectId'] == c.collection['_id']
    assert state(x)['state'] == 'bad'
    assert exact_counts(s.id) == dict.fromkeys(('unreviewed', 'questionable', 'good', 'bad'), 0)
    assert exact_counts(c.id) == {'unreviewed': 2, 'questionable': 0, 'good': 0, 'bad': 1}
    q = s.server.request(f'/miqa/project/{c.id}/queue', user=s.tier1).json
    assert 'site-b/ses-move/y.nii.gz' in [i['path'] for i in q['items']]

    outside = Folder().createFolder(s.admin, 'outside', parentType='user', creator=s.admin)
    move_folder(outside)
    assert exact_counts(c.id) == {'unreviewed': 1, 'questionable': 0, 'good': 0, 'bad': 0}
    assertStatus(s.server.request(f'/item/{y["_id"]}/miqa', user=s.admin), 400)
    move_folder(s.folder)
    assert exact_counts(s.id) == {'unreviewed': 1, 'questionable': 0, 'good': 0, 'bad': 1}


def test_client_and_cli_create_collection_projects(bound_study, monkeypatch):
    from click.testing import CliRunner
    from girder.models.collection import Collection

    from girder_miqa.cli import main
    from girder_miqa.client import MiqaClient

    s = bound_study
    client = MiqaClient(apiUrl=s.url)
    client.authenticate('admin', 'password')
    first = Collection().createCollection('Via client', creator=s.admin)
    project = client.create_project(collection=first['_id'], settings={'autoAssess': False})
    assert (project['_id'], project['rootType']) == (str(first['_id']), 'collection')
    with pytest.raises(ValueError):
        client.create_project(s.folder, collection=first)

    monkeypatch.setenv('MIQA_API_URL', s.url)
    runner = CliRunner()

    def miqa(*args):
        return runner.invoke(main, ['--username', 'admin', '--password', 'password', *args],
                             catch_exceptions=False)

    second = Collection().createCollection('Via CLI', creator=s.admin)
    result = miqa('project', 'create', '--collection', str(second['_id']), '--no-auto-assess',
                  '--tier1-group', 'Tier 1')
    assert result.exit_code == 0, result.output
    created = json.loads(result.output)
    assert (created['rootType'], created['folder']['path']) == ('collection',
                                                                '/collection/Via CLI')
    assert created['settings']['tier1GroupId'] == str(s.group1['_id'])
    result = miqa('project', 'create')
    assert result.exit_code == 2 and 'one of them' in result.output
    result = miqa('project', 'create', str(s.folder['_id']), '--collection', str(second['_id']))
    assert result.exit_code == 2
    result = miqa('project', 'list')
    assert result.exit_code == 0 and '/collection/Via CLI' in result.output


def test_projects_from_before_collection_roots_are_brought_up_to_date(study):
    """A project saved by the earlier version (no rootType/rootId, the unique folderId index)."""
    from bson import ObjectId

    from girder_miqa.models.project import Project

    s = study
    legacy = Project().collection
    legacy.update_one({'_id': s.folder['_id']}, {'$unset': {'rootType': '', 'rootId': ''}})
    legacy.create_index('folderId', unique=True)
    Project().reconnect()  # what a server start does
    doc = Project().load(ObjectId(s.id))
    assert (doc['rootType'], doc['rootId'], doc['folderId']) == ('folder', s.folder['_id'],
                                                                 s.folder['_id'])
    assert 'folderId_1' not in legacy.index_information()
    assert s.server.request(f'/miqa/project/{s.id}', user=s.tier1).json['rootType'] == 'folder'
