"""Fine-tune a shipped model on an ingested project and measure its agreement with tier 2
(``miqa-train run --fine-tune-from MODEL --cache-dir INGESTED``).

The scans are split by subject (:func:`held_out_split`: the run's held-out subjects when the
cache has them, else a seeded, class-stratified third); each network of the model (the main one
and its view members) is trained further on the rest for ``train.epochs`` epochs (tiles and
whole-volume views, the recipe's loss, unknown labels masked), then the model before and after
is scored on the held-out scans as the worker scores quality: its view blend, mirror images and
members.

The model's good/bad is ``quality >= SUSPICION_QUALITY`` (the review queue's default
``miqa.suspicion_thresholds`` quality: below it a scan is suspicious); agreement with the tier-2
decisions is accuracy and Cohen's kappa at that threshold and the ROC AUC of quality. The run
folder gets ``agreement.json``, ``agreement.png``, ``history.json`` and ``model/``, a model
folder with the fine-tuned networks (the start model's fused trees are left out: they were
fitted to the network's outputs before fine-tuning, and they decide ghosting_motion, not quality).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..constants import ARTIFACT_KEYS, QUALITY_MAX, QUALITY_MIN
from .config import RunConfig, TrainConfig
from .dataset import VolumeSet, load_cache, tile_batches
from .train import pick_device, plain_state_dict, train_epoch

#: The model calls a scan good at or above this quality (``miqa.suspicion_thresholds``).
SUSPICION_QUALITY = 5.0
#: Share of the subjects held out when the run names none of the cache's subjects.
HELD_OUT_FRACTION = 1 / 3
AGREEMENT_FILE, AGREEMENT_PLOT = 'agreement.json', 'agreement.png'


class FineTuneError(ValueError):
    """The cache or model cannot serve a fine-tune; one line."""


@dataclass(frozen=True)
class StartModel:
    """The model a fine-tune starts from: its networks, spec and folder."""

    network: torch.nn.Module
    members: list[torch.nn.Module]  # the view members, in ``spec.members`` order
    spec: object  # model_spec.ModelSpec
    folder: Path
    info: dict

    @classmethod
    def load(cls, name_or_path: str) -> StartModel:
        """A model by name (``miqa-default``) or folder; FineTuneError when it cannot load."""
        from ..model_store import (
            ModelError,
            find_model,
            load_members,
            load_network,
            model_info,
            read_spec,
        )

        try:
            folder = find_model(name_or_path)
            spec = read_spec(folder)
            network = load_network(folder, spec)
            members = load_members(spec, folder, network)
        except (ModelError, FileNotFoundError, ValueError) as exc:
            raise FineTuneError(f'--fine-tune-from {name_or_path}: {exc}') from None
        return cls(network, members, spec, folder, model_info(spec, folder))

    def shares(self) -> np.ndarray:
        """The view's share in each output, as the worker blends them."""
        return np.asarray(self.spec.view.shares(), dtype=np.float64)


def check_ingested(cache: Path) -> None:
    """FineTuneError unless ``cache`` is an ingested project (its ``index.csv`` header only)."""
    index = cache / 'index.csv'
    if not index.is_file():
        raise FineTuneError(f'no index.csv in the cache {cache} (make it with '
                            '"miqa-train ingest --project ID")')
    with index.open(newline='', encoding='utf-8') as handle:
        header = next(csv.reader(handle), [])
    if 'tier2_good' not in header:
        raise FineTuneError(f'the cache {cache} has no tier-2 decisions (make it with '
                            '"miqa-train ingest --project ID")')


def tier2_good(data: VolumeSet) -> np.ndarray:
    """Per volume, 1 when tier 2 decided good and 0 when bad (the ingested ``tier2_good``)."""
    from .labels import parse_bool

    try:
        return np.array([parse_bool(r['tier2_good']) for r in data.rows], dtype=np.float64)
    except KeyError:
        raise FineTuneError('the cache has no tier-2 decisions (make it with '
                            '"miqa-train ingest --project ID")') from None


