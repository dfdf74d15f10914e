"""Triage with reasons in a real browser (issue #22): Debian's chromium, driven by
client/e2e/report.e2e.mjs (playwright-core), against a real Girder with the built plugin.

The test makes a project with scans at three sites (site-a and site-b with nine T1w scans each,
site-c with two T1w and one T2w) and stores their finished assessments through the plugin
(``review_state.set_assessment_result``, what ``PUT /item/{id}/miqa/assessment`` does), so the
server's own triage computes the protocol deviations, metric percentiles and reasons: one site-b
scan was acquired with another TR (a deviation from the inferred reference), another has a low
snr_wm (an outlier among site-b's scans), a site-a scan has likely ghosting (a network reason),
another site-a scan's sidecar is broken (a problem reading its parameters), and the lone T2w
scan has too few peers for percentiles. The browser script then checks the queue rows' site and
reasons, the reasons at the top of the review page and that a reason's click highlights its
target, the percentiles, the report page's strip plots (pixels where the dots are), that
clicking a dot opens that scan, the CSV and PNG downloads, and the protocol settings (a
reference set in the form and one uploaded as CSV, each after a 400 shown at its field).
"""

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from .helpers import ARTIFACTS_DIR, CHROMIUM, CLIENT, report, skip_reason, upload

SIDECAR_PROBLEM = 'sidecar site-a_sub-06_T1w.json is not JSON (line 3: Expecting value)'
TRAINED = ['quality', 'incomplete_coverage', 'wraparound', 'ghosting_motion', 'inhomogeneity']
ACQUISITION = {
    'Manufacturer': 'Siemens', 'ManufacturersModelName': 'Prisma',
    'SoftwareVersions': 'syngo MR E11', 'MagneticFieldStrength': 3.0,
    'SeriesDescription': 'T1w_MPRAGE', 'RepetitionTime': 2.3,
    'EchoTime': 0.00298, 'InversionTime': 0.9, 'FlipAngle': 9.0, 'VoxelSize': [1.0, 1.0, 1.0],
    'Matrix': [32, 32, 32], 'SliceThickness': 1.0, 'Orientation': 'RAS', 'ReceiveCoilName': None,
}


def write_nifti(path: Path, rng) -> None:
    """A small 32^3 head-like .nii.gz (the review page loads it in a blink)."""
    import nibabel as nib

    n = 32
    grids = np.ogrid[0:n, 0:n, 0:n]
    r2 = sum(((g - (n - 1) / 2) / (n * 0.42)) ** 2 for g in grids)
    vol = np.where(r2 < 1, 400.0, 0.0) + np.where(r2 < 0.7, 300.0, 0.0)
    vol += rng.normal(0, 10, vol.shape) * (vol > 0)
    img = nib.Nifti1Image(vol.astype(np.int16), np.eye(4))
    img.set_qform(np.eye(4), code=1)
    nib.save(img, str(path))


def result(index: int, *, snr_wm: float, tr: float = 2.3, ghosting: float = 0.08,
           contrast: str = 'T1w', problems: tuple = ()) -> dict:
    """A finished assessment as the worker writes it: quality 7.5 (no network reason) unless
    ghosting is likely; metrics that vary a little from scan to scan; acquisition parameters."""
    wobble = ((index * 37) % 11 - 5) / 10  # -0.5 .. 0.5, different per scan
    return {
        'status': 'done', 'quality': 7.5, 'trainedOutputs': TRAINED,
        'artifacts': {'incomplete_coverage': 0.05, 'wraparound': 0.04,
                      'ghosting_motion': ghosting, 'inhomogeneity': 0.1},
        'metrics': {'snr_wm': snr_wm, 'cnr': round(3.0 + wobble * 0.4, 3),
                    'cjv': round(0.5 + wobble * 0.04, 4), 'efc': round(0.47 + wobble * 0.02, 4),
                    'fber': round(800 + wobble * 60, 1)},
        'acquisition': {'parameters': {**ACQUISITION, 'RepetitionTime': tr,
                                       'SeriesDescription': f'{contrast}_scan'},
                        'sources': {k: 'sidecar' for k in ACQUISITION},
                        'problems': list(problems)},
        'scope': {'in_scope': contrast == 'T1w', 'contrast': contrast,
                  'reason': f'BIDS suffix {contrast}', 'source': 'name'},
        'model': {'name': 'miqa-default', 'version': 'test'},
    }


