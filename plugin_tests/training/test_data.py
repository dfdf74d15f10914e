"""Label CSV parsing, subject folds and the masked loss."""

import math

import numpy as np
import pytest
import torch

from miqa_worker.constants import ARTIFACT_KEYS
from miqa_worker.training.dataset import subject_folds
from miqa_worker.training.labels import read_label_csv
from miqa_worker.training.losses import miqa_loss


def test_label_csv_blank_is_unknown(tmp_path):
    header = 'path,Subject_ID,quality,' + ','.join(ARTIFACT_KEYS) + ',decision\n'
    rows = [
        'a.nii.gz,s1,7.5,' + ','.join(['false'] * 10) + ',usable\n',
        '/abs/b.nrrd,,,' + ',,TRUE,,,1,no,,,,\n',
    ]
    path = tmp_path / 'labels.csv'
    path.write_text(header + ''.join(rows))
    first, second = read_label_csv(path)
    assert first.file == str(tmp_path / 'a.nii.gz')
    assert first.subject_id == 's1' and first.quality == 7.5
    assert first.indicator_mask.all() and not first.indicators.any()
    assert first.extra == {'decision': 'usable'}
    assert second.file == '/abs/b.nrrd' and second.subject_id == '/abs/b.nrrd'
    assert math.isnan(second.quality) and not second.quality_known
    expected = {'incomplete_coverage': 1.0, 'ghosting_motion': 1.0, 'inhomogeneity': 0.0}
    for k, key in enumerate(ARTIFACT_KEYS):
        if key in expected:
            assert second.indicators[k] == expected[key]
        else:
            assert math.isnan(second.indicators[k])
    assert second.indicator_mask.sum() == 3


def test_label_csv_missing_columns_and_bad_values(tmp_path):
    path = tmp_path / 'only.csv'
    path.write_text('file,quality\nx.nii,3\n')
    (row,) = read_label_csv(path)
    assert not row.indicator_mask.any() and row.quality == 3.0
    path.write_text('file,quality\nx.nii,11\n')
    with pytest.raises(ValueError, match='outside'):
        read_label_csv(path)
    path.write_text('file,lesion\nx.nii,maybe\n')
    with pytest.raises(ValueError, match='only.csv:2'):
        read_label_csv(path)
    path.write_text('subject_id,quality\ns,3\n')
    with pytest.raises(ValueError, match='"file" or "path"'):
        read_label_csv(path)


def test_folds_never_split_a_subject():
    rng = np.random.default_rng(0)
    subjects = np.array([f's{i}' for i in rng.integers(0, 12, 200)])
    folds = subject_folds(subjects, 5, seed=1)
    assert set(folds) == set(range(5))
    for s in np.unique(subjects):
        assert len(set(folds[subjects == s])) == 1
    sizes = np.bincount(folds)
    assert sizes.max() - sizes.min() <= np.unique(subjects, return_counts=True)[1].max()
    assert (subject_folds(subjects, 5, seed=1) == folds).all()  # deterministic
    with pytest.raises(ValueError, match='subject-disjoint'):
        subject_folds(np.array(['a', 'b', 'a']), 5)


def test_loss_masks_unknown_labels():
    torch.manual_seed(0)
    outputs = torch.randn(4, 11, requires_grad=True)
    quality = torch.tensor([5.0, math.nan, 2.0, math.nan])
    indicators = torch.full((4, 10), math.nan)
    indicators[0, 5] = 1.0
    indicators[2, 6] = 0.0
    loss, parts = miqa_loss(outputs, quality, indicators)
    loss.backward()
    grad = outputs.grad
    assert grad[1, 0] == 0 and grad[3, 0] == 0  # unknown quality: no gradient
    known = torch.zeros(4, 10, dtype=torch.bool)
    known[0, 5] = known[2, 6] = True
    assert (grad[:, 1:][~known] == 0).all() and (grad[:, 1:][known] != 0).all()
    # changing the outputs where labels are unknown does not change the loss
    changed = outputs.detach().clone()
    changed[1] += 100
    changed[:, 1:][~known] -= 50
    again, _ = miqa_loss(changed, quality, indicators)
    assert again.item() == pytest.approx(loss.item())
    nothing, parts = miqa_loss(outputs, torch.full((4,), math.nan), torch.full((4, 10), math.nan))
    assert nothing.item() == 0.0 and parts == {'quality': 0.0, 'indicators': 0.0}


