"""The review pages in a real browser: Debian's chromium, driven by client/e2e/review.e2e.mjs
(playwright-core), against a real Girder with the built plugin, its web client and the API.

The test creates an admin, a tier-1 and a tier-2 reviewer, their groups, a project folder with a
256^3 .nii.gz scan (stored LAS, with a bright marker in the patient's left hemisphere and a
finished assessment) and a second scan in NRRD (read in the browser through itk-wasm), runs the
browser script, and checks the scan's final state and decision trail through the API.
"""

import gzip
import json
import os
import shutil
import subprocess
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from .helpers import ARTIFACTS_DIR, CHROMIUM, CLIENT, PASSWORD, report, skip_reason, upload


def phantom(shape, marker_index, rng) -> np.ndarray:
    """A head-like int16 volume: skull shell, brain, dark ventricles, mild noise and a bright
    marker sphere at ``marker_index`` (voxel indices)."""
    grids = np.ogrid[tuple(slice(0, n) for n in shape)]
    centre = [(n - 1) / 2 for n in shape]
    radii = [n * 0.42 for n in shape]
    r2 = sum(((g - c) / r) ** 2 for g, c, r in zip(grids, centre, radii, strict=True))
    vol = np.zeros(shape, np.float32)
    vol[r2 < 1.0] = 350          # skull / scalp
    vol[r2 < 0.8] = 620          # brain
    vol[r2 < 0.45] = 760         # white matter
    vent = sum(((g - c) / (r * 0.18)) ** 2 for g, c, r in zip(grids, centre, radii, strict=True))
    vol[vent < 1.0] = 120        # ventricles
    m2 = sum((g - m) ** 2 for g, m in zip(grids, marker_index, strict=True))
    vol[m2 < (min(shape) * 0.05) ** 2] = 2500
    vol += rng.normal(0, 12, shape).astype(np.float32) * (vol > 0)
    return np.clip(vol, 0, 32000).astype(np.int16)


