"""``miqa-train``: generate training data, ingest a label CSV or a project's reviews, train (or
fine-tune a shipped model on reviews), evaluate and ship.

``miqa-train run --recipe FILE`` runs every stage of a recipe (see ``recipe.py``); ``--plan``
prints them without running any. Without ``--recipe`` the training settings are the shipped
recipe's (``miqa_worker/models/miqa-default/recipe.json``); options given on the command line
override a recipe's values.
"""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from .config import DEFAULT_PROBABILITY, DEFAULT_SEVERITY, FINE_TUNE_LEARNING_RATE, RunConfig
from .config import FAMILIES as FAMILY_NAMES
from .manifest import DEFAULT_MANIFEST, default_shared_dir, load_manifest
from .recipe import RecipeError, format_plan, load_recipe, shipped_config

SHIPPED = shipped_config()
_TRAIN = SHIPPED.train


def _threads(threads: int | None) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)


def default_cache_dir() -> Path:
    """``$MIQA_TRAINING_CACHE`` or ``.state/training-cache`` of the checkout (git-ignored)."""
    from .synthetic import default_cache_dir as cache_dir

    return cache_dir()


@click.group()
def main() -> None:
    """Train the MIQA network on simulated artifacts, a label CSV or a project's reviews."""


@main.command()
@click.option('--cache-dir', type=click.Path(path_type=Path), default=None,
              help='Output folder (default $MIQA_TRAINING_CACHE or .state/training-cache).')
@click.option('--shared-dir', type=click.Path(path_type=Path), default=None,
              help='Real scans to use as bases (default $MIQA_SHARED_MRI or '
                   '../shared/data/mri; templates only if absent).')
@click.option('--manifest', type=click.Path(path_type=Path, dir_okay=False),
              default=DEFAULT_MANIFEST, help='Data manifest naming the real bases.')
@click.option('--templates-only', is_flag=True, help='Ignore the real scans.')
@click.option('--anatomies', default=30, show_default=True, help='Anatomies per subject.')
@click.option('--variants', default=4, show_default=True, help='Artifact variants per anatomy.')
@click.option('--probability', default=DEFAULT_PROBABILITY, show_default=True,
              type=click.FloatRange(0.1, 0.5), help='Probability of each artifact.')
@click.option('--severity', nargs=2, type=float, default=DEFAULT_SEVERITY, show_default=True,
              help='Severity range of every artifact (0-1].')
@click.option('--families', default=','.join(FAMILY_NAMES), show_default=True,
              help=f'Comma-separated artifact families to simulate, of {",".join(FAMILY_NAMES)}.')
@click.option('--spacing', nargs=2, type=float, default=(1.0, 2.0), show_default=True,
              help='Range of the isotropic voxel size (mm) of generated volumes.')
@click.option('--templates-only-subjects', default=10, show_default=True,
              help='Nominal subjects made from the template when there are no real scans.')
@click.option('--save-nifti', is_flag=True, help='Also write NIfTI volumes and labels.csv.')
@click.option('--seed', default=0, show_default=True)
@click.option('--workers', default=1, show_default=True, help='Generator processes.')
@click.option('--simulators', default='', help='Leave-one-simulator-out groups, e.g. '
              '"monai+segment,torchio": variant v of an anatomy is made by every '
              'implementation (own, monai, segment, torchio) but group v mod n\'s. Default: '
              "the project's own generator only.")
@click.option('--post-processing', default=0.0, show_default=True, type=click.FloatRange(0, 1),
              help='Probability of random post-processing (background, defacing, '
                   'skull-strip, resampling, quantization, scaling).')
@click.option('--synthetic-heads', default=0, show_default=True, type=click.IntRange(0),
              help='More anatomies painted SynthSeg-style from the MNI152 tissue labels.')
