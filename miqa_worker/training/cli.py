"""``miqa-train``: generate training data, ingest a label CSV, train, evaluate and ship."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from .artifacts import DEFAULT_FAMILIES, DEFAULT_PROBABILITY, DEFAULT_SEVERITY, FAMILY_NAMES
from .synthetic import DEFAULT_TEST_SUBJECTS, SHARED_MRI, default_cache_dir
from .train import TrainConfig

MODELS_DIR = Path(__file__).resolve().parent.parent / 'models'


def _threads(threads: int | None) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)


@click.group()
def main() -> None:
    """Train the MIQA network on simulated artifacts or on a label CSV."""


@main.command()
@click.option('--cache-dir', type=click.Path(path_type=Path), default=None,
              help='Output folder (default $MIQA_TRAINING_CACHE or .state/training-cache).')
@click.option('--shared-dir', type=click.Path(path_type=Path), default=SHARED_MRI,
              show_default=True, help='Real scans to use as bases (templates only if absent).')
@click.option('--templates-only', is_flag=True, help='Ignore the real scans.')
@click.option('--anatomies', default=30, show_default=True, help='Anatomies per subject.')
@click.option('--variants', default=4, show_default=True, help='Artifact variants per anatomy.')
@click.option('--probability', default=DEFAULT_PROBABILITY, show_default=True,
              help='Probability of each artifact (0.1-0.5).')
@click.option('--severity', nargs=2, type=float, default=DEFAULT_SEVERITY, show_default=True,
              help='Severity range of every artifact (0-1].')
@click.option('--families', default=','.join(DEFAULT_FAMILIES), show_default=True,
              help=f'Comma-separated artifact families to simulate, of {",".join(FAMILY_NAMES)}.')
@click.option('--spacing', nargs=2, type=float, default=(1.0, 2.0), show_default=True,
              help='Range of the isotropic voxel size (mm) of generated volumes.')
@click.option('--templates-only-subjects', default=10, show_default=True,
              help='Nominal subjects made from the template when there are no real scans.')
@click.option('--save-nifti', is_flag=True, help='Also write NIfTI volumes and labels.csv.')
@click.option('--seed', default=0, show_default=True)
@click.option('--workers', default=1, show_default=True, help='Generator processes.')
def generate(cache_dir, shared_dir, templates_only, anatomies, variants, probability, severity,
             families, spacing, templates_only_subjects, save_nifti, seed, workers) -> None:
    """Generate labelled volumes (cached, resumable) from real scans and the MNI152 template."""
    from .synthetic import generate as run

    unknown = sorted(set(families.split(',')) - set(FAMILY_NAMES))
    if unknown:
        raise click.BadParameter(f'unknown families {", ".join(unknown)}; choose from '
                                 f'{",".join(FAMILY_NAMES)}', param_hint='--families')
    index = run(cache_dir or default_cache_dir(), anatomies, variants, seed,
                None if templates_only else shared_dir, tuple(families.split(',')),
                probability, tuple(severity), templates_only_subjects, save_nifti,
                tuple(spacing), workers=workers)
    click.echo(f'wrote {index}')


@main.command()
@click.argument('csv_path', type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option('--cache-dir', type=click.Path(path_type=Path), required=True)
def ingest(csv_path, cache_dir) -> None:
    """Preprocess the scans of a label CSV (see miqa_worker/training/labels.py) into a cache."""
    from .dataset import cache_from_csv

    click.echo(f'wrote {cache_from_csv(csv_path, cache_dir)}')


@main.command()
@click.option('--cache-dir', type=click.Path(path_type=Path), default=None,
              help='A cache from "generate" or "ingest".')
@click.option('--out', 'out_dir', type=click.Path(path_type=Path), required=True,
              help='Run folder: checkpoints, metrics.json, PNGs, MODEL_CARD.md.')
@click.option('--folds', default=5, show_default=True, help='Subject folds (0: none).')
@click.option('--epochs', default=TrainConfig.epochs, show_default=True,
              help='Epochs per fold model.')
@click.option('--final-epochs', default=None, type=int,
              help='Epochs of the final model (default: --epochs).')
@click.option('--tiles-per-volume', default=TrainConfig.tiles_per_volume, show_default=True)
@click.option('--batch-size', default=TrainConfig.batch_size, show_default=True)
@click.option('--lr', default=TrainConfig.learning_rate, show_default=True)
@click.option('--lr-decay', default=TrainConfig.lr_decay, show_default=True,
              help='ExponentialLR gamma per epoch.')
@click.option('--weight-decay', default=TrainConfig.weight_decay, show_default=True)
@click.option('--indicator-weight', default=TrainConfig.indicator_weight, show_default=True)
@click.option('--global-view-weight', default=TrainConfig.global_view_weight, show_default=True,
              help="Share of the whole-volume view in a scan's result (0: tiles only).")
@click.option('--views-per-volume', default=TrainConfig.views_per_volume, show_default=True,
              help='Whole-volume views per volume per epoch (with a view weight > 0).')
@click.option('--no-augment', is_flag=True, help='No random flips / axis orders of tiles.')
@click.option('--average-last', default=TrainConfig.average_last, show_default=True,
              type=click.FloatRange(0, 1),
              help='Share of each model\'s last epochs whose weights are averaged into its '
                   'finished weights (stochastic weight averaging; 0: off).')
@click.option('--final-members', default=1, show_default=True, type=click.IntRange(1, 8),
              help='Final networks trained with seeds seed, seed+1, ...: the first is the '
                   'model, the others add their whole-volume views to its (model.json '
                   'view_members).')
@click.option('--penalty-outputs', is_flag=True,
              help='Also train outputs for the quality points each simulated artifact family '
                   'costs (model.json penalty_families; the worker reports them).')
@click.option('--channels', default=','.join(map(str, TrainConfig.channels)), show_default=True,
              help='Widths of the five convolution stages (stored in model.json).')
@click.option('--view-flips', default=8, show_default=True, type=click.IntRange(1, 8),
              help='Mirror images of the whole-volume view averaged at inference '
                   '(stored in model.json; every evaluation uses them).')
@click.option('--eval-tiles', default=27, show_default=True,
              help='Most grid tiles per volume when evaluating.')
@click.option('--test-subjects', default=','.join(DEFAULT_TEST_SUBJECTS), show_default=True,
              help='Comma-separated held-out subjects (never trained on); "" for none.')
@click.option('--seed', default=TrainConfig.seed, show_default=True)
@click.option('--resume', is_flag=True, help='Continue from the checkpoints in --out.')
@click.option('--device', default=None, help='torch device (default: cuda if present).')
@click.option('--threads', default=None, type=int, help='CPU threads for torch.')
@click.option('--no-baseline', is_flag=True, help='Skip the IQM baseline.')
@click.option('--fusion/--no-fusion', default=True, show_default=True,
              help='Fuse the ghosting_motion output with background metrics (fusion.json).')
@click.option('--fusion-cache', 'fusion_caches', multiple=True,
              type=click.Path(path_type=Path, file_okay=False),
              help='More generated volumes (another "generate --seed") that only the fused '
                   'indicator learns from, with the final network\'s outputs on volumes it '
                   'never trained on; held-out subjects are left out. Repeatable.')
@click.option('--ship-to', type=click.Path(path_type=Path), default=None,
              help='Copy the final model here (e.g. miqa_worker/models/miqa-default).')
@click.option('--version', 'version', default='0.1.0', show_default=True)
@click.option('--preliminary', is_flag=True, help='Mark the model card as a preliminary run.')
@click.option('--shared-dir', type=click.Path(path_type=Path), default=SHARED_MRI,
              show_default=True, help='Real scans to run the final model on (a sanity look).')
@click.option('--quiet', is_flag=True, help='No progress bars.')
def run(cache_dir, out_dir, folds, epochs, final_epochs, tiles_per_volume, batch_size, lr,
        lr_decay, weight_decay, indicator_weight, global_view_weight, views_per_volume,
        no_augment, average_last, final_members, penalty_outputs, channels, view_flips, eval_tiles,
        test_subjects, seed, resume, device, threads, no_baseline, fusion, fusion_caches, ship_to,
        version, preliminary, shared_dir, quiet) -> None:
    """Cross-validate by subject, train the final model, evaluate, report (and ship)."""
    from ..network import network_channels
    from .dataset import load_cache
    from .pipeline import check_fusion_caches, run_pipeline, ship
    from .report import write_report

    try:
        widths = network_channels(channels)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint='--channels') from None
    if fusion_caches and not fusion:
        raise click.BadParameter('needs the fused indicator (drop --no-fusion)',
                                 param_hint='--fusion-cache')
    try:
        check_fusion_caches(cache_dir or default_cache_dir(), tuple(fusion_caches))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint='--fusion-cache') from None
    _threads(threads)
    config = TrainConfig(channels=widths, epochs=epochs,
                         tiles_per_volume=tiles_per_volume,
                         batch_size=batch_size, learning_rate=lr, lr_decay=lr_decay,
                         weight_decay=weight_decay, indicator_weight=indicator_weight,
                         global_view_weight=global_view_weight,
                         views_per_volume=views_per_volume, augment=not no_augment,
                         average_last=average_last, penalty_outputs=penalty_outputs,
                         seed=seed)
    cache_dir = cache_dir or default_cache_dir()
    subjects = tuple(s for s in test_subjects.split(',') if s)
    results = run_pipeline(cache_dir, out_dir, config, folds, subjects, resume, device,
                           eval_tiles, final_epochs, not quiet, not no_baseline,
                           shared_dir if shared_dir and Path(shared_dir).is_dir() else None,
                           'miqa-train ' + ' '.join(sys.argv[1:]), view_flips, fusion,
                           final_members, tuple(fusion_caches))
    if preliminary:
        write_report(results, load_cache(cache_dir), out_dir, preliminary=True)
    metrics = json.loads((out_dir / 'metrics.json').read_text(encoding='utf-8'))
    click.echo(json.dumps(metrics.get('held_out_summary') or metrics.get('cross_validation'),
                          indent=1))
    if ship_to:
        kind = 'preliminary short run' if preliminary else 'full run'
        ship(out_dir, ship_to, version,
             f'MIQA quality network trained on simulated artifacts ({kind}); see MODEL_CARD.md',
             ('quality_scatter.png', 'confusion.png', 'roc.png', 'training_curves.png'))
        click.echo(f'shipped to {ship_to}')


if __name__ == '__main__':
    main()
