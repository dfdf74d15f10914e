"""model.json (miqa-model/2): the shipped spec round-trips, every bad field is refused in one
line naming it, older files are refused until converted, and the assessor loads through it."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import shutil
from pathlib import Path

import pytest

from miqa_worker.model_spec import (
    FORMAT_VERSION,
    OUTPUT_NAMES,
    FusionSpec,
    ModelSpec,
    ModelSpecError,
    ViewSpec,
    load_spec,
    main,
    save_spec,
    upgrade_v1,
)
from miqa_worker.model_store import PACKAGE_MODEL_DIR, ModelError

SHIPPED = PACKAGE_MODEL_DIR / 'miqa-default'
#: The shipped 0.6.0's model.json before this format (as committed at d7e6ead).
V1_FILE = Path(__file__).resolve().parent / 'data' / 'miqa-default-0.6.0-v1.json'


@pytest.fixture
def raw() -> dict:
    """The shipped model.json as parsed JSON, to be broken one field at a time."""
    return json.loads((SHIPPED / 'model.json').read_text(encoding='utf-8'))


def test_shipped_spec_round_trips_and_says_what_the_card_says(tmp_path, raw):
    spec = load_spec(SHIPPED)
    assert spec.to_json() == raw  # the file is exactly what to_json writes
    assert ModelSpec.from_dict(spec.to_json()) == spec
    assert load_spec(save_spec(spec, tmp_path)) == spec
    assert (tmp_path / 'model.json').read_text() == (SHIPPED / 'model.json').read_text()

    assert (spec.format_version, spec.name, spec.version) == (FORMAT_VERSION, 'miqa-default',
                                                              '0.6.0')
    # MODEL_CARD.md: these indicators were never trained (unknown labels)
    assert spec.outputs.untrained == ('normal_variant', 'lesion', 'misalignment',
                                      'susceptibility_metal', 'flow_artifact', 'truncation')
    assert spec.outputs.trained == ('quality', 'incomplete_coverage', 'wraparound',
                                    'ghosting_motion', 'inhomogeneity')
    assert (spec.domain.dimensions, spec.domain.volumes, spec.domain.labels) == (3, 1,
                                                                                 'simulated')
    assert spec.network.channels == (4, 8, 16, 32, 64) and spec.tiles.size == 64
    assert spec.view.flips == 4 and spec.view.shares()[0] == 0.75 and spec.view.used
    assert dict(zip(OUTPUT_NAMES, spec.view.shares(), strict=True))['wraparound'] == 1.0
    assert spec.members == ('member-1.pt',)
    assert spec.fusion == FusionSpec('ghosting_motion', 'fusion.json')
    assert spec.postprocessing.penalty_families == ('ghosting', 'motion', 'bias', 'spike',
                                                    'noise', 'wraparound', 'coverage')
    assert spec.output_count == 18
    held_out = spec.evaluation['held_out']  # the card's figures stay reachable
    assert round(held_out['r2'], 3) == 0.709 and round(held_out['mae'], 2) == 1.41
    assert held_out['bar_met'] is True


def test_the_shipped_file_is_the_converted_older_one():
    """upgrade_v1 of the 0.6.0 file as it was (plus its fusion.json's indicator) gives the
    shipped spec, field for field."""
    old = json.loads(V1_FILE.read_text(encoding='utf-8'))
    assert 'format_version' not in old
    assert upgrade_v1(old, 'ghosting_motion') == _uncalibrated(load_spec(SHIPPED))


def _uncalibrated(spec: ModelSpec) -> ModelSpec:
    """``spec`` without its calibration block (which the older format never had)."""
    return dataclasses.replace(spec, postprocessing=dataclasses.replace(
        spec.postprocessing, calibration=None))


def _set(raw: dict, dotted: str, value) -> dict:
    """``raw`` with one field (dotted path) set, or deleted when ``value`` is ``...``."""
    out = copy.deepcopy(raw)
    *parents, last = dotted.split('.')
    node = out
    for key in parents:
        node = node[key]
    if value is ...:
        del node[last]
    else:
        node[last] = value
    return out


BAD_FIELDS = [
    ('format_version', 'miqa-model/3',
     'unknown format_version "miqa-model/3" (this worker reads \'miqa-model/2\')'),
    ('format_version', ..., 'no format_version \'miqa-model/2\': an older model.json; '
                            'convert it with `python -m miqa_worker.model_spec upgrade'),
    ('format_version', 'miqa-model/1', 'format miqa-model/1 is an older model.json; convert'),
    ('name', ..., 'name is missing'),
    ('name', '', 'name must be a non-empty one-line string, got ""'),
    ('version', 6, 'version must be a non-empty one-line string, got 6'),
    ('created', 'yesterday', 'created must be an ISO 8601 time, got "yesterday"'),
    ('colour', 'blue', 'unknown field colour'),
    ('view', ..., 'view is missing'),
    ('view', [], 'view must be a JSON object, got []'),
    ('view.flips', 'x', 'view.flips must be an integer in 1..8, got "x"'),
    ('view.flips', 9, 'view.flips must be an integer in 1..8, got 9'),
    ('view.flips', True, 'view.flips must be an integer in 1..8, got true'),
    ('view.weight', 1.5, 'view.weight must be a number in 0..1, got 1.5'),
    ('view.weight', float('nan'), 'view.weight must be a number in 0..1, got NaN'),
    ('view.weights.lesion', -0.1, 'view.weights.lesion must be a number in 0..1, got -0.1'),
    ('view.weights.wobble', 0.2, 'unknown field view.weights.wobble'),
    ('view.mirror', True, 'unknown field view.mirror'),
    ('tiles.size', 32, 'tiles.size must be 64 (the network\'s input), got 32'),
    ('tiles.layout', 'random', 'tiles.layout must be "fewest-evenly-spread"'),
    ('tiles.intensity', [1, 99], 'tiles.intensity must be [0.5, 99.5]'),
    ('network.builder', 'os.system', 'network.builder must be '
                                     '"miqa_worker.network.build_network"'),
    ('network.channels', [4, 8], 'network.channels must be 5 integers in 1..4096'),
    ('network.weights', 'other.pt', 'network.weights must be "weights.pt"'),
    ('outputs.trained', ['quality', 'colour'], 'outputs.trained names unknown "colour"'),
    ('outputs.trained', [], 'outputs.trained must name at least one'),
    ('outputs.names', ['quality'], 'outputs.names must be ["quality", '),
    ('domain.dimensions', 4, 'domain.dimensions must be 3 (the assessor reads 3D volumes), '
                             'got 4'),
    ('domain.volumes', 2, 'domain.volumes must be 1'),
    ('domain.labels', 'guessed', 'domain.labels must be one of simulated, reviewed, mixed'),
    ('domain.contrasts', [], 'domain.contrasts must name at least one'),
    ('members', ['../w.pt'], 'members must hold plain file names in the model folder, '
                             'got "../w.pt"'),
    ('members', 'member-1.pt', 'members must be a list of file names, got "member-1.pt"'),
    ('members', ['weights.pt'], 'members must not name weights.pt'),
    ('fusion', ..., 'fusion is missing'),
    ('fusion.indicator', 'quality', 'fusion.indicator must be one of the indicators, '
                                    'got "quality"'),
    ('fusion.file', '../x.json', 'fusion.file must be a plain file name'),
    ('postprocessing.penalty_families', ['Motion'],
     'postprocessing.penalty_families must hold lower-case family names, got "Motion"'),
    ('postprocessing.penalty_families', ['noise', 'noise'],
     'postprocessing.penalty_families names ["noise", "noise"] more than once'),
    ('evaluation', 3, 'evaluation must be a JSON object, got 3'),
]

#: A calibration block of every kind (the shipped model's may differ), to break field by field.
CALIBRATION = {
    'fitted_on': 'volumes of other people',
    'indicators': {'incomplete_coverage': {'method': 'isotonic', 'x': [0.1, 0.5, 0.9],
                                           'y': [0.0, 0.4, 1.0]},
                   'wraparound': {'method': 'platt', 'slope': 2.5, 'intercept': -1.0},
                   'ghosting_motion': {'method': 'identity'}},
    'quality_interval': {'method': 'member-flip-spread', 'scale': 3.0, 'floor': 0.4,
                         'level': 0.8}}
C = 'postprocessing.calibration'
BAD_CALIBRATION = [
    (f'{C}.fitted_on', ..., f'{C}.fitted_on is missing'),
    (f'{C}.indicators', [], f'{C}.indicators must be a JSON object, got []'),
    (f'{C}.indicators.lesion', {'method': 'identity'},
     f'{C}.indicators names "lesion", not a trained indicator (trained: quality, '),
    (f'{C}.indicators.quality', {'method': 'identity'},
     f'{C}.indicators names "quality", not a trained indicator'),
    (f'{C}.indicators.wraparound.method', 'beta',
     f'{C}.indicators.wraparound.method must be one of identity, platt, isotonic, got "beta"'),
    (f'{C}.indicators.wraparound.slope', 0, f'{C}.indicators.wraparound.slope must be a '
                                             'number in 0.001..1000, got 0'),
    (f'{C}.indicators.wraparound.intercept', ..., f'{C}.indicators.wraparound.intercept is '
                                                  'missing'),
    (f'{C}.indicators.wraparound.x', [0.1, 0.2],
     f'unknown field {C}.indicators.wraparound.x'),
    (f'{C}.indicators.incomplete_coverage.x', [0.1, 0.1, 0.9],
     f'{C}.indicators.incomplete_coverage.x must be strictly increasing, got [0.1, 0.1, 0.9]'),
    (f'{C}.indicators.incomplete_coverage.y', [0.5, 0.4, 1.0],
     f'{C}.indicators.incomplete_coverage.y must be non-decreasing'),
    (f'{C}.indicators.incomplete_coverage.y', [0.0, 1.0],
     f'{C}.indicators.incomplete_coverage.x and {C}.indicators.incomplete_coverage.y must '
     'be as long, got 3 and 2'),
    (f'{C}.indicators.incomplete_coverage.y', [0.0, 0.4, 1.5],
     f'{C}.indicators.incomplete_coverage.y must be 2..2000 numbers in 0..1, got [0.0, 0.4,'),
    (f'{C}.indicators.incomplete_coverage.x', 'steps',
     f'{C}.indicators.incomplete_coverage.x must be 2..2000 numbers in 0..1, got "steps"'),
    (f'{C}.quality_interval.method', 'bootstrap', f'{C}.quality_interval.method must be '
                                                  '"member-flip-spread"'),
    (f'{C}.quality_interval.scale', -1, f'{C}.quality_interval.scale must be a number in '
                                        '0..1000, got -1'),
    (f'{C}.quality_interval.level', 1, f'{C}.quality_interval.level must be a number in '
                                       '0.01..0.999, got 1'),
    (f'{C}.quality_interval.floor', ..., f'{C}.quality_interval.floor is missing'),
    (f'{C}.colour', 'blue', f'unknown field {C}.colour'),
]


@pytest.mark.parametrize(('field', 'value', 'message'), BAD_CALIBRATION,
                         ids=[f'{f}={v!r}' for f, v, _ in BAD_CALIBRATION])
def test_a_bad_calibration_field_is_refused_in_one_line(raw, tmp_path, field, value, message):
    calibrated = _set(raw, C, copy.deepcopy(CALIBRATION))
    (tmp_path / 'model.json').write_text(json.dumps(_set(calibrated, field, value)))
    with pytest.raises(ModelSpecError) as info:
        load_spec(tmp_path)
    text = str(info.value)
    assert text.startswith(f'model.json: {message}'), text
    assert '\n' not in text


def test_a_calibration_block_round_trips_and_maps_as_it_says(raw, tmp_path):
    (tmp_path / 'model.json').write_text(json.dumps(_set(raw, C, copy.deepcopy(CALIBRATION))))
    spec = load_spec(tmp_path)
    calibration = spec.postprocessing.calibration
    assert load_spec(save_spec(spec, tmp_path / 'model.json')) == spec
    assert spec.to_json()['postprocessing']['calibration'] == CALIBRATION
    iso = calibration.indicators['incomplete_coverage']
    assert [iso.apply(p) for p in (0.0, 0.1, 0.3, 0.5, 0.7, 0.95)] == pytest.approx(
        [0.0, 0.0, 0.2, 0.4, 0.7, 1.0])  # flat outside, linear between breakpoints
    platt = calibration.indicators['wraparound']
    assert platt.apply(0.5) == pytest.approx(1 / (1 + math.exp(1.0)))  # logit 0 -> -1
    assert platt.apply(0.2) < platt.apply(0.3) < platt.apply(0.9)  # the ranking is kept
    assert calibration.probability('ghosting_motion', 0.37) == 0.37  # identity
    assert calibration.probability('inhomogeneity', 0.37) == 0.37  # no map: as it is
    interval = calibration.quality_interval
    assert interval.half_width(0.3) == pytest.approx(3.0 * 0.5)  # 3 * sqrt(0.3^2 + 0.4^2)
    # a spec without the block writes none (older files stay byte for byte)
    assert 'calibration' not in _uncalibrated(spec).to_json()['postprocessing']


@pytest.mark.parametrize(('field', 'value', 'message'), BAD_FIELDS,
                         ids=[f'{f}={v!r}' for f, v, _ in BAD_FIELDS])
def test_a_bad_field_is_refused_in_one_line_naming_it(raw, tmp_path, field, value, message):
    (tmp_path / 'model.json').write_text(json.dumps(_set(raw, field, value)))
    with pytest.raises(ModelSpecError) as info:
        load_spec(tmp_path)
    text = str(info.value)
    assert text.startswith(f'model.json: {message}'), text
    assert '\n' not in text


def test_optional_parts_may_be_empty(raw, tmp_path):
    """No fusion, no members, no penalty families, no evaluation: a plain tiles-only model."""
    plain = _set(_set(raw, 'fusion', None), 'members', [])
    plain = _set(_set(plain, 'postprocessing.penalty_families', []), 'evaluation', ...)
    plain = _set(_set(plain, 'view.weight', 0), 'view.weights', {})
    (tmp_path / 'model.json').write_text(json.dumps(plain))
    spec = load_spec(tmp_path)
    assert spec.fusion is None and spec.members == () and spec.evaluation is None
    assert not spec.view.used and spec.output_count == 11
    assert 'evaluation' not in spec.to_json()


def test_unreadable_or_missing_files_are_one_line(tmp_path):
    with pytest.raises(ModelSpecError, match=r'^model.json: missing in '):
        load_spec(tmp_path)
    (tmp_path / 'model.json').write_text('{"name": ')
    with pytest.raises(ModelSpecError, match=r'^model.json: unreadable: ') as info:
        load_spec(tmp_path)
    assert '\n' not in str(info.value)


def test_save_spec_refuses_a_bad_spec_built_in_python(tmp_path):
    spec = ModelSpec('m', '1', 'test', '2026-01-01T00:00:00+00:00', view=ViewSpec(0.5, {}, 0))
    with pytest.raises(ModelSpecError, match='view.flips must be an integer in 1..8, got 0'):
        save_spec(spec, tmp_path)
    assert not (tmp_path / 'model.json').exists()


def test_upgrade_v1_checks_what_it_converts():
    old = json.loads(V1_FILE.read_text(encoding='utf-8'))
    with pytest.raises(ModelSpecError, match=r'^model.json \(older format\): unknown field '
                                             'colour$'):
        upgrade_v1({**old, 'colour': 'blue'})
    with pytest.raises(ModelSpecError, match=r'view.flips must be an integer in 1..8, got 0'):
        upgrade_v1({**old, 'view_flips': 0})
    bare = upgrade_v1({'name': 'bare', 'version': '1'})
    assert bare.outputs.trained == OUTPUT_NAMES and bare.fusion is None
    assert not bare.view.used and bare.view.flips == 1 and bare.members == ()


def test_the_converter_command_upgrades_an_older_folder(tmp_path, capsys):
    folder = tmp_path / 'old-model'
    folder.mkdir()
    shutil.copy(V1_FILE, folder / 'model.json')
    shutil.copy(SHIPPED / 'fusion.json', folder / 'fusion.json')
    assert main(['check', str(folder)]) == 1
    assert 'an older model.json' in capsys.readouterr().err
    assert main(['upgrade', str(folder)]) == 0
    assert f'miqa-default 0.6.0 ({FORMAT_VERSION})' in capsys.readouterr().out
    assert load_spec(folder) == _uncalibrated(load_spec(SHIPPED))
    assert main(['check', str(folder)]) == 0


def test_get_assessor_loads_through_the_spec(model_path, tmp_path):
    """The worker's assessor runs what model.json says, and refuses a bad one in one line
    that names the folder and the field."""
    from miqa_worker.assessment import Assessor, clear_cache, get_assessor

    clear_cache()
    try:
        shipped = get_assessor('miqa-default')
        assert shipped.spec == load_spec(SHIPPED)
        assert (shipped.view_flips, len(shipped.members)) == (4, 1)
        assert shipped.fusion is not None and shipped.fusion.indicator == 'ghosting_motion'
        assert shipped.penalty_families == list(shipped.spec.postprocessing.penalty_families)

        folder = tmp_path / 'broken'
        shutil.copytree(model_path, folder)
        raw = json.loads((folder / 'model.json').read_text())
        (folder / 'model.json').write_text(json.dumps(_set(raw, 'view.flips', 'x')))
        with pytest.raises(ModelError) as info:
            get_assessor(str(folder))
        assert str(info.value) == (f'{folder}/model.json: view.flips must be an integer in '
                                   '1..8, got "x"')
        save_spec(dataclasses.replace(load_spec(model_path), view=ViewSpec(0.5, {}, 2)),
                  folder)
        assert get_assessor(str(folder)) is not None  # not cached after the failure
    finally:
        clear_cache()
    with pytest.raises(ModelError, match='model in-memory: model.json: view.flips must be'):
        Assessor.from_network(shipped.network, 0.5, flips=9)


def test_miqa_assess_refuses_an_older_model_json_in_one_line(model_path, tmp_path):
    """The command line stops with exit code 2 and one line saying how to convert."""
    from click.testing import CliRunner

    from miqa_worker.cli import EXIT_NO_MODEL
    from miqa_worker.cli import main as assess

    folder = tmp_path / 'old-model'
    folder.mkdir()
    shutil.copy(model_path / 'weights.pt', folder / 'weights.pt')
    (folder / 'model.json').write_text(json.dumps({'name': 'old', 'version': '1',
                                                   'global_view_weight': 0.5}))
    outcome = CliRunner().invoke(assess, ['--model', str(folder), str(tmp_path / 'x.nii')])
    assert outcome.exit_code == EXIT_NO_MODEL
    lines = [line for line in outcome.output.splitlines() if line]
    assert lines == [f'miqa-assess: {folder}/model.json: no format_version \'miqa-model/2\': '
                     'an older model.json; convert it with `python -m miqa_worker.model_spec '
                     'upgrade MODEL_DIR`']
