"""Per-scan inference latency in a warm process, several ways side by side.

(a) bare file read with ITK (the floor), (b) our pipeline: read + preprocess + inference with
batched tiles (inference includes the fused indicator's background metrics when the model
has ``fusion.json``; the ``fusion`` column shows that part, and (b2) the same without it),
(c) the reference way: the same read, ``np.percentile`` rescale of the whole volume, then the
network applied tile by tile with batch size 1. Also the reviewers' metrics time.

Input: a 256x256x176 T1 .nii.gz, made by resampling a real scan from ../shared/data/mri when
present, else synthesised. Model: ``miqa-default`` when installed, else a random-init network
(timing does not depend on the weights). Writes JSON to benchmarks/results/.

    python benchmarks/bench_inference.py --repeats 9 --threads 2
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import click
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SHARED_T1 = ROOT.parent / 'shared' / 'data' / 'mri' / 'fnndsc-sag-anon_child3y_T1w.nii.gz'
RESULTS = ROOT / 'benchmarks' / 'results'
SHAPE = (256, 256, 176)


def make_input(folder: Path) -> tuple[Path, str]:
    """A 256x256x176 int16 T1 .nii.gz: the shared child T1 resampled, or a synthetic head."""
    import nibabel as nib
    from scipy import ndimage

    path = folder / 't1_256x256x176.nii.gz'
    if SHARED_T1.is_file():
        image = nib.as_closest_canonical(nib.load(str(SHARED_T1)))
        data = image.get_fdata(dtype=np.float32)
        zoom = [t / s for t, s in zip(SHAPE, data.shape, strict=True)]
        data = ndimage.zoom(data, zoom, order=1)
        spacing = [z / f for z, f in zip(image.header.get_zooms()[:3], zoom, strict=True)]
        source = f'{SHARED_T1.name} resampled to {SHAPE}'
    else:
        rng = np.random.default_rng(0)
        grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, s) for s in SHAPE], indexing='ij'))
        radius = np.sqrt((grid ** 2 / np.array([0.8, 0.9, 0.8])[:, None, None, None] ** 2)
                         .sum(0))
        data = np.where(radius < 1, 600.0, 0.0) + np.where(radius < 0.8, 300.0, 0.0)
        data += rng.normal(0, 20, SHAPE)
        spacing = [1.0, 1.0, 1.0]
        source = f'synthetic head {SHAPE} (no shared scans)'
    affine = np.diag([*spacing, 1.0])
    nib.save(nib.Nifti1Image(np.clip(data, 0, 32767).astype(np.int16), affine), str(path))
    return path, source


def model_for_benchmark(folder: Path) -> tuple[str, str]:
    """miqa-default if installed, else a random-init model in ``folder``."""
    from miqa_worker.model_store import ModelNotFoundError, find_model, save_model
    from miqa_worker.network import build_network

    try:
        return str(find_model('miqa-default')), 'miqa-default'
    except ModelNotFoundError:
        path = save_model(build_network(), folder / 'bench-random', 'bench-random', '0',
                          'benchmark only: random initial weights')
        return str(path), 'random-init (miqa-default not installed; speed is the same)'


@click.command()
@click.option('--repeats', default=9, show_default=True)
@click.option('--threads', default=2, show_default=True, help='torch threads (the goal: 2).')
@click.option('--input', 'input_path', type=click.Path(exists=True, dir_okay=False),
              default=None, help='Use this scan instead of the generated 256x256x176 T1.')
def main(repeats: int, threads: int, input_path: str | None) -> None:
    """Median latency of (a) bare read, (b) our pipeline, (c) tile-by-tile batch-1."""
    import itk
    import torch

    from miqa_worker.assessment import Assessor, make_tiles
    from miqa_worker.image_io import read_volume, warm_up_itk
    from miqa_worker.tiling import extract_tiles

    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory(prefix='miqa-bench-') as tmp:
        folder = Path(tmp)
        if input_path:
            path, source = Path(input_path), input_path
        else:
            path, source = make_input(folder)
        model_path, model_label = model_for_benchmark(folder)
        warm_up_itk()
        assessor = Assessor(model_path, threads=threads)
        network = assessor.network

        def bare_read() -> dict[str, float]:
            t0 = time.perf_counter()
            image = itk.imread(str(path))
            itk.array_view_from_image(image)
            return {'total': time.perf_counter() - t0}

        plain = Assessor(model_path, threads=threads)
        plain.fusion = None  # the same model without its fused indicator, for comparison

        def timed(which: Assessor):
            """The worker's own path (whole-volume view and its mirror images included); the
            fused indicator's background metrics belong to the scores: in the total."""
            def run() -> dict[str, float]:
                timings = which.assess_file(path)['timings']
                fusion = timings.get('fusion', 0.0)
                return {'read': timings['read'], 'preprocess': timings['preprocess'],
                        'inference': timings['inference'] + fusion, 'fusion': fusion,
                        'total': (timings['read'] + timings['preprocess'] + timings['inference']
                                  + fusion),
                        'metrics': timings['metrics']}
            return run

        ours, ours_network_only = timed(assessor), timed(plain)

        def reference() -> dict[str, float]:
            t0 = time.perf_counter()
            volume = read_volume(path)
            t1 = time.perf_counter()
            data = volume.array.astype(np.float32)
            low, high = np.percentile(data, [0.5, 99.5])
            data = np.clip((data - low) / (high - low), 0, 1).astype(np.float32)
            tiles, _, _ = extract_tiles(data)
            t2 = time.perf_counter()
            outputs = []
            with torch.no_grad():
                for tile in tiles:
                    outputs.append(network(torch.from_numpy(tile)[None, None]))
            float(torch.cat(outputs)[:, 0].mean())
            t3 = time.perf_counter()
            return {'read': t1 - t0, 'preprocess': t2 - t1, 'inference': t3 - t2,
                    'total': t3 - t0}

        cases = {'a_bare_read': bare_read, 'b_ours': ours,
                 'b2_ours_network_only': ours_network_only, 'c_reference_batch1': reference}
        if assessor.fusion is None:
            del cases['b2_ours_network_only']
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in cases}
        for fn in cases.values():  # warm every path once
            fn()
        for _ in range(repeats):  # interleaved, so load changes hit every case alike
            for name, fn in cases.items():
                runs[name].append(fn())
        shape = list(read_volume(path).shape)
        tiles = len(make_tiles(read_volume(path).array)[0])
        flips = assessor.view_flips if assessor.uses_view else 0

    medians = {name: {key: statistics.median(r[key] for r in rows) for key in rows[0]}
               for name, rows in runs.items()}
    click.echo(f'input: {source}; {shape} -> {tiles} tiles + {flips} mirror images of the '
               f'whole-volume view; model: {model_label}; '
               f'torch threads {threads}; {repeats} repeats (medians, seconds)')
    header = (f'{"":24}{"read":>9}{"preproc":>9}{"infer":>9}{"TOTAL":>9}{"metrics":>9}'
              f'{"(fusion)":>9}')
    click.echo(header)
    for name, med in medians.items():
        cells = ''.join(f'{med[k]:9.3f}' if k in med else f'{"":>9}'
                        for k in ('read', 'preprocess', 'inference', 'total', 'metrics',
                                  'fusion'))
        click.echo(f'{name:24}{cells}')
    speedup = medians['c_reference_batch1']['total'] / medians['b_ours']['total']
    click.echo(f'ours vs reference: {speedup:.2f}x faster; ours minus bare read: '
               f'{medians["b_ours"]["total"] - medians["a_bare_read"]["total"]:.3f} s')
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now().strftime('%Y%m%d-%H%M%S')
    out = RESULTS / f'bench_inference-{stamp}.json'
    out.write_text(json.dumps({
        'input': source, 'shape': shape, 'tiles': tiles, 'view_images': flips,
        'model': model_label,
        'threads': threads, 'repeats': repeats, 'medians': medians, 'runs': runs,
        'cpu_count': os.cpu_count(), 'load_average': os.getloadavg(),
        'python': platform.python_version(), 'torch': torch.__version__,
        'numpy': np.__version__, 'itk': itk.__version__,
    }, indent=2) + '\n', encoding='utf-8')
    click.echo(f'wrote {out.relative_to(ROOT)}')


if __name__ == '__main__':
    main()