def test_local_artifacts_label_only_the_tiles_that_show_them():
    from miqa_worker.training.dataset import COVERAGE, WRAPAROUND, tile_indicators

    volume = np.full(10, np.nan, dtype=np.float32)
    volume[COVERAGE] = volume[WRAPAROUND] = 1.0
    profile = [False] * 150
    profile[130:150] = [True] * 20  # folded-in tissue at the high end along y
    local = {'coverage': {'axis': 2, 'side': 'high'},
             'wraparound': {'axis': 1, 'profile': profile}}
    shape = (100, 150, 120)
    at_cut = tile_indicators(volume, local, np.array([0, 0, 56]), shape)
    inside = tile_indicators(volume, local, np.array([0, 40, 20]), shape)
    folded = tile_indicators(volume, local, np.array([0, 86, 20]), shape)
    assert at_cut[COVERAGE] == 1 and inside[COVERAGE] == 0 and folded[COVERAGE] == 0
    assert folded[WRAPAROUND] == 1 and inside[WRAPAROUND] == 0 and at_cut[WRAPAROUND] == 0
    assert np.isnan(inside[0])  # unknown stays unknown
    negative = volume.copy()
    negative[COVERAGE] = 0.0
    assert tile_indicators(negative, local, np.array([0, 0, 56]), shape)[COVERAGE] == 0


def test_augmented_tiles_are_flips_and_axis_orders_of_the_tile():
    from miqa_worker.training.dataset import augment_tile

    rng = np.random.default_rng(0)
    tile = np.arange(4 * 5 * 6).reshape(4, 5, 6)
    seen = set()
    for _ in range(200):
        out = augment_tile(tile, rng)
        assert sorted(out.ravel().tolist()) == tile.ravel().tolist()
        seen.add((out.shape, int(out.flat[0])))
    assert len({shape for shape, _ in seen}) == 6  # every axis order
    assert len({corner for _, corner in seen}) == 8  # every corner first: every flip


def test_epoch_batches_hold_every_tile_and_each_whole_volume_view():
    from miqa_worker.training.dataset import VolumeSet, tile_batches

    rng = np.random.default_rng(1)
    volumes = [rng.integers(0, 255, (70, 66, 64), dtype=np.uint8) for _ in range(3)]
    views = np.stack([np.full((64, 64, 64), 10 * (n + 1), np.uint8) for n in range(3)])
    indicators = np.zeros((3, 10), np.float32)
    data = VolumeSet(['a', 'b', 'c'], np.array(['s1', 's2', 's3']), volumes,
                     np.array([1.0, 5.0, 9.0], np.float32), indicators, views=views)
    batches = list(tile_batches(data, np.array([0, 2]), 3, 4, rng, global_views=True,
                                augment=True))
    tiles = torch.cat([b[0] for b in batches])
    quality = torch.cat([b[1] for b in batches])
    assert tiles.shape == (8, 1, 64, 64, 64)  # 2 volumes x (3 tiles + 1 view)
    assert sorted(quality.tolist()) == [1.0] * 4 + [9.0] * 4
    constant = [t for t in tiles if float(t.std()) == 0]
    assert sorted(round(float(t.mean()) * 255) for t in constant) == [10, 30]
    without = list(tile_batches(data, np.array([0, 2]), 3, 4, rng))
    assert sum(len(b[0]) for b in without) == 6


