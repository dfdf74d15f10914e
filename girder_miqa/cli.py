"""The ``miqa`` command: projects, uploads, queues, decisions, export and import from a shell."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import click
from girder_client import HttpError

from .client import MiqaClient

OBJECT_ID = re.compile(r'^[0-9a-f]{24}$')


def _echo_json(value) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=True))


def _error_message(exc: HttpError) -> str:
    try:
        return json.loads(exc.responseText).get('message') or exc.responseText
    except (ValueError, AttributeError, TypeError):
        return str(exc)


class Context:
    """Connection options, and a client made on first use."""

    def __init__(self, api_url: str, api_key: str | None, username: str | None,
                 password: str | None):
        self.api_url = api_url
        self.api_key = api_key
        self.username = username
        self.password = password
        self._client: MiqaClient | None = None

    @property
    def client(self) -> MiqaClient:
        if self._client is None:
            client = MiqaClient(apiUrl=self.api_url)
            if self.api_key:
                client.authenticate(apiKey=self.api_key)
            elif self.username:
                client.authenticate(self.username, self.password or click.prompt(
                    'Password', hide_input=True))
            self._client = client
        return self._client

    def group_id(self, value: str | None) -> str | None:
        """A group given by id or by exact name."""
        if value is None or value == '' or OBJECT_ID.match(value):
            return value
        for group in self.client.get('group', parameters={'text': value, 'limit': 50}):
            if group['name'] == value:
                return group['_id']
        raise click.BadParameter(f'no group named {value!r}')


class MiqaGroup(click.Group):
    """Turns API errors into one clear line and exit status 1."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except HttpError as exc:
            click.echo(f'Error {exc.status}: {_error_message(exc)}', err=True)
            sys.exit(1)


@click.group(cls=MiqaGroup)
@click.option('--api-url', envvar='MIQA_API_URL', default='http://localhost:8080/api/v1',
              show_default=True, help='Girder API root (env MIQA_API_URL).')
@click.option('--api-key', envvar='MIQA_API_KEY', help='Girder API key (env MIQA_API_KEY).')
@click.option('--username', envvar='MIQA_USERNAME', help='Login (env MIQA_USERNAME).')
@click.option('--password', envvar='MIQA_PASSWORD', help='Password (env MIQA_PASSWORD).')
@click.pass_context
def main(ctx, api_url, api_key, username, password):
    """MIQA: quality review of brain MRI in Girder."""
    ctx.obj = Context(api_url, api_key, username, password)


def _settings(ctx: Context, tier1_group, tier2_group, auto_assess, model, artifacts) -> dict:
    settings: dict = {}
    if tier1_group is not None:
        settings['tier1GroupId'] = ctx.group_id(tier1_group) or None
    if tier2_group is not None:
        settings['tier2GroupId'] = ctx.group_id(tier2_group) or None
    if auto_assess is not None:
        settings['autoAssess'] = auto_assess
    if model is not None:
        settings['model'] = model
    if artifacts is not None:
        settings['artifacts'] = json.loads(Path(artifacts).read_text(encoding='utf-8'))
    return settings


SETTING_OPTIONS = [
    click.option('--tier1-group', help='Tier-1 reviewer group (id or name; "" for none).'),
    click.option('--tier2-group', help='Tier-2 reviewer group (id or name; "" for none).'),
    click.option('--auto-assess/--no-auto-assess', default=None,
                 help='Assess uploads automatically.'),
    click.option('--model', help='The model to assess with.'),
    click.option('--artifacts', type=click.Path(exists=True, dir_okay=False),
                 help='JSON file: the artifact vocabulary, [{"key", "label"}].'),
]


def setting_options(fn):
    for option in reversed(SETTING_OPTIONS):
        fn = option(fn)
    return fn


@main.group()
def project():
    """Create, configure and inspect projects."""


