"""A training recipe: every setting that made a model, loaded into a typed :class:`RunConfig`.

The shipped model's recipe is ``miqa_worker/models/miqa-default/recipe.json``; ``miqa-train run
--recipe FILE`` runs it and ``--plan`` prints its stages (:func:`plan`) without running any.
An unknown key or a bad value is refused with one line that names it (:class:`RecipeError`).
Relative paths resolve against the current directory (the data manifest's also beside the
package, :func:`manifest_file`).
"""

from __future__ import annotations

import json
import os
from dataclasses import fields
from pathlib import Path
from typing import Any

from .config import FAMILIES as FAMILY_NAMES
from .config import GenerateStep, RunConfig, TrainConfig
from .manifest import DEFAULT_MANIFEST, SHARED_ENV, default_shared_dir, load_manifest

RECIPE_FORMAT = 'miqa-recipe/1'
_ANNOTATIONS = {'int': int, 'float': float, 'bool': bool, 'str': str, 'tuple[int, ...]': [int]}
PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the folder holding miqa_worker/
SHIPPED_RECIPE = PACKAGE_ROOT / 'miqa_worker' / 'models' / 'miqa-default' / 'recipe.json'


class RecipeError(ValueError):
    """A recipe that cannot be run; the message is one line naming the field."""


# The keys of each recipe section and their JSON types: a type, a tuple of alternatives, or
# [type] for a list of that type (TrainConfig's fields by their annotations).
_SECTIONS: dict[str, dict[str, Any]] = {
    'model': {'name': str, 'version': str, 'description': str},
    'data': {'manifest': str, 'shared_dir': (str, type(None)), 'held_out_subjects': [str]},
    'generate': {'anatomies': int, 'variants': int, 'probability': float, 'severity': [float],
                 'families': [str], 'spacing': [float], 'workers': int,
                 'templates_only_subjects': int, 'caches': list, 'simulators': list,
                 'post_processing': float, 'synthetic_heads': int},
    'train': {'cache': str, 'folds': int, 'final_epochs': int, 'final_members': int,
              'final_threads': (int, type(None)), 'fine_tune_from': (str, type(None)),
              **{f.name: _ANNOTATIONS[f.type] for f in fields(TrainConfig)}},
    'evaluate': {'view_flips': int, 'grid_tiles': int, 'baseline': bool, 'real_scans': bool},
    'fusion': {'enabled': bool, 'caches': [str]},
    'run': {'out': str, 'threads': (int, type(None)), 'device': (str, type(None)),
            'resume': bool},
    'ship': {'to': (str, type(None))},
    'calibrate': {'fit_cache': str, 'cache': str, 'level': float},
}
_TOP = {'format', 'notes', *_SECTIONS}
_CACHE_KEYS = {'name': str, 'dir': str, 'seed': int}
_CACHE_OPTIONAL = {'anatomies': int}  # a cache's own value of a generate setting
# Numeric ranges: (low, high, low excluded); None is unbounded.
_BOUNDS: dict[str, tuple[float | None, float | None, bool]] = {
    'generate.anatomies': (1, None, False), 'generate.variants': (1, None, False),
    'generate.workers': (1, None, False), 'generate.templates_only_subjects': (1, None, False),
    'generate.probability': (0.1, 0.5, False), 'generate.post_processing': (0, 1, False),
    'generate.synthetic_heads': (0, None, False),
    'train.folds': (0, None, False), 'train.epochs': (1, None, False),
    'train.final_epochs': (1, None, False), 'train.final_members': (1, 8, False),
    'train.final_threads': (1, None, False), 'train.tiles_per_volume': (1, None, False),
    'train.batch_size': (1, None, False), 'train.learning_rate': (0, None, True),
    'train.weight_decay': (0, None, False), 'train.lr_decay': (0, 1, True),
    'train.focal_gamma': (0, None, False), 'train.quality_weight': (0, None, False),
    'train.indicator_weight': (0, None, False), 'train.eval_tiles': (1, None, False),
    'train.seed': (0, None, False), 'train.global_view_weight': (0, 1, False),
    'train.views_per_volume': (0, None, False), 'evaluate.view_flips': (1, 8, False),
    'evaluate.grid_tiles': (1, None, False), 'run.threads': (1, None, False),
    'calibrate.level': (0.5, 0.99, False),
}


