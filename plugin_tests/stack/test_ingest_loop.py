"""Close the loop end to end: a project of generated scans reviewed through the REST API, its
decisions ingested by ``miqa-train ingest --project`` over HTTP with an API key, and the shipped
model fine-tuned on them by ``miqa-train run --fine-tune-from`` (1 epoch on the CPU), which
writes its agreement with tier 2 before and after."""

import csv
import gzip
import io
import json

import numpy as np
import pytest
from click.testing import CliRunner
from pytest_girder.assertions import assertStatusOk

from plugin_tests.review.conftest import Study
from plugin_tests.review.util import decide, report_worker_model, set_assessment
from plugin_tests.worker.conftest import head_phantom

pytestmark = pytest.mark.plugin('miqa')

SHAPE = (64, 72, 56)


def _volume(seed: int, family: str | None) -> np.ndarray:
    """A phantom head, corrupted at high severity by one of the project's artifact families."""
    data = head_phantom(SHAPE, seed=seed)
    if family is None:
        return data
    import torch
    import torchio as tio

    from miqa_worker.training.artifacts import IMAGE_KEY, LABELS_KEY, TRANSFORMS, new_labels

    subject = tio.Subject({IMAGE_KEY: tio.ScalarImage(tensor=torch.from_numpy(data)[None],
                                                      affine=np.eye(4))})
    subject[LABELS_KEY] = new_labels()
    transform = TRANSFORMS[family](p=0.5, severity=(0.9, 1.0))
    subject = transform.apply_params(subject, transform.get_params(np.random.default_rng(seed)))
    return subject[IMAGE_KEY].data[0].numpy()


def _upload(study: Study, subject: str, data: np.ndarray) -> dict:
    """A NIfTI scan uploaded through Girder into the subject's folder (the upload hook runs)."""
    import nibabel
    from girder.models.item import Item
    from girder.models.upload import Upload

    raw = gzip.compress(nibabel.Nifti1Image(data.astype(np.float32),
                                            np.diag([1.5, 1.5, 1.5, 1.0])).to_bytes(), mtime=0)
    folder = study.subfolder(subject)
    name = f'{subject}_T1w.nii.gz'
    item = Item().createItem(name, creator=study.admin, folder=folder)
    Upload().uploadFromFile(io.BytesIO(raw), len(raw), name, parentType='item', parent=item,
                            user=study.admin)
    return Item().load(item['_id'], force=True)


@pytest.fixture
def bound_study(boundServer, admin, fsAssetstore) -> Study:
    """The review tests' study (tier groups, users, a project) on a server bound to a port."""
    study = Study(boundServer, admin)
    study.url = f'http://127.0.0.1:{boundServer.boundPort}/api/v1'
    return study


def _ok(resp) -> dict:
    assertStatusOk(resp)
    return resp.json


