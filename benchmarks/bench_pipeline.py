"""Upload-to-assessment latency and worker throughput through the real stack.

Starts a private stack (mongod, Redis, Girder, girder-worker) in a temporary state directory on
free ports, then:
  1. latency: uploads one scan at a time (N times) into a project with an idle worker and
     measures from the start of the upload to the assessment being readable on the item;
  2. throughput: queues a batch of scans at once and measures scans per minute, with 1 and
     with 2 worker processes, side by side in the same run.

    .venv/bin/python benchmarks/bench_pipeline.py [--latency-runs 10] [--queue 50]
"""

from __future__ import annotations

import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / 'devops'))

import services  # noqa: E402
import stack as stack_cli  # noqa: E402


def _scan(path: Path, shape=(256, 256, 176), seed=0) -> Path:
    """A T1-sized scan: a real one resampled when ../shared is there, else a phantom."""
    import nibabel as nib
    import numpy as np

    source = stack_cli.SHARED_MRI / 'ixi-nichart_IXI012-HH-1211_T1w-2mm.nii.gz'
    if source.exists():
        from scipy.ndimage import zoom

        img = nib.as_closest_canonical(nib.load(str(source)))
        data = np.asarray(img.dataobj, dtype=np.float32)
        data = zoom(data, [t / s for t, s in zip(shape, data.shape, strict=True)], order=1)
    else:
        rng = np.random.default_rng(seed)
        grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing='ij'))
        r = np.sqrt((grid ** 2).sum(0))
        data = np.where(r < 0.85, 400.0, 0.0) + np.where(r < 0.6, 300.0, 0.0)
        data += rng.normal(0, 15, shape)
    nib.save(nib.Nifti1Image(data.astype(np.int16), np.diag([1.0, 1.0, 1.0, 1.0])), str(path))
    return path


def _wait_done(gc, item_ids: list[str], timeout: float) -> dict[str, float]:
    """Poll until every item's assessment is done or failed; returns finish times."""
    done: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    while len(done) < len(item_ids) and time.monotonic() < deadline:
        for item_id in item_ids:
            if item_id in done:
                continue
            status = gc.get(f'item/{item_id}/miqa')['assessment']['status']
            if status in ('done', 'failed'):
                done[item_id] = time.monotonic()
        time.sleep(0.05)
    return done


def _project(gc, name: str) -> str:
    user = gc.get('user/me')
    public = next(gc.listFolder(user['_id'], parentFolderType='user', name='Public'))
    folder = gc.createFolder(public['_id'], name, reuseExisting=True)
    if folder['_id'] not in {p['_id'] for p in gc.get('miqa/project')}:
        gc.post('miqa/project', parameters={'folderId': folder['_id']})
    return folder['_id']


@click.command()
@click.option('--latency-runs', default=10, show_default=True)
@click.option('--queue', 'queue_size', default=50, show_default=True)
@click.option('--out', default=str(ROOT / 'benchmarks' / 'results' / 'pipeline.json'))
def main(latency_runs: int, queue_size: int, out: str) -> None:
    import girder_client

    state = Path(tempfile.mkdtemp(prefix='miqa-bench-'))
    st = services.Stack(state_dir=state, girder_port=services.free_port(),
                        mongo_port=services.free_port(), redis_port=services.free_port(),
                        workers=2)
    results: dict = {'machine': f'{services.os.cpu_count()} CPU cores'}
    try:
        st.workers = 1
        st.up()
        gc = girder_client.GirderClient(apiUrl=st.api_url)
        gc.post('user', parameters={'login': 'admin', 'email': 'a@b.test', 'firstName': 'A',
                                    'lastName': 'B', 'password': 'benchmark-pw'})
        gc.authenticate('admin', 'benchmark-pw')
        stack_cli.configure_girder(st, gc)
        scan = _scan(state / 'T1w-256x256x176.nii.gz')

        # 1. latency, idle worker, one upload at a time (first run warms the worker up)
        folder = _project(gc, 'latency')
        latencies = []
        for i in range(latency_runs + 1):
            start = time.monotonic()
            item = gc.uploadFileToFolder(folder, str(scan), filename=f'lat-{i}.nii.gz')
            finished = _wait_done(gc, [item['itemId']], 120)
            if i:
                latencies.append(finished[item['itemId']] - start)
        results['latency_s'] = {'median': statistics.median(latencies),
                                'max': max(latencies), 'runs': len(latencies)}
        click.echo(f'upload-to-assessment latency: median {statistics.median(latencies):.2f} s'
                   f' (max {max(latencies):.2f} s, {len(latencies)} runs)')

        # 2. throughput with 1 and 2 worker processes
        for workers in (1, 2):
            for name in st.worker_names():  # restart so that threads are split anew
                st.stop(name)
            st.workers = workers
            st.start_workers()
            folder = _project(gc, f'throughput-{workers}')
            start = time.monotonic()
            ids = [gc.uploadFileToFolder(folder, str(scan), filename=f'q-{i}.nii.gz')['itemId']
                   for i in range(queue_size)]
            finished = _wait_done(gc, ids, 1800)
            elapsed = max(finished.values()) - start
            rate = len(finished) / elapsed * 60
            results[f'throughput_{workers}_workers'] = {
                'scans': len(finished), 'seconds': elapsed, 'scans_per_minute': rate}
            click.echo(f'{workers} worker process(es): {len(finished)} scans in {elapsed:.1f} s'
                       f' = {rate:.1f} scans/min')
    finally:
        st.down()
        shutil.rmtree(state, ignore_errors=True)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(results, indent=2), encoding='utf-8')
    click.echo(f'wrote {out}')


if __name__ == '__main__':
    main()
