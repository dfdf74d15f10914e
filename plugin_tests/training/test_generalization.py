"""``miqa-train generalization``: clean-against-strong AUCs per case with bootstrap intervals
over people, from the shipped model on synthetic heads (generalization.py)."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from miqa_worker.training import generalization as gen
from miqa_worker.training.cli import main


def _rows(person: str, clean: list[float], strong: list[float]) -> tuple[list, list]:
    make = [{'subject': person, 'source': person, 'anatomy': a, 'case': name,
             'quality': 9.0 - p, 'artifacts': {'ghosting_motion': p}}
            for name, values in (('clean', clean), ('x', strong)) for a, p in enumerate(values)]
    return [r for r in make if r['case'] == 'clean'], [r for r in make if r['case'] == 'x']


def test_auc_interval_resamples_people_and_is_seeded():
    clean_a, strong_a = _rows('a', [0.1, 0.2, 0.3], [0.8, 0.9, 0.7])  # separable
    clean_b, strong_b = _rows('b', [0.5, 0.6, 0.4], [0.3, 0.55, 0.45])  # not
    first = gen.auc_with_interval(clean_a + clean_b, strong_a + strong_b, 'ghosting_motion',
                                  resamples=300, seed=1)
    again = gen.auc_with_interval(clean_a + clean_b, strong_a + strong_b, 'ghosting_motion',
                                  resamples=300, seed=1)
    assert first == again
    assert first['people'] == 2 and first['clean'] == first['strong'] == 6
    low, high = first['ci95']
    assert low < first['auc'] < high
    assert high == pytest.approx(1.0)  # the resamples of person a alone separate perfectly
    quality = gen.auc_with_interval(clean_a, strong_a, None, resamples=50)
    assert quality['auc'] == 1.0 and quality['ci95'] == [1.0, 1.0]  # lower quality = strong


def test_every_family_has_at_least_two_implementations():
    cases = gen.all_cases()
    implementations: dict[str, set] = {}
    for case in cases:
        implementations.setdefault(case.family, set()).add(case.implementation)
    for family in ('motion', 'spike', 'bias', 'noise'):
        assert len(implementations[family]) == 3, family
    assert implementations['ghosting'] == {'own', 'torchio'}
    assert {c.convention for c in cases if c.simulator == 'segment-motion'} == {
        'real', 'magnitude'}
    assert len({c.name for c in cases}) == len(cases)


def test_generalization_command_on_synthetic_heads(tmp_path):
    pytest.importorskip('nilearn')
    metrics = tmp_path / 'metrics.json'
    metrics.write_text(json.dumps({'held_out': {'r2': 0.9}}), encoding='utf-8')
    out = tmp_path / 'gen'
    args = ['generalization', '--out', str(out), '--shared-dir', str(tmp_path / 'none'),
            '--synthetic', '2', '--cases', 'monai-bias,torchio-blur', '--resamples', '50',
            '--head-resolution', '2', '--metrics', str(metrics), '--quiet', '--threads', '2']
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    figures = json.loads((out / 'generalization.json').read_text(encoding='utf-8'))
    assert (out / 'generalization.png').stat().st_size > 1000
    table = (out / 'generalization.md').read_text(encoding='utf-8')
    assert '| bias | monai-bias | real |' in table and '| synthetic-heads | synthetic |' in table
    assert figures['volumes'] == 2 * 3  # two heads, clean + two cases each
    assert all(s['why'] == 'not in the shared folder' or 'outside' in s['why']
               for s in figures['skipped_sources'])
    rows = {r['case']: r for r in figures['leave_one_simulator_out']['synthetic_heads']}
    assert set(rows) == {'bias/monai-bias/real', 'blur/torchio-blur/real'}
    bias = rows['bias/monai-bias/real']
    assert bias['indicator'] == 'inhomogeneity' and bias['indicator_auc']['people'] == 2
    assert 'indicator_auc' not in rows['blur/torchio-blur/real']  # quality only
    for row in rows.values():
        auc = row['quality_auc']
        assert 0.0 <= auc['auc'] <= 1.0 and auc['ci95'][0] <= auc['auc'] <= auc['ci95'][1]
        assert row['meets_bar'] == (auc['auc'] >= gen.BAR and row.get(
            'indicator_auc', auc)['auc'] >= gen.BAR)
    assert figures['leave_one_source_out']['synthetic-heads']['seen_in_training'] is False
    merged = json.loads(metrics.read_text(encoding='utf-8'))
    assert merged['held_out'] == {'r2': 0.9}  # other keys kept
    assert merged['generalization']['volumes'] == 6
    # records resume: a second run assesses nothing new and gives the same tables
    lines = (out / 'records.jsonl').read_text(encoding='utf-8').splitlines()
    assert CliRunner().invoke(main, args).exit_code == 0
    assert (out / 'records.jsonl').read_text(encoding='utf-8').splitlines() == lines
    again = json.loads((out / 'generalization.json').read_text(encoding='utf-8'))
    assert again['leave_one_simulator_out'] == figures['leave_one_simulator_out']
    qualities = [json.loads(line)['quality'] for line in lines]
    assert np.isfinite(qualities).all()


def test_unknown_case_is_a_one_line_error(tmp_path):
    result = CliRunner().invoke(main, ['generalization', '--out', str(tmp_path),
                                       '--cases', 'motion/nothing/real'])
    assert result.exit_code == 2
    assert "unknown case 'motion/nothing/real'" in result.output


def test_auc_equals_sklearn_with_ties():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 40)
    scores = np.round(rng.normal(labels * 0.5, 1.0), 1)  # many ties
    assert gen._auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores))
    assert gen._auc(np.ones(4, dtype=int), scores[:4]) is None