def write_nifti_las(path: Path, rng) -> None:
    """256^3 .nii.gz stored LAS (x flipped): voxel i grows towards the patient's left."""
    import nibabel as nib

    n = 256
    data = phantom((n, n, n), (200, 128, 128), rng)  # i=200 -> world x = 128-200 < 0: left
    affine = np.array([[-1.0, 0, 0, 128], [0, 1, 0, -128], [0, 0, 1, -128], [0, 0, 0, 1]])
    img = nib.Nifti1Image(data, affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    nib.save(img, str(path))


def write_nrrd_rotated(path: Path, rng) -> None:
    """A NRRD whose index axes are rotated against LPS (axis 0 -> P, 1 -> S, 2 -> L), with the
    marker in the patient's left: it catches a transposed direction matrix."""
    size = (128, 96, 112)  # i along P, j along S, k along L
    # numpy order (k, j, i) so that i varies fastest on disk
    data = phantom(size[::-1], (90, 48, 64), rng)  # k=90 of 112: towards the left
    header = (
        'NRRD0004\n'
        'type: short\n'
        'dimension: 3\n'
        'space: left-posterior-superior\n'
        f'sizes: {size[0]} {size[1]} {size[2]}\n'
        'space directions: (0,1.2,0) (0,0,1.5) (1.1,0,0)\n'
        'kinds: domain domain domain\n'
        'endian: little\n'
        'encoding: gzip\n'
        'space origin: (-60,-70,-80)\n\n'
    )
    path.write_bytes(header.encode() + gzip.compress(data.astype('<i2').tobytes(), 1))


TRAINED = ['quality', 'incomplete_coverage', 'wraparound', 'ghosting_motion', 'inhomogeneity']


def assessment(vocabulary) -> dict:
    """A finished assessment as the worker writes it, with a 4x4x4 tile map over 256^3; its
    untrained lesion output is high (0.95): the page must neither show nor suggest it."""
    keys = [a['key'] for a in vocabulary]
    probs = {key: round(0.05 + 0.03 * i, 3) for i, key in enumerate(keys) if key in TRAINED}
    probs['ghosting_motion'] = 0.83
    probs['lesion'] = 0.95  # untrained
    grid = [4, 4, 4]
    starts = [[a * 64, b * 64, c * 64] for a in range(4) for b in range(4) for c in range(4)]
    ghost = [round(0.9 if a < 2 else 0.1, 2) for a in range(4) for _b in range(4)
             for _c in range(4)]
    return {
        'status': 'done',
        'quality': 3.2,
        'qualityInterval': [2.46, 4.07],  # shown as 3.2 / 10 (2.5–4.1)
        'calibrated': True,
        'artifacts': probs,
        'metrics': {'snr': 14.2, 'cnr': 3.1, 'efc': 0.47, 'fber': 812.5, 'cjv': 0.55},
        'fusion': {'indicator': 'ghosting_motion', 'network': 0.41, 'probability': 0.83,
                   'metrics': {'summary_bg_mean': 0.0213, 'qi_1': 0.0041,
                               'bg_smooth_ratio': 0.61}},
        'penalties': {'ghosting': 0.6, 'motion': 2.4, 'bias': 0.0, 'spike': 0.3, 'noise': 0.1,
                      'wraparound': 0.0, 'coverage': 0.2},
        'tileMap': {'grid': grid, 'starts': starts, 'tileSize': 64,
                    'artifacts': {'ghosting_motion': ghost,
                                  'wraparound': [0.2] * 64, 'lesion': [0.95] * 64},
                    'quality': [3.0 + (t % 5) for t in range(64)]},
        'model': {'name': 'miqa-default', 'version': 'test'},
        'trainedOutputs': TRAINED,
        'scope': {'in_scope': True, 'contrast': 'T1w', 'reason': 'BIDS suffix T1w',
                  'source': 'name'},
    }


def out_of_scope_assessment() -> dict:
    """A finished assessment of a scan outside the model's domain: scores kept, flagged."""
    return {'status': 'done', 'quality': 9.1, 'trainedOutputs': TRAINED,
            'artifacts': {'ghosting_motion': 0.7, 'wraparound': 0.1, 'lesion': 0.9},
            'scope': {'in_scope': False, 'contrast': 'T2w',
                      'reason': 'the sidecar names a T2w series', 'source': 'sidecar'},
            'model': {'name': 'miqa-default', 'version': 'test'}}


@pytest.mark.plugin('miqa')
@pytest.mark.timeout(300)
def test_review_in_browser(miqa_browser_server, admin, fsAssetstore, tmp_path, request):
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    from girder.constants import AccessType
    from girder.models.collection import Collection
    from girder.models.folder import Folder
    from girder.models.group import Group
    from girder.models.item import Item
    from girder.models.user import User

    from girder_miqa.models import review_state
    from girder_miqa.models.project import Project, register_scans

    server = miqa_browser_server
    base = f'http://127.0.0.1:{server.boundPort}/'
    # The web client and the plugin's bundle are served by this server.
    with urllib.request.urlopen(base, timeout=10) as resp:
        assert b'id="app"' in resp.read()
    with urllib.request.urlopen(f'{base}api/v1/system/plugin_static_files', timeout=10) as resp:
        static = json.loads(resp.read())
    assert any('girder-plugin-miqa.umd.cjs' in js for js in static['js']), static
    with urllib.request.urlopen(f'{base}plugin_static/miqa/itk/pipelines/nrrd-read-image.js',
                                timeout=10) as resp:
        assert resp.status == 200

    rng = np.random.default_rng(7)
    tier1 = User().createUser('reviewer1', PASSWORD, 'Tier', 'One', 'reviewer1@miqa.test')
    tier2 = User().createUser('reviewer2', PASSWORD, 'Tier', 'Two', 'reviewer2@miqa.test')
    group1 = Group().createGroup('MIQA tier 1', admin)
    group2 = Group().createGroup('MIQA tier 2', admin)
    Group().addUser(group1, tier1, level=AccessType.READ)
    Group().addUser(group2, tier2, level=AccessType.READ)
    collection = Collection().createCollection('MIQA e2e', admin, public=False)
    folder = Folder().createFolder(collection, 'study', parentType='collection', creator=admin)
    Folder().setGroupAccess(folder, group1, AccessType.READ, save=True)
    folder = Folder().setGroupAccess(folder, group2, AccessType.READ, save=True)
    project = Project().createProject(folder, admin, {
        'tier1GroupId': str(group1['_id']), 'tier2GroupId': str(group2['_id']),
        'autoAssess': False})

    nifti = tmp_path / 'sub-01_T1w.nii.gz'
    nrrd = tmp_path / 'sub-02_T1w.nrrd'
    write_nifti_las(nifti, rng)
    write_nrrd_rotated(nrrd, rng)
    scan = upload(nifti, folder, admin, fsAssetstore)
    scan2 = upload(nrrd, folder, admin, fsAssetstore)
    register_scans(project)
    review_state.set_assessment_result(
        Item().load(scan['_id'], force=True), assessment(project['settings']['artifacts']))
    review_state.set_assessment_result(Item().load(scan2['_id'], force=True),
                                       out_of_scope_assessment())  # ranked last: after scan

    listed = server.request('/miqa/project', user=User().load(tier1['_id'], force=True)).json
    assert [p['_id'] for p in listed] == [str(project['_id'])], listed

    if ARTIFACTS_DIR.exists():
        shutil.rmtree(ARTIFACTS_DIR)
    ARTIFACTS_DIR.mkdir(parents=True)
    env = {
        **os.environ,
        'MIQA_URL': base,
        'MIQA_TIER1': f'reviewer1:{PASSWORD}',
        'MIQA_TIER2': f'reviewer2:{PASSWORD}',
        'MIQA_ADMIN': 'admin:password',
        'MIQA_PROJECT_ID': str(project['_id']),
        'MIQA_SCAN_ID': str(scan['_id']),
        'MIQA_SCAN2_ID': str(scan2['_id']),
        'MIQA_ARTIFACT_DIR': str(ARTIFACTS_DIR),
        'CHROMIUM': str(CHROMIUM),
    }
    proc = subprocess.run(['node', str(CLIENT / 'e2e' / 'review.e2e.mjs')], cwd=CLIENT, env=env,
                          capture_output=True, text=True, timeout=240)
    print(proc.stdout)
    print(proc.stderr)
    result = json.loads((ARTIFACTS_DIR / 'result.json').read_text())
    assert proc.returncode == 0, result.get('error') or proc.stderr[-2000:]
    assert result['ok'] is True
    report(request, f"time to first rendered slices (256^3 .nii.gz over localhost): "
           f"{result['timeToFirstSlicesMs']} ms from the click on the queue link "
           f"({result['timeToFirstSlicesInPageMs']} ms in the page; goal <= 1500 ms, not "
           f"asserted); moving on to the prefetched next scan: {result['transitionMs']} ms "
           f"(goal < 200 ms)")

    # The scan's state, through the API, as the two reviewers left it.
    resp = server.request(f'/item/{scan["_id"]}/miqa', user=admin)
    assert resp.status == '200 OK', resp.json
    state = resp.json
    assert state['state'] == 'bad'
    assert state['latestDecision']['tier'] == 2
    assert state['latestDecision']['decision'] == 'bad'
    assert state['latestDecision']['login'] == 'reviewer2'
    assert state['latestDecision']['artifacts'] == {'ghosting_motion': 'present'}
    assert state['latestDecision']['acceptedSuggestions'] == []  # tier 2 stated its own
    history = server.request(f'/item/{scan["_id"]}/miqa/history', user=admin).json
    assert [(d['tier'], d['decision'], d['login']) for d in history] == [
        (1, 'questionable', 'reviewer1'), (2, 'bad', 'reviewer2')]
    first = history[0]
    assert first['artifacts'] == {'ghosting_motion': 'present', 'wraparound': 'present'}
    assert first['acceptedSuggestions'] == ['ghosting_motion']  # S, then wraparound by hand
    assert first['comment'] == 'Ghosting over the frontal lobe'
    assert first['confidence'] == 4
    assert first['seconds'] > 0
    assert len(first['location']['ijk']) == 3 and len(first['location']['world']) == 3
    # The out-of-scope second scan: G pressed at once records good with nothing present.
    state2 = server.request(f'/item/{scan2["_id"]}/miqa', user=admin).json
    assert state2['state'] == 'good'
    assert state2['latestDecision']['artifacts'] == {}
    assert state2['latestDecision']['acceptedSuggestions'] == []
    assert state2['assessment']['scope']['in_scope'] is False
    # The admin's changes on the settings page.
    settings = server.request(f'/miqa/project/{project["_id"]}/settings', user=admin).json
    assert settings['autoAssess'] is True
    assert settings['outOfScope'] == 'first'
    assert settings['artifacts'][-1] == {'key': 'chemical_shift', 'label': 'chemical shift'}
    assert len(settings['artifacts']) == 11
    assert len(list(ARTIFACTS_DIR.glob('*.png'))) >= 12
