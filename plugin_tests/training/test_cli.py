"""``miqa-train``: the shipped recipe's plan, recipe errors, and a tiny recipe run end to end."""

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from miqa_worker.network import build_network
from miqa_worker.training.cli import main
from miqa_worker.training.recipe import SHIPPED_RECIPE
from miqa_worker.training.report import PLOTS

MODEL_DIR = SHIPPED_RECIPE.parent
NARROW = [2, 4, 8, 8, 16]  # narrower than the shipped network: fast, and model.json says so


def _tiny_recipe(folder: Path) -> Path:
    """Templates only (no real scans): 5 nominal subjects, 10 small coarse volumes in each of
    two caches; one held-out subject; 2 folds of 1 epoch; two final networks; fused."""
    recipe = {
        'format': 'miqa-recipe/1',
        'model': {'name': 'tiny', 'version': '0.0.1', 'description': 'a tiny test model'},
        'data': {'shared_dir': None, 'held_out_subjects': ['mni152-a004']},
        'generate': {'anatomies': 1, 'variants': 2, 'probability': 0.5, 'spacing': [4.0, 4.5],
                     'templates_only_subjects': 5,
                     'caches': [{'name': 'main', 'dir': str(folder / 'cache'), 'seed': 0},
                                {'name': 'fresh', 'dir': str(folder / 'fresh'), 'seed': 1}]},
        'train': {'cache': 'main', 'folds': 2, 'epochs': 1, 'final_epochs': 1,
                  'final_members': 2, 'tiles_per_volume': 1, 'batch_size': 4,
                  'channels': NARROW},
        'evaluate': {'view_flips': 2, 'grid_tiles': 1, 'real_scans': False},
        'fusion': {'enabled': True, 'caches': ['fresh']},
        'run': {'out': str(folder / 'run'), 'threads': 1},
        'ship': {'to': str(folder / 'model')},
    }
    path = folder / 'recipe.json'
    path.write_text(json.dumps(recipe), encoding='utf-8')
    return path