def generate(cache_dir, shared_dir, manifest, templates_only, anatomies, variants, probability,
             severity, families, spacing, templates_only_subjects, save_nifti, seed,
             workers, simulators, post_processing, synthetic_heads) -> None:
    """Generate labelled volumes (cached, resumable) from real scans and the MNI152 template."""
    from .recipe import RecipeError, _simulator_groups
    from .synthetic import generate as run

    try:
        groups = _simulator_groups([g.split('+') for g in simulators.split(',') if g])
    except RecipeError as exc:
        raise click.BadParameter(str(exc).split(': ', 1)[-1], param_hint='--simulators') from None

    unknown = sorted(set(families.split(',')) - set(FAMILY_NAMES))
    if unknown:
        raise click.BadParameter(f'unknown families {", ".join(unknown)}; choose from '
                                 f'{",".join(FAMILY_NAMES)}', param_hint='--families')
    try:
        data_manifest = load_manifest(manifest)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint='--manifest') from None
    index = run(cache_dir or default_cache_dir(), anatomies, variants, seed,
                None if templates_only else (shared_dir or default_shared_dir()),
                tuple(families.split(',')), probability, tuple(severity),
                templates_only_subjects, save_nifti, tuple(spacing), workers=workers,
                manifest=data_manifest, simulators=groups, post_processing=post_processing,
                synthetic_heads=synthetic_heads)
    click.echo(f'wrote {index}')


