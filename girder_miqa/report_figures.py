"""The group report's figures (``miqa report``): strip plots of each metric by site with the
outliers marked, the compliance table, the reasons per site. Needs matplotlib (the ``report``
extra); the server never imports this module."""

from __future__ import annotations

from pathlib import Path

MISSING = 'miqa report draws its figures with matplotlib: pip install matplotlib'


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend; ImportError with the one-line fix."""
    try:
        import matplotlib
    except ImportError:
        raise ImportError(MISSING) from None
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    return plt


def strip_plots(report: dict, out: Path) -> Path | None:
    """One panel per metric: each scan a dot at its site (jittered), outliers red and larger."""
    metrics = report.get('metrics') or {}
    if not metrics:
        return None
    plt = pyplot()
    import random

    sites = report.get('sites') or sorted({p['site'] for rows in metrics.values()
                                           for p in rows})
    cols = min(3, len(metrics))
    rows = (len(metrics) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    jitter = random.Random(0)
    directions = report.get('directions') or {}
    for ax, (name, points) in zip(axes.flat, sorted(metrics.items()), strict=False):
        for outlier in (False, True):
            chosen = [p for p in points if bool(p.get('outlier')) == outlier]
            ax.scatter([sites.index(p['site']) + jitter.uniform(-0.18, 0.18) for p in chosen],
                       [p['value'] for p in chosen], s=40 if outlier else 14,
                       c='#d62728' if outlier else '#1f77b4', alpha=0.9 if outlier else 0.6,
                       edgecolors='black' if outlier else 'none',
                       label='outlier' if outlier else 'scan', zorder=3 if outlier else 2)
        ax.set_xticks(range(len(sites)), sites, rotation=30, ha='right', fontsize=8)
        direction = (directions.get(name) or {}).get('direction')
        ax.set_title(f'{name} ({direction})' if direction else name, fontsize=9)
        ax.grid(axis='y', alpha=0.3)
    for ax in list(axes.flat)[len(metrics):]:
        ax.axis('off')
    fig.suptitle(f'Image quality metrics by site ({report.get("scans", 0)} scans; red: '
                 'outside the Tukey fences on the bad side)', fontsize=10)
    fig.tight_layout()
    path = out / 'metrics_by_site.png'
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def compliance_table(report: dict, out: Path) -> Path | None:
    """The per-site compliance table (percent of scans within the reference per parameter)."""
    sites = (report.get('compliance') or {}).get('sites') or {}
    rows = []
    for site, kinds in sorted(sites.items()):
        for kind, entry in sorted(kinds.items()):
            rows.append((site, kind, entry))
    if not rows:
        return None
    plt = pyplot()
    parameters = sorted({p for _, _, e in rows for p in e.get('parameters') or {}})
    header = ['site', 'scan type', 'compliant', *parameters]
    cells, colours = [], []
    for site, kind, entry in rows:
        percents = entry.get('parameters') or {}
        cells.append([site, kind, f'{entry.get("compliant", 0)} / {entry.get("scans", 0)}',
                      *[f'{percents[p]:g}%' if p in percents else '' for p in parameters]])
        colours.append(['white'] * 3 + [
            '#f4cccc' if p in percents and percents[p] < 100 else 'white' for p in parameters])
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(header)), 0.5 + 0.35 * (len(rows) + 1)))
    ax.axis('off')
    table = ax.table(cellText=cells, colLabels=header, cellColours=colours, loc='center')
    table.auto_set_font_size(False)
    table.set_fontsize(7)
    table.auto_set_column_width(list(range(len(header))))
    ax.set_title('Protocol compliance per site (percent of scans within the reference)',
                 fontsize=9)
    fig.tight_layout()
    path = out / 'compliance.png'
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def reasons_bars(report: dict, out: Path, top: int = 8) -> Path | None:
    """The reasons most often seen per site, as horizontal bars (one panel per site)."""
    reasons = {site: rows[:top] for site, rows in (report.get('reasons') or {}).items() if rows}
    if not reasons:
        return None
    plt = pyplot()
    colours = {'protocol': '#ff7f0e', 'network': '#9467bd', 'metrics': '#2ca02c'}
    fig, axes = plt.subplots(len(reasons), 1, figsize=(7.0, 0.9 + 0.45 * sum(
        len(r) for r in reasons.values()) + 0.4 * len(reasons)), squeeze=False)
    for ax, (site, rows) in zip(axes.flat, sorted(reasons.items()), strict=True):
        labels = [r['text'] for r in rows][::-1]
        ax.barh(labels, [r['count'] for r in rows][::-1],
                color=[colours.get(r['source'], 'grey') for r in rows][::-1])
        ax.set_title(site, fontsize=9, loc='left')
        ax.tick_params(labelsize=8)
        ax.xaxis.get_major_locator().set_params(integer=True)
    axes.flat[-1].set_xlabel('scans (orange: protocol, purple: network, green: metrics)',
                             fontsize=8)
    fig.tight_layout()
    path = out / 'reasons_by_site.png'
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_figures(report: dict, out: Path) -> list[Path]:
    """Every figure the report has data for, as PNGs in ``out``; their paths."""
    return [p for p in (strip_plots(report, out), compliance_table(report, out),
                        reasons_bars(report, out)) if p is not None]
