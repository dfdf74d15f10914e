"""Reviewer calibration in a real browser (issue #23): Debian's chromium, driven by
client/e2e/reviewers.e2e.mjs (playwright-core), against a real Girder with the built plugin.

Every scan of the project is a double read. Two tier-1 reviewers each decide the five scans on
their review pages (keys G and Q); the admin then opens the Reviewers page, which must print the
pair's Cohen's kappa as computed here by hand from the confusion table (0.62). The server's
figure is checked against the same hand computation, and the trail against what was pressed.
"""

import json
import os
import shutil
import subprocess

import numpy as np
import pytest

from ..review.test_agreement import kappa_by_hand
from .helpers import ARTIFACTS_DIR, CHROMIUM, CLIENT, PASSWORD, report, skip_reason, upload
from .test_report_browser import write_nifti

FIRST = ['g', 'g', 'g', 'q', 'q']
SECOND = ['g', 'g', 'q', 'q', 'q']


@pytest.mark.plugin('miqa')
@pytest.mark.timeout(240)
def test_two_reviewers_and_the_reviewers_page(miqa_browser_server, admin, fsAssetstore,
                                              tmp_path, request):
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    from girder.constants import AccessType
    from girder.models.collection import Collection
    from girder.models.folder import Folder
    from girder.models.group import Group
    from girder.models.user import User

    from girder_miqa.models.decision import Decision
    from girder_miqa.models.project import Project, register_scans

    server = miqa_browser_server
    base = f'http://127.0.0.1:{server.boundPort}/'
    readers = [User().createUser(login, PASSWORD, 'Reader', login[-1].upper(),
                                 f'{login}@miqa.test') for login in ('readera', 'readerb')]
    group = Group().createGroup('MIQA calibration tier 1', admin)
    for user in readers:
        Group().addUser(group, user, level=AccessType.READ)
    collection = Collection().createCollection('MIQA calibration e2e', admin, public=False)
    folder = Folder().createFolder(collection, 'study', parentType='collection', creator=admin)
    folder = Folder().setGroupAccess(folder, group, AccessType.READ, save=True)
    project = Project().createProject(folder, admin, {
        'tier1GroupId': str(group['_id']), 'autoAssess': False, 'doubleReadShare': 1})
    rng = np.random.default_rng(23)
    scans = []
    for i in range(len(FIRST)):
        path = tmp_path / f'sub-{i:02d}_T1w.nii.gz'
        write_nifti(path, rng)
        scans.append(upload(path, folder, admin, fsAssetstore))
    register_scans(project)
    word = {'g': 'good', 'q': 'questionable'}
    expected = kappa_by_hand([(word[a], word[b]) for a, b in zip(FIRST, SECOND, strict=True)])
    assert round(expected, 2) == 0.62

    artifacts = ARTIFACTS_DIR.parent / 'browser-reviewers'
    if artifacts.exists():
        shutil.rmtree(artifacts)
    artifacts.mkdir(parents=True)
    env = {
        **os.environ,
        'MIQA_URL': base,
        'MIQA_READERS': ' '.join(f'{u["login"]}:{PASSWORD}:{",".join(d)}'
                                 for u, d in zip(readers, (FIRST, SECOND), strict=True)),
        'MIQA_ADMIN': 'admin:password',
        'MIQA_PROJECT_ID': str(project['_id']),
        'MIQA_SCANS': ','.join(str(s['_id']) for s in scans),
        'MIQA_EXPECT_KAPPA': f'{expected:.2f}',
        'MIQA_ARTIFACT_DIR': str(artifacts),
        'CHROMIUM': str(CHROMIUM),
    }
    proc = subprocess.run(['node', str(CLIENT / 'e2e' / 'reviewers.e2e.mjs')], cwd=CLIENT,
                          env=env, capture_output=True, text=True, timeout=200)
    print(proc.stdout)
    print(proc.stderr)
    out = json.loads((artifacts / 'result.json').read_text())
    assert proc.returncode == 0, out.get('error') or proc.stderr[-2000:]
    assert out['ok'] is True
    report(request, f"reviewers page: kappa {expected:.2f} shown in {out['pageMs']} ms; "
           f"{len(out['checks'])} checks")

    # What the browser recorded: both reads of every scan, blinded double reads, as pressed.
    for scan, a, b in zip(scans, FIRST, SECOND, strict=True):
        trail = Decision().history(scan)
        assert [(d['login'], d['decision'], d['readKind']) for d in trail] == [
            ('readera', word[a], 'double'), ('readerb', word[b], 'double')]
        assert all(d['seconds'] > 0 and not d.get('pending') for d in trail)
    agreement = server.request(f'/miqa/project/{project["_id"]}/agreement', user=admin).json
    assert agreement['pairs'][0]['kappa']['value'] == pytest.approx(expected)
    assert agreement['pairs'][0]['kappa']['n'] == len(FIRST)