@project.command('list')
@click.pass_obj
def project_list(ctx: Context):
    """List the projects you can read, with counts and your tiers."""
    for p in ctx.client.list_projects():
        counts = p['counts']
        tiers = ','.join(str(t) for t in p['myTiers']) or '-'
        click.echo(f'{p["_id"]}  {p["folder"]["path"] or p["name"]}  tiers {tiers}  '
                   f'unreviewed {counts["unreviewed"]}  questionable {counts["questionable"]}  '
                   f'good {counts["good"]}  bad {counts["bad"]}')


@project.command('create')
@click.argument('folder_id', required=False)
@click.option('--collection', 'collection_id', metavar='ID',
              help='Enable this collection instead of a folder.')
@setting_options
@click.pass_obj
def project_create(ctx: Context, folder_id, collection_id, tier1_group, tier2_group,
                   auto_assess, model, artifacts):
    """Enable a folder (FOLDER_ID) or a collection (--collection ID) for review (admins);
    prints the project."""
    if bool(folder_id) == bool(collection_id):
        raise click.UsageError('Give a FOLDER_ID or --collection ID (one of them).')
    settings = _settings(ctx, tier1_group, tier2_group, auto_assess, model, artifacts)
    _echo_json(ctx.client.create_project(folder_id or None, settings,
                                         collection=collection_id or None))


@project.command('configure')
@click.argument('project_id')
@setting_options
@click.pass_obj
def project_configure(ctx: Context, project_id, tier1_group, tier2_group, auto_assess, model,
                      artifacts):
    """Change a project's settings (admins and owners); prints the settings."""
    settings = _settings(ctx, tier1_group, tier2_group, auto_assess, model, artifacts)
    if not settings:
        raise click.UsageError('Give at least one setting to change.')
    _echo_json(ctx.client.update_settings(project_id, **settings))


@project.command('show')
@click.argument('project_id')
@click.pass_obj
def project_show(ctx: Context, project_id):
    """Print a project: settings, folder, counts, your tiers."""
    _echo_json(ctx.client.get_project(project_id))


@main.command()
@click.argument('project_id')
@click.pass_obj
def summary(ctx: Context, project_id):
    """Print a project's progress and model agreement (JSON)."""
    _echo_json(ctx.client.summary(project_id))


@main.command()
@click.argument('local_dir', type=click.Path(exists=True, file_okay=False))
@click.argument('folder_id')
@click.option('--progress/--no-progress', default=True, show_default=True)
@click.pass_obj
def upload(ctx: Context, local_dir, folder_id, progress):
    """Upload the scans under LOCAL_DIR into FOLDER_ID, keeping sub-folders (sessions)."""
    report = ctx.client.upload_scans(local_dir, folder_id, progress=progress)
    click.echo(f'uploaded {report["uploaded"]} scans ({report["bytes"]} bytes), '
               f'skipped {report["skipped"]} already there')


