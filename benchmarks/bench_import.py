"""Import time of a 5 MB CSV (and the same decisions as JSON) into one project, over real HTTP.

Starts its own mongod (devops/services.py; or MIQA_MONGO_URI) and an in-process Girder with the
miqa plugin on a free port, fills one project with scans in subject/session folders, writes a
CSV of earlier decisions of about --mb megabytes (several rows per scan: tier-1 decisions, then
a tier-2 one, some reviewers Girder accounts, some not) and the same decisions as JSON, then
times, side by side, for each format: a fresh import (every decision new: checked, stored, each
scan's state rebuilt from its trail) and the same file again (everything recognized and
skipped). Medians of --repeats runs; the project is emptied of decisions before each fresh run.
Prints the table and the machine, and writes benchmarks/results/bench_import-<time>.json.

    .venv/bin/python benchmarks/bench_import.py [--mb 5] [--scans 2000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import csv
import datetime
import io
import json
import os
import platform
import random
import shutil
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / 'devops'))
sys.path.insert(0, str(ROOT / 'benchmarks'))
RESULTS = ROOT / 'benchmarks' / 'results'
DB = 'miqa_bench_import'

from bench_queue import _folder_doc, bench_project, start_girder, start_mongo  # noqa: E402
from machine import cpu_model  # noqa: E402


def machine() -> str:
    """The machine in words: CPU model, cores, memory, Python."""
    cpu = cpu_model()
    try:
        kb = int(next(line for line in Path('/proc/meminfo').read_text().splitlines()
                      if line.startswith('MemTotal')).split()[1])
        memory = f', {kb / 1024 / 1024:.0f} GiB'
    except (OSError, StopIteration, ValueError):
        memory = ''
    return (f'{cpu}, {os.cpu_count()} cores{memory}, {platform.system()} '
            f'{platform.release()}, Python {platform.python_version()}')


def populate(n_scans: int) -> dict:
    """Users, a group, a project folder with subject/session folders and n_scans scans."""
    from bson import ObjectId
    from girder.models.folder import Folder
    from girder.models.group import Group
    from girder.models.item import Item
    from girder.models.user import User

    from girder_miqa.constants import ITEM_FIELD
    from girder_miqa.models import review_state

    admin = User().createUser('admin', 'password', 'Admin', 'Bench', 'admin@bench.test',
                              admin=True)
    for n in range(3):
        User().createUser(f'reviewer{n}', 'password', 'Re', 'Viewer', f'r{n}@bench.test')
    group = Group().createGroup('Tier 1', admin)
    root, project = bench_project(admin, group)
    now = datetime.datetime.now(datetime.timezone.utc)
    folders, sessions = [], []
    for s in range(max(1, n_scans // 10)):
        subjectId = ObjectId()
        folders.append({**_folder_doc(root, f'sub-{s:05d}', admin, now), '_id': subjectId,
                        'parentId': root['_id']})
        session = {**_folder_doc(root, 'ses-1', admin, now), '_id': ObjectId(),
                   'parentId': subjectId}
        folders.append(session)
        sessions.append(session)
    Folder().collection.insert_many(folders)
    items = []
    for i in range(n_scans):
        created = now - datetime.timedelta(seconds=n_scans - i)
        item = {'_id': ObjectId(), 'name': f'scan-{i:06d}.nii.gz',
                'folderId': sessions[i % len(sessions)]['_id'], 'baseParentType': 'collection',
                'baseParentId': root['baseParentId'], 'creatorId': admin['_id'],
                'created': created, 'updated': created, 'description': '', 'size': 1_000_000,
                'meta': {}}
        item[ITEM_FIELD] = review_state.initial_state(item, project)
        items.append(item)
    Item().collection.insert_many(items)
    review_state.recount(project['_id'])
    return {'project': project, 'items': items}


def files(items: list[dict], mb: float, seed: int) -> tuple[str, str, int]:
    """A CSV of about ``mb`` MB of earlier decisions on these scans, the same as JSON, and the
    number of decisions."""
    rng = random.Random(seed)
    reviewers = ['reviewer0', 'reviewer1', 'reviewer2', 'alice', 'bob']
    columns = ['itemId', 'decision', 'tier', 'reviewer', 'decided', 'comment', 'seconds',
               'confidence', 'lesion', 'ghosting_motion']
    out = io.StringIO()
    writer = csv.writer(out, lineterminator='\r\n')
    writer.writerow(columns)
    start = datetime.datetime(2023, 1, 1, tzinfo=datetime.timezone.utc)
    byScan: dict = {}
    n, target = 0, int(mb * 1024 * 1024)
    while out.tell() < target:
        item = items[n % len(items)]
        rows = byScan.setdefault(item['_id'], [])
        when = start + datetime.timedelta(minutes=n)  # every scan's rows in time order
        comment = rng.choice(['', 'fine', 'slight motion, see "sag 40"', 'ringing\nin\r\nz',
                              '=not a formula', 'x' * 120])
        row = {'itemId': str(item['_id']), 'decision': rng.choice(['good', 'questionable']),
               'tier': 1, 'reviewer': rng.choice(reviewers), 'decided': when.isoformat(),
               'comment': comment, 'seconds': round(rng.uniform(3, 90), 1),
               'confidence': rng.randint(1, 5), 'lesion': rng.choice(['true', 'false', '']),
               'ghosting_motion': rng.choice(['true', 'false', ''])}
        rows.append(row)
        writer.writerow([("'" + v if isinstance(v, str) and v and v[0] in '=+-@' else v)
                         for v in (row[c] for c in columns)])
        n += 1
    entries = [{'itemId': str(itemId), 'decisions': [
        {'decision': r['decision'], 'tier': r['tier'], 'reviewer': r['reviewer'],
         'decided': r['decided'], 'comment': r['comment'], 'seconds': r['seconds'],
         'confidence': r['confidence'],
         'artifacts': {k: r[k] for k in ('lesion', 'ghosting_motion') if r[k]}}
        for r in rows]} for itemId, rows in byScan.items()]
    return out.getvalue(), json.dumps({'scans': entries}), n


def reset(project: dict) -> None:
    """No decisions and every scan unreviewed again (as before the first import)."""
    from girder.models.item import Item

    from girder_miqa.constants import ITEM_FIELD
    from girder_miqa.models import review_state
    from girder_miqa.models.decision import Decision

    Decision().collection.delete_many({'projectId': project['_id']})
    Item().collection.update_many({f'{ITEM_FIELD}.projectId': project['_id']}, {'$set': {
        f'{ITEM_FIELD}.state': 'unreviewed', f'{ITEM_FIELD}.decisionCount': 0,
        f'{ITEM_FIELD}.latestDecision': None, f'{ITEM_FIELD}.tier1': None}})
    review_state.recount(project['_id'])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--mb', type=float, default=5.0)
    parser.add_argument('--scans', type=int, default=2000)
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args()

    mongo, stack, state_dir = start_mongo()
    os.environ['GIRDER_MONGO_URI'] = f'{mongo}/{DB}'
    import requests
    import services
    from girder.models import getDbConnection
    from girder.models.item import Item

    from girder_miqa.constants import ITEM_FIELD
    from girder_miqa.models.decision import Decision

    getDbConnection().drop_database(DB)
    try:
        port = services.free_port()
        cherrypy = start_girder(port)
        data = populate(args.scans)
        project = data['project']
        csvText, jsonText, n = files(data['items'], args.mb, args.seed)
        base = f'http://127.0.0.1:{port}/api/v1'
        session = requests.Session()
        session.headers['Girder-Token'] = session.get(
            f'{base}/user/authentication', auth=('admin', 'password')).json()['authToken'][
            'token']
        url = f'{base}/miqa/project/{project["_id"]}/import'
        bodies = {'csv': (csvText, 'text/csv'), 'json': (jsonText, 'application/json')}
        runs: dict = {f'{fmt}_{kind}': [] for fmt in bodies for kind in ('fresh', 'again')}
        for _ in range(args.repeats):
            for fmt, (text, contentType) in bodies.items():
                reset(project)
                for kind in ('fresh', 'again'):
                    start = time.perf_counter()
                    resp = session.post(url, params={'format': fmt}, data=text.encode(),
                                        headers={'Content-Type': contentType})
                    seconds = time.perf_counter() - start
                    resp.raise_for_status()
                    report = resp.json()
                    assert report['errors'] == [], report['errors'][:3]
                    expected = (n, 0) if kind == 'fresh' else (0, n)
                    assert (report['decisionsAdded'], report['decisionsSkipped']) == expected, (
                        kind, report['decisionsAdded'], report['decisionsSkipped'])
                    runs[f'{fmt}_{kind}'].append(seconds)
                # the record agrees with itself: every scan's count is its trail's length
                counts = {d['_id']: d['n'] for d in Decision().collection.aggregate([
                    {'$group': {'_id': '$itemId', 'n': {'$sum': 1}}}])}
                for item in Item().collection.find({f'{ITEM_FIELD}.projectId': project['_id']},
                                                   {f'{ITEM_FIELD}.decisionCount': 1}):
                    assert item[ITEM_FIELD]['decisionCount'] == counts.get(item['_id'], 0)
        medians = {k: round(statistics.median(v), 2) for k, v in runs.items()}
        sizes = {'csv': len(csvText.encode()), 'json': len(jsonText.encode())}
        print(f'machine: {machine()}')
        print(f'{n} decisions on {args.scans} scans; CSV {sizes["csv"] / 1e6:.2f} MB, JSON '
              f'{sizes["json"] / 1e6:.2f} MB; median of {args.repeats}')
        print(f'{"":6}{"fresh import":>16}{"same file again":>18}')
        for fmt in bodies:
            print(f'{fmt:6}{medians[f"{fmt}_fresh"]:>14.2f} s{medians[f"{fmt}_again"]:>16.2f} s')
        RESULTS.mkdir(parents=True, exist_ok=True)
        stamp = datetime.datetime.now().strftime('%Y%m%d-%H%M%S')
        out = RESULTS / f'bench_import-{stamp}.json'
        out.write_text(json.dumps({
            'machine': machine(), 'decisions': n, 'scans': args.scans, 'bytes': sizes,
            'repeats': args.repeats, 'medians_s': medians, 'runs_s': runs,
            'load_average': os.getloadavg(),
            'when': datetime.datetime.now(datetime.timezone.utc).isoformat()}, indent=2) + '\n',
            encoding='utf-8')
        print(f'wrote {out.relative_to(ROOT)}')
        cherrypy.engine.exit()
        return 0
    finally:
        getDbConnection().drop_database(DB)
        if stack is not None:
            stack.down()
            shutil.rmtree(state_dir, ignore_errors=True)


if __name__ == '__main__':
    sys.exit(main())
