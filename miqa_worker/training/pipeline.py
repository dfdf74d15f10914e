"""The whole run: subject folds, a final model on all development subjects, held-out test."""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from ..assessment import view_weights
from ..constants import ARTIFACT_KEYS
from ..fusion import FUSION_FILE, load_fusion
from ..network import CHANNELS, build_network
from .dataset import (
    VolumeSet,
    generator_settings,
    load_cache,
    penalty_targets,
    subject_folds,
)
from .evaluate import blend_parts, choose_view_weights, metrics, predict, predict_parts, summarise
from .train import TrainConfig, pick_device, train_model

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


def _choose_weights(data: VolumeSet, folds: list[dict], default: float) -> dict | None:
    """The view's share per output, chosen on the pooled out-of-fold predictions."""
    parts = [f.get('val_parts') for f in folds]
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


def run_pipeline(cache_dir: Path, out_dir: Path, config: TrainConfig, n_folds: int = 5,
                 test_subjects: tuple[str, ...] = (), resume: bool = False,
                 device: str | None = None, eval_tiles: int = 27, final_epochs: int | None = None,
                 progress: bool = True, baseline: bool = True,
                 shared_dir: Path | None = None, command: str | None = None,
                 view_flips: int = 1, fusion: bool = True, final_members: int = 1,
                 fusion_caches: tuple[Path, ...] = ()) -> dict:
    """Cross-validate over subject folds, train the final model, evaluate, write the report.

    Every evaluation runs the whole-volume view as ``view_flips`` mirror images, as the
    shipped model will (``model.json`` ``view_flips``). With ``fusion``, the final model's
    ``ghosting_motion`` is fused with background metrics (``fusion.json``, see :func:`_fuse`).
    ``final_members`` > 1 trains that many final networks (seeds ``seed``, ``seed + 1``, ...,
    folders ``final``, ``final-1``, ...): the first is the model, the others its view members
    (their whole-volume views are averaged with its own, ``view_flips`` images each).
    ``fusion_caches`` are more generated volumes that only the fusion trees learn from.
    """
    check_fusion_caches(cache_dir, fusion_caches)
    started = time.time()
    dev = pick_device(device)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = load_cache(cache_dir)
    dev_index, test_index = _split(data, test_subjects)
    results: dict = {'created': datetime.now(timezone.utc).isoformat(timespec='seconds'),
                     'cache': str(cache_dir), 'config': asdict(config), 'n_folds': n_folds,
                     'final_epochs': final_epochs or config.epochs, 'device': str(dev),
                     'test_subjects': sorted(set(data.subjects[test_index])),
                     'development_subjects': sorted(set(data.subjects[dev_index])),
                     'volumes': {'development': int(len(dev_index)), 'test': int(len(test_index))},
                     'folds': [], 'predictions': {}, 'command': command,
                     'view_flips': view_flips}
    generator = generator_settings(cache_dir)
    if generator is not None:
        results['generator'] = generator
    gw = config.global_view_weight
    families = penalty_targets(data)[0] if config.penalty_outputs else []
    if families:
        results['penalty_families'] = families
    if n_folds:
        fold_of = subject_folds(data.subjects[dev_index], n_folds, config.seed)
        for fold in range(n_folds):
            val = dev_index[fold_of == fold]
            train = dev_index[fold_of != fold]
            run_dir = out_dir / f'fold-{fold}'
            done = run_dir / 'fold-metrics.json'
            if resume and done.is_file():
                entry = json.loads(done.read_text(encoding='utf-8'))
                if len(entry['history']) >= config.epochs:
                    parts = entry.get('val_parts')
                    if (parts is None or parts.get('flips', 1) != view_flips) and (
                            run_dir / 'weights.pt').is_file():
                        # a run from before the blend was chosen, or with other view flips:
                        # its validation metrics, predictions and halves again, once
                        fold_model = _load_weights(run_dir / 'weights.pt', dev, config.channels,
                                                   len(families))
                        entry.update(_validation(fold_model, data, val, eval_tiles, gw,
                                                 view_flips))
                        done.write_text(json.dumps(entry, indent=1), encoding='utf-8')
                    results['folds'].append(entry)
                    continue
            model, history = train_model(data, train, val, config, run_dir, resume, dev,
                                         f'fold {fold}', progress)
            m_train, _ = _evaluate(model, data, train, 8, TRAIN_EVAL_VOLUMES, fold, gw,
                                   view_flips)
            entry = {'fold': fold, 'train_subjects': sorted(set(data.subjects[train])),
                     'val_subjects': sorted(set(data.subjects[val])), 'train': m_train,
                     'history': history,
                     **_validation(model, data, val, eval_tiles, gw, view_flips)}
            if len(test_index):
                entry['test'], _ = _evaluate(model, data, test_index, eval_tiles,
                                             global_weight=gw, flips=view_flips)
            done.write_text(json.dumps(entry, indent=1), encoding='utf-8')
            results['folds'].append(entry)
        results['cross_validation'] = cv_summary(results['folds'])
        if gw > 0:
            results['view_weights'] = _choose_weights(data, results['folds'], gw)
    chosen = (results.get('view_weights') or {}).get('weights')
    if chosen:  # the final model is evaluated, and shipped, with the chosen blend
        gw = view_weights({'view_weights': chosen, 'global_view_weight': gw})
    final_config = TrainConfig(**{**asdict(config), 'epochs': final_epochs or config.epochs})
    networks = []
    for member in range(max(1, final_members)):
        member_config = TrainConfig(**{**asdict(final_config), 'seed': config.seed + member})
        final_dir = out_dir / ('final' if member == 0 else f'final-{member}')
        weights = final_dir / 'weights.pt'
        history_path = final_dir / 'history.json'
        if resume and weights.is_file() and history_path.is_file() and len(
                json.loads(history_path.read_text(encoding='utf-8'))) >= member_config.epochs:
            network = _load_weights(weights, dev, config.channels, len(families))
            history = json.loads(history_path.read_text(encoding='utf-8'))
        else:
            network, history = train_model(data, dev_index, None, member_config, final_dir,
                                           resume, dev, final_dir.name, progress)
        networks.append((network, history))
    model, history = networks[0]
    members = [network.eval() for network, _ in networks[1:]]
    if members:
        results['view_members'] = [f'final-{m}' for m in range(1, len(networks))]
    final: dict = {'history': history}
    final['train'], _ = _evaluate(model, data, dev_index, 8, TRAIN_EVAL_VOLUMES,
                                  global_weight=gw, flips=view_flips, members=members)
    if len(test_index):
        final['test'], results['predictions']['test'] = _evaluate(
            model, data, test_index, None, global_weight=gw, flips=view_flips, members=members)
    results['final'] = final
    (out_dir / FUSION_FILE).unlink(missing_ok=True)  # an earlier run's: never for this model
    if fusion:
        results['fusion'] = _fuse(model, data, dev_index, test_index, results, gw, view_flips,
                                  eval_tiles, cache_dir, out_dir, n_folds, config.seed, progress,
                                  members, fusion_caches)
    if shared_dir is not None:
        from .evaluate import real_scan_check
        from .synthetic import REAL_SOURCES

        test = set(results['test_subjects'])
        roles = {name: f'{subject} ({"held-out test" if subject in test else "training"})'
                 for name, subject, _ in REAL_SOURCES}
        results['real_scans'] = real_scan_check(model, shared_dir, roles,
                                                config.global_view_weight, chosen,
                                                view_flips, load_fusion(out_dir), families,
                                                members)
    if baseline:
        from .baseline import run_baseline

        results['baseline'] = run_baseline(data, dev_index, test_index, n_folds, config.seed,
                                           cache_dir, progress)
    results['seconds'] = time.time() - started
    (out_dir / 'results.json').write_text(json.dumps(results, indent=1), encoding='utf-8')
    from .report import write_report

    write_report(results, data, out_dir)
    return results


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