@main.command()
@click.argument('csv_path', required=False,
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option('--cache-dir', type=click.Path(path_type=Path), default=None,
              help='Output folder (required with a CSV; default for a project: '
                   '.state/ingest-ID beside the training cache).')
@click.option('--project', 'project_id', default=None,
              help='A MIQA project id: download its scans labelled by tier-2 decisions '
                   '(miqa_worker/training/ingest.py says which decisions count).')
@click.option('--api-url', envvar='GIRDER_API_URL', default=None,
              help='Girder API URL, e.g. http://localhost:8080/api/v1 ($GIRDER_API_URL).')
@click.option('--api-key', envvar='GIRDER_API_KEY', default=None,
              help='A Girder API key of a user who can read the project ($GIRDER_API_KEY).')
@click.option('--quiet', is_flag=True, help='No progress bar.')
def ingest(csv_path, cache_dir, project_id, api_url, api_key, quiet) -> None:
    """Preprocess the scans of a label CSV (see miqa_worker/training/labels.py), or of a MIQA
    project's reviews (--project), into a cache."""
    if (csv_path is None) == (project_id is None):
        raise click.UsageError('give a label CSV or --project ID (not both)')
    if csv_path is not None:
        if cache_dir is None:
            raise click.UsageError('--cache-dir is required with a label CSV')
        from .dataset import cache_from_csv

        click.echo(f'wrote {cache_from_csv(csv_path, cache_dir, progress=not quiet)}')
        return
    for name, value in (('--api-url', api_url), ('--api-key', api_key)):
        if not value:
            raise click.UsageError(f'{name} is required with --project')
    from .ingest import IngestError, connect, ingest_project, summary_line

    target = cache_dir or default_cache_dir().with_name(f'ingest-{project_id}')
    try:
        summary = ingest_project(connect(api_url, api_key), project_id, target,
                                 progress=not quiet)
    except IngestError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(summary_line(summary))


#: ``run`` options that set a TrainConfig field: option name -> field.
TRAIN_OPTIONS = {'epochs': 'epochs', 'tiles_per_volume': 'tiles_per_volume',
                 'batch_size': 'batch_size', 'lr': 'learning_rate', 'lr_decay': 'lr_decay',
                 'weight_decay': 'weight_decay', 'indicator_weight': 'indicator_weight',
                 'global_view_weight': 'global_view_weight',
                 'views_per_volume': 'views_per_volume', 'augment': 'augment',
                 'penalty_outputs': 'penalty_outputs', 'seed': 'seed'}
#: ``run`` options that set a RunConfig field: option name -> field.
RUN_OPTIONS = {'cache_dir': 'cache', 'out_dir': 'out', 'folds': 'folds',
               'final_epochs': 'final_epochs', 'final_members': 'final_members',
               'view_flips': 'view_flips', 'eval_tiles': 'grid_tiles',
               'test_subjects': 'test_subjects', 'resume': 'resume', 'device': 'device',
               'threads': 'threads', 'baseline': 'baseline', 'fusion': 'fusion',
               'fusion_caches': 'fusion_caches', 'ship_to': 'ship_to', 'version': 'version',
               'shared_dir': 'shared_dir', 'manifest': 'manifest',
               'fine_tune_from': 'fine_tune_from'}


def _given(ctx: click.Context, name: str) -> bool:
    return ctx.get_parameter_source(name) in (ParameterSource.COMMANDLINE,
                                              ParameterSource.ENVIRONMENT)


def run_config(ctx: click.Context, recipe: Path | None, options: dict[str, Any]) -> RunConfig:
    """The recipe (or, without one, the shipped recipe's settings on the given data), with
    every option given on the command line applied over it."""
    if recipe is not None:
        base = load_recipe(recipe)
    else:  # the shipped settings, none of its data, generation, shipping or run folder
        base = replace(SHIPPED, generate=(), cache=default_cache_dir(), out=Path(),
                       fusion_caches=(), ship_to=None, version='0.1.0', threads=None,
                       final_threads=None, resume=False, description=RunConfig.description,
                       calibrate_fit_cache=None, calibrate_cache=None)
    values = {name: options[name] for name in options if _given(ctx, name)}
    if 'test_subjects' in values:
        values['test_subjects'] = tuple(s for s in values['test_subjects'].split(',') if s)
    if 'fusion_caches' in values:
        values['fusion_caches'] = tuple(values['fusion_caches'])
    elif values.get('fusion') is False:  # --no-fusion drops the recipe's fusion caches
        values['fusion_caches'] = ()
    if 'manifest' in values and 'test_subjects' not in values:
        values['test_subjects'] = load_manifest(values['manifest']).held_out_subjects
    train = replace(base.train, **{TRAIN_OPTIONS[k]: v for k, v in values.items()
                                   if k in TRAIN_OPTIONS})
    config = replace(base, train=train, **{RUN_OPTIONS[k]: v for k, v in values.items()
                                           if k in RUN_OPTIONS})
    if options['quiet']:
        config = replace(config, progress=False)
    if config.fine_tune_from and recipe is None and 'lr' not in values:
        config = replace(config, train=replace(config.train,
                                               learning_rate=FINE_TUNE_LEARNING_RATE))
    if recipe is None and not _given(ctx, 'out_dir'):
        raise click.UsageError('--out is required without --recipe')
    if config.fusion_caches and not config.fusion:
        raise click.BadParameter('needs the fused indicator (drop --no-fusion)',
                                 param_hint='--fusion-cache')
    return replace(config, command='miqa-train ' + ' '.join(sys.argv[1:]), recipe=recipe)


@main.command()
@click.option('--recipe', type=click.Path(path_type=Path, dir_okay=False), default=None,
              help='Run every stage of this recipe (e.g. '
                   'miqa_worker/models/miqa-default/recipe.json).')
@click.option('--plan', 'show_plan', is_flag=True,
              help='Print the stages and their parameters; run nothing.')
@click.option('--cache-dir', type=click.Path(path_type=Path), default=None,
              help='A cache from "generate" or "ingest" (default $MIQA_TRAINING_CACHE or '
                   '.state/training-cache).')
@click.option('--out', 'out_dir', type=click.Path(path_type=Path), default=None,
              help='Run folder: checkpoints, metrics.json, PNGs, MODEL_CARD.md.')
@click.option('--folds', default=SHIPPED.folds, show_default=True,
              type=click.IntRange(0), help='Subject folds (0: none).')
@click.option('--epochs', default=_TRAIN.epochs, show_default=True, type=click.IntRange(1),
              help='Epochs per fold model.')
@click.option('--final-epochs', default=SHIPPED.final_epochs, show_default=True,
              type=click.IntRange(1), help='Epochs of the final networks.')
@click.option('--tiles-per-volume', default=_TRAIN.tiles_per_volume, show_default=True,
              type=click.IntRange(1))
@click.option('--batch-size', default=_TRAIN.batch_size, show_default=True,
              type=click.IntRange(1))
@click.option('--lr', default=_TRAIN.learning_rate, show_default=True,
              type=click.FloatRange(0, min_open=True))
@click.option('--lr-decay', default=_TRAIN.lr_decay, show_default=True,
              type=click.FloatRange(0, 1, min_open=True), help='ExponentialLR gamma per epoch.')
@click.option('--weight-decay', default=_TRAIN.weight_decay, show_default=True,
              type=click.FloatRange(0))
@click.option('--indicator-weight', default=_TRAIN.indicator_weight, show_default=True,
              type=click.FloatRange(0))
@click.option('--global-view-weight', default=_TRAIN.global_view_weight, show_default=True,
              type=click.FloatRange(0, 1),
              help="Share of the whole-volume view in a scan's result (0: tiles only).")
@click.option('--views-per-volume', default=_TRAIN.views_per_volume, show_default=True,
              type=click.IntRange(0),
              help='Whole-volume views per volume per epoch (with a view weight > 0).')
@click.option('--augment/--no-augment', default=_TRAIN.augment, show_default=True,
              help='Random flips / axis orders of tiles.')
@click.option('--final-members', default=SHIPPED.final_members, show_default=True,
              type=click.IntRange(1, 8),
              help='Final networks trained with seeds seed, seed+1, ...: the first is the '
                   'model, the others add their whole-volume views to its (model.json '
                   'view_members).')
@click.option('--penalty-outputs/--no-penalty-outputs', default=_TRAIN.penalty_outputs,
              show_default=True,
              help='Also train outputs for the quality points each simulated artifact family '
                   'costs (model.json penalty_families; the worker reports them).')
@click.option('--view-flips', default=SHIPPED.view_flips, show_default=True,
              type=click.IntRange(1, 8),
              help='Mirror images of the whole-volume view averaged at inference '
                   '(stored in model.json; every evaluation uses them).')
@click.option('--eval-tiles', default=SHIPPED.grid_tiles, show_default=True,
              type=click.IntRange(1), help='Most grid tiles per volume when evaluating.')
@click.option('--test-subjects', default=','.join(SHIPPED.test_subjects), show_default=True,
              help='Comma-separated held-out subjects (never trained on); "" for none '
                   '(default: the manifest\'s held-out subjects).')
@click.option('--seed', default=_TRAIN.seed, show_default=True)
@click.option('--resume', is_flag=True, help='Continue from the checkpoints in --out.')
@click.option('--device', default=None, help='torch device (default: cuda if present).')
@click.option('--threads', default=None, type=click.IntRange(1), help='CPU threads for torch.')
@click.option('--baseline/--no-baseline', default=SHIPPED.baseline, show_default=True,
              help='The IQM baseline.')
@click.option('--fusion/--no-fusion', default=SHIPPED.fusion, show_default=True,
              help='Fuse the ghosting_motion output with background metrics (fusion.json).')
@click.option('--fusion-cache', 'fusion_caches', multiple=True,
              type=click.Path(path_type=Path, file_okay=False),
              help='More generated volumes (another "generate --seed") that only the fused '
                   'indicator learns from, with the final network\'s outputs on volumes it '
                   'never trained on; held-out subjects are left out. Repeatable.')
@click.option('--ship-to', type=click.Path(path_type=Path), default=None,
              help='Copy the final model here (e.g. miqa_worker/models/miqa-default).')
@click.option('--version', 'version', default='0.1.0', show_default=True,
              help='Version of the shipped model (a recipe gives its own).')
@click.option('--shared-dir', type=click.Path(path_type=Path), default=None,
              help='Real scans to run the final model on (a sanity look; default '
                   '$MIQA_SHARED_MRI or ../shared/data/mri).')
@click.option('--manifest', type=click.Path(path_type=Path, dir_okay=False), default=None,
              help='Data manifest naming the real bases and the held-out subjects.')
@click.option('--fine-tune-from', 'fine_tune_from', default=None,
              help='Fine-tune this model (a name such as miqa-default, or a folder) on an '
                   'ingested project (--cache-dir from "ingest --project") for --epochs, '
                   'and write its agreement with the tier-2 decisions before and after '
                   f'(agreement.json, agreement.png); --lr defaults to '
                   f'{FINE_TUNE_LEARNING_RATE:g} here.')
@click.option('--quiet', is_flag=True, help='No progress bars.')
@click.pass_context
def run(ctx: click.Context, recipe: Path | None, show_plan: bool, **options: Any) -> None:
    """Run a recipe: generate, train the final networks and the subject folds, evaluate,
    fuse, report (and ship)."""
    try:
        config = run_config(ctx, recipe, options)
    except ValueError as exc:  # a RecipeError, or a bad data manifest
        raise click.UsageError(f'recipe: {exc}' if isinstance(exc, RecipeError)
                               else str(exc)) from None
    if show_plan:
        click.echo(format_plan(config))
        return
    if config.fine_tune_from:
        run_fine_tune(config)
        return
    if not config.generate:  # caches a recipe generates are checked once they exist
        check_caches(config)
    _threads(config.threads)
    run_recipe(config, recipe)


def check_caches(config: RunConfig) -> None:
    """A one-line usage error unless the training and fusion caches can serve the run."""
    from .pipeline import CacheError, check_cache, check_fusion_caches

    try:
        check_cache(config)
    except CacheError as exc:
        raise click.BadParameter(str(exc), param_hint='--cache-dir') from None
    try:
        check_fusion_caches(config.cache, config.fusion_caches)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint='--fusion-cache') from None


