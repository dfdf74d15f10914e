"""``devops/miqa up|down|status``: run a whole MIQA stack on one machine.

``up`` starts mongod, Redis, Girder (with the miqa, jobs and worker plugins) and girder-worker,
creates the admin account and a filesystem assetstore on first start, then a demo project with
demo scans (the real scans in ../shared/data/mri when present, generated ones otherwise), and
prints the URL. Every step is idempotent, so running ``up`` twice is harmless.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path

import click

sys.path.insert(0, str(Path(__file__).resolve().parent))

import services  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SHARED_MRI = ROOT.parent / 'shared' / 'data' / 'mri'
DEMO_COLLECTION = 'MIQA demo'
DEMO_FOLDER = 'Demo study'
IMAGE_SUFFIXES = ('.nii', '.nii.gz', '.nrrd', '.nhdr', '.mha', '.mhd', '.mgz')


def _stack() -> services.Stack:
    return services.Stack.from_env(ROOT / '.state')


def _credentials(stack: services.Stack) -> tuple[str, str, bool]:
    """Admin login and password: from MIQA_ADMIN_LOGIN/PASSWORD, else generated once and kept."""
    login = os.environ.get('MIQA_ADMIN_LOGIN', 'admin')
    password = os.environ.get('MIQA_ADMIN_PASSWORD')
    if password:
        return login, password, False
    path = stack.state_dir / 'admin-credentials.json'
    if path.exists():
        saved = json.loads(path.read_text(encoding='utf-8'))
        if saved.get('login') == login:
            return login, saved['password'], True
    password = secrets.token_urlsafe(12)
    stack.state_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({'login': login, 'password': password}), encoding='utf-8')
    path.chmod(0o600)
    return login, password, True


def _client(stack: services.Stack, login: str, password: str):
    """An admin girder_client, registering the admin (the first user) on a fresh database."""
    import girder_client

    gc = girder_client.GirderClient(apiUrl=stack.api_url)
    try:
        gc.authenticate(login, password)
    except girder_client.AuthenticationError:
        try:
            gc.post('user', parameters={
                'login': login, 'email': f'{login}@miqa.local', 'firstName': 'MIQA',
                'lastName': 'Admin', 'password': password})
        except girder_client.HttpError as exc:
            raise click.ClickException(
                f'cannot log in as {login!r} nor register it ({exc.responseText.strip()}); '
                'set MIQA_ADMIN_LOGIN/MIQA_ADMIN_PASSWORD to the existing admin') from exc
        gc.authenticate(login, password)
    if not gc.get('user/me').get('admin'):
        raise click.ClickException(f'{login!r} is not an admin of this Girder')
    return gc


def configure_girder(stack: services.Stack, gc) -> None:
    """A filesystem assetstore, and the API URL that workers call back."""
    if not gc.get('assetstore'):
        stack.assetstore_dir.mkdir(parents=True, exist_ok=True)
        gc.post('assetstore', parameters={
            'name': 'Local files', 'type': 0, 'root': str(stack.assetstore_dir)})
    gc.put('system/setting', parameters={'key': 'worker.api_url', 'value': stack.api_url})
    # Workers on this machine read scans straight from the assetstore instead of downloading.
    gc.put('system/setting', parameters={'key': 'worker.direct_path', 'value': 'true'})


def _find_or_create(gc, kind: str, parent_id: str | None, name: str, parent_type='folder'):
    if kind == 'collection':
        for coll in gc.listCollection():
            if coll['name'] == name:
                return coll
        return gc.createCollection(name, public=False)
    for folder in gc.listFolder(parent_id, parentFolderType=parent_type, name=name):
        return folder
    return gc.createFolder(parent_id, name, parentType=parent_type)


def demo_sources(workdir: Path) -> list[tuple[str, Path]]:
    """(session folder, file) pairs: real scans when ../shared is there, generated ones if not."""
    if SHARED_MRI.is_dir():
        out = []
        for path in sorted(SHARED_MRI.iterdir()):
            if path.is_file() and path.name.lower().endswith(IMAGE_SUFFIXES):
                session = path.name.split('_')[0]
                out.append((session, path))
        for series in sorted((SHARED_MRI / 'dicom').glob('*')) if (SHARED_MRI / 'dicom').is_dir() \
                else []:
            archive = workdir / f'{series.name}-dicom.zip'
            with zipfile.ZipFile(archive, 'w') as zf:
                for member in sorted(series.iterdir()):
                    zf.write(member, member.name)
            out.append((series.name.split('_')[0], archive))
        return out
    import demo_data

    return [('generated', path) for path in demo_data.generate(workdir)]


def create_demo_project(gc, admin_id: str) -> dict:
    """The demo collection, its project folder with sub-folders per source, and demo scans."""
    coll = _find_or_create(gc, 'collection', None, DEMO_COLLECTION)
    folder = _find_or_create(gc, 'folder', coll['_id'], DEMO_FOLDER, parent_type='collection')
    projects = {p['_id'] for p in gc.get('miqa/project')}
    if folder['_id'] not in projects:
        gc.post('miqa/project', parameters={'folderId': folder['_id']})
    with tempfile.TemporaryDirectory() as tmp:
        sources = demo_sources(Path(tmp))
        uploaded = 0
        for session, path in sources:
            sub = _find_or_create(gc, 'folder', folder['_id'], session)
            if any(True for _ in gc.listItem(sub['_id'], name=path.name)):
                continue
            gc.uploadFileToFolder(sub['_id'], str(path))
            uploaded += 1
    return {'folder': folder, 'scans': len(sources), 'uploaded': uploaded}


@click.group()
def cli() -> None:
    """Run a MIQA stack (mongod, Redis, Girder, girder-worker) on this machine."""


@cli.command()
@click.option('--demo/--no-demo', default=True, show_default=True,
              help='Create the demo project and upload demo scans.')
def up(demo: bool) -> None:
    """Start everything not yet running, then set up Girder and the demo project."""
    stack = _stack()
    try:
        results = stack.up()
    except services.ServiceError as exc:
        raise click.ClickException(str(exc)) from exc
    for name, state in results.items():
        click.echo(f'  {name:8s} {state}')
    login, password, generated = _credentials(stack)
    gc = _client(stack, login, password)
    configure_girder(stack, gc)
    if demo:
        info = create_demo_project(gc, gc.get('user/me')['_id'])
        click.echo(f'  demo     project "{DEMO_COLLECTION}/{DEMO_FOLDER}": {info["scans"]} scans '
                   f'({info["uploaded"]} uploaded now; assessments run in the worker)')
    url = f'http://127.0.0.1:{stack.girder_port}/'
    click.echo(f'\nMIQA is running at {url}')
    shown = password if generated else '(from MIQA_ADMIN_PASSWORD)'
    click.echo(f'Admin login: {login}  password: {shown}')
    click.echo(registration_notice(
        gc.get('system/setting', parameters={'key': 'core.registration_policy'})))
    click.echo(f'Logs: {stack.log_dir}   Stop: ./devops/miqa down')


def registration_notice(policy: str | None) -> str:
    """One line on who may create an account (Girder's core.registration_policy)."""
    if policy in ('closed', 'approve'):
        return (f'Self-registration: {policy} (Girder setting core.registration_policy).')
    return ('Self-registration: OPEN - anyone who can reach this URL can create an account. '
            'To close it (devops/README.md): PUT /api/v1/system/setting '
            'key=core.registration_policy value=closed (or approve).')


@cli.command()
def down() -> None:
    """Stop what `up` started (by pid file)."""
    stack = _stack()
    stopped = stack.down()
    click.echo('stopped: ' + (', '.join(stopped) if stopped else 'nothing was running'))


@cli.command()
@click.option('--json', 'as_json', is_flag=True, help='Print JSON.')
def status(as_json: bool) -> None:
    """Each service, its state, pid and log file; exit 1 if any is stopped."""
    stack = _stack()
    rows = stack.status()
    if as_json:
        click.echo(json.dumps(rows))
    else:
        for row in rows:
            pid = row['pid'] or '-'
            click.echo(f'{row["service"]:10s} {row["state"]:9s} pid {pid!s:8s} log {row["log"]}')
    if any(row['state'] == 'stopped' for row in rows):
        sys.exit(1)


@cli.command()
def purge() -> None:
    """Stop everything and delete the state directory (database, files, logs)."""
    stack = _stack()
    stack.down()
    shutil.rmtree(stack.state_dir, ignore_errors=True)
    click.echo(f'removed {stack.state_dir}')


if __name__ == '__main__':
    cli()