def _in_range(where: str, value: Any) -> None:
    """RecipeError unless a number lies within its :data:`_BOUNDS`."""
    if where not in _BOUNDS or value is None:
        return
    low, high, open_low = _BOUNDS[where]
    if (low is not None and (value <= low if open_low else value < low)) or (
            high is not None and value > high):
        if high is None:
            span = f'{"above" if open_low else "at least"} {low:g}'
        else:
            span = f'within ({low:g}, {high:g}]' if open_low else f'within {low:g}..{high:g}'
        raise RecipeError(f'{where} must be {span}, not {value!r}')


def _check(where: str, value: Any, kind: Any) -> Any:
    """``value`` if it has the JSON type ``kind``, else a RecipeError naming ``where``."""
    if isinstance(kind, list):
        if not isinstance(value, list):
            raise RecipeError(f'{where} must be a list')
        return [_check(f'{where}[{n}]', item, kind[0]) for n, item in enumerate(value)]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if float in kinds and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, bool) and bool not in kinds:
        raise RecipeError(f'{where} must be {kinds[0].__name__}, not {value!r}')
    if not isinstance(value, kinds):
        raise RecipeError(f'{where} must be {kinds[0].__name__}, not {value!r}')
    return value


def _section(raw: dict, name: str) -> dict:
    section = raw.get(name) or {}
    if not isinstance(section, dict):
        raise RecipeError(f'{name} must be an object')
    for key in section:
        if key not in _SECTIONS[name]:
            raise RecipeError(f'unknown key {name}.{key}')
    out = {key: _check(f'{name}.{key}', value, _SECTIONS[name][key])
           for key, value in section.items()}
    for key, value in out.items():
        _in_range(f'{name}.{key}', value)
    return out


