"""The stages of a run after generation, one function each, over a typed :class:`RunData`:
:func:`train_finals`, :func:`run_folds` (and the view's shares), :func:`evaluate_final`,
:func:`fuse`, :func:`real_scans`, the baseline and the report (:func:`run_training` runs them in
order) and :func:`ship`. Their results are typed (:class:`RunResults`, :class:`FoldResult`,
:class:`FinalResult`); ``results.json`` is :meth:`RunResults.to_dict`."""

from __future__ import annotations

import csv
import json
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from ..assessment import view_weights
from ..constants import ARTIFACT_KEYS
from ..fusion import FUSION_FILE, load_fusion
from ..model_spec import (
    FusionSpec,
    ModelSpec,
    NetworkSpec,
    Outputs,
    Postprocessing,
    ViewSpec,
    save_spec,
)
from ..network import CHANNELS, build_network
from .config import RunConfig
from .dataset import (
    VolumeSet,
    generator_settings,
    load_cache,
    penalty_targets,
    subject_folds,
)
from .evaluate import blend_parts, choose_view_weights, metrics, predict, predict_parts, summarise
from .manifest import load_manifest
from .train import pick_device, train_model

TRAIN_EVAL_VOLUMES = 120  # training-fit metrics use at most this many training volumes


def _split(data: VolumeSet, test_subjects: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    test = np.isin(data.subjects, list(test_subjects))
    return np.flatnonzero(~test), np.flatnonzero(test)


def _evaluate(model: torch.nn.Module, data: VolumeSet, index: np.ndarray,
              max_tiles: int | None, limit: int | None = None, seed: int = 0,
              global_weight: float | np.ndarray = 0.0, flips: int = 1,
              members: list | tuple = ()) -> tuple[dict, dict]:
    """Metrics and raw predictions of ``model`` on ``index`` (optionally a fixed sample)."""
    index = np.asarray(index, dtype=int)
    if limit is not None and len(index) > limit:
        index = np.sort(np.random.default_rng(seed).choice(index, limit, replace=False))
    pq, logits = predict(model, data, index, max_tiles, global_weight=global_weight,
                         flips=flips, members=members)
    preds = {'index': index.tolist(), 'quality': pq.tolist(), 'logits': logits.tolist()}
    return metrics(data, index, pq, logits), preds


def _validation(model: torch.nn.Module, data: VolumeSet, val: np.ndarray, max_tiles: int,
                weight: float, flips: int) -> dict:
    """A fold model on its validation volumes: metrics at ``weight``, the predictions (for the
    report's plots) and the tile and view halves with the view's mirror images (to choose the
    blend once every fold is done, also after a resume), as JSON-ready fold-entry fields."""
    tiles, view = predict_parts(model, data, val, max_tiles, flips=flips)
    quality, probs = blend_parts(tiles, view, weight)
    return {'validation': metrics(data, val, quality, probs),
            'val_predictions': {'index': val.tolist(), 'quality': quality.tolist(),
                                'logits': probs.tolist()},
            'val_parts': {'index': np.asarray(val, dtype=int).tolist(), 'tiles': tiles.tolist(),
                          'view': None if view is None else view.tolist(), 'flips': flips}}


def _choose_weights(data: VolumeSet, folds: list[FoldResult], default: float) -> dict | None:
    """The view's share per output, chosen on the pooled out-of-fold predictions."""
    parts = [f.val_parts for f in folds]
    if not parts or any(p is None or p.get('view') is None for p in parts):
        return None
    index = np.concatenate([p['index'] for p in parts]).astype(int)
    tiles = np.concatenate([np.asarray(p['tiles']) for p in parts])
    view = np.concatenate([np.asarray(p['view']) for p in parts])
    choice = choose_view_weights(data, index, tiles, view, default)
    shares = view_weights({'view_weights': choice['weights'], 'global_view_weight': default})
    for label, weight in (('chosen', shares), ('default', default)):
        q, p = blend_parts(tiles, view, weight)
        choice[f'out_of_fold_{label}'] = metrics(data, index, q, p)
    return choice


def _load_weights(path: Path, device: torch.device, channels: tuple[int, ...] | None = None,
                  penalty_outputs: int = 0) -> torch.nn.Module:
    model = build_network(channels, penalty_outputs).to(device,
                                                        memory_format=torch.channels_last_3d)
    model.load_state_dict(torch.load(path, map_location=device, weights_only=True))
    return model


@dataclass(frozen=True)
class RunData:
    """What every stage reads: the loaded cache, its split, the device and the points outputs."""

    config: RunConfig
    data: VolumeSet
    dev_index: np.ndarray
    test_index: np.ndarray
    device: torch.device
    families: tuple[str, ...]


@dataclass
class FoldResult:
    """One subject fold's model (``fold-N/fold-metrics.json``): its people, its metrics on
    its training volumes, its validation volumes (with their predictions, and the tile and
    view halves the blend is chosen on) and the held-out ones."""

    fold: int
    train_subjects: list[str]
    val_subjects: list[str]
    train: dict
    history: list[dict]
    validation: dict
    val_predictions: dict | None = None
    val_parts: dict | None = None  # None: written before the blend was chosen
    test: dict | None = None

    @classmethod
    def from_json(cls, raw: dict) -> FoldResult:
        """A fold read back from its ``fold-metrics.json``."""
        return cls(**{f.name: raw[f.name] for f in fields(cls) if f.name in raw})

    def to_json(self) -> dict:
        """The ``fold-metrics.json`` layout (no ``test`` without held-out volumes)."""
        out = asdict(self)
        if out['test'] is None:
            del out['test']
        return out


@dataclass
class FinalResult:
    """The final model: its history and metrics on its training volumes and the held-out ones
    (fused, with ``test_network_only`` the network's alone after the fusion stage)."""

    history: list[dict]
    train: dict
    test: dict | None = None
    test_network_only: dict | None = None
    predictions: dict | None = None  # held-out predictions, for the report's plots


@dataclass
class RunResults:
    """Every stage's result; :meth:`to_dict` is ``results.json`` (the report reads it)."""

    created: str
    config: RunConfig
    device: str
    test_subjects: list[str]
    development_subjects: list[str]
    volumes: dict[str, int]
    generator: dict | None = None
    penalty_families: list[str] = field(default_factory=list)
    folds: list[FoldResult] = field(default_factory=list)
    cross_validation: dict | None = None
    view_weights: dict | None = None
    view_members: list[str] = field(default_factory=list)
    final: FinalResult | None = None
    fusion: dict | None = None
    real_scans: list[dict] | None = None
    baseline: dict | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict:
        """The JSON layout the report and ``metrics.json`` have always used."""
        cfg = self.config
        out: dict = {'created': self.created, 'cache': str(cfg.cache),
                     'config': asdict(cfg.train), 'n_folds': cfg.folds,
                     'final_epochs': cfg.final_epochs, 'device': self.device,
                     'test_subjects': self.test_subjects,
                     'development_subjects': self.development_subjects,
                     'volumes': self.volumes, 'folds': [f.to_json() for f in self.folds],
                     'predictions': {},
                     'command': cfg.command, 'view_flips': cfg.view_flips}
        if cfg.recipe is not None:
            out['recipe'] = str(cfg.recipe)
        optional = {'generator': self.generator, 'penalty_families': self.penalty_families,
                    'cross_validation': self.cross_validation,
                    'view_weights': self.view_weights, 'view_members': self.view_members,
                    'fusion': self.fusion, 'real_scans': self.real_scans,
                    'baseline': self.baseline}
        out.update({k: v for k, v in optional.items() if v})
        if cfg.folds:
            out['cross_validation'] = self.cross_validation
        if self.final is not None:
            final = {'history': self.final.history, 'train': self.final.train}
            if self.final.test is not None:
                final['test'] = self.final.test
            if self.final.test_network_only is not None:
                final['test_network_only'] = self.final.test_network_only
            out['final'] = final
            if self.final.predictions is not None:
                out['predictions']['test'] = self.final.predictions
        out['seconds'] = self.seconds
        return out


def load_run_data(config: RunConfig) -> RunData:
    """Stage 0: the training cache in memory, split into development and held-out volumes
    (development: only ``train.variant_group``'s volumes when it is set)."""
    data = load_cache(config.cache)
    dev_index, test_index = _split(data, config.test_subjects)
    group = config.train.variant_group
    if group:
        groups = np.array([row.get('held_out', '') for row in data.rows])
        if not (groups == group).any():
            present = sorted({g for g in groups if g}) or ['none']
            raise ValueError(f'the cache {config.cache} has no volumes of the variant group '
                             f'{group!r} (its held_out column has: {", ".join(present)})')
        dev_index = dev_index[groups[dev_index] == group]
    families = penalty_targets(data)[0] if config.train.penalty_outputs else []
    return RunData(config, data, dev_index, test_index, pick_device(config.device),
                   tuple(families))


def train_finals(run: RunData) -> list[tuple[torch.nn.Module, list[dict]]]:
    """The final networks on every development volume: seeds ``seed``, ``seed + 1``, ...
    (folders ``final``, ``final-1``, ...); the first is the model, the others view members.
    A finished one is loaded with ``resume``. Runs with ``final_threads`` torch threads."""
    cfg = run.config
    final_config = replace(cfg.train, epochs=cfg.final_epochs)
    networks = []
    with _threads(cfg.final_threads):
        for member in range(max(1, cfg.final_members)):
            member_config = replace(final_config, seed=cfg.train.seed + member)
            final_dir = cfg.out / ('final' if member == 0 else f'final-{member}')
            weights = final_dir / 'weights.pt'
            history_path = final_dir / 'history.json'
            if cfg.resume and weights.is_file() and history_path.is_file() and len(
                    json.loads(history_path.read_text(encoding='utf-8'))) >= member_config.epochs:
                network = _load_weights(weights, run.device, cfg.train.channels,
                                        len(run.families))
                history = json.loads(history_path.read_text(encoding='utf-8'))
            else:
                network, history = train_model(run.data, run.dev_index, None, member_config,
                                               final_dir, cfg.resume, run.device,
                                               final_dir.name, cfg.progress,
                                               start_weights(cfg.train.init_from, member))
            networks.append((network, history))
    return networks


def start_weights(init_from: str, member: int) -> Path | None:
    """The weights file member ``member`` starts from: the ``init_from`` model's network of
    that rank (``weights.pt``, then its members in order); None without ``init_from``."""
    if not init_from:
        return None
    from ..model_store import find_model, read_spec

    folder = find_model(init_from)
    spec = read_spec(folder)
    files = [spec.network.weights, *spec.members]
    if member >= len(files):
        raise ValueError(f'{init_from} has {len(files)} networks; member {member} has none '
                         'to start from')
    return folder / files[member]


def start_view_weights(init_from: str) -> dict | None:
    """The view's shares per output of the ``init_from`` model (a warm start without folds
    to choose them keeps its start's), or None."""
    if not init_from:
        return None
    from ..model_store import find_model, read_spec

    spec = read_spec(find_model(init_from))
    weights = dict(spec.view.weights)
    return {'weights': weights, 'chosen_by': f'kept from the start model {init_from}'} \
        if weights else None


def run_folds(run: RunData) -> list[FoldResult]:
    """One model per subject fold of the development volumes, its validation (tile and view
    halves kept for the blend) and held-out metrics; a finished fold is read back on resume."""
    cfg, data, dev = run.config, run.data, run.device
    gw, flips = cfg.train.global_view_weight, cfg.view_flips
    entries: list[FoldResult] = []
    fold_of = subject_folds(data.subjects[run.dev_index], cfg.folds, cfg.train.seed)
    for fold in range(cfg.folds):
        val = run.dev_index[fold_of == fold]
        train = run.dev_index[fold_of != fold]
        run_dir = cfg.out / f'fold-{fold}'
        done = run_dir / 'fold-metrics.json'
        if cfg.resume and done.is_file():
            entry = FoldResult.from_json(json.loads(done.read_text(encoding='utf-8')))
            if len(entry.history) >= cfg.train.epochs:
                parts = entry.val_parts
                if (parts is None or parts.get('flips', 1) != flips) and (
                        run_dir / 'weights.pt').is_file():
                    # a run from before the blend was chosen, or with other view flips:
                    # its validation metrics, predictions and halves again, once
                    fold_model = _load_weights(run_dir / 'weights.pt', dev, cfg.train.channels,
                                               len(run.families))
                    entry = replace(entry, **_validation(fold_model, data, val, cfg.grid_tiles,
                                                         gw, flips))
                    done.write_text(json.dumps(entry.to_json(), indent=1), encoding='utf-8')
                entries.append(entry)
                continue
        model, history = train_model(data, train, val, cfg.train, run_dir, cfg.resume, dev,
                                     f'fold {fold}', cfg.progress)
        m_train, _ = _evaluate(model, data, train, 8, TRAIN_EVAL_VOLUMES, fold, gw, flips)
        entry = FoldResult(fold, sorted(set(data.subjects[train])),
                           sorted(set(data.subjects[val])), m_train, history,
                           **_validation(model, data, val, cfg.grid_tiles, gw, flips))
        if len(run.test_index):
            entry.test, _ = _evaluate(model, data, run.test_index, cfg.grid_tiles,
                                      global_weight=gw, flips=flips)
        done.write_text(json.dumps(entry.to_json(), indent=1), encoding='utf-8')
        entries.append(entry)
    return entries


def evaluate_final(run: RunData, model: torch.nn.Module, history: list[dict],
                   members: list[torch.nn.Module], weight: float | np.ndarray) -> FinalResult:
    """The final model (with its view members) on its training volumes and the held-out ones,
    at the blend ``weight`` it ships with."""
    flips = run.config.view_flips
    train, _ = _evaluate(model, run.data, run.dev_index, 8, TRAIN_EVAL_VOLUMES,
                         global_weight=weight, flips=flips, members=members)
    result = FinalResult(history, train)
    if len(run.test_index):
        result.test, result.predictions = _evaluate(
            model, run.data, run.test_index, None, global_weight=weight, flips=flips,
            members=members)
    return result


def real_scans(run: RunData, model: torch.nn.Module, members: list[torch.nn.Module],
               chosen: dict | None) -> list[dict] | None:
    """The final model on the unmodified scans of the shared folder (a sanity look)."""
    cfg = run.config
    if not cfg.real_scans or cfg.shared_dir is None or not Path(cfg.shared_dir).is_dir():
        return None
    from .evaluate import real_scan_check

    roles = load_manifest(cfg.manifest).roles(cfg.test_subjects)
    return real_scan_check(model, cfg.shared_dir, roles, cfg.train.global_view_weight, chosen,
                           cfg.view_flips, load_fusion(cfg.out), list(run.families), members)


def run_training(config: RunConfig) -> RunResults:
    """Every stage after generation, in order: final networks, folds, view shares, held-out
    evaluation, fusion, real scans, baseline; writes ``results.json`` and the report."""
    check_fusion_caches(config.cache, config.fusion_caches)
    started = time.time()
    config.out.mkdir(parents=True, exist_ok=True)
    run = load_run_data(config)
    data = run.data
    results = RunResults(
        created=datetime.now(timezone.utc).isoformat(timespec='seconds'), config=config,
        device=str(run.device), test_subjects=sorted(set(data.subjects[run.test_index])),
        development_subjects=sorted(set(data.subjects[run.dev_index])),
        volumes={'development': int(len(run.dev_index)), 'test': int(len(run.test_index))},
        generator=generator_settings(config.cache), penalty_families=list(run.families))
    networks = train_finals(run)
    gw = config.train.global_view_weight
    if config.folds:
        results.folds = run_folds(run)
        results.cross_validation = cv_summary(results.folds)
        if gw > 0:
            results.view_weights = _choose_weights(data, results.folds, gw)
    if results.view_weights is None and gw > 0:
        results.view_weights = start_view_weights(config.train.init_from)
    chosen = (results.view_weights or {}).get('weights')
    if chosen:  # the final model is evaluated, and shipped, with the chosen blend
        gw = view_weights({'view_weights': chosen, 'global_view_weight': gw})
    model, history = networks[0]
    members = [network.eval() for network, _ in networks[1:]]
    results.view_members = [f'final-{m}' for m in range(1, len(networks))]
    results.final = evaluate_final(run, model, history, members, gw)
    (config.out / FUSION_FILE).unlink(missing_ok=True)  # an earlier run's: never for this model
    if config.fusion:
        results.fusion = fuse(model, run, results.final, gw, members)
    results.real_scans = real_scans(run, model, members, chosen)
    if config.baseline:
        from .baseline import run_baseline

        results.baseline = run_baseline(data, run.dev_index, run.test_index, config.folds,
                                        config.train.seed, config.cache, config.progress)
    results.seconds = time.time() - started
    as_dict = results.to_dict()
    (config.out / 'results.json').write_text(json.dumps(as_dict, indent=1), encoding='utf-8')
    from .report import write_report

    write_report(as_dict, data, config.out)
    return results


@contextmanager
def _threads(count: int | None) -> Iterator[None]:
    """Torch's CPU threads set to ``count`` inside the block (unchanged when None)."""
    if not count:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class CacheError(ValueError):
    """The training cache cannot serve this run; the message is one line."""


def check_cache(config: RunConfig) -> None:
    """CacheError unless the training cache exists and has what the run needs (its header
    only: no volume is read): severities for the points outputs."""
    index = Path(config.cache) / 'index.csv'
    if not index.is_file():
        raise CacheError(f'no index.csv in the cache {config.cache} (make it with '
                         '"miqa-train generate" or "miqa-train ingest")')
    with index.open(newline='', encoding='utf-8') as handle:
        header = next(csv.reader(handle), [])
    if config.train.penalty_outputs and not any(c.startswith('severity_') for c in header):
        raise CacheError(f'the cache {config.cache} has no artifact severities (an ingested '
                         'label CSV?): the points outputs need generated volumes; run with '
                         '--no-penalty-outputs, or fine-tune a model on it with '
                         '--fine-tune-from miqa-default')


def check_fusion_caches(cache_dir: Path, fusion_caches: tuple[Path, ...]) -> None:
    """ValueError unless every fusion cache is a cache with volumes of its own: not the
    training cache, nor one generated with the same settings and seed (the same volumes)."""
    main_settings = generator_settings(cache_dir)
    for folder in fusion_caches:
        if not (Path(folder) / 'index.csv').is_file():
            raise ValueError(f'fusion cache {folder} has no index.csv (make it with '
                             '"miqa-train generate")')
        if Path(folder).resolve() == Path(cache_dir).resolve() or (
                main_settings is not None and generator_settings(folder) == main_settings):
            raise ValueError(f'fusion cache {folder} holds the training volumes again; '
                             'generate it with another --seed')


def fuse(model: torch.nn.Module, run: RunData, final: FinalResult,
          weight: float | np.ndarray, members: list | tuple = ()) -> dict:
    """Fit the fusion trees on the development volumes and write ``fusion.json``.

    Their network input is the final model's own output on the development volumes (it fits
    them no better than the held-out ones: compare ``final.train`` and ``final.test``). Each
    of the run's ``fusion_caches`` (more generated volumes, another seed) adds its volumes of
    every person but the held-out ones, with the final model's outputs on volumes it never
    trained on. The held-out metrics become the fused ones; the network's alone stay as
    ``test_network_only``.
    """
    from ..fusion import network_logit
    from .fusion import (
        DEVELOPMENT_SOURCE,
        FUSED_INDICATOR,
        FusionSource,
        background_features,
        run_fusion,
    )

    cfg = run.config
    data, dev_index, test_index = run.data, run.dev_index, run.test_index
    flips, eval_tiles, progress = cfg.view_flips, cfg.grid_tiles, cfg.progress
    cache_dir, out_dir, fusion_caches = cfg.cache, cfg.out, cfg.fusion_caches
    k = ARTIFACT_KEYS.index(FUSED_INDICATOR)

    def source(name: str, volumes: VolumeSet, index: np.ndarray,
               features: np.ndarray) -> FusionSource:
        _, probs = predict(model, volumes, index, eval_tiles, global_weight=weight,
                           flips=flips, members=members)
        return FusionSource(name, network_logit(probs[:, k]), features[index],
                            volumes.indicators[index, k], volumes.subjects[index])

    features = background_features(data, cache_dir, progress=progress)
    sources = [source(DEVELOPMENT_SOURCE, data, dev_index, features)]
    test_subjects = sorted(set(data.subjects[test_index]))
    for folder in fusion_caches:
        extra = load_cache(folder)
        index = np.flatnonzero(~np.isin(extra.subjects, test_subjects))
        sources.append(source(f'fresh volumes of {Path(folder).name}', extra, index,
                              background_features(extra, folder, progress=progress)))
    fused, summary = run_fusion(sources, cfg.folds, cfg.train.seed)
    if fusion_caches:  # for the model card's "Reproduce"
        summary['fresh_caches'] = [{'cache': str(folder), 'generator': generator_settings(folder)}
                                   for folder in fusion_caches]
    if fused is None:
        return summary
    (out_dir / FUSION_FILE).write_text(json.dumps(fused.to_dict()) + '\n', encoding='utf-8')
    preds = final.predictions
    if preds:
        test_probs = np.asarray(preds['logits'], dtype=np.float64)
        z = fused.trees.logit(np.c_[network_logit(test_probs[:, k]), features[test_index]])
        probs = test_probs.copy()
        probs[:, k] = 1.0 / (1.0 + np.exp(-z))
        final.test_network_only = final.test
        final.test = metrics(data, test_index, np.asarray(preds['quality']), probs)
        preds['network_' + FUSED_INDICATOR] = test_probs[:, k].tolist()
        preds['logits'] = probs.tolist()
    return summary


def cv_summary(folds: list[FoldResult]) -> dict:
    """Mean and spread over folds of the headline validation metrics."""
    out: dict = {'val_r2': summarise([f.validation.get('r2') for f in folds]),
                 'train_r2': summarise([f.train.get('r2') for f in folds])}
    keys = set()
    for f in folds:
        keys |= set(f.validation.get('family_auc', {}))
    out['family_auc'] = {k: summarise([(f.validation['family_auc'].get(k) or {}).get('auc')
                                       for f in folds]) for k in sorted(keys)}
    ind = set()
    for f in folds:
        ind |= set(f.validation.get('indicator_auc', {}))
    out['indicator_auc'] = {k: summarise([f.validation['indicator_auc'].get(k)
                                          for f in folds]) for k in sorted(ind)}
    return out


def ship(results: RunResults, model_dir: Path, extra_files: tuple[str, ...] = ()) -> None:
    """Copy a run's final weights, view members, fused trees, card, metrics and ``extra_files``
    into a model folder and write its ``model.json`` (the run's name, version, description)."""
    config = results.config
    out_dir = config.out
    model_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(out_dir / 'final' / 'weights.pt', model_dir / 'weights.pt')
    for stale in model_dir.glob('member-*.pt'):
        stale.unlink()  # an earlier model's members would not fit these weights
    member_files = []
    for member in results.view_members:
        name = f'member-{member.rsplit("-", 1)[-1]}.pt'
        shutil.copyfile(out_dir / member / 'weights.pt', model_dir / name)
        member_files.append(name)
    for name in ('MODEL_CARD.md', 'metrics.json', *extra_files):
        if (out_dir / name).is_file():
            shutil.copyfile(out_dir / name, model_dir / name)
    if (out_dir / FUSION_FILE).is_file():
        shutil.copyfile(out_dir / FUSION_FILE, model_dir / FUSION_FILE)
    elif (model_dir / FUSION_FILE).is_file():
        (model_dir / FUSION_FILE).unlink()  # an earlier model's fusion would not fit these
    metrics = json.loads((out_dir / 'metrics.json').read_text(encoding='utf-8'))
    save_spec(model_spec(metrics, model_dir.name, config.version, config.description,
                         member_files, (model_dir / FUSION_FILE).is_file()), model_dir)


def _trained_outputs(results: dict) -> tuple[str, ...]:
    """Quality and the indicators trained with labels: those the held-out test could score,
    else those the generator's families set, else every output."""
    from .artifacts import FAMILIES

    auc = (results.get('held_out_summary') or {}).get('indicator_auc')
    if auc:
        return ('quality', *(key for key in ARTIFACT_KEYS if auc.get(key) is not None))
    families = (results.get('generator') or {}).get('families')
    if families:
        set_by = {FAMILIES[f].indicator for f in families if f in FAMILIES}
        return ('quality', *(key for key in ARTIFACT_KEYS if key in set_by))
    return ('quality', *ARTIFACT_KEYS)


def model_spec(results: dict, name: str, version: str, description: str,
               members: list[str], fused: bool) -> ModelSpec:
    """The ``model.json`` of a run's final model (``results``: its ``metrics.json``)."""
    from .fusion import FUSED_INDICATOR

    config = results.get('config', {})
    return ModelSpec(
        name=name, version=version, description=description,
        created=datetime.now(timezone.utc).isoformat(timespec='seconds'),
        outputs=Outputs(_trained_outputs(results)),
        network=NetworkSpec(tuple(config.get('channels') or CHANNELS)),
        view=ViewSpec(float(config.get('global_view_weight', 0.0)),
                      dict((results.get('view_weights') or {}).get('weights') or {}),
                      int(results.get('view_flips') or 1)),
        members=tuple(members), fusion=FusionSpec(FUSED_INDICATOR) if fused else None,
        postprocessing=Postprocessing(tuple(results.get('penalty_families') or ())),
        evaluation={'trained_on': 'simulated artifacts on generated volumes (see MODEL_CARD.md)',
                    'test_subjects': results.get('test_subjects', []),
                    'held_out': results.get('held_out_summary', {})})
