"""A tiny end-to-end ``miqa-train`` run on small generated volumes, then resumed."""

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from click.testing import CliRunner

from miqa_worker.network import build_network
from miqa_worker.training.cli import main
from miqa_worker.training.report import PLOTS

COMMON = ['--folds', '5', '--tiles-per-volume', '1', '--batch-size', '4', '--eval-tiles', '1',
          '--test-subjects', 'mni152-a005', '--quiet', '--threads', '1',
          '--shared-dir', '/nonexistent',  # no real-scan look: fast and independent of ../shared
          '--channels', '2,4,8,8,16',  # narrower than the default: fast, and model.json says so
          '--average-last', '0.5',  # weight averaging, kept through every resume
          '--penalty-outputs',  # each family's quality points, shipped and reported
          '--final-members', '2']  # a second final network (seed + 1) for the view
NARROW = (2, 4, 8, 8, 16)


def _miqa_train() -> list[str]:
    """The installed console script, else the module."""
    script = Path(sys.executable).with_name('miqa-train')
    return [str(script)] if script.exists() else [sys.executable, '-m',
                                                  'miqa_worker.training.cli']


def _generate(cache: Path, seed: int = 0) -> None:
    """Templates only (no real scans), 6 nominal subjects, 12 small coarse volumes."""
    subprocess.run(_miqa_train() + [
        'generate', '--cache-dir', str(cache), '--templates-only', '--anatomies', '1',
        '--templates-only-subjects', '6', '--variants', '2', '--spacing', '4', '4.5',
        '--probability', '0.5', '--seed', str(seed)], check=True,
        env={**os.environ, 'OMP_NUM_THREADS': '1'}, capture_output=True, timeout=120)