def load_recipe(path: Path | str) -> RunConfig:
    """Read a recipe file into a :class:`RunConfig`; :class:`RecipeError` when it is bad."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding='utf-8'))
    except OSError as exc:
        raise RecipeError(f'cannot read recipe {path}: {exc.strerror}') from None
    except json.JSONDecodeError as exc:
        raise RecipeError(f'recipe {path} is not JSON: {exc}') from None
    if not isinstance(raw, dict):
        raise RecipeError('a recipe must be a JSON object')
    if raw.get('format') != RECIPE_FORMAT:
        raise RecipeError(f'format must be {RECIPE_FORMAT!r}, not {raw.get("format")!r}')
    for key in raw:
        if key not in _TOP:
            raise RecipeError(f'unknown key {key}')
    return recipe_config(raw)


def _generate_steps(gen: dict) -> tuple[GenerateStep, ...]:
    common = {k: v for k, v in gen.items() if k != 'caches'}
    if 'families' in common:
        unknown = sorted(set(common['families']) - set(FAMILY_NAMES))
        if unknown:
            raise RecipeError(f'generate.families: unknown family {unknown[0]!r}; choose from '
                              f'{", ".join(FAMILY_NAMES)}')
        common['families'] = tuple(common['families'])
    for key in ('severity', 'spacing'):
        if key in common:
            if len(common[key]) != 2 or common[key][0] > common[key][1]:
                raise RecipeError(f'generate.{key} must be [low, high]')
            common[key] = tuple(common[key])
    if 'severity' in common and not 0 < common['severity'][0] <= common['severity'][1] <= 1:
        raise RecipeError('generate.severity must lie within (0, 1]')
    if 'simulators' in common:
        common['simulators'] = _simulator_groups(common['simulators'])
    steps = []
    for n, cache in enumerate(gen.get('caches', [])):
        where = f'generate.caches[{n}]'
        if not isinstance(cache, dict):
            raise RecipeError(f'{where} must be an object')
        for key in cache:
            if key not in _CACHE_KEYS and key not in _CACHE_OPTIONAL:
                raise RecipeError(f'unknown key {where}.{key}')
        for key, kind in _CACHE_KEYS.items():
            if key not in cache:
                raise RecipeError(f'{where}.{key} is missing')
            _check(f'{where}.{key}', cache[key], kind)
        own = {key: _check(f'{where}.{key}', cache[key], kind)
               for key, kind in _CACHE_OPTIONAL.items() if key in cache}
        if own.get('anatomies', 1) < 1:
            raise RecipeError(f'{where}.anatomies must be at least 1')
        steps.append(GenerateStep(cache['name'], Path(cache['dir']), cache['seed'],
                                  **{**common, **own}))
    names = [s.name for s in steps]
    if len(set(names)) != len(names):
        raise RecipeError('generate.caches: two caches share a name')
    return tuple(steps)


def _simulator_groups(raw: list) -> tuple[tuple[str, ...], ...]:
    """``generate.simulators``: lists of implementation names, each a variant's held-out
    group (RecipeError naming the bad entry)."""
    from .simulators import IMPLEMENTATIONS

    groups = []
    for n, group in enumerate(raw):
        where = f'generate.simulators[{n}]'
        names = _check(where, group, [str])
        unknown = sorted(set(names) - set(IMPLEMENTATIONS))
        if unknown:
            raise RecipeError(f'{where}: unknown implementation {unknown[0]!r}; choose from '
                              f'{", ".join(IMPLEMENTATIONS)}')
        groups.append(tuple(names))
    return tuple(groups)


def manifest_file(name: str | None) -> Path:
    """A recipe's data manifest: a relative name is looked up in the current directory, then
    beside the ``miqa_worker`` package (the repository, or an installed wheel)."""
    if not name:
        return DEFAULT_MANIFEST
    path = Path(name)
    if path.is_absolute() or path.is_file():
        return path
    beside = PACKAGE_ROOT / path
    return beside if beside.is_file() else path


def recipe_config(raw: dict) -> RunConfig:
    """A parsed recipe (see :func:`load_recipe`) as a :class:`RunConfig`."""
    model, data, train = _section(raw, 'model'), _section(raw, 'data'), _section(raw, 'train')
    evaluate, fusion = _section(raw, 'evaluate'), _section(raw, 'fusion')
    run, ship = _section(raw, 'run'), _section(raw, 'ship')
    calibrate = _section(raw, 'calibrate')
    steps = _generate_steps(_section(raw, 'generate'))
    by_name = {s.name: s.cache for s in steps}

    def cache(where: str, name: str) -> Path:
        if name not in by_name:
            raise RecipeError(f'{where}: no cache named {name!r} in generate.caches')
        return by_name[name]

    if 'cache' not in train:
        raise RecipeError('train.cache is missing')
    if 'out' not in run:
        raise RecipeError('run.out is missing')
    if calibrate and not ship.get('to'):
        raise RecipeError('calibrate needs ship.to (the model folder it calibrates)')
    if calibrate and 'fit_cache' not in calibrate:
        raise RecipeError('calibrate.fit_cache is missing')
    if train.get('folds') == 1:
        raise RecipeError('train.folds must be 0 (none) or at least 2, not 1')
    if 'channels' in train:
        if len(train['channels']) != 5 or min(train['channels']) < 1:
            raise RecipeError('train.channels must be 5 positive integers')
        train['channels'] = tuple(train['channels'])
    known = {f.name for f in fields(TrainConfig)}
    config = TrainConfig(**{k: v for k, v in train.items() if k in known})
    manifest_path = manifest_file(data.get('manifest'))
    try:
        manifest = load_manifest(manifest_path)
    except ValueError as exc:
        raise RecipeError(f'data.manifest: {exc}') from None
    held_out = tuple(data.get('held_out_subjects', manifest.held_out_subjects))
    shared = os.environ.get(SHARED_ENV) or data.get('shared_dir', str(default_shared_dir()))
    return RunConfig(
        cache=cache('train.cache', train['cache']), out=Path(run['out']), train=config,
        folds=train.get('folds', 5), final_epochs=train.get('final_epochs', config.epochs),
        final_members=train.get('final_members', 1), final_threads=train.get('final_threads'),
        view_flips=evaluate.get('view_flips', 4), grid_tiles=evaluate.get('grid_tiles', 27),
        test_subjects=held_out, baseline=evaluate.get('baseline', True),
        real_scans=evaluate.get('real_scans', True), fusion=fusion.get('enabled', True),
        fusion_caches=tuple(cache(f'fusion.caches[{n}]', name)
                            for n, name in enumerate(fusion.get('caches', []))),
        shared_dir=Path(shared) if shared else None, manifest=manifest_path,
        threads=run.get('threads'), device=run.get('device'), resume=run.get('resume', False),
        generate=steps, name=model.get('name', 'miqa-default'),
        version=model.get('version', '0.1.0'),
        description=model.get('description', RunConfig.description),
        ship_to=Path(ship['to']) if ship.get('to') else None,
        fine_tune_from=train.get('fine_tune_from'),
        calibrate_fit_cache=(cache('calibrate.fit_cache', calibrate['fit_cache'])
                             if 'fit_cache' in calibrate else None),
        calibrate_cache=(cache('calibrate.cache', calibrate['cache'])
                         if 'cache' in calibrate else None),
        calibrate_level=calibrate.get('level', 0.8))


def shipped_config() -> RunConfig:
    """The shipped model's recipe: the defaults of ``miqa-train run``."""
    return load_recipe(SHIPPED_RECIPE)


