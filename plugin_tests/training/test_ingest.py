"""Which review decisions label a scan, the labels they give, the agreement figures, the split
and the one-line errors of ``miqa-train ingest --project`` / ``run --fine-tune-from``.

The decisions are dicts in the shape of the project's JSON export (``GET
/miqa/project/{id}/export?format=json``); the loop through a real server is
``plugin_tests/stack/test_ingest_loop.py``.
"""

import math

import numpy as np
import pytest
from click.testing import CliRunner

from miqa_worker.constants import ARTIFACT_KEYS
from miqa_worker.training.cli import main
from miqa_worker.training.ingest import decision_labels, label_decision

REVIEWER = {'userId': '6b1160000000000000000001', 'login': 'tiertwo'}


def _decision(tier: int, decision: str, **extra) -> dict:
    return {**REVIEWER, 'tier': tier, 'decision': decision, 'artifacts': {}, **extra}


def test_the_latest_stated_tier2_decision_labels_a_scan():
    first = _decision(2, 'bad', artifacts={'ghosting_motion': 'present'}, _id='a')
    second = _decision(2, 'good', _id='b')
    stale = _decision(2, 'bad', _id='c', superseded=True)
    assert label_decision([_decision(1, 'good'), first, second, stale]) == (second, 'labelled')
    assert label_decision([first, stale])[0] is first  # superseded never wins, even if later


@pytest.mark.parametrize('decisions, why', [
    ([], 'unreviewed'),
    ([_decision(1, 'good'), _decision(1, 'questionable')], 'tier1_only'),
    ([_decision(2, 'bad', superseded=True)], 'superseded'),
    ([_decision(2, 'bad', userId=None, login='someone (unverified)',
                reviewerClaimed='someone')], 'unverified'),
    ([_decision(2, 'good', userId=None, login='someone')], 'unverified'),
])
def test_scans_without_a_stated_tier2_decision_are_skipped_with_the_reason(decisions, why):
    assert label_decision(decisions) == (None, why)


def test_an_import_a_site_admin_attributed_counts():
    imported = _decision(2, 'good', reviewerClaimed='tiertwo', source='import')
    assert label_decision([imported]) == (imported, 'labelled')


def test_labels_are_what_the_reviewer_stated_never_accepted_suggestions():
    quality, indicators = decision_labels(_decision(
        2, 'bad', artifacts={'ghosting_motion': 'present', 'inhomogeneity': 'present',
                             'wraparound': 'absent'},
        acceptedSuggestions=['inhomogeneity']))
    by_key = dict(zip(ARTIFACT_KEYS, indicators.tolist(), strict=True))
    assert quality == 2.0
    assert by_key['ghosting_motion'] == 1.0 and by_key['wraparound'] == 0.0
    assert math.isnan(by_key['inhomogeneity'])  # the model's suggestion, only accepted
    assert sum(not math.isnan(v) for v in by_key.values()) == 2  # unstated keys: unknown
    assert decision_labels(_decision(2, 'good'))[0] == 9.0
    assert decision_labels(_decision(2, 'bad', quality=0.5,
                                     artifacts={'lesion': 'present'}))[0] == 0.5


def test_agreement_figures():
    from miqa_worker.training.finetune import agreement

    figures = agreement(np.array([9.0, 6.0, 4.0, 7.0]), np.array([1, 1, 0, 0]))
    assert figures['accuracy'] == 0.75 and figures['model_good'] == 3
    assert figures['kappa'] == pytest.approx(0.5)
    assert figures['auc'] == pytest.approx(0.75)
    assert figures['confusion'] == [[1, 1], [0, 2]]
    one_class = agreement(np.array([9.0, 8.0]), np.array([1, 1]))
    assert one_class['auc'] is None and one_class['kappa'] is None
    assert one_class['accuracy'] == 1.0


def test_held_out_split_is_by_subject_and_holds_both_decisions():
    from miqa_worker.training.dataset import VolumeSet
    from miqa_worker.training.finetune import FineTuneError, held_out_split

    subjects = np.array(['a', 'a', 'b', 'c', 'd', 'e', 'f', 'g'])
    good = np.array([1, 1, 1, 1, 0, 0, 0, 1], dtype=float)
    data = VolumeSet([str(n) for n in range(8)], subjects, [None] * 8,
                     np.zeros(8, np.float32), np.zeros((8, 10), np.float32))
    train, test = held_out_split(data, good, (), seed=3)
    assert not set(subjects[train]) & set(subjects[test])
    assert set(good[test]) == {0.0, 1.0}
    assert sorted([*train, *test]) == list(range(8))
    train, test = held_out_split(data, good, ('b', 'not-here'))
    assert subjects[test].tolist() == ['b']
    with pytest.raises(FineTuneError, match='cannot give both'):
        held_out_split(data, good, tuple('abcdefg'))