def test_view_weights_are_chosen_per_output_on_out_of_fold_predictions():
    """Each output takes the share that scores best; unlabelled outputs keep the default."""
    from miqa_worker.training.dataset import VolumeSet
    from miqa_worker.training.evaluate import blend_parts, choose_view_weights

    rng = np.random.default_rng(0)
    n = 200
    quality = rng.uniform(0, 10, n).astype(np.float32)
    indicators = np.full((n, 10), np.nan, np.float32)
    cover = ARTIFACT_KEYS.index('incomplete_coverage')
    ghost = ARTIFACT_KEYS.index('ghosting_motion')
    indicators[:, cover] = rng.integers(0, 2, n)
    indicators[:, ghost] = rng.integers(0, 2, n)
    data = VolumeSet([str(i) for i in range(n)], np.array(['s'] * n), [None] * n, quality,
                     indicators)
    noise = rng.normal(0, 3, (n, 11))
    tiles = np.c_[quality, np.full((n, 10), 0.5)] + noise * 0.1  # tiles know quality...
    view = np.c_[quality, np.full((n, 10), 0.5)] + noise  # ...the view is noisier
    tiles[:, 1 + cover] = rng.uniform(0, 4, n)  # but only the view sees coverage
    view[:, 1 + cover] = indicators[:, cover] * 0.5 + 0.25
    view[:, 1 + ghost] = tiles[:, 1 + ghost] = indicators[:, ghost] * 0.4 + 0.3  # both do
    choice = choose_view_weights(data, np.arange(n), tiles, view, default=0.5)
    weights = choice['weights']
    assert weights['quality'] == 0.0
    assert weights['incomplete_coverage'] == 1.0
    assert weights['ghosting_motion'] == 0.5  # a tie keeps the default
    assert weights['lesion'] == 0.5 and 'lesion' not in choice['scores']  # no labels
    assert set(choice['scores']['quality']) == {'0', '0.25', '0.5', '0.75', '1'}
    q, p = blend_parts(tiles, view, np.array(list(weights.values())))
    assert q.tolist() == pytest.approx(tiles[:, 0].tolist(), rel=1e-5)
    assert p[:, cover].tolist() == pytest.approx(view[:, 1 + cover].tolist(), rel=1e-5)


def test_the_shipped_manifest_names_the_bases_and_the_held_out_people(tmp_path):
    import json

    from miqa_worker.training.manifest import DEFAULT_MANIFEST, load_manifest
    from miqa_worker.training.synthetic import discover_sources

    manifest = load_manifest(DEFAULT_MANIFEST)
    assert manifest.held_out_subjects == ('ixi-IXI012', 'cstar-stroke')
    assert len(manifest.entries) == 9 and len({e.subject for e in manifest.entries}) == 6
    # the bases of the shipped model's cache, in the generator's order
    metrics = json.loads((DEFAULT_MANIFEST.parents[2] / 'models' / 'miqa-default'
                          / 'metrics.json').read_text())
    assert metrics['generator']['sources'] == ['mni152-t1', 'mni152-tissue'] + [
        e.file for e in manifest.entries]
    assert sorted(manifest.held_out_subjects) == metrics['test_subjects']
    assert manifest.roles()['cstar-stroke_patient_T2w-brain.nii.gz'] == (
        'cstar-stroke (held-out test)')
    # only the manifest's files that are present in the shared folder become bases
    (tmp_path / 'niivue-register_head_T2w.nii.gz').write_bytes(b'')
    (tmp_path / 'unlisted.nii.gz').write_bytes(b'')
    sources = discover_sources(tmp_path, manifest)
    assert [(s.name, s.subject_id, s.contrast) for s in sources] == [
        ('mni152-t1', 'mni152', 'T1w'), ('mni152-tissue', 'mni152', 'tissue'),
        ('niivue-register_head_T2w.nii.gz', 'niivue-head', 'T2w')]
    assert [s.name for s in discover_sources(None, manifest)] == ['mni152-t1', 'mni152-tissue']


@pytest.mark.parametrize('change, message', [
    ({'format': 'other'}, "format must be 'miqa-data-manifest/1'"),
    ({'extra': 1}, "unknown key 'extra'"),
    ({'sources': [{'file': 'a.nii', 'subject': 's', 'contrast': 'T1w', 'role': 'test'}]},
     'sources[0].role must be one of train, held-out'),
    ({'sources': [{'file': 'a.nii', 'contrast': 'T1w'}]},
     'sources[0].subject must be a non-empty string'),
])
def test_a_bad_manifest_is_refused_in_one_line(tmp_path, change, message):
    import json

    from miqa_worker.training.manifest import load_manifest

    path = tmp_path / 'manifest.json'
    path.write_text(json.dumps({'format': 'miqa-data-manifest/1', 'sources': [], **change}))
    with pytest.raises(ValueError, match=None) as info:
        load_manifest(path)
    assert message in str(info.value) and '\n' not in str(info.value)