def _plan(args: list[str]) -> dict[str, dict]:
    """``run --plan`` output as {stage: {parameter: value}}."""
    result = CliRunner().invoke(main, ['run', *args, '--plan'], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    stages: dict[str, dict] = {}
    for line in result.output.splitlines()[1:]:
        if not line.startswith(' '):
            current = stages.setdefault(line.split('. ', 1)[1], {})
        else:
            key, value = line.strip().split(': ', 1)
            current[key] = json.loads(value)
    return stages


def test_plan_of_the_shipped_recipe(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the manifest is found beside the package from anywhere
    monkeypatch.delenv('MIQA_SHARED_MRI', raising=False)
    result = CliRunner().invoke(main, ['run', '--recipe', str(SHIPPED_RECIPE), '--plan'])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == 'plan of miqa-default 0.6.0: 17 stages'
    stages = _plan(['--recipe', str(SHIPPED_RECIPE)])
    assert list(stages) == [
        'generate cache-v3', *(f'generate cache-x{n}' for n in range(1, 6)),
        'generate cache-c6', 'final networks', 'folds', 'view shares', 'evaluate', 'fusion',
        'real scans', 'baseline', 'report', 'ship', 'calibrate']
    for n in range(6):  # the card's six generate lines, seeds 0-5
        gen = stages[f'generate cache-{"v3" if n == 0 else f"x{n}"}']
        assert gen['seed'] == n and gen['cache'] == f'.state/cache-{"v3" if n == 0 else f"x{n}"}'
        assert (gen['anatomies'], gen['variants'], gen['probability']) == (30, 4, 0.2)
        assert gen['severity'] == [0.25, 1.0] and gen['spacing'] == [1.0, 2.0]
        assert gen['families'] == ['ghosting', 'motion', 'bias', 'spike', 'noise',
                                   'wraparound', 'coverage']
    finals = stages['final networks']
    assert finals['members'] == ['final (seed 0)', 'final-1 (seed 1)']
    assert (finals['epochs'], finals['threads'], finals['lr_decay']) == (40, 1, 0.94)
    assert finals['penalty_outputs'] is True and finals['channels'] == [4, 8, 16, 32, 64]
    folds = stages['folds']
    assert (folds['folds'], folds['epochs'], folds['threads']) == (5, 12, 2)
    assert folds['test_subjects'] == ['ixi-IXI012', 'cstar-stroke']
    assert (folds['tiles_per_volume'], folds['batch_size'], folds['learning_rate']) == (
        4, 16, 0.002)
    assert stages['evaluate'] == {'held-out subjects': ['ixi-IXI012', 'cstar-stroke'],
                                  'grid_tiles': 27, 'view_flips': 4, 'view members': 1}
    assert stages['fusion']['fresh caches'] == [f'.state/cache-x{n}' for n in range(1, 6)]
    assert stages['report'] == {'out': '.state/run-v14', 'resume': True}
    assert stages['ship'] == {'to': 'miqa_worker/models/miqa-default', 'name': 'miqa-default',
                              'version': '0.6.0'}
    # the calibration: fitted on seed-6 volumes no network or fusion saw, after shipping
    assert (stages['generate cache-c6']['seed'], stages['generate cache-c6']['anatomies']) == (
        6, 20)
    assert stages['calibrate']['fit on'].startswith('.state/cache-c6')
    assert stages['calibrate']['measure on'].startswith('.state/cache-v3 (held-out subjects')
    assert stages['calibrate']['model'] == 'miqa_worker/models/miqa-default'
    assert not list(tmp_path.iterdir())  # a plan runs nothing


def test_plan_agrees_with_the_shipped_model():
    """The recipe's settings are those model.json, metrics.json and fusion.json record."""
    stages = _plan(['--recipe', str(SHIPPED_RECIPE)])
    metrics = json.loads((MODEL_DIR / 'metrics.json').read_text())
    spec = json.loads((MODEL_DIR / 'model.json').read_text())
    fusion = json.loads((MODEL_DIR / 'fusion.json').read_text())
    trained = {k: v for k, v in stages['folds'].items()
               if k not in ('cache', 'folds', 'epochs', 'test_subjects', 'threads')}
    from miqa_worker.training.train import ADDED_SETTINGS

    assert trained == {k: v for k, v in {**ADDED_SETTINGS, **metrics['config']}.items()
                       if k not in ('epochs', 'average_last')}
    assert metrics['config']['average_last'] == 0.0  # off: the option is gone
    assert stages['folds']['epochs'] == metrics['config']['epochs']
    assert stages['final networks']['epochs'] == metrics['final_epochs']
    assert stages['evaluate']['view_flips'] == spec['view']['flips'] == metrics['view_flips']
    assert len(spec['members']) == stages['evaluate']['view members']
    assert sorted(stages['evaluate']['held-out subjects']) == metrics['test_subjects']
    gen = stages['generate cache-v3']
    assert {'seed': gen['seed'], 'anatomies_per_subject': gen['anatomies'],
            'variants': gen['variants'], 'families': gen['families'],
            'probability': gen['probability'], 'severity': gen['severity'],
            'spacing_range': gen['spacing']} == {
        k: v for k, v in metrics['generator'].items()
        if k not in ('templates_only', 'sources')}
    fresh = [Path(c).name for c in stages['fusion']['fresh caches']]
    assert all(f'fresh volumes of {name}' in fusion['fitted_on'] for name in fresh)


def test_defaults_are_the_shipped_recipe(tmp_path):
    stages = _plan(['--cache-dir', str(tmp_path / 'c'), '--out', str(tmp_path / 'o')])
    shipped = _plan(['--recipe', str(SHIPPED_RECIPE)])
    assert list(stages) == ['final networks', 'folds', 'view shares', 'evaluate', 'fusion',
                            'real scans', 'baseline', 'report']  # no generation, no shipping
    for stage in ('final networks', 'folds'):
        for key, value in shipped[stage].items():
            if key not in ('cache', 'threads'):
                assert stages[stage][key] == value, (stage, key)
    assert stages['evaluate'] == shipped['evaluate']
    assert stages['fusion']['fresh caches'] == []
    help_text = CliRunner().invoke(main, ['run', '--help']).output
    assert '--lr-decay FLOAT' in help_text and '0.94' in help_text
    changed = _plan(['--recipe', str(SHIPPED_RECIPE), '--lr-decay', '0.8', '--view-flips', '8',
                     '--final-members', '1', '--no-fusion'])
    assert changed['folds']['lr_decay'] == 0.8 and changed['evaluate']['view_flips'] == 8
    assert changed['final networks']['members'] == ['final (seed 0)'] and 'fusion' not in changed


@pytest.mark.parametrize('option', [['--average-last', '0.5'], ['--channels', '2,4,8,8,16'],
                                    ['--preliminary']])
def test_unshipped_trial_options_are_gone(tmp_path, option):
    result = CliRunner().invoke(main, ['run', '--out', str(tmp_path / 'o'), *option])
    assert result.exit_code == 2 and 'No such option' in result.output


@pytest.mark.parametrize('change, message', [
    ({'trian': {}}, 'unknown key trian'),
    ({'train': {'lr_decai': 0.9}}, 'unknown key train.lr_decai'),
    ({'train': {'epochs': '12'}}, "train.epochs must be int, not '12'"),
    ({'train': {'augment': 1}}, 'train.augment must be bool, not 1'),
    ({'evaluate': {'view_flips': 9}}, 'evaluate.view_flips must be within 1..8, not 9'),
    ({'train': {'lr_decay': 1.5}}, 'train.lr_decay must be within (0, 1], not 1.5'),
    ({'generate': {'probability': 0.7}}, 'generate.probability must be within 0.1..0.5'),
    ({'run': {'threads': 0}}, 'run.threads must be at least 1, not 0'),
    ({'fusion': {'caches': ['cache-x9']}}, "fusion.caches[0]: no cache named 'cache-x9'"),
    ({'format': 'miqa-recipe/9'}, "format must be 'miqa-recipe/1'"),
    ({'data': {'manifest': 'nowhere.json'}}, 'data.manifest: data manifest nowhere.json'),
])
def test_a_bad_recipe_is_a_one_line_error(tmp_path, change, message):
    raw = json.loads(SHIPPED_RECIPE.read_text())
    for key, value in change.items():  # one field changed (or added) in the shipped recipe
        merge = isinstance(value, dict) and isinstance(raw.get(key), dict)
        raw[key] = {**raw[key], **value} if merge else value
    path = tmp_path / 'recipe.json'
    path.write_text(json.dumps(raw))
    result = CliRunner().invoke(main, ['run', '--recipe', str(path), '--plan'])
    assert result.exit_code == 2, result.output
    assert 'Traceback' not in result.output
    error = [line for line in result.output.splitlines() if line.startswith('Error:')]
    assert len(error) == 1 and message in error[0], result.output


def test_generate_refuses_unknown_families(tmp_path):
    for families in ('ghosting,wobble', 'ghosting,truncation'):  # truncation was not kept
        result = CliRunner().invoke(main, ['generate', '--cache-dir', str(tmp_path / 'c'),
                                           '--families', families])
        assert result.exit_code == 2
        assert f'unknown families {families.split(",")[1]}' in result.output
    assert not (tmp_path / 'c').exists()


def test_run_refuses_fusion_caches_without_fresh_volumes(tmp_path):
    cache = tmp_path / 'cache'
    cache.mkdir()
    (cache / 'index.csv').write_text('volume_id,severity_ghosting\n')
    (cache / 'settings.json').write_text('{"seed": 0}')
    twin = tmp_path / 'twin'
    shutil.copytree(cache, twin)
    (tmp_path / 'empty').mkdir()
    cases = [([str(cache)], 'holds the training volumes again'),
             ([str(twin)], 'generate it with another --seed'),
             ([str(tmp_path / 'empty')], 'has no index.csv'),
             ([str(twin), '--no-fusion'], 'needs the fused indicator')]
    for args, message in cases:
        result = CliRunner().invoke(main, ['run', '--cache-dir', str(cache), '--out',
                                           str(tmp_path / 'out'), '--fusion-cache', *args])
        assert result.exit_code == 2, result.output
        assert message in result.output
        assert not (tmp_path / 'out').exists()


def test_run_refuses_a_cache_it_cannot_train_on(tmp_path):
    ingested = tmp_path / 'ingested'
    ingested.mkdir()
    (ingested / 'index.csv').write_text('volume_id,file,subject_id,quality\n')
    cases = [(tmp_path / 'absent', 'no index.csv in the cache'),
             (ingested, 'has no artifact severities')]
    for cache, message in cases:
        result = CliRunner().invoke(main, ['run', '--cache-dir', str(cache), '--out',
                                           str(tmp_path / 'out')])
        assert result.exit_code == 2 and message in result.output, result.output
        assert 'Traceback' not in result.output and not (tmp_path / 'out').exists()
    assert '--no-penalty-outputs' in result.output  # the way out


def test_training_writes_the_shipped_model_json():
    """model.json written by the ship stage from the shipped run's metrics is the shipped one
    but its date and the calibration block, which the recipe's later calibrate stage adds."""
    from miqa_worker.model_spec import load_spec
    from miqa_worker.training.pipeline import model_spec

    metrics = json.loads((MODEL_DIR / 'metrics.json').read_text())
    shipped = load_spec(MODEL_DIR).to_json()
    calibration = shipped['postprocessing'].pop('calibration')
    assert set(calibration) >= {'indicators', 'quality_interval'}, sorted(calibration)
    spec = load_spec(MODEL_DIR)
    written = model_spec(metrics, spec.name, spec.version, spec.description,
                         list(spec.members), True).checked()
    assert written.to_json() == {**shipped, 'created': written.created}


def test_tiny_recipe_runs_end_to_end_and_resumes(tmp_path):
    recipe = _tiny_recipe(tmp_path)
    out, shipped = tmp_path / 'run', tmp_path / 'model'
    torch.set_num_threads(1)
    began = time.perf_counter()
    result = CliRunner().invoke(main, ['run', '--recipe', str(recipe), '--quiet'],
                                catch_exceptions=False)
    seconds = time.perf_counter() - began
    assert result.exit_code == 0, result.output
    print(f'tiny recipe end to end: {seconds:.1f} s')
    metrics = json.loads((out / 'metrics.json').read_text())
    assert metrics['test_subjects'] == ['mni152-a004'] and metrics['recipe'] == str(recipe)
    assert metrics['volumes'] == {'development': 8, 'test': 2}
    assert len(metrics['folds']) == 2
    for fold in metrics['folds']:
        assert not set(fold['train_subjects']) & set(fold['val_subjects'])
        assert 'mni152-a004' not in fold['train_subjects'] + fold['val_subjects']
    assert np.array(metrics['final']['test']['confusion']).sum() == 2
    assert 'test_network_only' in metrics['final'] and 'test' in metrics['baseline']
    assert metrics['fusion']['sources'] == {'development volumes': 8,
                                            'fresh volumes of fresh': 8}
    families = metrics['penalty_families']
    build_network(tuple(NARROW), len(families)).load_state_dict(
        torch.load(out / 'final' / 'weights.pt', weights_only=True))
    second = torch.load(out / 'final-1' / 'checkpoint.pt', weights_only=False)
    assert second['config']['seed'] == 1 and len(second['history']) == 1
    for name in PLOTS:
        assert (out / name).read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    card = (out / 'MODEL_CARD.md').read_text(encoding='utf-8')
    assert f'miqa-train run --recipe {recipe}' in card and '2, 4, 8, 8, 16 channels' in card
    assert 'run as 2 mirror images' in card and 'more network(s) of the same recipe' in card

    # the shipped folder: what the worker loads, with the recipe beside it
    from miqa_worker.assessment import Assessor
    from miqa_worker.image_io import ScanVolume
    from miqa_worker.model_spec import load_spec

    spec = load_spec(shipped)
    assert (spec.name, spec.version) == ('model', '0.0.1')  # the folder's name, installed
    assert spec.network.channels == tuple(NARROW) and spec.view.flips == 2
    assert spec.members == ('member-1.pt',) and spec.fusion.indicator == 'ghosting_motion'
    assert spec.postprocessing.penalty_families == tuple(families)
    assert json.loads((shipped / 'recipe.json').read_text()) == json.loads(recipe.read_text())
    volume = np.load(tmp_path / 'cache' / 'volumes' / 'mni152-t1-a000-v00.npz')['volume']
    assessed = Assessor(shipped, threads=1).assess_volume(
        ScanVolume(volume.astype(np.float32), (4.0, 4.0, 4.0), 'RAS', 'array'), metrics=False)
    assert 0 <= assessed['quality'] <= 10 and list(assessed['penalties']) == families
    assert assessed['artifacts']['ghosting_motion'] == assessed['fusion']['probability']

    # resume to one more epoch with other view flips and no fusion: checkpoints continue
    first_epoch = torch.load(out / 'final' / 'checkpoint.pt', weights_only=False)['history'][0]
    result = CliRunner().invoke(main, ['run', '--recipe', str(recipe), '--quiet', '--resume',
                                       '--epochs', '2', '--final-epochs', '2',
                                       '--view-flips', '4', '--no-fusion', '--no-baseline'],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    state = torch.load(out / 'final' / 'checkpoint.pt', weights_only=False)
    assert state['epoch'] == 1 and state['history'][0] == first_epoch
    fold0 = json.loads((out / 'fold-0' / 'fold-metrics.json').read_text())
    assert [h['epoch'] for h in fold0['history']] == [1, 2] and fold0['val_parts']['flips'] == 4
    assert 'fusion' not in json.loads((out / 'metrics.json').read_text())
    assert not (out / 'fusion.json').exists() and not (shipped / 'fusion.json').exists()
    assert load_spec(shipped).fusion is None and load_spec(shipped).view.flips == 4