@pytest.mark.stack
def test_reviews_are_ingested_and_fine_tune_reports_agreement(bound_study, tmp_path):
    from girder.models.api_key import ApiKey

    from miqa_worker.model_store import load_folder
    from miqa_worker.training.cli import main

    study = bound_study
    server, tier1, tier2 = study.server, study.tier1, study.tier2
    families = [None, None, None, None, None, 'ghosting', 'ghosting', 'motion', 'motion',
                'bias', None]
    scans = {f'sub-{n + 1:02d}': _upload(study, f'sub-{n + 1:02d}', _volume(n, family))
             for n, family in enumerate(families)}

    # sub-01: tier 1 only (never settled by tier 2): skipped and counted
    _ok(decide(server, scans['sub-01'], tier1, 'good', tier=1))
    # sub-02: tier 1 good, confirmed by tier 2 with ghosting stated absent
    _ok(decide(server, scans['sub-02'], tier1, 'good', tier=1))
    _ok(decide(server, scans['sub-02'], tier2, 'good', tier=2,
               artifacts={'ghosting_motion': 'absent'}))
    for subject in ('sub-03', 'sub-04', 'sub-05'):
        _ok(decide(server, scans[subject], tier2, 'good', tier=2))
    # sub-06: questionable at tier 1, bad at tier 2
    _ok(decide(server, scans['sub-06'], tier1, 'questionable', tier=1))
    _ok(decide(server, scans['sub-06'], tier2, 'bad', tier=2,
               artifacts={'ghosting_motion': 'present'}))
    # sub-07: bad for ghosting, with inhomogeneity taken from the model's suggestions only
    # (the model, as a worker would have stored it, suggests both)
    set_assessment(scans['sub-07'], 3.0, {'ghosting_motion': 0.9, 'inhomogeneity': 0.95},
                   report_worker_model())
    accepted = {'artifacts': {'ghosting_motion': 'present', 'inhomogeneity': 'present'},
                'acceptedSuggestions': ['inhomogeneity']}
    _ok(decide(server, scans['sub-07'], tier2, 'bad', tier=2, **accepted))
    _ok(decide(server, scans['sub-08'], tier2, 'bad', tier=2,
               artifacts={'ghosting_motion': 'present'}))
    _ok(decide(server, scans['sub-09'], tier2, 'bad', tier=2, quality=1,
               artifacts={'ghosting_motion': 'present'}))
    # sub-10: a tier-2 decision imported by the project owner, who cannot vouch for the named
    # reviewer: unverified, so never a label
    report = _ok(server.request(
        f'/miqa/project/{study.id}/import', method='POST', user=study.owner,
        body=json.dumps({'scans': [{'itemId': str(scans['sub-10']['_id']), 'decisions': [
            {'decision': 'bad', 'tier': 2, 'reviewer': 'someone',
             'created': '2024-01-01T00:00:00Z', 'artifacts': {'inhomogeneity': 'present'}}]}]}),
        type='application/json'))
    assert report['decisionsAdded'] == 1, report

    # sub-11: good at tier 2, but the model found it outside its domain: not a training scan
    from girder_miqa.models import review_state

    review_state.set_assessment_result(scans['sub-11'], {
        'status': 'done', 'quality': 9.0, 'artifacts': {}, 'model': report_worker_model(),
        'scope': {'in_scope': False, 'contrast': 'T2w', 'reason': 'the test says so'}})
    _ok(decide(server, scans['sub-11'], tier2, 'good', tier=2))

    key = ApiKey().createApiKey(tier2, name='ingest')['key']
    cache, out = tmp_path / 'cache', tmp_path / 'run'
    runner = CliRunner()
    refused = runner.invoke(main, ['ingest', '--project', str(study.id), '--api-url', study.url,
                                   '--api-key', 'x' * 40, '--cache-dir', str(cache)])
    assert refused.exit_code == 1 and 'the API key was refused' in refused.output
    missing = runner.invoke(main, ['ingest', '--project', 'not-an-id', '--api-url', study.url,
                                   '--api-key', key, '--cache-dir', str(cache)])
    assert missing.exit_code == 1 and 'project not-an-id: ' in missing.output
    assert 'HTTP 400' in missing.output and 'Traceback' not in missing.output
    result = runner.invoke(main, ['ingest', '--project', str(study.id), '--api-url', study.url,
                                  '--api-key', key, '--cache-dir', str(cache), '--quiet'])
    assert result.exit_code == 0, result.output
    assert '8 scans labelled by tier-2 decisions' in result.output

    summary = json.loads((cache / 'ingest.json').read_text())
    assert summary['counts']['labelled'] == 8
    assert summary['counts']['tier1_only'] == 1
    assert summary['counts']['unverified'] == 1 and summary['counts']['out_of_scope'] == 1
    assert {s['path'].split('/')[0]: s['reason'] for s in summary['skipped']} == {
        'sub-01': 'tier1_only', 'sub-10': 'unverified', 'sub-11': 'out_of_scope: T2w'}
    with (cache / 'index.csv').open(newline='') as handle:
        rows = {row['subject_id']: row for row in csv.DictReader(handle)}
    assert sorted(rows) == [f'sub-{n:02d}' for n in range(2, 10)]
    assert rows['sub-02']['quality'] == '9' and rows['sub-02']['ghosting_motion'] == 'false'
    assert rows['sub-02']['inhomogeneity'] == ''  # not stated: unknown, not absent
    assert rows['sub-06']['quality'] == '2' and rows['sub-06']['ghosting_motion'] == 'true'
    assert rows['sub-09']['quality'] == '1'  # the reviewer's own score
    assert rows['sub-07']['ghosting_motion'] == 'true'
    assert rows['sub-07']['inhomogeneity'] == ''  # accepted from the model only: not a label
    assert rows['sub-07']['accepted_suggestions'] == 'inhomogeneity'
    assert summary['counts']['accepted_suggestions_dropped'] == 1
    assert {r['decision'] for r in rows.values()} == {'good', 'bad'}
    for row in rows.values():
        assert (cache / row['file']).is_file()

    result = runner.invoke(main, ['run', '--cache-dir', str(cache), '--out', str(out),
                                  '--fine-tune-from', 'miqa-default', '--epochs', '1',
                                  '--device', 'cpu', '--quiet', '--ship-to',
                                  str(tmp_path / 'shipped')])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output.split('shipped to')[0])['held_out']['after']['volumes'] == 4
    agreement = json.loads((out / 'agreement.json').read_text())
    assert agreement['split']['train'] + agreement['split']['held_out'] == 8
    assert agreement['split']['held_out'] == 4  # a third of each decision's subjects
    for when in ('before', 'after'):
        figures = agreement['held_out'][when]
        assert figures['volumes'] == 4 and figures['tier2_good'] == 2
        assert 0.0 <= figures['accuracy'] <= 1.0
        assert figures['auc'] is not None and 0.0 <= figures['auc'] <= 1.0
        assert 'kappa' in figures and len(figures['quality']) == 4
        assert all(0.0 <= q <= 10.0 for q in figures['quality'])
    assert agreement['held_out']['before']['quality'] != agreement['held_out']['after']['quality']
    _network, spec, _info, fusion, members = load_folder(out / 'model')
    assert spec.version.endswith('+ft') and fusion is None  # trees fitted to the old network
    assert spec.evaluation['fine_tuned_from']['name'] == 'miqa-default'
    assert spec.evaluation['agreement_held_out']['after']['volumes'] == 4
    shipped = load_folder('miqa-default')[1]
    assert spec.members == shipped.members and len(members) == len(shipped.members)
    installed = load_folder(tmp_path / 'shipped')  # what --ship-to installed: the same model
    assert installed[1].to_json() == spec.to_json() and len(installed[4]) == len(members)
    assert (tmp_path / 'shipped' / 'agreement.json').is_file()
    for name in ('final', *spec.members):  # every network of the model, fine-tuned 1 epoch
        history = agreement['history'][name]
        assert len(history) == 1 and np.isfinite(history[0]['train_loss'])
    assert agreement['start_model']['name'] == 'miqa-default'
    png = (out / 'agreement.png').read_bytes()
    assert png.startswith(b'\x89PNG') and len(png) > 5000