def held_out_split(data: VolumeSet, good: np.ndarray, test_subjects: tuple[str, ...],
                   seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Training and held-out volume indices, subject-disjoint.

    The run's ``test_subjects`` that the cache holds, else :data:`HELD_OUT_FRACTION` of the
    subjects drawn with ``seed``, from the good and the bad subjects (a subject's majority
    decision) separately, so that the held-out scans hold both decisions where they can.
    """
    subjects = np.unique(data.subjects)
    named = [s for s in test_subjects if s in set(subjects)]
    if named:
        test = np.isin(data.subjects, named)
    else:
        rng = np.random.default_rng(seed)
        majority = {s: np.nanmean(good[data.subjects == s]) >= 0.5 for s in subjects}
        chosen: list[str] = []
        for value in (True, False):
            group = [s for s in subjects if majority[s] == value]
            take = int(np.ceil(len(group) * HELD_OUT_FRACTION)) if len(group) >= 2 else 0
            chosen += list(rng.permutation(group)[:take])
        test = np.isin(data.subjects, chosen)
    train_index, test_index = np.flatnonzero(~test), np.flatnonzero(test)
    if not len(train_index) or not len(test_index):
        raise FineTuneError(f'{len(subjects)} subjects cannot give both a training and a '
                            'held-out split; ingest more reviewed scans')
    return train_index, test_index


def agreement(quality: np.ndarray, good: np.ndarray,
              threshold: float = SUSPICION_QUALITY) -> dict:
    """The model's good/bad (``quality >= threshold``) against tier 2's: accuracy, Cohen's
    kappa, the ROC AUC of quality and the confusion matrix (rows tier 2 bad/good)."""
    from sklearn.metrics import cohen_kappa_score, confusion_matrix

    from .evaluate import auc_or_none

    quality, good = np.asarray(quality, dtype=np.float64), np.asarray(good, dtype=int)
    said = (quality >= threshold).astype(int)
    kappa = None
    if len(set(good) | set(said)) > 1:
        value = float(cohen_kappa_score(good, said))
        kappa = value if np.isfinite(value) else None
    return {'volumes': int(len(good)), 'tier2_good': int(good.sum()),
            'model_good': int(said.sum()), 'accuracy': float((said == good).mean()),
            'kappa': kappa, 'auc': auc_or_none(good, quality),
            'confusion': confusion_matrix(good, said, labels=[0, 1]).tolist(),
            'quality': quality.round(3).tolist(), 'tier2': good.tolist()}


def fine_tune(network: torch.nn.Module, data: VolumeSet, index: np.ndarray,
              config: TrainConfig, device: torch.device,
              progress: bool = True) -> list[dict]:
    """Train ``network`` further on ``index`` (AdamW at ``config.learning_rate``, its decay,
    tiles and whole-volume views as in training; no points targets: reviews have none)."""
    for parameter in network.parameters():
        parameter.requires_grad_(True)
    network.to(device, memory_format=torch.channels_last_3d)
    optimizer = torch.optim.AdamW(network.parameters(), lr=config.learning_rate,
                                  weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=config.lr_decay)
    views = config.views_per_volume if config.global_view_weight > 0 else 0
    history = []
    for epoch in range(config.epochs):
        rng = np.random.default_rng([config.seed, epoch])
        torch.manual_seed(config.seed * 1000 + epoch)
        network.train()
        began = time.time()
        sums, batches = train_epoch(
            network, tile_batches(data, index, config.tiles_per_volume, config.batch_size, rng,
                                  views, config.augment),
            optimizer, config, device, f'fine-tune epoch {epoch + 1}/{config.epochs}',
            progress=progress)
        history.append({'epoch': epoch + 1, 'lr': scheduler.get_last_lr()[0],
                        'train_loss': sums['loss'] / max(batches, 1),
                        'seconds': time.time() - began})
        scheduler.step()
    network.eval()
    return history


def _score(start: StartModel, data: VolumeSet, index: np.ndarray,
           grid_tiles: int) -> np.ndarray:
    """Each volume's quality from the model's networks as the worker blends them."""
    from .evaluate import predict

    quality, _ = predict(start.network, data, index, grid_tiles, global_weight=start.shares(),
                         flips=start.spec.view.flips, members=start.members)
    return np.clip(quality, QUALITY_MIN, QUALITY_MAX)  # as the worker's post-processing


def run_fine_tune(config: RunConfig) -> dict:
    """Fine-tune ``config.fine_tune_from`` on the ingested ``config.cache`` and write the
    agreement before and after into ``config.out`` (see the module notes); returns it."""
    from ..model_store import save_model
    from .ingest import read_summary

    started = time.time()
    check_ingested(Path(config.cache))
    start = StartModel.load(str(config.fine_tune_from))
    data = load_cache(config.cache)
    good = tier2_good(data)
    train_index, test_index = held_out_split(data, good, config.test_subjects,
                                             config.train.seed)
    device = pick_device(config.device)
    before = _score(start, data, test_index, config.grid_tiles)
    before_fit = _score(start, data, train_index, config.grid_tiles)
    histories = {}
    for number, network in enumerate([start.network, *start.members]):
        seeded = dataclasses.replace(config.train, seed=config.train.seed + number)
        torch.manual_seed(seeded.seed)
        histories['final' if number == 0 else start.spec.members[number - 1]] = fine_tune(
            network, data, train_index, seeded, device, config.progress)
    after = _score(start, data, test_index, config.grid_tiles)
    after_fit = _score(start, data, train_index, config.grid_tiles)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / 'history.json').write_text(json.dumps(histories, indent=1), encoding='utf-8')
    version = (config.version if config.version != RunConfig.version
               else f'{start.spec.version}+ft')
    project = ((read_summary(config.cache) or {}).get('project') or {}).get('id', '?')
    result = {
        'start_model': {k: start.info.get(k) for k in ('name', 'version', 'sha256')},
        'fine_tuned_model': {'folder': str(out / 'model'), 'version': version},
        'cache': str(config.cache), 'ingest': read_summary(config.cache),
        'threshold': SUSPICION_QUALITY,
        'labels': 'tier-2 decisions (good/bad) of the ingested scans; the model says good '
                  f'when its quality is >= {SUSPICION_QUALITY:g}',
        'networks': 'the start model\'s networks (main and view members), before and after '
                    'fine-tuning, with its view blend and mirror images (the fused trees '
                    'decide ghosting_motion only and are left out)',
        'split': {'train': int(len(train_index)), 'held_out': int(len(test_index)),
                  'held_out_subjects': sorted(set(data.subjects[test_index].tolist()))},
        'train': {**dataclasses.asdict(config.train), 'device': str(device)},
        'history': histories,
        'held_out': {'before': agreement(before, good[test_index]),
                     'after': agreement(after, good[test_index])},
        'training_fit': {'before': agreement(before_fit, good[train_index]),
                         'after': agreement(after_fit, good[train_index])},
        'indicators_labelled': {key: int((~np.isnan(data.indicators[:, k])).sum())
                                for k, key in enumerate(ARTIFACT_KEYS)},
    }
    held = {when: {k: v for k, v in figures.items() if k not in ('quality', 'tier2')}
            for when, figures in result['held_out'].items()}
    evaluation = {'trained_on': f'{start.spec.name} {start.spec.version} fine-tuned on '
                                f'{len(train_index)} tier-2-reviewed scans of MIQA project '
                                f'{project} (agreement.json)',
                  'fine_tuned_from': result['start_model'], 'agreement_held_out': held}
    model_dir = save_model(
        start.network.cpu(), out / 'model', start.spec.name, version,
        f'{start.spec.name} {start.spec.version} fine-tuned on reviews of project {project}',
        spec=dataclasses.replace(start.spec, fusion=None, evaluation=evaluation))
    for name, member in zip(start.spec.members, start.members, strict=True):
        torch.save(plain_state_dict(member), model_dir / name)
    result['seconds'] = time.time() - started
    (out / AGREEMENT_FILE).write_text(json.dumps(result, indent=1), encoding='utf-8')
    plot_agreement(result, out / AGREEMENT_PLOT)
    return result


def plot_agreement(result: dict, path: Path) -> Path:
    """Accuracy, kappa and AUC before and after on the held-out scans, and each held-out
    scan's quality before and after by its tier-2 decision."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    held = result['held_out']
    names = ('accuracy', 'kappa', 'auc')
    fig, (bars, scatter) = plt.subplots(1, 2, figsize=(10, 4))
    x = np.arange(len(names))
    for offset, when in ((-0.2, 'before'), (0.2, 'after')):
        values = [held[when][n] if held[when][n] is not None else np.nan for n in names]
        bars.bar(x + offset, values, 0.4, label=when)
    bars.set_xticks(x, names)
    bars.set_ylim(-1, 1)
    bars.axhline(0, color='grey', lw=0.5)
    bars.set_title(f'agreement with tier 2 ({held["before"]["volumes"]} held-out scans)')
    bars.legend()
    labels = np.array(held['before']['tier2'])
    q_before, q_after = np.array(held['before']['quality']), np.array(held['after']['quality'])
    for value, colour, name in ((1, 'tab:green', 'tier 2 good'), (0, 'tab:red', 'tier 2 bad')):
        mask = labels == value
        scatter.scatter(q_before[mask], q_after[mask], c=colour, label=name)
    scatter.axhline(result['threshold'], color='grey', ls='--', lw=0.8)
    scatter.axvline(result['threshold'], color='grey', ls='--', lw=0.8)
    scatter.set_xlabel('quality before')
    scatter.set_ylabel('quality after')
    scatter.set_xlim(-0.3, 10.3)
    scatter.set_ylim(-0.3, 10.3)
    scatter.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
