"""The model's quality interval (issue #21 item 4) is stored and served with the assessment
and exported as quality_low / quality_high (CSV) and qualityInterval (JSON); an older result
without one leaves the cells blank, and the export still imports back."""

import csv
import io
import json

import pytest
from pytest_girder.assertions import assertStatusOk

from .util import make_scan, state

pytestmark = pytest.mark.plugin('miqa')

TRAINED = ['quality', 'incomplete_coverage', 'wraparound', 'ghosting_motion', 'inhomogeneity']


def _export(s, fmt):
    resp = s.server.request(f'/miqa/project/{s.id}/export', user=s.admin,
                            params={'format': fmt}, isJson=False)
    assertStatusOk(resp)
    return resp.collapse_body().decode()


def test_the_interval_is_kept_served_and_exported(study):
    from girder.models.item import Item

    from girder_miqa import scheduling
    from girder_miqa.models import review_state

    s = study
    with_interval = make_scan(s.folder, 'sub-01_T1w.nii.gz', s.admin, seed=1)
    older = make_scan(s.folder, 'sub-02_T1w.nii.gz', s.admin, seed=2)
    model = scheduling.current_model('miqa-default', ask=False)
    review_state.set_assessment_result(with_interval, {
        'status': 'done', 'quality': 7.23, 'qualityInterval': [6.41, 7.94], 'calibrated': True,
        'artifacts': {'ghosting_motion': 0.3, 'lesion': 0.9}, 'trainedOutputs': TRAINED,
        'model': model})
    review_state.set_assessment_result(older, {
        'status': 'done', 'quality': 8.0, 'artifacts': {'ghosting_motion': 0.1},
        'trainedOutputs': TRAINED, 'model': model})

    stored = state(Item().load(with_interval['_id'], force=True))['assessment']
    assert stored['qualityInterval'] == [6.41, 7.94] and stored['calibrated'] is True
    assert 'lesion' not in stored['artifacts']  # untrained: never stored as a probability
    served = s.server.request(f'/item/{with_interval["_id"]}', user=s.admin)
    assertStatusOk(served)
    assert served.json['miqa']['assessment']['qualityInterval'] == [6.41, 7.94]

    text = _export(s, 'csv')
    rows = {r['name']: r for r in csv.DictReader(io.StringIO(text))}
    header = list(csv.reader(io.StringIO(text)))[0]
    assert header.index('quality_low') == header.index('model_quality') + 1
    assert header.index('quality_high') == header.index('quality_low') + 1
    assert (rows['sub-01_T1w.nii.gz']['quality_low'],
            rows['sub-01_T1w.nii.gz']['quality_high']) == ('6.41', '7.94')
    assert (rows['sub-02_T1w.nii.gz']['quality_low'],
            rows['sub-02_T1w.nii.gz']['quality_high']) == ('', '')
    scans = {x['name']: x for x in json.loads(_export(s, 'json'))['scans']}
    assert scans['sub-01_T1w.nii.gz']['assessment']['qualityInterval'] == [6.41, 7.94]
    assert scans['sub-02_T1w.nii.gz']['assessment']['qualityInterval'] is None

    back = s.server.request(f'/miqa/project/{s.id}/import', method='POST', user=s.admin,
                            body=text, type='text/csv')
    assertStatusOk(back)  # every export imports back