def plan(config: RunConfig) -> list[tuple[str, dict[str, Any]]]:
    """The stages ``run`` goes through, in order, each with the parameters it uses."""
    train = {k: (list(v) if isinstance(v, tuple) else v)
             for k, v in vars(config.train).items() if k != 'epochs'}
    if config.fine_tune_from:  # finetune.run_fine_tune: no folds, fusion, baseline
        return [('fine-tune', {'from': config.fine_tune_from, 'cache': str(config.cache),
                               'epochs': config.train.epochs, **train}),
                ('agreement', {'with': 'tier-2 decisions', 'out': str(config.out)})]
    stages: list[tuple[str, dict[str, Any]]] = []
    for step in config.generate:
        stages.append((f'generate {step.name}', {
            'cache': str(step.cache), 'seed': step.seed, 'anatomies': step.anatomies,
            'variants': step.variants, 'probability': step.probability,
            'severity': list(step.severity), 'families': list(step.families),
            'spacing': list(step.spacing), 'workers': step.workers,
            'templates_only_subjects': step.templates_only_subjects,
            **({'simulators': [list(g) for g in step.simulators],
                'post_processing': step.post_processing,
                'synthetic_heads': step.synthetic_heads}
               if step.simulators or step.post_processing or step.synthetic_heads else {}),
            'manifest': str(config.manifest),
            'shared_dir': str(config.shared_dir) if config.shared_dir else None}))
    members = [('final' if m == 0 else f'final-{m}', config.train.seed + m)
               for m in range(config.final_members)]
    stages.append(('final networks', {
        'cache': str(config.cache), 'members': [f'{d} (seed {s})' for d, s in members],
        'epochs': config.final_epochs, 'threads': config.final_threads or config.threads,
        **train}))
    stages.append(('folds', {
        'cache': str(config.cache), 'folds': config.folds, 'epochs': config.train.epochs,
        'test_subjects': list(config.test_subjects), 'threads': config.threads, **train}))
    stages.append(('view shares', {
        'chosen on': 'pooled out-of-fold predictions', 'grid': [0.0, 0.25, 0.5, 0.75, 1.0],
        'training share': config.train.global_view_weight}))
    stages.append(('evaluate', {
        'held-out subjects': list(config.test_subjects), 'grid_tiles': config.grid_tiles,
        'view_flips': config.view_flips, 'view members': config.final_members - 1}))
    if config.fusion:
        stages.append(('fusion', {
            'indicator': 'ghosting_motion', 'development cache': str(config.cache),
            'fresh caches': [str(c) for c in config.fusion_caches]}))
    if config.real_scans:
        stages.append(('real scans', {
            'shared_dir': str(config.shared_dir) if config.shared_dir else None}))
    if config.baseline:
        stages.append(('baseline', {'folds': config.folds}))
    stages.append(('report', {'out': str(config.out), 'resume': config.resume}))
    if config.ship_to:
        stages.append(('ship', {'to': str(config.ship_to), 'name': config.ship_to.name,
                                'version': config.version}))
    if config.calibrate_fit_cache:
        stages.append(('calibrate', {
            'fit on': f'{config.calibrate_fit_cache} (its people but the held-out ones)',
            'measure on': f'{config.calibrate_cache or config.cache} (held-out subjects '
                          f'{", ".join(config.test_subjects)})',
            'maps': 'identity, platt or isotonic per trained indicator (5-fold Brier)',
            'quality interval level': config.calibrate_level,
            'model': str(config.ship_to)}))
    return stages


def format_plan(config: RunConfig) -> str:
    """:func:`plan` as text: one numbered line per stage, then its parameters."""
    stages = plan(config)
    lines = [f'plan of {config.name} {config.version}: {len(stages)} stages']
    for number, (name, params) in enumerate(stages, start=1):
        lines.append(f'{number}. {name}')
        lines += [f'   {key}: {json.dumps(value)}' for key, value in params.items()]
    return '\n'.join(lines)
