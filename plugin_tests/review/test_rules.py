"""``GET /miqa/rules``: the rules the web client applies are the ones the server enforces."""

import pytest
from pytest_girder.assertions import assertStatus, assertStatusOk

from .util import decide, make_scan, state

pytestmark = pytest.mark.plugin('miqa')


def test_rules_are_public_and_name_the_server_constants(server):
    resp = server.request('/miqa/rules')  # no user: the login page's client may read them
    assertStatusOk(resp)
    rules = resp.json
    assert rules['tiers'] == {'1': {'decisions': ['good', 'questionable'], 'reviews': 'unreviewed'},
                              '2': {'decisions': ['good', 'bad'], 'reviews': 'questionable'}}
    assert rules['badRule']['needsOneOf'] == ['artifactPresent', 'comment']
    assert rules['badRule']['summary'].startswith('Bad needs')
    assert [a['key'] for a in rules['artifacts']][:3] == [
        'normal_variant', 'lesion', 'incomplete_coverage']
    assert len(rules['artifacts']) == 10 and all(a['label'] for a in rules['artifacts'])
    assert '.nii.gz' in rules['imageExtensions'] and '.zip' in rules['imageExtensions']
    assert all(ext == ext.lower() and ext.startswith('.') for ext in rules['imageExtensions'])


def test_rules_match_what_decisions_and_projects_enforce(study):
    s = study
    rules = s.server.request('/miqa/rules').json
    # A new project's vocabulary is the rules' artifact list.
    resp = s.server.request(f'/miqa/project/{s.id}/settings', user=s.admin)
    assertStatusOk(resp)
    assert resp.json['artifacts'] == rules['artifacts']

    # Each tier may record exactly its listed decisions.
    everything = {'good', 'questionable', 'bad'}
    for tier, user in ((1, s.tier1), (2, s.tier2)):
        allowed = rules['tiers'][str(tier)]['decisions']
        for decision in sorted(everything - set(allowed)):
            item = make_scan(s.folder, f'refused-{tier}-{decision}.nii.gz', s.admin)
            resp = decide(s.server, item, user, decision, tier=tier, comment='x')
            assertStatus(resp, 400)
            assert state(item)['decisionCount'] == 0

    # The bad rule: refused with its description unless one of needsOneOf is given.
    item = make_scan(s.folder, 'bad.nii.gz', s.admin)
    resp = decide(s.server, item, s.tier2, 'bad', tier=2, artifacts={'lesion': 'absent'})
    assertStatus(resp, 400)
    assert resp.json['message'] == rules['badRule']['description']
    assertStatusOk(decide(s.server, item, s.tier2, 'bad', tier=2,
                          artifacts={rules['artifacts'][1]['key']: 'present'}))
    item = make_scan(s.folder, 'bad2.nii.gz', s.admin)
    assertStatusOk(decide(s.server, item, s.tier2, 'bad', tier=2, comment='scanner spike'))


def test_rules_image_extensions_are_the_files_that_become_scans(study):
    from girder.models.item import Item

    s = study
    rules = s.server.request('/miqa/rules').json
    for ext in ('.nii.gz', '.nrrd', '.txt'):
        item = make_scan(s.folder, f'scan{ext}', s.admin)
        assert bool(Item().load(item['_id'], force=True).get('miqa')) == (
            ext in rules['imageExtensions']), ext
