"""miqa-assess: JSON lines, CSV, table, one-line errors and exit codes."""

import csv
import io
import json
import subprocess
import sys

import numpy as np
from click.testing import CliRunner

from miqa_worker.cli import main
from miqa_worker.constants import ARTIFACT_KEYS

from .conftest import TEST_MODEL, head_phantom


def _run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_json_lines_with_a_failure(model_path, write_nifti, tmp_path):
    good = write_nifti(head_phantom((70, 66, 64)), 'good.nii.gz')
    bad = tmp_path / 'bad.nii'
    bad.write_text('hello')
    result = _run('--format', 'json', '--model', model_path, good, bad)
    assert result.exit_code == 1
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line['file'] for line in lines] == [str(good), str(bad)]
    ok, failed = lines
    assert 0 <= ok['quality'] <= 10 and list(ok['artifacts']) == list(ARTIFACT_KEYS)
    assert ok['model']['name'] == TEST_MODEL and len(ok['model']['sha256']) == 64
    assert ok['model']['version'] == '0.0.0-test' and ok['seconds'] > 0
    assert failed == {'file': str(bad), 'error': failed['error']}
    assert 'not a readable image' in failed['error']
    assert 'Traceback' not in result.output


def test_all_good_exits_zero_and_table_is_default(model_path, write_nifti):
    good = write_nifti(head_phantom((64, 64, 64)), 'fine.nii.gz')
    result = _run('--model', model_path, '--no-metrics', good)
    assert result.exit_code == 0, result.output
    assert 'fine.nii.gz' in result.stdout and 'quality' in result.stdout
    assert f'model {TEST_MODEL} 0.0.0-test' in result.stdout


def test_csv(model_path, write_nifti, tmp_path):
    good = write_nifti(head_phantom((64, 64, 64)), 'fine.nii.gz')
    flat = write_nifti(np.ones((20, 20, 20), np.int16), 'flat.nii.gz')
    result = _run('--format', 'csv', '--model', model_path, good, flat)
    assert result.exit_code == 1
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert rows[0]['file'] == str(good) and float(rows[0]['quality']) >= 0
    assert set(ARTIFACT_KEYS) <= set(rows[0])
    assert rows[1]['error'].startswith('constant image')
    assert 'flat.nii.gz: constant image' in result.stderr


def test_missing_model_is_one_line_and_exit_2(write_nifti, tmp_path, monkeypatch):
    monkeypatch.setenv('MIQA_MODEL_DIR', str(tmp_path))
    good = write_nifti(head_phantom((64, 64, 64)), 'fine.nii.gz')
    result = _run('--model', 'no-such-model', good)
    assert result.exit_code == 2
    assert result.stderr.count('\n') == 1 and "model 'no-such-model' not found" in result.stderr


def test_installed_entry_point(model_path, write_nifti, tmp_path):
    """The console script runs in a fresh process: JSON on stdout, progress on stderr."""
    a = write_nifti(head_phantom((64, 64, 64)), 'a.nii.gz')
    b = tmp_path / 'missing.nii.gz'
    proc = subprocess.run([sys.executable, '-m', 'miqa_worker.cli', '--format', 'json',
                           '--model', str(model_path), str(a), str(b)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert lines[0]['quality'] >= 0 and lines[1]['error'].startswith('file not found')
    assert 'Traceback' not in proc.stderr
