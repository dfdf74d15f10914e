"""The plugin's Girder settings: defaults, changes that take effect, and refused values (400)."""

import datetime
import json

import pytest
from pytest_girder.assertions import assertStatus, assertStatusOk

from .util import decide, make_scan, set_assessment

pytestmark = pytest.mark.plugin('miqa')

DEFAULTS = {
    'miqa.lock_seconds': 300.0,
    'miqa.suspicion_thresholds': {'quality': 5.0, 'probability': 0.5},
    'miqa.visibility_cache_seconds': 30.0,
    'miqa.max_voxels': 1024 ** 3,
    'miqa.default_model': '',
}


def get_setting(s, key: str):
    resp = s.server.request('/system/setting', user=s.admin, params={'key': key})
    assertStatusOk(resp)
    return resp.json


def put_setting(s, key: str, value, user=None):
    return s.server.request('/system/setting', method='PUT', user=user or s.admin,
                            params={'key': key, 'value': json.dumps(value)})


def test_defaults_are_todays_values(study):
    from girder_miqa import settings
    from girder_miqa.constants import PluginSettings

    s = study
    for key, value in DEFAULTS.items():
        assert get_setting(s, key) == value
    assert {getattr(PluginSettings, name) for name in vars(PluginSettings)
            if name.isupper()} == set(DEFAULTS) == set(settings.SETTINGS)
    assert settings.lock_seconds() == 300.0
    assert settings.suspicion_thresholds() == (5.0, 0.5)
    assert settings.visibility_cache_seconds() == 30.0
    assert settings.max_voxels() == 1024 ** 3
    assert settings.default_model() == ''


@pytest.mark.parametrize(('key', 'value', 'reason'), [
    ('miqa.lock_seconds', 0, 'miqa.lock_seconds must be a number from 1 to 86400 seconds'),
    ('miqa.lock_seconds', 86401, 'from 1 to 86400'),
    ('miqa.lock_seconds', 'soon', 'from 1 to 86400'),
    ('miqa.lock_seconds', True, 'from 1 to 86400'),
    ('miqa.visibility_cache_seconds', -1,
     'miqa.visibility_cache_seconds must be a number from 0 to 3600 seconds'),
    ('miqa.visibility_cache_seconds', [30], 'from 0 to 3600'),
    ('miqa.suspicion_thresholds', 5, 'miqa.suspicion_thresholds must be an object'),
    ('miqa.suspicion_thresholds', {'quality': 5}, 'must be an object'),
    ('miqa.suspicion_thresholds', {'quality': 11, 'probability': 0.5},
     'miqa.suspicion_thresholds.quality must be a number from 0 to 10'),
    ('miqa.suspicion_thresholds', {'quality': 5, 'probability': 1.5},
     'miqa.suspicion_thresholds.probability must be a number from 0 to 1'),
    ('miqa.max_voxels', 100, 'miqa.max_voxels must be a whole number from 4096 to 1073741824'),
    ('miqa.max_voxels', 1024 ** 3 + 1, 'from 4096 to 1073741824'),
    ('miqa.max_voxels', 5000.5, 'whole number'),
    ('miqa.default_model', '../weights', 'miqa.default_model must be empty'),
    ('miqa.default_model', 7, 'must be empty'),
])
def test_bad_values_are_refused_with_the_reason(study, key, value, reason):
    s = study
    resp = put_setting(s, key, value)
    assertStatus(resp, 400)
    assert reason in resp.json['message']
    assert get_setting(s, key) == DEFAULTS[key]  # nothing stored


def test_only_admins_change_settings(study):
    s = study
    assertStatus(put_setting(s, 'miqa.lock_seconds', 60, user=s.owner), 403)
    assert get_setting(s, 'miqa.lock_seconds') == 300.0


def test_valid_values_are_stored_normalized(study):
    s = study
    assertStatusOk(put_setting(s, 'miqa.max_voxels', 4096.0))
    assert get_setting(s, 'miqa.max_voxels') == 4096
    assertStatusOk(put_setting(s, 'miqa.default_model', '  miqa-default '))
    assert get_setting(s, 'miqa.default_model') == 'miqa-default'
    assertStatusOk(put_setting(s, 'miqa.lock_seconds', '90'))
    assert get_setting(s, 'miqa.lock_seconds') == 90.0


def test_lock_lifetime_sets_the_expiry(study):
    s = study
    item = make_scan(s.folder, 'a.nii.gz', s.admin)
    lock = s.server.request(f'/item/{item["_id"]}/miqa/lock', method='POST', user=s.tier1).json
    assert _lifetime(lock['lock']) == pytest.approx(300, abs=1)
    assertStatusOk(put_setting(s, 'miqa.lock_seconds', 45))
    lock = s.server.request(f'/item/{item["_id"]}/miqa/lock', method='POST', user=s.tier1).json
    assert _lifetime(lock['lock']) == pytest.approx(45, abs=1)  # renewed under the new lifetime


