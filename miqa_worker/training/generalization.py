"""Leave-one-simulator-out and leave-one-source-out tables of a shipped model (issue #21 item 1).

Test volumes are made from bases the model should never have learnt from: the held-out people
of the data manifest (and, for leave-one-source-out, every in-domain source of it, each marked
as seen in training or not) and synthetic heads (``simulators.SyntheticHead``). Each base gives
anatomies (``synthetic.build_anatomy``: random resolution, affine, elastic deformation, field
of view); every second anatomy is post-processed (``simulators.RandomPostProcessing``, the
same draws for its clean and its corrupted volumes). Each anatomy is assessed clean and once
per *case*: one family simulated strongly (severity 0.75-1) by one implementation in one
convention. The worker's own :class:`~miqa_worker.assessment.Assessor` scores every volume,
so the figures are those a scan's result reports (fusion, members and all).

Per case: ROC AUC of the family's indicator (clean against strong) and of quality (lower for
strong), with a seeded two-level bootstrap 95 % interval (people resampled, then anatomies
within each person; an anatomy's clean and corrupted volumes stay together).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchio as tio

from . import artifacts as art
from . import simulators as sim
from .manifest import DataManifest
from .synthetic import Source, _seed, build_anatomy

#: Severity range of a "strong" case.
STRONG = (0.75, 1.0)
#: The bar of issue #21: every AUC at least this.
BAR = 0.90
#: The contrasts the shipped model's domain holds (sources of other contrasts are skipped).
DOMAIN = ('T1w',)


@dataclass(frozen=True)
class Case:
    """One family simulated by one implementation in one convention."""

    family: str
    implementation: str  # own, torchio, monai, segment
    simulator: str  # a simulators.SIMULATORS name, or the family for the project's own
    convention: str  # real, magnitude, or own (as the project's transform stores it)

    @property
    def name(self) -> str:
        return f'{self.family}/{self.simulator}/{self.convention}'

    @property
    def indicator(self) -> str | None:
        spec = art.FAMILIES.get(self.family)
        return spec.indicator if spec else None


def all_cases() -> list[Case]:
    """Every (family, implementation, convention): the project's own and the simulators'."""
    cases = [Case(f, 'own', f, 'own') for f in ('motion', 'ghosting', 'spike', 'bias', 'noise')]
    for name, cls in sim.SIMULATORS.items():
        for convention in (sim.CONVENTIONS if cls.kspace else ('real',)):
            cases.append(Case(cls.family, sim.IMPLEMENTATION[name], name, convention))
    order = ('motion', 'ghosting', 'spike', 'bias', 'noise', 'blur', 'gibbs')
    return sorted(cases, key=lambda c: (order.index(c.family), c.implementation != 'own',
                                        c.simulator, c.convention))


def corrupt(anatomy: np.ndarray, affine: np.ndarray, case: Case, seed: int) -> np.ndarray:
    """The anatomy with ``case`` applied strongly, deterministic in ``seed``."""
    subject = tio.Subject(**{art.IMAGE_KEY: tio.ScalarImage(
        tensor=torch.from_numpy(anatomy.copy())[None], affine=affine)})
    subject[art.LABELS_KEY] = art.new_labels()
    rng = np.random.default_rng(seed)
    if case.implementation == 'own':
        transform = art.TRANSFORMS[case.family](p=0.5, severity=STRONG)
    else:
        transform = sim.SIMULATORS[case.simulator](severity=STRONG,
                                                    convention=case.convention)
    subject = transform.apply_params(subject, transform.get_params(rng))
    return subject[art.IMAGE_KEY].data[0].numpy()


def postprocess(volume: np.ndarray, affine: np.ndarray, params: dict | None,
                brain: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``volume`` after recorded post-processing draws (None: as it is)."""
    if params is None:
        return volume, affine
    subject = tio.Subject(**{art.IMAGE_KEY: tio.ScalarImage(
        tensor=torch.from_numpy(np.ascontiguousarray(volume))[None], affine=affine)})
    if brain is not None and brain.shape == volume.shape:
        subject['brain'] = tio.LabelMap(tensor=torch.from_numpy(brain.astype(np.uint8))[None],
                                        affine=affine)
    subject = sim.RandomPostProcessing().apply_params(subject, params)
    return subject[art.IMAGE_KEY].data[0].numpy(), np.asarray(subject[art.IMAGE_KEY].affine)