def run_fine_tune(config: RunConfig) -> None:
    """Fine-tune on an ingested project, print the held-out agreement before and after, and
    ship the fine-tuned model folder when asked."""
    _threads(config.threads)
    from .finetune import FineTuneError
    from .finetune import run_fine_tune as fine_tune

    try:
        result = fine_tune(config)
    except FineTuneError as exc:
        raise click.UsageError(str(exc)) from None
    held = {when: {k: v for k, v in figures.items() if k not in ('quality', 'tier2')}
            for when, figures in result['held_out'].items()}
    click.echo(json.dumps({'held_out': held, 'split': result['split']}, indent=1))
    if config.ship_to:
        source = Path(result['fine_tuned_model']['folder'])
        config.ship_to.mkdir(parents=True, exist_ok=True)
        for stale in (*config.ship_to.glob('member-*.pt'), config.ship_to / 'fusion.json'):
            stale.unlink(missing_ok=True)  # the start model's: they do not fit these weights
        for item in source.iterdir():
            shutil.copyfile(item, config.ship_to / item.name)
        for name in ('agreement.json', 'agreement.png'):
            shutil.copyfile(config.out / name, config.ship_to / name)
        click.echo(f'shipped to {config.ship_to}')


def run_recipe(config: RunConfig, recipe: Path | None = None) -> None:
    """Every stage of ``config`` in order: generation, training to report, shipping."""
    from .pipeline import run_training, ship
    from .report import PLOTS

    for step in config.generate:
        from .synthetic import generate

        click.echo(f'generate {step.name} -> {step.cache}')
        generate(step.cache, step.anatomies, step.variants, step.seed, config.shared_dir,
                 step.families, step.probability, step.severity,
                 step.templates_only_subjects, spacing_range=step.spacing,
                 progress=config.progress, workers=step.workers,
                 manifest=load_manifest(config.manifest), simulators=step.simulators,
                 post_processing=step.post_processing, synthetic_heads=step.synthetic_heads)
    if config.generate:
        check_caches(config)
    results = run_training(config)
    metrics = json.loads((config.out / 'metrics.json').read_text(encoding='utf-8'))
    click.echo(json.dumps(metrics.get('held_out_summary') or metrics.get('cross_validation'),
                          indent=1))
    if config.ship_to:
        ship(results, config.ship_to, PLOTS)
        if recipe is not None and (config.ship_to / 'recipe.json').resolve() != Path(
                recipe).resolve():
            shutil.copyfile(recipe, config.ship_to / 'recipe.json')
        click.echo(f'shipped to {config.ship_to}')
    if config.calibrate_fit_cache:
        from .calibration import calibrate_recipe_model

        result = calibrate_recipe_model(config)
        click.echo(f'calibrated {config.ship_to}: ' + ', '.join(
            f'{k} ECE {v["ece_uncalibrated"]:.3f} -> {v["ece"]:.3f}'
            for k, v in result['indicators'].items()))