def test_a_generated_volume_replays_from_its_recorded_draws(tmp_path):
    """Every cached volume is made again, bit for bit, from its anatomy and its index row."""
    import csv
    import json

    from miqa_worker.training.synthetic import generate, replay_volume

    torch.set_num_threads(1)
    generate(tmp_path, anatomies_per_subject=1, variants=3, seed=4, shared_dir=None,
             probability=0.5, templates_only_subjects=2, spacing_range=(4.0, 4.5),
             progress=False)
    with (tmp_path / 'index.csv').open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 6
    drawn = [json.loads(r['artifacts']) for r in rows]
    assert any(drawn) and all(p['family'] for params in drawn for p in params)
    for row in rows:
        volume, labels = replay_volume(tmp_path, row['volume_id'])
        assert np.array_equal(volume, np.load(tmp_path / row['file'])['volume']), row
        assert labels['quality'] == pytest.approx(float(row['quality']), abs=1e-3)


def test_leave_one_simulator_out_groups_post_processing_and_synthetic_heads(tmp_path):
    """With simulator groups, variant v of an anatomy is made by every implementation but group
    v mod n's (its ``held_out`` column), never by that group's simulators; synthetic heads are
    anatomies of subject ``synthetic``; post-processing is drawn; every volume replays."""
    import csv
    import json

    from miqa_worker.training.simulators import IMPLEMENTATION
    from miqa_worker.training.synthetic import generate, replay_volume

    torch.set_num_threads(1)
    groups = (('monai', 'segment'), ('torchio',))
    generate(tmp_path, anatomies_per_subject=1, variants=4, seed=5, shared_dir=None,
             probability=0.5, templates_only_subjects=1, spacing_range=(4.0, 4.5),
             progress=False, simulators=groups, post_processing=1.0, synthetic_heads=1)
    settings = json.loads((tmp_path / 'settings.json').read_text())
    assert settings['simulators'] == [list(g) for g in groups]
    assert settings['post_processing'] == 1.0 and settings['synthetic_heads'] == 1
    with (tmp_path / 'index.csv').open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 8  # one template anatomy and one synthetic head, 4 variants each
    assert {r['subject_id'] for r in rows} == {'mni152-a000', 'synthetic'}
    used = set()
    for row in rows:
        v = int(row['volume_id'].rsplit('-v', 1)[1])
        assert row['held_out'] == '+'.join(groups[v % 2])
        drawn = json.loads(row['artifacts'])
        assert drawn[-1]['family'] == 'postprocessing'  # probability 1: always last
        simulators = {p['simulator'] for p in drawn if 'simulator' in p}
        assert not {IMPLEMENTATION[s] for s in simulators} & set(groups[v % 2]), row
        used |= simulators
        volume, labels = replay_volume(tmp_path, row['volume_id'])
        assert np.array_equal(volume, np.load(tmp_path / row['file'])['volume']), row
        assert labels['quality'] == pytest.approx(float(row['quality']), abs=1e-3)
    assert {IMPLEMENTATION[s] for s in used} == {'monai', 'segment', 'torchio'}


def test_a_variant_group_trains_on_its_volumes_only_and_a_missing_one_is_named(tmp_path):
    """``train.variant_group`` keeps the development volumes of that group (a
    leave-one-simulator-out network); a group the cache lacks is refused, naming those it has."""
    from dataclasses import replace

    from miqa_worker.training.config import RunConfig, TrainConfig
    from miqa_worker.training.pipeline import load_run_data
    from miqa_worker.training.synthetic import generate

    torch.set_num_threads(1)
    generate(tmp_path, anatomies_per_subject=1, variants=4, seed=5, shared_dir=None,
             probability=0.3, templates_only_subjects=1, spacing_range=(4.0, 4.5),
             progress=False, simulators=(('monai', 'segment'), ('torchio',)))
    config = RunConfig(cache=tmp_path, out=tmp_path / 'run', fusion=False, baseline=False,
                       real_scans=False)
    every = load_run_data(config)
    assert len(every.dev_index) == 4
    for group in ('monai+segment', 'torchio'):
        run = load_run_data(replace(config, train=TrainConfig(variant_group=group)))
        assert [every.data.rows[i]['held_out'] for i in run.dev_index] == [group, group]
    with pytest.raises(ValueError, match=r"'0'.*has: monai\+segment, torchio"):
        load_run_data(replace(config, train=TrainConfig(variant_group='0')))
