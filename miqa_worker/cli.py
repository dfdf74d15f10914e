"""``miqa-assess``: assess scan files from the command line (no server involved)."""

from __future__ import annotations

import csv
import json
import sys
import time
from typing import Any

import click

from .constants import ARTIFACT_KEYS, DEFAULT_MODEL

EXIT_FAILED_FILES = 1
EXIT_NO_MODEL = 2


def _row(path: str, result: dict[str, Any], seconds: float) -> dict[str, Any]:
    """The per-file JSON record (one line of ``--format json``)."""
    return {
        'file': path,
        'quality': result['quality'],
        'artifacts': result['artifacts'],  # the trained indicators only
        'trainedOutputs': result.get('trainedOutputs'),
        'model': result['model'],
        'inference': result.get('inference'),
        'seconds': round(seconds, 4),
        'volume': result['volume'],
        'metrics': result['metrics'],
        'timings': result['timings'],
        'scope': result.get('scope'),
        'acquisition': result.get('acquisition'),
    }


#: The acquisition parameters the table and the CSV show (all are in ``--format json``).
ACQUISITION_COLUMNS = ('Manufacturer', 'RepetitionTime', 'EchoTime', 'VoxelSize')


def _acquisition_cell(row: dict[str, Any]) -> str:
    """The table's short acquisition: scanner, TR/TE (ms) and voxel size, what is known."""
    acquisition = row.get('acquisition') or {}
    found = acquisition.get('parameters') or {}
    parts = [found['Manufacturer']] if found.get('Manufacturer') else []
    for key, label in (('RepetitionTime', 'TR'), ('EchoTime', 'TE')):
        if found.get(key) is not None:
            parts.append(f'{label} {found[key] * 1000:g} ms')
    if found.get('VoxelSize'):
        parts.append('x'.join(f'{v:g}' for v in found['VoxelSize'] if v is not None) + ' mm')
    parts += [f'! {p}' for p in acquisition.get('problems') or []]
    return ', '.join(parts) or '-'


def _acquisition_csv(row: dict[str, Any]) -> list[str]:
    found = (row.get('acquisition') or {}).get('parameters') or {}
    out = []
    for key in ACQUISITION_COLUMNS:
        value = found.get(key)
        out.append('' if value is None else ' '.join(f'{v:g}' for v in value if v is not None)
                   if isinstance(value, list) else str(value))
    return out


def _scope_cell(row: dict[str, Any]) -> str:
    """The table's short scope: the contrast, marked "out" when outside the model's domain."""
    scope = row.get('scope') or {}
    if not scope:
        return '-'
    return scope['contrast'] if scope['in_scope'] else f'out: {scope["contrast"]}'


def _one_line(exc: BaseException) -> str:
    """An exception as one line of text."""
    text = ' '.join(str(exc).split())
    return text or type(exc).__name__