@main.command()
@click.option('--model', 'model_name', default='miqa-default', show_default=True,
              help='A model name (as the worker finds it) or folder.')
@click.option('--cache', 'cache_dir', required=True,
              type=click.Path(path_type=Path, file_okay=False),
              help='A cache from "generate" (e.g. the recipe\'s cache-v3 settings, seed 0).')
@click.option('--subjects', default='held-out', show_default=True,
              help='"held-out" (the manifest\'s held-out people), "all", or comma-separated '
                   'subject ids of the cache.')
@click.option('--manifest', type=click.Path(path_type=Path, dir_okay=False),
              default=DEFAULT_MANIFEST, help='Data manifest naming the held-out subjects.')
@click.option('--out', 'out_dir', type=click.Path(path_type=Path, file_okay=False),
              default=None, help='Where calibration.json and reliability.png go '
                                 '(default: CACHE/calibration).')
@click.option('--resamples', default=1000, show_default=True, type=click.IntRange(1),
              help='Bootstrap resamples of the 95 % intervals.')
@click.option('--seed', default=0, show_default=True, help='Seed of the bootstrap.')
@click.option('--threads', default=None, type=click.IntRange(1), help='CPU threads for torch.')
@click.option('--fit', 'fit_cache', default=None,
              type=click.Path(path_type=Path, file_okay=False),
              help='Fit the recalibration and the quality interval on this cache\'s volumes '
                   '(none of the held-out people: e.g. "generate" with an unused seed and '
                   'the development bases), then measure before/after on --cache.')
