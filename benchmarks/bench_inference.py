"""Per-scan assessment latency in a warm process, several ways side by side.

(a) bare file read with ITK (the floor); (b) the full worker assessment as the worker runs it
(read + preprocess + inference with batched tiles and the whole-volume view's mirror images
+ the image quality metrics; inference includes the fused indicator's background metrics when
the model has ``fusion.json``, shown as ``fusion``), and (b2) the same without the fusion;
(c) the reference way: the same read, ``np.percentile`` rescale of the whole volume, then the
network applied tile by tile with batch size 1 in float32 (no view, no metrics). The worker
runs its passes in bfloat16 on a CPU that has it (``inference.resolve_precision``); (b1) is
the same assessment in float32, shown when the two differ.

``FULL`` is the assessment's own wall-clock total (``timings['total']``: read to result, image
metrics included); the goal of issue #21 is FULL <= 0.30 s on 2 cores and the reference's
total >= 4x FULL, measured in the same run. Cases are interleaved, so load changes hit every
case alike; the machine (CPU model, cores, load) is recorded with the figures.

Input: a 256x256x176 T1 .nii.gz (``--input``: another scan), made by resampling a real scan
from ../shared/data/mri when present, else synthesised. Model: ``--model`` (a folder, e.g. a
copy with other ``view.flips``), else ``miqa-default`` when installed, else a random-init
network (timing does not depend on the weights). Writes JSON and a bar chart (PNG) to
benchmarks/results/.

    python benchmarks/bench_inference.py --repeats 15 --threads 2
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
sys.path.insert(0, str(ROOT / 'benchmarks'))
from machine import cpu_model  # noqa: E402

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
@click.option('--model', 'model_dir', type=click.Path(exists=True, file_okay=False),
              default=None, help='Model folder to time (e.g. a copy with other view.flips); '
              'default miqa-default, else a random-init network.')
def main(repeats: int, threads: int, input_path: str | None, model_dir: str | None) -> None:
    """Median latency of (a) bare read, (b) our pipeline, (c) tile-by-tile batch-1."""
    import itk
    import torch

    from miqa_worker.assessment import Assessor, Networks, make_tiles
    from miqa_worker.image_io import read_volume, warm_up_itk
    from miqa_worker.tiling import extract_tiles

    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory(prefix='miqa-bench-') as tmp:
        folder = Path(tmp)
        if input_path:
            path, source = Path(input_path), input_path
        else:
            path, source = make_input(folder)
        if model_dir:
            model_path, model_label = model_dir, f'{Path(model_dir).name} ({model_dir})'
        else:
            model_path, model_label = model_for_benchmark(folder)
        warm_up_itk()
        assessor = Assessor(model_path, threads=threads)
        network = assessor.network

        def bare_read() -> dict[str, float]:
            t0 = time.perf_counter()
            image = itk.imread(str(path))
            itk.array_view_from_image(image)
            elapsed = time.perf_counter() - t0
            return {'read': elapsed, 'total': elapsed, 'full': elapsed}

        single = Assessor(model_path, threads=threads, precision='float32')
        plain = Assessor(model_path, threads=threads)
        plain.fusion = None  # the same model without its fused indicator, for comparison
        # the same assessment with the networks run as before issue #21's fused convolutions
        # and streams: one torch pass per batch on all threads
        unfused = Assessor(model_path, threads=threads)
        unfused.networks = Networks(unfused.network, unfused.members, unfused.batch_size,
                                    threads)

        def timed(which: Assessor):
            """The worker's own path (whole-volume view and its mirror images included); the
            fused indicator's background metrics belong to the scores: in the total."""
            def run() -> dict[str, float]:
                t0 = time.perf_counter()
                timings = which.assess_file(path)['timings']
                wall = time.perf_counter() - t0
                fusion = timings.get('fusion', 0.0)
                return {'read': timings['read'], 'preprocess': timings['preprocess'],
                        'inference': timings['inference'] + fusion, 'fusion': fusion,
                        'metrics': timings['metrics'],
                        'total': (timings['read'] + timings['preprocess'] + timings['inference']
                                  + fusion),
                        'full': timings['total'], 'wall': wall}
            return run

        ours, ours_network_only, ours_unfused = timed(assessor), timed(plain), timed(unfused)
        precision = assessor.networks.precision

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
                    'total': t3 - t0, 'full': t3 - t0}

        cases = {'a_bare_read': bare_read, 'b_ours': ours, 'b1_ours_float32': timed(single),
                 'b2_ours_network_only': ours_network_only,
                 'b3_ours_unfused_one_stream': ours_unfused, 'c_reference_batch1': reference}
        if assessor.fusion is None:
            del cases['b2_ours_network_only']
        if precision == 'float32':
            del cases['b1_ours_float32']
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in cases}
        load_before = os.getloadavg()
        for fn in cases.values():  # warm every path once
            fn()
        for _ in range(repeats):  # interleaved, so load changes hit every case alike
            for name, fn in cases.items():
                runs[name].append(fn())
        shape = list(read_volume(path).shape)
        tiles = len(make_tiles(read_volume(path).array)[0])
        flips = assessor.view_flips if assessor.uses_view else 0

    load_after = os.getloadavg()
    medians = {name: {key: statistics.median(r[key] for r in rows) for key in rows[0]}
               for name, rows in runs.items()}
    machine = machine_description(threads)
    click.echo(f'machine: {machine["cpu"]}, {machine["usable_cores"]} usable cores'
               f'{" with bfloat16" if machine["native_bfloat16"] else ""}; torch '
               f'{torch.__version__} ({threads} threads); load average {load_before[0]:.2f} '
               f'before, {load_after[0]:.2f} after')
    click.echo(f'input: {source}; {shape} -> {tiles} tiles + {flips} mirror images of the '
               f'whole-volume view; model: {model_label}; the worker\'s passes in {precision}; '
               f'{repeats} repeats (medians, seconds)')
    columns = ('read', 'preprocess', 'inference', 'fusion', 'metrics', 'total', 'full')
    click.echo(f'{"":24}' + ''.join(f'{h:>9}' for h in (
        'read', 'preproc', 'infer', '(fusion)', 'metrics', 'no-iqm', 'FULL')))
    for name, med in medians.items():
        cells = ''.join(f'{med[k]:9.3f}' if k in med else f'{"":>9}' for k in columns)
        click.echo(f'{name:24}{cells}')
    ours, reference = medians['b_ours']['full'], medians['c_reference_batch1']['full']
    speedup = reference / ours
    verdict = {True: 'met', False: 'NOT met'}
    click.echo(f'full assessment {ours:.3f} s (goal <= 0.30 s: {verdict[ours <= 0.30]}); '
               f'the batch-1 reference {reference:.3f} s = {speedup:.2f}x it '
               f'(goal >= 4x: {verdict[speedup >= 4]})')
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now().strftime('%Y%m%d-%H%M%S')
    out = RESULTS / f'bench_inference-{stamp}.json'
    out.write_text(json.dumps({
        'input': source, 'shape': shape, 'tiles': tiles, 'view_images': flips,
        'model': model_label, 'machine': machine, 'precision': precision,
        'threads': threads, 'repeats': repeats, 'medians': medians,
        'speedup_vs_reference': speedup, 'goal': {'full_s': 0.30, 'speedup': 4.0},
        'goal_met': bool(ours <= 0.30 and speedup >= 4), 'runs': runs,
        'load_average': {'before': load_before, 'after': load_after},
        'python': platform.python_version(), 'torch': torch.__version__,
        'numpy': np.__version__, 'itk': itk.__version__,
    }, indent=2) + '\n', encoding='utf-8')
    click.echo(f'wrote {out.relative_to(ROOT)}')
    png = plot(medians, out.with_suffix('.png'),
               f'{shape[0]}×{shape[1]}×{shape[2]} T1, {model_label.split(" ")[0]}; '
               f'{machine["cpu"]}, {threads} threads')
    if png:
        click.echo(f'wrote {png.relative_to(ROOT)}')