def _print_table(rows: list[dict[str, Any]]) -> None:
    """A table of quality and the most likely artifacts (rich when stdout is a terminal)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=None, show_lines=False)
    table.add_column('file', no_wrap=True)
    for column in ('quality', 'scope', 'top artifacts (probability)', 'seconds',
                   'acquisition'):
        table.add_column(column, overflow='fold')
    for row in rows:
        if 'error' in row:
            table.add_row(row['file'], '-', '-', f'error: {row["error"]}', '-', '-')
            continue
        top = sorted(row['artifacts'].items(), key=lambda kv: -kv[1])[:3]
        table.add_row(row['file'], f'{row["quality"]:.2f}', _scope_cell(row),
                      ', '.join(f'{key} {p:.2f}' for key, p in top), f'{row["seconds"]:.2f}',
                      _acquisition_cell(row))
    longest = max((len(row['file']) for row in rows), default=0)
    Console(width=max(100, longest + 75, Console().width)).print(table)
    if rows and 'model' in next((r for r in rows if 'model' in r), {}):
        model = next(r for r in rows if 'model' in r)['model']
        click.echo(f'model {model["name"]} {model["version"]} (sha256 {model["sha256"][:12]})')


def _print_csv(rows: list[dict[str, Any]]) -> None:
    """One CSV row per file: quality, each artifact probability, seconds, error, then the
    scope (in_scope, contrast) and ``acq_*`` acquisition parameters (added last so that older
    readers' columns stay put)."""
    writer = csv.writer(sys.stdout)
    writer.writerow(['file', 'quality', *ARTIFACT_KEYS, 'seconds', 'model', 'model_version',
                     'error', 'in_scope', 'contrast',
                     *[f'acq_{k}' for k in ACQUISITION_COLUMNS]])
    for row in rows:
        if 'error' in row:
            writer.writerow([row['file'], '', *[''] * len(ARTIFACT_KEYS), '', '', '',
                             row['error'], '', '', *[''] * len(ACQUISITION_COLUMNS)])
        else:
            scope = row.get('scope') or {}
            writer.writerow([row['file'], f'{row["quality"]:.4f}',
                             *[f'{row["artifacts"][k]:.4f}' if k in row['artifacts'] else ''
                               for k in ARTIFACT_KEYS],  # untrained: blank
                             row['seconds'], row['model']['name'], row['model']['version'], '',
                             str(scope.get('in_scope', '')).lower(), scope.get('contrast', ''),
                             *_acquisition_csv(row)])


@click.command(context_settings={'help_option_names': ['-h', '--help']})
@click.option('--format', 'fmt', type=click.Choice(['table', 'json', 'csv']), default='table',
              show_default=True, help='Output: a table, one JSON object per line, or CSV.')
@click.option('--model', 'model', default=DEFAULT_MODEL, show_default=True,
              help='Model name (searched in MIQA_MODEL_DIR, then the package) or directory.')
@click.option('--no-metrics', is_flag=True, help='Skip the classic image quality metrics.')
@click.argument('files', nargs=-1, required=True, type=click.Path(dir_okay=False))
def main(fmt: str, model: str, no_metrics: bool, files: tuple[str, ...]) -> None:
    """Assess the quality of 3D MRI scans (NIfTI, NRRD, MetaImage, MGH, zipped DICOM).

    Each result says whether the scan is in the model's domain (``scope``), from its name, the
    JSON sidecar beside it (``scan.json`` for ``scan.nii.gz``, as in BIDS) or the image.
    """
    from .image_io import ImageError
    from .model_store import ModelError
    from .scope import read_sidecar

    try:
        from .assessment import Assessor

        assessor = Assessor(model)
    except ModelError as exc:
        click.echo(f'miqa-assess: {_one_line(exc)}', err=True)
        sys.exit(EXIT_NO_MODEL)

    bar = None
    if len(files) > 1:
        from tqdm import tqdm

        bar = tqdm(total=len(files), unit='scan', file=sys.stderr, leave=False)
    rows: list[dict[str, Any]] = []
    failed = 0
    for path in files:
        if bar is not None:
            bar.set_postfix_str(click.format_filename(path, shorten=True))
        start = time.perf_counter()
        try:
            result = assessor.assess_file(path, metrics=not no_metrics,
                                          sidecar=read_sidecar(path))
            row = _row(path, result, time.perf_counter() - start)
        except ImageError as exc:
            row = {'file': path, 'error': _one_line(exc)}
        except (MemoryError, OSError, RuntimeError, ValueError) as exc:
            row = {'file': path, 'error': f'{type(exc).__name__}: {_one_line(exc)}'}
        failed += 'error' in row
        rows.append(row)
        if fmt == 'json':
            line = json.dumps(row, allow_nan=False)
            if bar is not None:
                bar.clear()
            click.echo(line)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    if fmt == 'table':
        _print_table(rows)
    elif fmt == 'csv':
        _print_csv(rows)
    for row in rows:
        if 'error' in row and fmt != 'json':
            click.echo(f'miqa-assess: {row["file"]}: {row["error"]}', err=True)
    sys.exit(EXIT_FAILED_FILES if failed else 0)


if __name__ == '__main__':  # pragma: no cover
    main()