@pytest.mark.plugin('miqa')
@pytest.mark.timeout(240)
def test_triage_report_in_browser(miqa_browser_server, admin, fsAssetstore, tmp_path, request):
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    from girder.models.collection import Collection
    from girder.models.folder import Folder
    from girder.models.item import Item

    from girder_miqa.models import review_state
    from girder_miqa.models.project import Project, register_scans

    server = miqa_browser_server
    base = f'http://127.0.0.1:{server.boundPort}/'
    rng = np.random.default_rng(22)
    collection = Collection().createCollection('MIQA triage e2e', admin, public=False)
    root = Folder().createFolder(collection, 'study', parentType='collection', creator=admin)
    project = Project().createProject(root, admin, {'autoAssess': False})
    assert project['settings']['siteLevel'] == 1

    # site-a, site-b: 9 T1w each (enough peers of their own); site-c: 2 T1w (compared with the
    # project's T1w scans) and 1 T2w (too few peers anywhere).
    plan = [('site-a', i, 'T1w') for i in range(9)] + [('site-b', i, 'T1w') for i in range(9)] \
        + [('site-c', 0, 'T1w'), ('site-c', 1, 'T1w'), ('site-c', 2, 'T2w')]
    folders, scans = {}, {}
    for site, i, contrast in plan:
        if site not in folders:
            folders[site] = Folder().createFolder(root, site, creator=admin)
        path = tmp_path / f'{site}_sub-{i:02d}_{contrast}.nii.gz'
        write_nifti(path, rng)
        scans[(site, i)] = upload(path, folders[site], admin, fsAssetstore)
    register_scans(project)
    special = {('site-b', 3): {'tr': 2.9},          # another TR than the site's others
               ('site-b', 5): {'snr_wm': 6.0},      # far below site-b's snr_wm
               ('site-a', 4): {'ghosting': 0.93},   # the network sees ghosting
               ('site-a', 6): {'problems': (SIDECAR_PROBLEM,)}}  # its sidecar is broken
    for n, (site, i, contrast) in enumerate(plan):
        args = {'snr_wm': round(20 + ((n * 7) % 9 - 4) * 0.25, 2), 'contrast': contrast,
                **special.get((site, i), {})}
        review_state.set_assessment_result(Item().load(scans[(site, i)]['_id'], force=True),
                                           result(n, **args))

    tr_scan, snr_scan = scans[('site-b', 3)], scans[('site-b', 5)]
    ghost_scan, t2_scan = scans[('site-a', 4)], scans[('site-c', 2)]
    sidecar_scan = scans[('site-a', 6)]
    # The server's triage, as the page will read it.
    state = server.request(f'/item/{snr_scan["_id"]}/miqa', user=admin).json
    assert state['site'] == 'site-b' and state['metrics']['enough'] is True, state.get('metrics')
    assert 'snr_wm' in state['metrics']['outliers']
    state = server.request(f'/item/{tr_scan["_id"]}/miqa', user=admin).json
    assert any(d['parameter'] == 'RepetitionTime' for d in state['protocol']['deviations']), \
        state.get('protocol')
    assert server.request(f'/miqa/project/{project["_id"]}/report', user=admin).status == '200 OK'

    artifacts = ARTIFACTS_DIR.parent / 'browser-report'  # beside the review test's, not in it
    if artifacts.exists():
        shutil.rmtree(artifacts)
    artifacts.mkdir(parents=True)
    env = {
        **os.environ,
        'MIQA_URL': base,
        'MIQA_ADMIN': 'admin:password',
        'MIQA_PROJECT_ID': str(project['_id']),
        'MIQA_TR_SCAN': str(tr_scan['_id']),
        'MIQA_SNR_SCAN': str(snr_scan['_id']),
        'MIQA_GHOST_SCAN': str(ghost_scan['_id']),
        'MIQA_T2_SCAN': str(t2_scan['_id']),
        'MIQA_SIDECAR_SCAN': str(sidecar_scan['_id']),
        'MIQA_SIDECAR_PROBLEM': SIDECAR_PROBLEM,
        'MIQA_SCAN_COUNT': str(len(plan)),
        'MIQA_T1W_COUNT': str(sum(1 for *_, contrast in plan if contrast == 'T1w')),
        'MIQA_ARTIFACT_DIR': str(artifacts),
        'CHROMIUM': str(CHROMIUM),
    }
    proc = subprocess.run(['node', str(CLIENT / 'e2e' / 'report.e2e.mjs')], cwd=CLIENT, env=env,
                          capture_output=True, text=True, timeout=180)
    print(proc.stdout)
    print(proc.stderr)
    out = json.loads((artifacts / 'result.json').read_text())
    assert proc.returncode == 0, out.get('error') or proc.stderr[-2000:]
    assert out['ok'] is True
    report(request, f"report page: {out['plots']} strip plots drawn in {out['reportMs']} ms, "
           f"{out['dotPixels']} dot pixels in the snr_wm plot; {len(out['checks'])} checks")
    # What the page set through the API: the admin's reference for site-b's T1w scans.
    refs = server.request(f'/miqa/project/{project["_id"]}/protocol', user=admin).json
    mine = {(r['scanType'], r['site']): r for r in refs if r['reference'] == 'set'}
    assert mine[('T1w', 'site-b')]['parameters']['RepetitionTime']['tolerance'] == 0.7, mine
    assert mine[('T2w', 'site-c')]['parameters']['FlipAngle'] == {
        'value': 150.0, 'tolerance': 5.0, 'severity': 'exclude'}, mine