@main.command()
@click.argument('project_id')
@click.option('--tier', type=click.IntRange(1, 2), default=1, show_default=True)
@click.option('--limit', type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option('--offset', type=click.IntRange(0), default=0, show_default=True)
@click.option('--json', 'as_json', is_flag=True, help='Print the raw JSON page.')
@click.pass_obj
def queue(ctx: Context, project_id, tier, limit, offset, as_json):
    """List a page of a review queue, most suspicious first."""
    page = ctx.client.queue(project_id, tier=tier, limit=limit, offset=offset)
    if as_json:
        _echo_json(page)
        return
    click.echo(f'tier {tier} queue: {page["total"]} scans (showing {offset + 1}-'
               f'{offset + len(page["items"])})')
    for scan in page['items']:
        assessment = scan['miqa'].get('assessment') or {}
        quality = assessment.get('quality')
        score = f'{quality:5.2f}' if isinstance(quality, (int, float)) else '  -  '
        lock = scan['miqa'].get('lock')
        held = f'  locked by {lock["login"]}' if lock else ''
        click.echo(f'{scan["_id"]}  q {score}  {scan["path"]}{held}')


def _artifacts(values: tuple[str, ...]) -> dict:
    out = {}
    for value in values:
        key, sep, state = value.partition('=')
        if not sep:
            state = 'present'
        out[key.strip()] = state.strip()
    return out


@main.command()
@click.argument('item_id')
@click.argument('decision', type=click.Choice(['good', 'questionable', 'bad']))
@click.option('--tier', type=click.IntRange(1, 2), help='Default: your highest tier.')
@click.option('--artifact', '-a', multiple=True,
              help='KEY (present) or KEY=present|absent|not_stated; repeatable.')
@click.option('--comment', '-c')
@click.option('--seconds', type=click.FloatRange(0), help='Time spent on the scan.')
@click.option('--confidence', type=click.IntRange(1, 5))
@click.option('--quality', type=click.FloatRange(0, 10), help='Your own 0-10 score.')
@click.pass_obj
def decide(ctx: Context, item_id, decision, tier, artifact, comment, seconds, confidence,
           quality):
    """Record a decision on a scan."""
    result = ctx.client.decide(item_id, decision, tier=tier, artifacts=_artifacts(artifact) or
                               None, comment=comment, seconds=seconds, confidence=confidence,
                               quality=quality)
    d = result['decision']
    click.echo(f'recorded tier-{d["tier"]} {d["decision"]} by {d["login"]}; the scan is now '
               f'{result["state"]["state"]}')


def _figure(value: dict | None) -> str:
    """``0.25 [0.02, 0.61] n=6`` of an agreement figure {value, low, high, n}."""
    if not value or value.get('value') is None:
        return f'-  n={(value or {}).get("n", 0)}'
    interval = (f' [{value["low"]:.2f}, {value["high"]:.2f}]' if value.get('low') is not None
                else '')
    return f'{value["value"]:.2f}{interval} n={value["n"]}'


@main.command()
@click.argument('project_id')
@click.option('--json', 'as_json', is_flag=True, help='Print the raw JSON.')
@click.pass_obj
def agreement(ctx: Context, project_id, as_json):
    """Print how much the project's reviewers agree (kappas with 95 % intervals)."""
    out = ctx.client.agreement(project_id)
    if as_json:
        _echo_json(out)
        return
    click.echo(f'Fleiss kappa (tier 1):   {_figure(out["fleiss"])}')
    click.echo(f'tier 1 vs tier 2 kappa:  {_figure(out["tier1VsTier2"]["kappa"])}')
    click.echo(f'humans vs model kappa:   {_figure(out["humansVsModel"]["kappa"])}')
    click.echo(f'gold agreement:          {_figure(out["gold"]["agreement"])}')
    for pair in out['pairs']:
        click.echo(f'kappa {" / ".join(pair["raters"])}: {_figure(pair["kappa"])}')
    for row in out['reviewers']:
        seconds = row['seconds']['median']
        click.echo(f'{row["reviewer"]}: {row["decisions"]} decisions, gold '
                   f'{_figure(row["gold"]["agreement"])}, median '
                   f'{"-" if seconds is None else f"{seconds:.0f} s"}')
    for name, arm in out['arms'].items():
        click.echo(f'assessment {name}: {arm["reads"]} reads, tier-2 agreement '
                   f'{_figure(arm["tier2Agreement"])}, caught {_figure(arm["caught"])}')


@main.group()
def gold():
    """Gold-standard reference scans (project admins)."""


@gold.command('mark')
@click.argument('item_id')
@click.argument('decision', type=click.Choice(['good', 'questionable', 'bad']))
@click.option('--artifact', '-a', multiple=True,
              help='KEY (present) or KEY=present|absent; repeatable.')
@click.option('--comment', '-c', default='')
@click.pass_obj
def gold_mark(ctx: Context, item_id, decision, artifact, comment):
    """Make a scan a reference with DECISION."""
    ref = ctx.client.mark_gold(item_id, decision, _artifacts(artifact), comment)
    click.echo(f'{item_id} is a {ref["decision"]} reference')


@gold.command('unmark')
@click.argument('item_id')
@click.pass_obj
def gold_unmark(ctx: Context, item_id):
    """Stop a scan being a reference."""
    removed = ctx.client.unmark_gold(item_id)['removed']
    click.echo(f'{item_id} {"is no longer" if removed else "was not"} a reference')


@gold.command('import')
@click.argument('project_id')
@click.argument('file', type=click.File('r', encoding='utf-8-sig'))
@click.pass_obj
def gold_import(ctx: Context, project_id, file):
    """Mark references from a CSV: path or itemId, decision, artifacts, comment."""
    report = ctx.client.import_gold(project_id, file.read())
    click.echo(f'marked {report["marked"]} references')
    for error in report['errors']:
        click.echo(f'line {error["line"]}: {error["reason"]}', err=True)
    if report['errors']:
        sys.exit(1)


@main.command()
@click.argument('item_id')
@click.pass_obj
def history(ctx: Context, item_id):
    """Print every decision on a scan (JSON)."""
    _echo_json(ctx.client.history(item_id))


@main.command('export')
@click.argument('project_id')
@click.option('--format', 'fmt', type=click.Choice(['csv', 'json']), default='csv',
              show_default=True)
@click.option('--output', '-o', type=click.Path(dir_okay=False), help='Default: stdout.')
@click.pass_obj
def export_cmd(ctx: Context, project_id, fmt, output):
    """Export a project's scans and decisions as CSV or JSON."""
    text = ctx.client.export(project_id, fmt)
    if output:
        Path(output).write_text(text, encoding='utf-8')
        click.echo(f'wrote {output}', err=True)
    else:
        click.echo(text, nl=False)


@main.command('report')
@click.argument('project_id')
@click.option('--output', '-o', 'output', type=click.Path(file_okay=False), required=True,
              help='Folder for report.json, report.csv and the PNGs (made if missing).')
@click.option('--no-figures', is_flag=True, help='Only report.json and report.csv.')
@click.pass_obj
def report_cmd(ctx: Context, project_id, output, no_figures):
    """Write a project's group report: report.json, report.csv and PNGs (each metric by site,
    the compliance table, the reasons per site)."""
    if not no_figures:
        from . import report_figures

        try:
            report_figures.pyplot()  # before anything is fetched or written
        except ImportError as exc:
            raise click.ClickException(str(exc)) from None
    folder = Path(output)
    folder.mkdir(parents=True, exist_ok=True)
    report = ctx.client.report(project_id)
    (folder / 'report.json').write_text(json.dumps(report, indent=1, sort_keys=True),
                                        encoding='utf-8')
    (folder / 'report.csv').write_text(ctx.client.report(project_id, 'csv'), encoding='utf-8')
    written = ['report.json', 'report.csv']
    if not no_figures:
        written += [path.name for path in report_figures.write_figures(report, folder)]
    click.echo(f'wrote {", ".join(written)} to {folder} ({report.get("scans", 0)} scans, '
               f'{len(report.get("sites") or [])} sites)')


@main.command('import')
@click.argument('project_id')
@click.argument('file', type=click.Path(exists=True, dir_okay=False))
@click.option('--format', 'fmt', type=click.Choice(['csv', 'json']),
              help='Default: from the file name.')
@click.option('--assetstore-id', help='Filesystem assetstore for absolute server paths.')
@click.pass_obj
def import_cmd(ctx: Context, project_id, file, fmt, assetstore_id):
    """Import scans and earlier decisions from a CSV or JSON file."""
    fmt = fmt or ('json' if file.lower().endswith('.json') else 'csv')
    report = ctx.client.import_text(project_id, Path(file).read_text(encoding='utf-8-sig'),
                                    fmt, assetstore_id)
    kind = report.get('lineKind', 'line')
    for error in report['errors']:
        click.echo(f'{file}: {kind} {error["line"]}: {error["reason"]}', err=True)
    click.echo(f'{report["rows"]} rows: {report["scans"]} scans, {report["filesImported"]} '
               f'files imported, {report["decisionsAdded"]} decisions added, '
               f'{report["decisionsSkipped"]} already there, {len(report["errors"])} errors')
    if report['errors']:
        sys.exit(2)


@main.command()
@click.argument('project_id')
@click.option('--force', is_flag=True, help='Also re-queue scans already queued or running.')
@click.pass_obj
def assess(ctx: Context, project_id, force):
    """Schedule the assessment of every scan not yet assessed by the project's model."""
    _echo_json(ctx.client.assess_project(project_id, force=force))


@main.command()
@click.argument('project_id')
@click.pass_obj
def register(ctx: Context, project_id):
    """Make the project's image items that are not yet scans (e.g. imported into an assetstore)
    its scans; uploads, moves and copies need not."""
    _echo_json(ctx.client.register_scans(project_id))


class _ProtocolGroup(click.Group):
    """``miqa protocol FOLDER_ID`` is ``miqa protocol compliance FOLDER_ID``."""

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and not args[0].startswith('-'):
            args = ['compliance', *args]
        return super().parse_args(ctx, args)


@main.group(cls=_ProtocolGroup)
def protocol():
    """Reference protocols and compliance: ``miqa protocol FOLDER_ID`` prints the compliance
    table, ``show`` the references in force, ``set`` sets references from a file."""


def _value_text(value) -> str:
    if isinstance(value, list):
        return 'x'.join(f'{v:g}' if isinstance(v, float) else str(v) for v in value)
    return f'{value:g}' if isinstance(value, float) else str(value)


@protocol.command('compliance')
@click.argument('project_id')
@click.option('--json', 'as_json', is_flag=True, help='Print the raw JSON.')
@click.pass_obj
def protocol_compliance(ctx: Context, project_id, as_json):
    """Print the compliance table: per site and scan type, the scans within the reference,
    and each parameter's percent of compliant scans (those under 100 % first)."""
    table = ctx.client.compliance(project_id)
    if as_json:
        _echo_json(table)
        return
    sites = table.get('sites') or {}
    if not sites:
        click.echo('no assessed scans yet')
        return
    for site, kinds in sorted(sites.items()):
        for kind, row in sorted(kinds.items()):
            share = 100.0 * row['compliant'] / row['scans'] if row['scans'] else 0.0
            click.echo(f'{site}  {kind}  {row["reference"]} reference  {row["scans"]} scans  '
                       f'{row["compliant"]} compliant ({share:.0f} %)')
            for key, percent in sorted(row['parameters'].items(), key=lambda kv: (kv[1], kv[0])):
                click.echo(f'    {key:<32} {percent:5.1f} %')


@protocol.command('show')
@click.argument('project_id')
@click.option('--json', 'as_json', is_flag=True, help='Print the raw JSON.')
@click.pass_obj
def protocol_show(ctx: Context, project_id, as_json):
    """Print the references in force (set by an admin, or inferred from the scans)."""
    references = ctx.client.protocol(project_id)
    if as_json:
        _echo_json(references)
        return
    for ref in references:
        click.echo(f'{ref["scanType"]}  {ref.get("site") or "all sites"}  {ref["reference"]}  '
                   f'({ref.get("scans", 0)} scans)')
        for key, spec in sorted(ref['parameters'].items()):
            tolerance = '' if spec.get('tolerance') in (None, 0) else (
                f' ± {_value_text(spec["tolerance"])}')
            click.echo(f'    {key:<32} {_value_text(spec["value"])}{tolerance}  '
                       f'{spec.get("severity", "warning")}')


@protocol.command('set')
@click.argument('project_id')
@click.argument('file', type=click.Path(exists=True, dir_okay=False))
@click.pass_obj
def protocol_set(ctx: Context, project_id, file):
    """Set reference protocols from FILE: JSON (a list of {scanType, site, parameters}) or CSV
    (columns scanType, site, parameter, value, tolerance, severity); admins."""
    text = Path(file).read_text(encoding='utf-8-sig')
    fmt = 'json' if file.lower().endswith('.json') else (
        'csv' if file.lower().endswith('.csv') else None)
    references = ctx.client.set_protocol(project_id, text, fmt)
    count = sum(1 for r in references if r['reference'] == 'set')
    click.echo(f'{count} set references in force, {len(references) - count} inferred')


if __name__ == '__main__':  # pragma: no cover
    main()