def _fuse(model: torch.nn.Module, data: VolumeSet, dev_index: np.ndarray,
          test_index: np.ndarray, results: dict, weight: float | np.ndarray, flips: int,
          eval_tiles: int | None, cache_dir: Path, out_dir: Path, n_folds: int, seed: int,
          progress: bool, members: list | tuple = (),
          fusion_caches: tuple[Path, ...] = ()) -> dict:
    """Fit the fusion trees on the development volumes and write ``fusion.json``.

    Their network input is the final model's own output on the development volumes (it fits
    them no better than the held-out ones: compare ``final.train`` and ``final.test``). Each
    of ``fusion_caches`` (more generated volumes, another generator seed) adds its volumes of
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
    fused, summary = run_fusion(sources, n_folds, seed)
    if fusion_caches:  # for the model card's "Reproduce"
        summary['fresh_caches'] = [{'cache': str(folder), 'generator': generator_settings(folder)}
                                   for folder in fusion_caches]
    if fused is None:
        return summary
    (out_dir / FUSION_FILE).write_text(json.dumps(fused.to_dict()) + '\n', encoding='utf-8')
    preds = results['predictions'].get('test')
    if preds:
        test_probs = np.asarray(preds['logits'], dtype=np.float64)
        z = fused.trees.logit(np.c_[network_logit(test_probs[:, k]), features[test_index]])
        probs = test_probs.copy()
        probs[:, k] = 1.0 / (1.0 + np.exp(-z))
        final = results['final']
        final['test_network_only'] = final['test']
        final['test'] = metrics(data, test_index, np.asarray(preds['quality']), probs)
        preds['network_' + FUSED_INDICATOR] = test_probs[:, k].tolist()
        preds['logits'] = probs.tolist()
    return summary


def cv_summary(folds: list[dict]) -> dict:
    """Mean and spread over folds of the headline validation metrics."""
    out: dict = {'val_r2': summarise([f['validation'].get('r2') for f in folds]),
                 'train_r2': summarise([f['train'].get('r2') for f in folds])}
    keys = set()
    for f in folds:
        keys |= set(f['validation'].get('family_auc', {}))
    out['family_auc'] = {k: summarise([(f['validation']['family_auc'].get(k) or {}).get('auc')
                                       for f in folds]) for k in sorted(keys)}
    ind = set()
    for f in folds:
        ind |= set(f['validation'].get('indicator_auc', {}))
    out['indicator_auc'] = {k: summarise([f['validation']['indicator_auc'].get(k)
                                          for f in folds]) for k in sorted(ind)}
    return out


def ship(out_dir: Path, model_dir: Path, version: str, description: str,
         extra_files: tuple[str, ...] = ()) -> None:
    """Copy the final weights, model card and metrics into a packaged model folder."""
    model_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(out_dir / 'final' / 'weights.pt', model_dir / 'weights.pt')
    results = json.loads((out_dir / 'metrics.json').read_text(encoding='utf-8'))
    for stale in model_dir.glob('member-*.pt'):
        stale.unlink()  # an earlier model's members would not fit these weights
    member_files = []
    for member in results.get('view_members') or []:
        name = f'member-{member.rsplit("-", 1)[-1]}.pt'
        shutil.copyfile(out_dir / member / 'weights.pt', model_dir / name)
        member_files.append(name)
    shutil.copyfile(out_dir / 'MODEL_CARD.md', model_dir / 'MODEL_CARD.md')
    shutil.copyfile(out_dir / 'metrics.json', model_dir / 'metrics.json')
    for name in extra_files:
        if (out_dir / name).is_file():
            shutil.copyfile(out_dir / name, model_dir / name)
    if (out_dir / FUSION_FILE).is_file():
        shutil.copyfile(out_dir / FUSION_FILE, model_dir / FUSION_FILE)
    elif (model_dir / FUSION_FILE).is_file():
        (model_dir / FUSION_FILE).unlink()  # an earlier model's fusion would not fit these
    meta = {'name': model_dir.name, 'version': version,
            'created': datetime.now(timezone.utc).isoformat(timespec='seconds'),
            'description': description, 'network': 'miqa_worker.network.build_network',
            'trained_on': 'simulated artifacts on generated volumes (see MODEL_CARD.md)',
            'test_subjects': results.get('test_subjects', []),
            'global_view_weight': results.get('config', {}).get('global_view_weight', 0.0),
            'channels': list(results.get('config', {}).get('channels') or CHANNELS),
            'view_weights': (results.get('view_weights') or {}).get('weights'),
            'view_flips': int(results.get('view_flips') or 1),
            **({'penalty_families': results['penalty_families']}
               if results.get('penalty_families') else {}),
            **({'view_members': member_files} if member_files else {}),
            'held_out': results.get('held_out_summary', {})}
    (model_dir / 'model.json').write_text(json.dumps(meta, indent=1) + '\n', encoding='utf-8')