def machine_description(threads: int) -> dict[str, object]:
    """The CPU model, core counts and torch threads the figures were measured with."""
    cpu = cpu_model()
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 1
    from miqa_worker.inference import native_bfloat16

    return {'cpu': cpu, 'cpu_count': os.cpu_count(), 'usable_cores': usable,
            'torch_threads': threads, 'native_bfloat16': native_bfloat16(),
            'platform': platform.platform()}


def plot(medians: dict[str, dict[str, float]], path: Path, title: str) -> Path | None:
    """A stacked bar per case (its parts' medians) with the full total on top; None without
    matplotlib."""
    try:
        import matplotlib

        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    parts = ('read', 'preprocess', 'inference', 'metrics')
    names = list(medians)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    bottom = np.zeros(len(names))
    for part in parts:
        heights = np.array([medians[n].get(part, 0.0) for n in names])
        ax.bar(names, heights, bottom=bottom, label=part)
        bottom += heights
    for x, name in enumerate(names):
        ax.text(x, bottom[x], f'{medians[name]["full"]:.3f} s', ha='center', va='bottom')
    ax.axhline(0.30, color='k', linestyle='--', linewidth=1, label='goal 0.30 s')
    ax.set_ylabel('seconds (median)')
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


if __name__ == '__main__':
    main()