@click.option('--level', default=0.8, show_default=True, type=click.FloatRange(0.5, 0.99),
              help='With --fit: the share of fitting volumes the quality interval covers.')
@click.option('--ship', is_flag=True,
              help='With --fit: write the calibration into the model folder (model.json, '
                   'metrics.json calibration, reliability.png).')
def calibrate(model_name, cache_dir, subjects, manifest, out_dir, resamples, seed,
              threads, fit_cache, level, ship) -> None:
    """Assess a cache's volumes with the worker's assessor and write how well its
    probabilities are calibrated (ECE per trained indicator, Brier, reliability diagram);
    with --fit, first fit each trained indicator's recalibration and the quality interval
    on other volumes."""
    import numpy as np

    from ..assessment import Assessor
    from ..model_store import ModelError
    from .calibration import calibrate as measure
    from .calibration import write_outputs
    from .dataset import load_cache

    if ship and fit_cache is None:
        raise click.BadParameter('--ship needs --fit (what to ship)', param_hint='--ship')
    if fit_cache is not None and not (fit_cache / 'index.csv').is_file():
        raise click.BadParameter(f'{fit_cache} has no index.csv (make one with "generate")',
                                 param_hint='--fit')
    if not (cache_dir / 'index.csv').is_file():
        raise click.BadParameter(f'{cache_dir} has no index.csv (make one with "generate")',
                                 param_hint='--cache')
    if subjects == 'held-out':
        try:
            wanted = set(load_manifest(manifest).held_out_subjects)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint='--manifest') from None
    elif subjects != 'all':
        wanted = {s for s in subjects.split(',') if s}
        if not wanted:
            raise click.BadParameter('name "held-out", "all" or subject ids',
                                     param_hint='--subjects')
    try:
        assessor = Assessor(model_name, threads=threads)
    except ModelError as exc:
        raise click.BadParameter(str(exc).splitlines()[0], param_hint='--model') from None
    data = load_cache(cache_dir)
    if subjects == 'all':
        index = np.arange(len(data))
    else:
        index = np.flatnonzero(np.isin(data.subjects, sorted(wanted)))
        missing = sorted(wanted - set(data.subjects.tolist()))
        if missing or not len(index):
            raise click.BadParameter(f'no volumes of {", ".join(missing or sorted(wanted))} '
                                     f'in {cache_dir}', param_hint='--subjects')
    if fit_cache is not None:
        from .calibration import fit_and_measure

        try:
            fit_and_measure(assessor, data, index, fit_cache, level=level,
                            resamples=resamples, seed=seed,
                            out_dir=out_dir or cache_dir / 'calibration', ship=ship,
                            command='miqa-train ' + ' '.join(sys.argv[1:]),
                            cache=str(cache_dir))
        except ValueError as exc:
            raise click.BadParameter(str(exc).splitlines()[0], param_hint='--fit') from None
        return
    result = measure(assessor, data, index, resamples=resamples, seed=seed)
    result['cache'] = str(cache_dir)
    result['command'] = 'miqa-train ' + ' '.join(sys.argv[1:])
    paths = write_outputs(result, out_dir or cache_dir / 'calibration')
    click.echo(json.dumps({k: {'ece': v['ece'], 'ece_ci95': v['ece_ci95'], 'brier': v['brier']}
                           for k, v in result['indicators'].items()}, indent=1))
    click.echo(f'wrote {paths[0]} and {paths[1]}')


