"""Triage on the real scans in ../shared (issue #22 item 7): every real scan, uploaded as itself
into the folder of its source (one site per source: several scanners and sites), assessed by the
shipped model through the worker's own Assessor in this process and stored as a worker's
result. Then its site and contrast, its acquisition parameters against the file's header, a set
reference protocol's deviations against voxel sizes read here with nibabel/SimpleITK, the queue
order those deviations give, the too-few-peers rule for the metrics and the group report."""

import io
import json
from pathlib import Path

import pytest

from .test_double_reads import put_settings

pytestmark = pytest.mark.plugin('miqa')

IMAGE_SUFFIXES = ('.nii.gz', '.nii', '.nrrd', '.mha')


def _header_spacing(path: Path) -> list[float]:
    """The voxel size from the file's own header, read independently of miqa_worker."""
    if path.name.endswith(('.nii', '.nii.gz')):
        import nibabel

        return [float(v) for v in nibabel.load(str(path)).header.get_zooms()[:3]]
    import SimpleITK

    reader = SimpleITK.ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()
    return [float(v) for v in reader.GetSpacing()[:3]]


@pytest.fixture
def real_study(study, shared_mri):
    """The study with every real scan of ../shared/data/mri in a folder per source."""
    from girder.models.item import Item
    from girder.models.upload import Upload

    from girder_miqa.models import review_state
    from miqa_worker.assessment import get_assessor

    s = study
    put_settings(s, {'autoAssess': False})  # this test stores the worker's results itself
    assessor = get_assessor('miqa-default')
    scans = {}
    for path in sorted(shared_mri.iterdir()):
        if not path.name.endswith(IMAGE_SUFFIXES):
            continue
        source = path.name.split('_')[0]
        data = path.read_bytes()
        item = Item().createItem(path.name, creator=s.admin, folder=s.subfolder(source))
        Upload().uploadFromFile(io.BytesIO(data), len(data), path.name, parentType='item',
                                parent=item, user=s.admin)
        stem = path.name.split('.')[0]
        sidecar = shared_mri / f'{stem}.json'
        result = assessor.assess_file(path, sidecar=sidecar.read_text() if sidecar.exists()
                                      else None)
        review_state.set_assessment_result(item, {'status': 'done',
                                                  **json.loads(json.dumps(result))})
        scans[path.name] = {'item': item, 'source': source, 'path': path, 'result': result}
    assert len({v['source'] for v in scans.values()}) >= 5, 'several sources expected'
    return s, scans


def _state(item) -> dict:
    from girder.models.item import Item

    return Item().load(item['_id'], force=True)['miqa']


def test_real_scans_get_sites_parameters_deviations_and_queue_order(real_study):
    s, scans = real_study
    for name, scan in scans.items():
        state = _state(scan['item'])
        scope = scan['result']['scope']
        assert state['site'] == scan['source'], name
        if scope['contrast'] != 'unknown':
            assert state['scanType'] == scope['contrast'], name
        params = state['assessment']['acquisition']['parameters']
        assert params['VoxelSize'] == pytest.approx(_header_spacing(scan['path']), abs=1e-3), name
        # at most 6 T1s per project and fewer per site: no distribution is invented
        assert state['metrics']['enough'] is False, name
        assert not [r for r in state.get('reasons') or [] if r['source'] == 'metrics'], name

    # a set reference: T1w at 1 mm isotropic within 0.1 mm, anything else excludes the scan
    body = json.dumps([{'scanType': 'T1w', 'site': None, 'parameters': {
        'VoxelSize': {'value': [1.0, 1.0, 1.0], 'tolerance': 0.1, 'severity': 'exclude'}}}])
    resp = s.server.request(f'/miqa/project/{s.id}/protocol', method='PUT', user=s.owner,
                            body=body, type='application/json')
    assert resp.output_status.startswith(b'200'), resp.json
    t1 = {n: v for n, v in scans.items() if _state(v['item'])['scanType'] == 'T1w'}
    assert len(t1) >= 4
    off = {n for n, v in t1.items()
           if any(abs(x - 1.0) > 0.1 for x in _header_spacing(v['path']))}
    assert off and off != set(t1), 'the real T1s include 1 mm scans and coarser ones'
    for name, scan in t1.items():
        state = _state(scan['item'])
        found = [d for d in state['protocol']['deviations'] if d['parameter'] == 'VoxelSize']
        assert bool(found) == (name in off), (name, found)
        if found:
            assert found[0]['severity'] == 'exclude'
            assert found[0]['found'] == pytest.approx(_header_spacing(scan['path']), abs=1e-3)
            assert state['reasons'][0]['source'] == 'protocol'
            assert state['reasons'][0]['target'] == {'kind': 'parameter', 'key': 'VoxelSize'}
    # the queue serves the excluded T1s first (their triage outweighs every network reason)
    rows = s.server.request(f'/miqa/project/{s.id}/queue', user=s.owner,
                            params={'tier': 1, 'limit': 50}).json['items']
    first = [row['name'] for row in rows[:len(off)]]
    assert set(first) == off, first
    assert all(row['site'] == scans[row['name']]['source'] for row in rows)

    # the group report: every source is a site, and each dot is the scan's own metric value
    report = s.server.request(f'/miqa/project/{s.id}/report', user=s.owner).json
    assert {v['source'] for v in scans.values()} <= set(report['sites'])
    for metric, points in report['metrics'].items():
        for point in points:
            stored = scans[point['name']]['result']['metrics'][metric]
            assert point['value'] == pytest.approx(stored), (metric, point['name'])
    compliance = s.server.request(f'/miqa/project/{s.id}/compliance', user=s.owner).json
    for site, types in compliance['sites'].items():
        if 'T1w' in types:
            expected = sum(1 for n in off if scans[n]['source'] == site)
            assert types['T1w']['scans'] - types['T1w']['compliant'] >= expected, site