@pytest.mark.parametrize('args, message', [
    (['ingest'], 'give a label CSV or --project ID'),
    (['ingest', '--project', 'abc', '--api-url', 'http://127.0.0.1:9/api/v1'],
     '--api-key is required with --project'),
    (['ingest', 'labels.csv', '--project', 'abc'], 'not both'),
    (['ingest', 'labels.csv'], '--cache-dir is required with a label CSV'),
])
def test_ingest_usage_errors_are_one_line(tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv('GIRDER_API_KEY', raising=False)
    (tmp_path / 'labels.csv').write_text('file\nx.nii.gz\n')
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and message in result.output
    assert 'Traceback' not in result.output


def test_ingest_from_an_unreachable_server_is_one_line(tmp_path):
    from miqa_worker.training.ingest import IngestError, connect

    with pytest.raises(IngestError, match='cannot reach http://127.0.0.1:9/api/v1'):
        connect('http://127.0.0.1:9/api/v1', 'k' * 40)
    result = CliRunner().invoke(main, ['ingest', '--project', 'abc', '--api-url',
                                       'http://127.0.0.1:9/api/v1', '--api-key', 'k' * 40,
                                       '--cache-dir', str(tmp_path)])
    assert result.exit_code == 1 and 'cannot reach' in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_fine_tune_needs_an_ingested_cache(tmp_path):
    base = ['run', '--out', str(tmp_path / 'run'), '--fine-tune-from', 'miqa-default',
            '--quiet']
    result = CliRunner().invoke(main, [*base, '--cache-dir', str(tmp_path / 'none')])
    assert result.exit_code == 2 and 'no index.csv in the cache' in result.output
    cache = tmp_path / 'generated'
    (cache / 'volumes').mkdir(parents=True)
    np.savez_compressed(cache / 'volumes' / 'v.npz', volume=np.zeros((8, 8, 8), np.uint8))
    (cache / 'index.csv').write_text('volume_id,file,subject_id,quality\n'
                                     'v,volumes/v.npz,s,5\n')
    result = CliRunner().invoke(main, [*base, '--cache-dir', str(cache)])
    assert result.exit_code == 2 and 'has no tier-2 decisions' in result.output
    (cache / 'index.csv').write_text('volume_id,file,subject_id,quality,tier2_good\n'
                                     'v,volumes/v.npz,s,5,true\n')
    result = CliRunner().invoke(main, [*base[:3], '--fine-tune-from', 'no-such-model',
                                       '--cache-dir', str(cache)])
    assert result.exit_code == 2 and 'no-such-model' in result.output


def test_fine_tune_plan(tmp_path):
    result = CliRunner().invoke(main, ['run', '--cache-dir', str(tmp_path), '--out',
                                       str(tmp_path / 'o'), '--fine-tune-from', 'miqa-default',
                                       '--epochs', '2', '--plan'])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].endswith(': 2 stages') and lines[1] == '1. fine-tune'
    assert '   epochs: 2' in lines and '   learning_rate: 0.0002' in lines


def test_a_recipe_can_fine_tune(tmp_path):
    """``train.fine_tune_from`` in a recipe is the typed config's ``fine_tune_from``; the
    shipped recipe trains from scratch."""
    import json

    from miqa_worker.training.recipe import RecipeError, load_recipe, shipped_config

    recipe = {'format': 'miqa-recipe/1', 'data': {'shared_dir': None},
              'generate': {'caches': [{'name': 'reviews', 'dir': str(tmp_path / 'c'),
                                       'seed': 0}]},
              'train': {'cache': 'reviews', 'epochs': 1, 'fine_tune_from': 'miqa-default'},
              'run': {'out': str(tmp_path / 'run')}}
    path = tmp_path / 'recipe.json'
    path.write_text(json.dumps(recipe))
    assert load_recipe(path).fine_tune_from == 'miqa-default'
    assert shipped_config().fine_tune_from is None
    recipe['train']['fine_tune_from'] = 3
    path.write_text(json.dumps(recipe))
    with pytest.raises(RecipeError, match='train.fine_tune_from must be str'):
        load_recipe(path)


def test_a_label_csv_still_ingests(tmp_path):
    """The CSV form of ``ingest`` (beside ``--project``): a cache ``load_cache`` reads."""
    import nibabel

    from miqa_worker.training.dataset import load_cache

    rng = np.random.default_rng(0)
    for name in ('a', 'b'):
        data = rng.uniform(0, 100, (20, 24, 16)).astype(np.float32)
        nibabel.save(nibabel.Nifti1Image(data, np.eye(4)), str(tmp_path / f'{name}.nii.gz'))
    (tmp_path / 'labels.csv').write_text(
        'file,subject_id,quality,ghosting_motion,inhomogeneity,accepted_suggestions\n'
        'a.nii.gz,s1,9,false,false,\nb.nii.gz,s2,,true,true,inhomogeneity\n')
    result = CliRunner().invoke(main, ['ingest', str(tmp_path / 'labels.csv'), '--cache-dir',
                                       str(tmp_path / 'cache'), '--quiet'])
    assert result.exit_code == 0, result.output
    data = load_cache(tmp_path / 'cache')
    assert data.subjects.tolist() == ['s1', 's2'] and data.volumes[0].shape == (20, 24, 16)
    assert data.quality[0] == 9 and np.isnan(data.quality[1])
    assert data.indicators[:, ARTIFACT_KEYS.index('ghosting_motion')].tolist() == [0.0, 1.0]
    # an export's accepted_suggestions: the model's word, accepted, is not a label
    inhomogeneity = data.indicators[:, ARTIFACT_KEYS.index('inhomogeneity')]
    assert inhomogeneity[0] == 0.0 and np.isnan(inhomogeneity[1])