@main.command('generalization')
@click.option('--model', 'model_name', default='miqa-default', show_default=True,
              help='A model name (as the worker finds it) or folder.')
@click.option('--out', 'out_dir', required=True, type=click.Path(path_type=Path, file_okay=False),
              help='Where generalization.json, generalization.png and records.jsonl go '
                   '(records resume an interrupted run).')
@click.option('--shared-dir', type=click.Path(path_type=Path), default=None,
              help='The real scans (default $MIQA_SHARED_MRI or ../shared/data/mri).')
@click.option('--manifest', type=click.Path(path_type=Path, dir_okay=False),
              default=DEFAULT_MANIFEST, help='Data manifest naming the held-out people.')
@click.option('--held-out', default=3, show_default=True, type=click.IntRange(0),
              help="Anatomies per held-out person's in-domain scan.")
@click.option('--others', default=1, show_default=True, type=click.IntRange(0),
              help='Anatomies per other in-domain source (leave-one-source-out).')
@click.option('--synthetic', default=3, show_default=True, type=click.IntRange(0),
              help='Synthetic heads from the MNI152 tissue maps (each its own person).')
@click.option('--cases', default='', help='Comma-separated case names (family/simulator/'
                                          'convention) or simulators; default every case.')
@click.option('--resamples', default=1000, show_default=True, type=click.IntRange(1),
              help='Bootstrap resamples of the 95 % intervals.')
@click.option('--seed', default=0, show_default=True, help='Seed of the test volumes and the '
                                                            'bootstrap.')
@click.option('--head-resolution', default=1, show_default=True, type=click.Choice(['1', '2']),
              help='Resolution (mm) of the MNI152 maps the synthetic heads are painted from.')
@click.option('--metrics', 'metrics_path', type=click.Path(path_type=Path, dir_okay=False),
              default=None, help="Also write the tables to this metrics.json's "
                                 '"generalization" key (other keys kept).')
@click.option('--threads', default=None, type=click.IntRange(1), help='CPU threads for torch.')
@click.option('--quiet', is_flag=True, help='No progress lines.')
def generalization_command(model_name, out_dir, shared_dir, manifest, held_out, others,
                           synthetic, cases, resamples, seed, head_resolution, metrics_path,
                           threads, quiet) -> None:
    """Leave-one-simulator-out and leave-one-source-out AUCs of a model: held-out people and
    synthetic heads, clean against strong per family, implementation and convention."""
    from ..assessment import Assessor
    from ..model_store import ModelError
    from .generalization import all_cases, generalization

    try:
        data_manifest = load_manifest(manifest)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint='--manifest') from None
    chosen = all_cases()
    if cases:
        wanted = {c.strip() for c in cases.split(',') if c.strip()}
        chosen = [c for c in chosen if c.name in wanted or c.simulator in wanted]
        known = {c.name for c in chosen} | {c.simulator for c in chosen}
        if not chosen or wanted - known:
            raise click.BadParameter(f'unknown case {sorted(wanted - known or wanted)[0]!r}; '
                                     f'cases are {", ".join(c.name for c in all_cases())}',
                                     param_hint='--cases')
    try:
        assessor = Assessor(model_name, threads=threads)
    except ModelError as exc:
        raise click.BadParameter(str(exc).splitlines()[0], param_hint='--model') from None
    result = generalization(assessor, data_manifest, shared_dir or default_shared_dir(),
                            out_dir, held_out, others, synthetic, chosen, resamples, seed,
                            int(head_resolution), None if quiet else click.echo)
    result['command'] = 'miqa-train ' + ' '.join(sys.argv[1:])
    (out_dir / 'generalization.json').write_text(json.dumps(result, indent=1) + '\n',
                                                 encoding='utf-8')
    if metrics_path is not None:
        metrics = (json.loads(metrics_path.read_text(encoding='utf-8'))
                   if metrics_path.is_file() else {})
        metrics['generalization'] = result
        metrics_path.write_text(json.dumps(metrics, indent=1) + '\n', encoding='utf-8')
    click.echo(json.dumps(result['summary'], indent=1))
    click.echo(f'wrote {out_dir / "generalization.json"} and {out_dir / "generalization.png"}')


if __name__ == '__main__':
    main()
