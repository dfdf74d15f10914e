"""What acquisition parameters and protocol compliance add to a scan's assessment (issue #22:
at most 20 ms per scan).

Times, per scan, the worker's extraction (``miqa_worker.acquisition.acquisition_parameters``:
headers only, the volume already read) on the real scans of ../shared/data/mri (every format,
with their sidecars) and on generated zipped DICOM series of 48 and 192 slices; then the
compliance of one scan (``girder_miqa.models.protocol``: the inferred reference of a group of
50 scans, amortised per scan, and the scan's deviations from it). Medians of --repeats runs
after one warm-up (imports excluded). Prints the table and the machine, and writes
benchmarks/results/bench_protocol-<time>.json.

    nice -n 15 .venv/bin/python benchmarks/bench_protocol.py [--repeats 20]
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / 'benchmarks'))
RESULTS = ROOT / 'benchmarks' / 'results'
SHARED_MRI = ROOT.parent / 'shared' / 'data' / 'mri'
BUDGET_MS = 20.0

from bench_import import machine  # noqa: E402


def median_ms(fn, repeats: int) -> float:
    fn()  # warm-up: imports, file cache
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1000.0 * statistics.median(times)


def scans(workdir: Path) -> list[tuple[str, Path]]:
    """(label, path) of the scans timed: the real ones, then generated DICOM series."""
    from plugin_tests.dicom_series import phantom, series_zip

    out = []
    if SHARED_MRI.is_dir():
        out += [(p.name, p) for p in sorted(SHARED_MRI.iterdir())
                if p.is_file() and not p.name.endswith(('.json', '.md'))]
    for slices in (48, 192):
        path = series_zip(workdir / f'dicom-{slices}.zip', phantom((64, 64, slices)))
        out.append((f'generated DICOM zip, {slices} slices', path))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--repeats', type=int, default=20)
    args = parser.parse_args()

    from girder_miqa.models import protocol
    from miqa_worker.acquisition import acquisition_parameters
    from miqa_worker.scope import read_sidecar

    rows = []
    with tempfile.TemporaryDirectory(prefix='bench-protocol-') as tmp:
        for label, path in scans(Path(tmp)):
            sidecar = read_sidecar(path)
            ms = median_ms(lambda p=path, s=sidecar: acquisition_parameters(p, s), args.repeats)
            rows.append({'scan': label, 'extract_ms': round(ms, 3)})
        group = [acquisition_parameters(path)['parameters'] for _, path in scans(Path(tmp))]
    group = (group * (50 // len(group) + 1))[:50]
    infer_ms = median_ms(lambda: protocol.infer(group, group), args.repeats) / len(group)
    reference = protocol.infer(group, group)
    check_ms = median_ms(lambda: [protocol.deviations(reference, p, 'inferred')
                                  for p in group], args.repeats) / len(group)
    extract = [r['extract_ms'] for r in rows]
    worst = max(extract)
    result = {
        'benchmark': 'bench_protocol', 'machine': machine(), 'repeats': args.repeats,
        'when': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
        'extraction': rows, 'extract_median_ms': round(statistics.median(extract), 3),
        'extract_max_ms': worst, 'infer_per_scan_ms': round(infer_ms, 4),
        'deviations_per_scan_ms': round(check_ms, 4),
        'worst_total_ms': round(worst + infer_ms + check_ms, 3), 'budget_ms': BUDGET_MS,
    }
    print(f'machine: {result["machine"]}')
    for row in rows:
        print(f'  {row["scan"]:<58} {row["extract_ms"]:8.2f} ms')
    print(f'extraction: median {result["extract_median_ms"]:.2f} ms, worst {worst:.2f} ms; '
          f'compliance per scan: reference {infer_ms:.3f} ms + deviations {check_ms:.3f} ms')
    print(f'worst scan in all: {result["worst_total_ms"]:.2f} ms (budget {BUDGET_MS:g} ms)')
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now().strftime('%Y%m%d-%H%M%S')
    out = RESULTS / f'bench_protocol-{stamp}.json'
    out.write_text(json.dumps(result, indent=2) + '\n')
    print(f'wrote {out.relative_to(ROOT)}')


if __name__ == '__main__':
    main()