def test_generate_train_report_resume(tmp_path):
    cache = tmp_path / 'cache'
    out = tmp_path / 'run'
    _generate(cache)
    with (cache / 'index.csv').open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 12 and len({r['subject_id'] for r in rows}) == 6
    assert all(r['normal_variant'] == '' and r['ghosting_motion'] in ('true', 'false')
               for r in rows)

    runner = CliRunner()
    result = runner.invoke(main, ['run', '--cache-dir', str(cache), '--out', str(out),
                                  '--epochs', '1', '--view-flips', '2', *COMMON],
                           catch_exceptions=False)
    assert result.exit_code == 0, result.output
    for fold in range(5):
        assert (out / f'fold-{fold}' / 'checkpoint.pt').is_file()
    state = torch.load(out / 'final' / 'checkpoint.pt', weights_only=False)
    assert state['epoch'] == 0 and len(state['history']) == 1
    families = json.loads((out / 'metrics.json').read_text())['penalty_families']
    assert families and set(families) <= {'ghosting', 'motion', 'bias', 'spike', 'noise',
                                          'wraparound', 'coverage'}
    build_network(NARROW, len(families)).load_state_dict(
        torch.load(out / 'final' / 'weights.pt', weights_only=True))
    metrics = json.loads((out / 'metrics.json').read_text())
    assert len(metrics['folds']) == 5
    for fold in metrics['folds']:
        assert not set(fold['train_subjects']) & set(fold['val_subjects'])
        assert 'r2' in fold['validation'] and 'confusion' in fold['validation']
        assert 'mni152-a005' not in fold['train_subjects'] + fold['val_subjects']
    assert metrics['test_subjects'] == ['mni152-a005']
    assert np.array(metrics['final']['test']['confusion']).sum() == 2
    assert 'test' in metrics['baseline'] and metrics['baseline']['folds']
    for name in PLOTS:
        assert (out / name).read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    assert 'simulated' in (out / 'MODEL_CARD.md').read_text(encoding='utf-8')
    assert metrics['view_flips'] == 2
    # ghosting_motion fused with the background metrics, fitted on the development volumes
    assert metrics['fusion']['indicator'] == 'ghosting_motion'
    assert metrics['fusion']['volumes'] == 10 and 'out_of_fold_auc' in metrics['fusion']
    fusion_spec = json.loads((out / 'fusion.json').read_text())
    assert fusion_spec['inputs'][0] == 'network_logit' and fusion_spec['trees']
    assert 'test_network_only' in metrics['final']
    assert np.array(metrics['final']['test_network_only']['confusion']).sum() == 2
    assert json.loads((out / 'fold-0' / 'fold-metrics.json').read_text())['val_parts'][
        'flips'] == 2

    # resume: one more epoch continues from the checkpoints instead of starting over; the
    # fused indicator also learns from a second cache's fresh volumes (another seed)
    first_epoch = state['history'][0]
    _generate(tmp_path / 'fresh', seed=1)
    result = runner.invoke(main, ['run', '--cache-dir', str(cache), '--out', str(out),
                                  '--epochs', '2', '--resume', '--no-baseline', *COMMON,
                                  '--fusion-cache', str(tmp_path / 'fresh'),
                                  '--ship-to', str(tmp_path / 'model')],
                           catch_exceptions=False)
    assert result.exit_code == 0, result.output
    fusion = json.loads((out / 'metrics.json').read_text())['fusion']
    # the held-out subject's fresh volumes stay out: 10 development + 10 fresh
    assert fusion['sources'] == {'development volumes': 10, 'fresh volumes of fresh': 10}
    assert fusion['volumes'] == 20
    assert set(fusion['out_of_fold_auc_by_source']) == set(fusion['sources'])
    assert '10 development volumes and 10 fresh volumes of fresh' in json.loads(
        (out / 'fusion.json').read_text())['fitted_on']
    state = torch.load(out / 'final' / 'checkpoint.pt', weights_only=False)
    assert state['epoch'] == 1 and state['history'][0] == first_epoch
    fold_history = json.loads((out / 'fold-0' / 'history.json').read_text())
    assert [h['epoch'] for h in fold_history] == [1, 2]
    shipped = tmp_path / 'model'
    info = json.loads((shipped / 'model.json').read_text())
    assert info['name'] == 'model' and info['version'] == '0.1.0'
    assert info['global_view_weight'] == 0.5  # the whole-volume view is on by default
    assert info['channels'] == list(NARROW)
    from miqa_worker.assessment import OUTPUT_NAMES

    # the view's share per output, chosen on the folds' out-of-fold predictions
    assert list(info['view_weights']) == list(OUTPUT_NAMES)
    assert set(info['view_weights'].values()) <= {0.0, 0.25, 0.5, 0.75, 1.0}
    chosen = json.loads((out / 'metrics.json').read_text())['view_weights']
    assert chosen['weights'] == info['view_weights'] and 'quality' in chosen['scores']
    for name in ('weights.pt', 'MODEL_CARD.md', 'metrics.json', 'fusion.json'):
        assert (shipped / name).is_file()
    from miqa_worker.model_store import load_model

    network, loaded = load_model(shipped)
    assert loaded['version'] == '0.1.0'
    from miqa_worker.assessment import Assessor
    from miqa_worker.image_io import ScanVolume

    volume = np.load(cache / rows[0]['file'])['volume'].astype(np.float32)
    result = Assessor(shipped, threads=1).assess_volume(
        ScanVolume(volume, (4.0, 4.0, 4.0), 'RAS', 'array'), metrics=False)
    assert result['globalView']['weights'] == info['view_weights']
    assert info['view_flips'] == result['globalView']['flips'] == 8  # the default
    assert result['artifacts']['ghosting_motion'] == result['fusion']['probability']
    assert info['penalty_families'] == families and list(result['penalties']) == families
    assert info['view_members'] == ['member-1.pt'] and (shipped / 'member-1.pt').is_file()
    assert result['globalView']['networks'] == 2
    second = torch.load(out / 'final-1' / 'checkpoint.pt', weights_only=False)
    assert second['config']['seed'] == 1 and len(second['history']) == 2
    assert 0 <= result['quality'] <= 10
    card = (out / 'MODEL_CARD.md').read_text(encoding='utf-8')
    assert '2, 4, 8, 8, 16 channels' in card and 'run as 8 mirror images' in card
    assert 'whole volume' in card and 'Not simulated for this model: truncation' in card
    assert 'over the last 50% of its epochs (stochastic weight averaging)' in card
    assert 'the quality points each simulated family costs' in card
    assert 'more network(s) of the same recipe' in card
    assert '10 fresh volumes of every person but the held-out ones from 1 more cache' in card
    assert f'miqa-train generate --cache-dir {tmp_path / "fresh"} --anatomies 1 --variants 2 ' \
        '--seed 1' in card  # "Reproduce" makes the fresh cache too
    assert state['averaging_start'] == 1 and state['averaged'] is not None

    # resume with other view flips: nothing retrains, the folds' halves are evaluated again
    result = runner.invoke(main, ['run', '--cache-dir', str(cache), '--out', str(out),
                                  '--epochs', '2', '--resume', '--no-baseline', *COMMON,
                                  '--view-flips', '4', '--no-fusion',
                                  '--ship-to', str(shipped)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    fold0 = json.loads((out / 'fold-0' / 'fold-metrics.json').read_text())
    assert fold0['val_parts']['flips'] == 4 and len(fold0['history']) == 2
    metrics = json.loads((out / 'metrics.json').read_text())
    assert metrics['view_flips'] == 4 and 'fusion' not in metrics
    # without fusion, the run's and the shipped model's earlier fusion.json are gone
    assert not (out / 'fusion.json').exists() and not (shipped / 'fusion.json').exists()
    shutil.rmtree(out)


def test_generate_refuses_unknown_families(tmp_path):
    result = CliRunner().invoke(main, ['generate', '--cache-dir', str(tmp_path / 'c'),
                                       '--families', 'ghosting,wobble'])
    assert result.exit_code == 2
    assert 'unknown families wobble' in result.output
    assert not (tmp_path / 'c').exists()


def test_run_refuses_bad_channels(tmp_path):
    result = CliRunner().invoke(main, ['run', '--cache-dir', str(tmp_path / 'c'),
                                       '--out', str(tmp_path / 'out'), '--channels', '8,16,x'])
    assert result.exit_code == 2
    assert 'channels must be 5 integers' in result.output
    assert not (tmp_path / 'out').exists()


def test_run_refuses_averaging_share_out_of_range(tmp_path):
    result = CliRunner().invoke(main, ['run', '--cache-dir', str(tmp_path / 'c'),
                                       '--out', str(tmp_path / 'out'), '--average-last', '1.5'])
    assert result.exit_code == 2
    assert '--average-last' in result.output and '1.5' in result.output
    assert not (tmp_path / 'out').exists()


def test_run_refuses_fusion_caches_without_fresh_volumes(tmp_path):
    cache = tmp_path / 'cache'
    cache.mkdir()
    (cache / 'index.csv').write_text('volume_id\n')
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