@dataclass(frozen=True)
class Base:
    """A test base: a manifest source or the synthetic heads, and how many anatomies."""

    name: str
    subject: str
    contrast: str
    role: str  # held-out, train (seen in training) or synthetic
    anatomies: int
    path: str | None = None


def test_bases(manifest: DataManifest, shared_dir: Path | None, held_out: int, others: int,
               synthetic: int) -> tuple[list[Base], list[dict]]:
    """The in-domain sources of ``manifest`` found in ``shared_dir`` (held-out people with
    ``held_out`` anatomies, the others with ``others``) and ``synthetic`` synthetic heads;
    also the sources skipped, with why."""
    bases, skipped = [], []
    held = set(manifest.held_out_subjects)
    for entry in manifest.entries:
        path = Path(shared_dir) / entry.file if shared_dir else None
        role = 'held-out' if entry.subject in held else 'train'
        count = held_out if role == 'held-out' else others
        if entry.contrast not in DOMAIN:
            skipped.append({'source': entry.file, 'why': f'{entry.contrast}: outside the '
                            f'model domain ({", ".join(DOMAIN)})'})
        elif path is None or not path.is_file():
            skipped.append({'source': entry.file, 'why': 'not in the shared folder'})
        elif count:
            bases.append(Base(entry.file, entry.subject, entry.contrast, role, count,
                              str(path)))
    if synthetic:
        bases.append(Base('synthetic-heads', 'synthetic', 'T1w', 'synthetic', synthetic))
    return bases, skipped


