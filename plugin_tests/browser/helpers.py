"""Shared pieces of the browser tests: where things are, when the tests can run, uploads."""

import os
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CLIENT = ROOT / 'client'
DIST = ROOT / 'girder_miqa' / 'web_client' / 'dist'
ARTIFACTS_DIR = ROOT / 'test-artifacts' / 'browser'
CHROMIUM = Path(os.environ.get('CHROMIUM', '/usr/bin/chromium'))
PASSWORD = 'miqa-e2e-password'


def skip_reason() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    if not CHROMIUM.exists():
        return f'needs a chromium at {CHROMIUM} (apt-get install chromium)'
    if not shutil.which('node'):
        return 'needs node (18.18+) on PATH'
    if not (CLIENT / 'node_modules' / 'playwright-core').is_dir():
        return 'needs client/node_modules/playwright-core (run client/build.sh)'
    if not (DIST / 'girder-plugin-miqa.umd.cjs').exists():
        return f'needs the built web client in {DIST} (run client/build.sh)'
    return None


def upload(path: Path, folder: dict, creator: dict, assetstore: dict) -> dict:
    """Upload a file into a new item of ``folder`` (fires data.process like a real upload)."""
    from girder.models.item import Item
    from girder.models.upload import Upload

    item = Item().createItem(path.name, creator=creator, folder=folder)
    with path.open('rb') as fh:
        Upload().uploadFromFile(fh, path.stat().st_size, path.name, parentType='item',
                                parent=item, user=creator, assetstore=assetstore)
    return Item().load(item['_id'], force=True)


def report(request, line: str) -> None:
    """Print a measurement to the terminal even when pytest captures output."""
    capture = request.config.pluginmanager.getplugin('capturemanager')
    if capture is None:
        print(line)
        return
    with capture.global_and_fixture_disabled():
        print(f'\n[browser] {line}')
