"""No GET of the plugin writes anything: every GET endpoint (found in the API description),
called by every kind of user on every kind of scan, leaves the database as it was."""

import pytest
from pytest_girder.assertions import assertStatus, assertStatusOk

from .util import decide, make_scan, state

pytestmark = pytest.mark.plugin('miqa')

# Collections a read may touch for reasons of Girder's own (none of the plugin's data).
IGNORED_COLLECTIONS = {'token', 'notification'}


def snapshot(db) -> dict:
    """Every document of every collection (but the ignored), by collection, in _id order."""
    return {name: list(db[name].find({}, sort=[('_id', 1)]))
            for name in sorted(db.list_collection_names()) if name not in IGNORED_COLLECTIONS}


def plugin_get_paths(s) -> list[str]:
    """The GET paths of the plugin, from the server's own API description."""
    resp = s.server.request('/describe')
    assertStatusOk(resp)
    paths = [path for path, ops in resp.json['paths'].items()
             if 'get' in ops and (path.startswith('/miqa') or '/miqa' in path)]
    assert '/miqa/project/{id}/summary' in paths and '/item/{id}/miqa' in paths
    return sorted(paths)


def test_no_get_writes_anything(study):
    from bson import ObjectId
    from girder.models.item import Item
    from girder.models.upload import Upload

    from girder_miqa.models.project import Project

    from .util import nifti_bytes

    s = study
    decided = make_scan(s.folder, 'decided.nii.gz', s.admin)
    assertStatusOk(decide(s.server, decided, s.tier1, 'questionable', seconds=5))
    locked = make_scan(s.subfolder('sub-01'), 'locked.nii.gz', s.admin, seed=1)
    assertStatusOk(s.server.request(f'/item/{locked["_id"]}/miqa/lock', method='POST',
                                    user=s.tier2))
    # an image that arrived without upload events (e.g. an assetstore import): no scan yet
    data = nifti_bytes(2)
    unregistered = Item().createItem('imported.nii.gz', creator=s.admin, folder=s.folder)
    Upload().uploadFromFile(__import__('io').BytesIO(data), len(data), 'imported.nii.gz',
                            parentType='item', parent=unregistered, user=s.admin)
    Item().collection.update_one({'_id': unregistered['_id']}, {'$unset': {'miqa': ''}})
    # a project from before counts were kept
    Project().collection.update_one({'_id': ObjectId(s.id)}, {'$unset': {'counts': ''}})
    notes = Item().createItem('notes.txt', creator=s.admin, folder=s.folder)

    ids = {'project': str(s.id), 'decided': str(decided['_id']),
           'locked': str(locked['_id']), 'unregistered': str(unregistered['_id']),
           'notes': str(notes['_id'])}
    db = Item().collection.database
    before = snapshot(db)
    assert before['miqa_project'][0].get('counts') is None
    assert 'miqa' not in Item().load(unregistered['_id'], force=True)

    statuses = {}
    for path in plugin_get_paths(s):
        targets = [ids['project']] if path.startswith('/miqa/project/') else (
            [ids['decided'], ids['locked'], ids['unregistered'], ids['notes']]
            if path.startswith('/item/') else [None])
        for target in targets:
            url = path.replace('{id}', target) if target else path
            for user in (s.admin, s.owner, s.tier1, s.tier2, s.outsider, None):
                params = {'format': 'json'} if url.endswith('/export') else {}
                resp = s.server.request(url, user=user, params=params, isJson=False)
                status = int(resp.output_status.split()[0])
                resp.collapse_body()
                assert status < 500, (url, status)
                statuses[(path, target, user and user['login'])] = status
    assert snapshot(db) == before  # not one document added, changed or removed

    # the reads still answered what they are
    assert statuses[('/item/{id}/miqa', ids['unregistered'], 'tierone')] == 200
    assert statuses[('/item/{id}/miqa', ids['notes'], 'tierone')] == 400
    assert statuses[('/miqa/project/{id}/summary', ids['project'], 'tierone')] == 200


def test_unregistered_image_reads_as_unreviewed_until_registered(study):
    import io

    from bson import ObjectId
    from girder.models.item import Item
    from girder.models.upload import Upload

    from girder_miqa.models import review_state

    from .util import nifti_bytes

    s = study
    data = nifti_bytes(3)
    item = Item().createItem('imported.nii.gz', creator=s.admin, folder=s.folder)
    Upload().uploadFromFile(io.BytesIO(data), len(data), 'imported.nii.gz', parentType='item',
                            parent=item, user=s.admin)
    Item().collection.update_one({'_id': item['_id']}, {'$unset': {'miqa': ''}})
    review_state.recount(ObjectId(s.id))  # as if it never was a scan

    resp = s.server.request(f'/item/{item["_id"]}/miqa', user=s.tier1)
    assertStatusOk(resp)
    assert resp.json['state'] == 'unreviewed' and resp.json['projectId'] == str(s.id)
    assert resp.json['lock'] is None and resp.json['decisionCount'] == 0
    assert s.server.request(f'/item/{item["_id"]}/miqa/history', user=s.tier1).json == []
    assert 'miqa' not in Item().load(item['_id'], force=True)
    summary = s.server.request(f'/miqa/project/{s.id}/summary', user=s.admin).json
    assert summary['counts']['total'] == 0  # not counted until registered

    # registering is a POST, for the project's admins and owners
    url = f'/miqa/project/{s.id}/register'
    assertStatus(s.server.request(url, method='POST', user=s.tier1), 403)
    resp = s.server.request(url, method='POST', user=s.owner)
    assertStatusOk(resp)
    assert resp.json == {'registered': 1}
    assert state(item)['state'] == 'unreviewed'
    assert s.server.request(url, method='POST', user=s.owner).json == {'registered': 0}
    summary = s.server.request(f'/miqa/project/{s.id}/summary', user=s.admin).json
    assert summary['counts']['unreviewed'] == summary['counts']['total'] == 1

    # a decision (a POST) on an image not registered yet registers it first, as before
    other = Item().createItem('late.nii.gz', creator=s.admin, folder=s.folder)
    Upload().uploadFromFile(io.BytesIO(data), len(data), 'late.nii.gz', parentType='item',
                            parent=other, user=s.admin)
    Item().collection.update_one({'_id': other['_id']}, {'$unset': {'miqa': ''}})
    assertStatusOk(decide(s.server, other, s.tier1, 'good'))
    assert state(other)['state'] == 'good'