def _lifetime(lock: dict) -> float:
    expires = datetime.datetime.fromisoformat(lock['expires'])
    now = datetime.datetime.now(expires.tzinfo or datetime.timezone.utc)
    if expires.tzinfo is None:
        now = now.replace(tzinfo=None)
    return (expires - now).total_seconds()


def test_visibility_cache_lifetime(study):
    """The queue's total may lag a revoked folder by the cache lifetime; 0 turns it off."""
    from girder.models.folder import Folder

    s = study
    private = s.subfolder('sub-private')
    make_scan(private, 'secret.nii.gz', s.admin)
    make_scan(s.subfolder('sub-open'), 'open.nii.gz', s.admin, seed=1)

    def queue():
        resp = s.server.request(f'/miqa/project/{s.id}/queue', user=s.tier1)
        assertStatusOk(resp)
        return resp.json['total'], sorted(i['name'] for i in resp.json['items'])

    assert queue() == (2, ['open.nii.gz', 'secret.nii.gz'])
    Folder().setGroupAccess(Folder().load(private['_id'], force=True), s.group1, None,
                            save=True)
    # cached for 30 s: the total lags, the page never shows the hidden scan
    assert queue() == (2, ['open.nii.gz'])
    assertStatusOk(put_setting(s, 'miqa.visibility_cache_seconds', 0))
    assert queue() == (1, ['open.nii.gz'])


def test_suspicion_thresholds_decide_what_is_suspicious(study):
    s = study
    item = make_scan(s.folder, 'a.nii.gz', s.admin)
    set_assessment(item, 6.0, {'ghosting_motion': 0.3})
    assertStatusOk(decide(s.server, item, s.tier1, 'questionable'))

    def agreement():
        resp = s.server.request(f'/miqa/project/{s.id}/summary', user=s.admin)
        assertStatusOk(resp)
        return resp.json['agreement']

    before = agreement()
    assert (before['both'], before['humanOnly']) == (0, 1)  # 6 >= 5 and 0.3 <= 0.5
    assert (before['qualityThreshold'], before['probabilityThreshold']) == (5.0, 0.5)
    assert 'quality < 5 or an artifact probability > 0.5' in before['description']

    assertStatusOk(put_setting(s, 'miqa.suspicion_thresholds',
                               {'quality': 7, 'probability': 0.5}))
    after = agreement()
    assert (after['both'], after['humanOnly']) == (1, 0)
    assert after['qualityThreshold'] == 7.0 and 'quality < 7 ' in after['description']

    assertStatusOk(put_setting(s, 'miqa.suspicion_thresholds',
                               {'quality': 5, 'probability': 0.25}))
    assert agreement()['both'] == 1  # 0.3 > 0.25


def test_voxel_limit_and_default_model_reach_the_job(study, purged_broker):
    """The scheduled task gets the ``miqa.max_voxels`` setting; a project without a model of its
    own is assessed by ``miqa.default_model``."""
    from girder_jobs.models.job import Job

    s = study
    item = make_scan(s.folder, 'a.nii.gz', s.admin)
    assertStatusOk(put_setting(s, 'miqa.max_voxels', 8192))
    assertStatusOk(put_setting(s, 'miqa.default_model', 'some-model'))
    resp = s.server.request(f'/item/{item["_id"]}/miqa/assess', method='POST', user=s.admin)
    assertStatusOk(resp)
    assert resp.json['scheduled'] is True
    job = Job().load(resp.json['jobId'], force=True)
    assert job['kwargs']['max_voxels'] == 8192
    assert job['kwargs']['model_name'] == job['meta']['model'] == 'some-model'


def test_environment_overrides_are_validated_too(study, monkeypatch, caplog):
    """Girder reads ``GIRDER_SETTING_*`` without validating it: a good override applies, a bad
    one is logged and the default used (never a 500)."""
    from girder_miqa import settings

    s = study
    item = make_scan(s.folder, 'a.nii.gz', s.admin)
    monkeypatch.setenv('GIRDER_SETTING_MIQA_LOCK_SECONDS', '45')
    assert settings.lock_seconds() == 45.0
    monkeypatch.setenv('GIRDER_SETTING_MIQA_LOCK_SECONDS', 'soon')
    monkeypatch.setenv('GIRDER_SETTING_MIQA_SUSPICION_THRESHOLDS', '{"quality": 99}')
    assert settings.lock_seconds() == 300.0
    assert settings.suspicion_thresholds() == (5.0, 0.5)
    assert 'Ignoring the value of miqa.lock_seconds' in caplog.text
    lock = s.server.request(f'/item/{item["_id"]}/miqa/lock', method='POST', user=s.tier1)
    assertStatusOk(lock)
    assert _lifetime(lock.json['lock']) == pytest.approx(300, abs=1)