def make_anatomy(base: Base, a: int, seed: int, head_resolution: int = 1
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Anatomy ``a`` of ``base``: (volume, affine, brain mask or None)."""
    if base.path is None:
        head = sim.SyntheticHead(resolution=head_resolution)
        volume, brain, affine = head.make(head.get_params(
            np.random.default_rng(_seed(seed, 'head', a))))
        return volume, affine, brain
    source = Source(base.name, base.subject, base.contrast, base.path)
    volume, affine = build_anatomy(source, a, seed + 1000, (1.0, 2.0))  # not a training draw
    return volume, affine, None


def _subject_of(base: Base, a: int) -> str:
    """Each synthetic head is its own person; a real base's anatomies are its person's."""
    return f'synthetic-{a:03d}' if base.path is None else base.subject


def assess_set(assessor, bases: Sequence[Base], cases: Sequence[Case], seed: int = 0,
               records_path: Path | None = None, head_resolution: int = 1,
               progress: Callable[[str], None] | None = None) -> list[dict]:
    """Assess every anatomy of ``bases`` clean and under every case; one record per volume.

    Records already in ``records_path`` (JSON lines) are kept and not made again, so an
    interrupted run resumes.
    """
    from ..image_io import ScanVolume

    done: dict[tuple, dict] = {}
    if records_path is not None and records_path.is_file():
        for line in records_path.read_text(encoding='utf-8').splitlines():
            row = json.loads(line)
            done[(row['source'], row['anatomy'], row['case'])] = row
    out = []
    handle = records_path.open('a', encoding='utf-8') if records_path is not None else None
    try:
        for base in bases:
            for a in range(base.anatomies):
                names = ['clean', *(c.name for c in cases)]
                if all((base.name, a, n) in done for n in names):
                    out.extend(done[(base.name, a, n)] for n in names)
                    continue
                anatomy, affine, brain = make_anatomy(base, a, seed, head_resolution)
                pp_rng = np.random.default_rng(_seed(seed, base.name, a, 'post'))
                pp = sim.RandomPostProcessing().get_params(pp_rng) if a % 2 else None
                for case in [None, *cases]:
                    name = 'clean' if case is None else case.name
                    if (base.name, a, name) in done:
                        out.append(done[(base.name, a, name)])
                        continue
                    volume = anatomy if case is None else corrupt(
                        anatomy, affine, case, _seed(seed, base.name, a, name))
                    volume, vol_affine = postprocess(volume, affine, pp, brain)
                    spacing = tuple(float(s) for s in np.sqrt((vol_affine[:3, :3] ** 2).sum(0)))
                    result = assessor.assess_volume(
                        ScanVolume(np.ascontiguousarray(volume, dtype=np.float32), spacing,
                                   'RAS', 'array'), metrics=False)
                    row = {'source': base.name, 'subject': _subject_of(base, a),
                           'role': base.role, 'anatomy': a, 'case': name,
                           'postprocessing': pp, 'quality': float(result['quality']),
                           'artifacts': {k: float(v) for k, v in result['artifacts'].items()},
                           'shape': list(volume.shape)}
                    out.append(row)
                    if handle is not None:
                        handle.write(json.dumps(row) + '\n')
                        handle.flush()
                    if progress:
                        progress(f'{base.name} a{a} {name}: quality {row["quality"]:.2f}')
    finally:
        if handle is not None:
            handle.close()
    return out


# ------------------------------------------------------------------------------- tables

def _auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """ROC AUC as the Mann-Whitney statistic (ties count half, as ``roc_auc_score``), fast
    enough for the bootstrap; None with one class."""
    from scipy.stats import rankdata

    labels = np.asarray(labels)
    positives = int(labels.sum())
    negatives = labels.size - positives
    if positives == 0 or negatives == 0:
        return None
    ranks = rankdata(scores)
    return float((ranks[labels == 1].sum() - positives * (positives + 1) / 2)
                 / (positives * negatives))


def _score(row: dict, indicator: str | None) -> float:
    """Higher = more suspicious: the indicator's probability, or minus the quality."""
    if indicator is None:
        return -row['quality']
    return row['artifacts'].get(indicator, float('nan'))


def auc_with_interval(rows_clean: list[dict], rows_strong: list[dict], indicator: str | None,
                      resamples: int = 1000, seed: int = 0) -> dict[str, Any]:
    """AUC of clean against strong and a two-level bootstrap 95 % interval (people, then
    anatomies within them; each anatomy's clean and strong volumes resampled together)."""
    units: dict[str, dict[tuple, list]] = {}
    for label, rows in ((0, rows_clean), (1, rows_strong)):
        for row in rows:
            unit = units.setdefault(row['subject'], {}).setdefault(
                (row['source'], row['anatomy']), [])
            unit.append((label, _score(row, indicator)))
    flat = [pair for person in units.values() for unit in person.values() for pair in unit]
    if not flat:
        return {'auc': None, 'ci95': [None, None], 'clean': 0, 'strong': 0, 'people': 0}
    labels = np.array([p[0] for p in flat])
    scores = np.array([p[1] for p in flat], dtype=np.float64)
    auc = _auc(labels, scores)
    rng = np.random.default_rng(seed)
    people = list(units)
    values = []
    for _ in range(resamples):
        picked = []
        for person in rng.choice(len(people), len(people)):
            anatomies = list(units[people[person]].values())
            for k in rng.choice(len(anatomies), len(anatomies)):
                picked.extend(anatomies[k])
        value = _auc(np.array([p[0] for p in picked]), np.array([p[1] for p in picked]))
        if value is not None:
            values.append(value)
    ci = [float(v) for v in np.percentile(values, [2.5, 97.5])] if values else [None, None]
    return {'auc': auc, 'ci95': ci, 'clean': int((labels == 0).sum()),
            'strong': int(labels.sum()), 'people': len(people)}


def case_table(records: list[dict], cases: Sequence[Case], keep: Callable[[dict], bool],
               resamples: int, seed: int) -> list[dict]:
    """Per case, over the records ``keep`` selects: its indicator's AUC and quality's AUC,
    the mean quality of clean and strong volumes, and whether each AUC reaches the bar."""
    rows = [r for r in records if keep(r)]
    clean = [r for r in rows if r['case'] == 'clean']
    out = []
    for case in cases:
        strong = [r for r in rows if r['case'] == case.name]
        if not strong:
            continue
        entry: dict[str, Any] = {**asdict(case), 'case': case.name,
                                 'indicator': case.indicator}
        if case.indicator is not None:
            entry['indicator_auc'] = auc_with_interval(clean, strong, case.indicator,
                                                       resamples, seed)
        entry['quality_auc'] = auc_with_interval(clean, strong, None, resamples, seed)
        entry['quality_clean'] = float(np.mean([r['quality'] for r in clean])) if clean else None
        entry['quality_strong'] = float(np.mean([r['quality'] for r in strong]))
        aucs = [entry[k]['auc'] for k in ('indicator_auc', 'quality_auc') if k in entry]
        entry['meets_bar'] = all(v is not None and v >= BAR for v in aucs)
        out.append(entry)
    return out


def family_table(records: list[dict], cases: Sequence[Case], keep: Callable[[dict], bool],
                 resamples: int, seed: int) -> dict[str, dict]:
    """Per family, every implementation and convention pooled: indicator and quality AUC."""
    rows = [r for r in records if keep(r)]
    clean = [r for r in rows if r['case'] == 'clean']
    out: dict[str, dict] = {}
    for family in dict.fromkeys(c.family for c in cases):
        names = {c.name for c in cases if c.family == family}
        strong = [r for r in rows if r['case'] in names]
        if not strong:
            continue
        indicator = next(c.indicator for c in cases if c.family == family)
        entry: dict[str, Any] = {'indicator': indicator, 'cases': sorted(names)}
        if indicator is not None:
            entry['indicator_auc'] = auc_with_interval(clean, strong, indicator, resamples,
                                                       seed)
        entry['quality_auc'] = auc_with_interval(clean, strong, None, resamples, seed)
        out[family] = entry
    return out


def tables(records: list[dict], cases: Sequence[Case], resamples: int = 1000,
           seed: int = 0) -> dict[str, Any]:
    """The leave-one-simulator-out table (per case, on held-out people and on synthetic
    heads) and the leave-one-source-out table (per source, per family)."""
    def held(r):
        return r['role'] == 'held-out'

    def synthetic(r):
        return r['role'] == 'synthetic'

    sources = list(dict.fromkeys(r['source'] for r in records))
    per_source = {}
    for source in sources:
        role = next(r['role'] for r in records if r['source'] == source)
        per_source[source] = {
            'role': role,
            'seen_in_training': role == 'train',
            'families': family_table(records, cases, lambda r, s=source: r['source'] == s,
                                     resamples, seed)}
    return {
        'leave_one_simulator_out': {
            'held_out_people': case_table(records, cases, held, resamples, seed),
            'synthetic_heads': case_table(records, cases, synthetic, resamples, seed),
        },
        'leave_one_source_out': per_source,
        'families_held_out_people': family_table(records, cases, held, resamples, seed),
    }


def generalization(assessor, manifest: DataManifest, shared_dir: Path | None,
                   out_dir: Path, held_out: int = 4, others: int = 2, synthetic: int = 4,
                   cases: Iterable[Case] | None = None, resamples: int = 1000, seed: int = 0,
                   head_resolution: int = 1,
                   progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Make and assess the test sets, write ``generalization.json``, ``generalization.png``
    and the tables as ``generalization.md`` into ``out_dir`` (records in ``records.jsonl``,
    resumable)."""
    cases = list(cases if cases is not None else all_cases())
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    bases, skipped = test_bases(manifest, shared_dir, held_out, others, synthetic)
    records = assess_set(assessor, bases, cases, seed, out_dir / 'records.jsonl',
                         head_resolution, progress)
    result = {
        'model': dict(assessor.model),
        'method': (f'per case (family x implementation x convention): ROC AUC of clean '
                   f'against strong (severity {STRONG[0]}-{STRONG[1]}) volumes, of the '
                   f"family's indicator and of quality (lower for strong); 95 % intervals: "
                   f'two-level percentile bootstrap (people, then anatomies), {resamples} '
                   f'resamples, seed {seed}; every second anatomy post-processed; scored by '
                   'the worker\'s Assessor'),
        'bar': BAR, 'seed': seed,
        'bases': [asdict(b) for b in bases], 'skipped_sources': skipped,
        'volumes': len(records),
        **tables(records, cases, resamples, seed),
    }
    result['summary'] = summary(result)
    (out_dir / 'generalization.json').write_text(json.dumps(result, indent=1) + '\n',
                                                 encoding='utf-8')
    plot(result, out_dir / 'generalization.png')
    (out_dir / 'generalization.md').write_text(markdown(result), encoding='utf-8')
    return result


def summary(result: dict[str, Any]) -> dict[str, Any]:
    """The lowest AUC on held-out people, of the project's own cases and of the others."""
    rows = result['leave_one_simulator_out']['held_out_people']
    out: dict[str, Any] = {}
    for group, pick in (('own', lambda r: r['implementation'] == 'own'),
                        ('other_implementations', lambda r: r['implementation'] != 'own')):
        values = [r[k]['auc'] for r in rows if pick(r) for k in ('indicator_auc', 'quality_auc')
                  if k in r and r[k]['auc'] is not None]
        out[group] = {'min_auc': min(values) if values else None,
                      'cases_meeting_bar': sum(r['meets_bar'] for r in rows if pick(r)),
                      'cases': sum(1 for r in rows if pick(r))}
    return out


def _cell(figures: dict | None) -> str:
    if not figures or figures.get('auc') is None:
        return '-'
    low, high = figures['ci95']
    return f'{figures["auc"]:.2f} [{low:.2f}, {high:.2f}]'


def markdown(result: dict[str, Any]) -> str:
    """The two tables as Markdown (for the model card and docs/experiments.md)."""
    lines = ['Leave one simulator out (AUC clean vs strong, 95 % bootstrap interval; mean '
             'quality clean -> strong):', '',
             '| family | implementation | convention | indicator AUC, held-out people | '
             'quality AUC, held-out people | quality | indicator AUC, synthetic heads | '
             'quality AUC, synthetic heads |', '|---|---|---|---|---|---|---|---|']
    groups = result['leave_one_simulator_out']
    held = {r['case']: r for r in groups['held_out_people']}
    synthetic = {r['case']: r for r in groups['synthetic_heads']}
    for case in dict.fromkeys([*held, *synthetic]):
        row, other = held.get(case, {}), synthetic.get(case, {})
        first = row or other
        name = 'own (trained on)' if first['implementation'] == 'own' else first['simulator']
        drop = (f'{row["quality_clean"]:.2f} -> {row["quality_strong"]:.2f}'
                if row and row['quality_clean'] is not None else '-')
        lines.append(
            f'| {first["family"]} | {name} | {first["convention"]} | '
            f'{_cell(row.get("indicator_auc"))} | {_cell(row.get("quality_auc"))} | {drop} | '
            f'{_cell(other.get("indicator_auc"))} | {_cell(other.get("quality_auc"))} |')
    families = list(next(iter(result['leave_one_source_out'].values()))['families']) if (
        result['leave_one_source_out']) else []
    lines += ['', 'Leave one source out (every implementation pooled; indicator AUC / quality '
              'AUC; "train": the shipped model saw this person in training):', '',
              '| source | role | ' + ' | '.join(families) + ' |',
              '|---|---|' + '---|' * len(families)]
    for source, entry in result['leave_one_source_out'].items():
        cells = []
        for family in families:
            figures = entry['families'].get(family, {})
            ind = figures.get('indicator_auc', {}).get('auc')
            qual = figures.get('quality_auc', {}).get('auc')
            cells.append(('-' if ind is None else f'{ind:.2f}') + ' / ' +
                         ('-' if qual is None else f'{qual:.2f}'))
        lines.append(f'| {source.split(".")[0]} | {entry["role"]} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines) + '\n'


def plot(result: dict[str, Any], path: Path) -> Path:
    """One row per case: indicator and quality AUC with intervals, held-out people and
    synthetic heads side by side; the bar as a dashed line."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    groups = result['leave_one_simulator_out']
    names = [r['case'] for r in groups['held_out_people']] or [
        r['case'] for r in groups['synthetic_heads']]
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.32 * max(len(names), 4) + 1.4), sharey=True)
    for ax, (title, key) in zip(axes, (('indicator AUC', 'indicator_auc'),
                                       ('quality AUC (lower for strong)', 'quality_auc')),
                                strict=True):
        for offset, (group, colour) in enumerate((('held_out_people', 'C0'),
                                                  ('synthetic_heads', 'C1'))):
            rows = {r['case']: r for r in groups[group]}
            label = group.replace('_', ' ')
            for y, name in enumerate(names):
                figures = rows.get(name, {}).get(key)
                if not figures or figures['auc'] is None:
                    continue
                low, high = figures['ci95']
                yy = y + (offset - 0.5) * 0.3
                ax.plot([low, high], [yy, yy], color=colour, lw=1.2)
                ax.plot(figures['auc'], yy, 'o', color=colour, ms=3.5, label=label)
                label = None  # one legend entry per group
        ax.axvline(result['bar'], color='0.5', ls='--', lw=1)
        ax.set_xlim(0, 1.02)
        ax.set_title(title, fontsize=9)
        ax.tick_params(labelsize=7)
    axes[0].set_yticks(range(len(names)))
    axes[0].set_yticklabels(names, fontsize=7)
    axes[0].invert_yaxis()
    axes[0].legend(fontsize=7, loc='lower left')
    model = result['model']
    fig.suptitle(f'{model.get("name", "")} {model.get("version", "")}: clean vs strong, '
                 f'95 % bootstrap intervals', fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
