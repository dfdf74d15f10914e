"""Baseline: classic no-reference IQMs per scan and random forests over the same subject folds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from tqdm import tqdm

from ..constants import ARTIFACT_KEYS
from ..quality_metrics import compute_quality_metrics
from .dataset import VolumeSet, subject_folds
from .evaluate import metrics, summarise

DESCRIPTION = ('MRIQC-style IQMs (miqa_worker.quality_metrics) of the preprocessed volume; '
               'a random forest regressor (quality) and one random forest classifier per '
               'indicator (200 trees, min 2 samples per leaf).')
SKIP = ('subsample_factor',)


def iqm_features(data: VolumeSet, cache_dir: Path | None = None,
                 progress: bool = True) -> tuple[np.ndarray, list[str]]:
    """IQMs of every volume [N, F] (cached in ``cache_dir/iqms.json``) and their names."""
    path = Path(cache_dir) / 'iqms.json' if cache_dir else None
    cached: dict = json.loads(path.read_text(encoding='utf-8')) if path and path.is_file() else {}
    rows = []
    for vid, volume in tqdm(list(zip(data.ids, data.volumes, strict=True)), desc='IQMs',
                            disable=not progress):
        if vid not in cached:
            spacing = None
            cached[vid] = compute_quality_metrics(volume.astype(np.float32) / 255.0, spacing)
        rows.append(cached[vid])
    if path:
        path.write_text(json.dumps(cached), encoding='utf-8')
    names = sorted(k for k in rows[0] if k not in SKIP) if rows else []
    features = np.array([[float(r.get(k, -1.0)) for k in names] for r in rows],
                        dtype=np.float64)
    return np.nan_to_num(features, nan=-1.0, posinf=-1.0, neginf=-1.0), names


def fit_predict(features: np.ndarray, data: VolumeSet, train: np.ndarray, test: np.ndarray,
                seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Fit on ``train`` and predict quality [n] and indicator probabilities [n, 10] on ``test``."""
    quality = np.full(len(test), np.nan, dtype=np.float32)
    known = ~np.isnan(data.quality[train])
    if known.sum() >= 2:
        reg = RandomForestRegressor(n_estimators=200, min_samples_leaf=2, random_state=seed,
                                    n_jobs=1)
        reg.fit(features[train][known], data.quality[train][known])
        quality = reg.predict(features[test]).astype(np.float32)
    probs = np.full((len(test), len(ARTIFACT_KEYS)), 0.5, dtype=np.float32)
    for k in range(len(ARTIFACT_KEYS)):
        labels = data.indicators[train, k]
        mask = ~np.isnan(labels)
        if mask.sum() < 2 or len(np.unique(labels[mask])) < 2:
            continue
        clf = RandomForestClassifier(n_estimators=200, min_samples_leaf=2, random_state=seed,
                                     n_jobs=1)
        clf.fit(features[train][mask], labels[mask].astype(int))
        probs[:, k] = clf.predict_proba(features[test])[:, 1]
    return quality, probs


def run_baseline(data: VolumeSet, dev_index: np.ndarray, test_index: np.ndarray, n_folds: int,
                 seed: int = 0, cache_dir: Path | None = None, progress: bool = True) -> dict:
    """Per-fold and held-out metrics of the IQM baseline (same folds as the CNN)."""
    features, names = iqm_features(data, cache_dir, progress)
    out: dict = {'description': DESCRIPTION, 'features': names, 'folds': []}
    if n_folds:
        fold_of = subject_folds(data.subjects[dev_index], n_folds, seed)
        for fold in range(n_folds):
            val = dev_index[fold_of == fold]
            train = dev_index[fold_of != fold]
            q_tr, p_tr = fit_predict(features, data, train, train, seed)
            q_val, p_val = fit_predict(features, data, train, val, seed)
            out['folds'].append({'fold': fold, 'train': metrics(data, train, q_tr, p_tr),
                                 'validation': metrics(data, val, q_val, p_val)})
        out['cross_validation'] = {
            'val_r2': summarise([f['validation'].get('r2') for f in out['folds']]),
            'family_auc': {k: summarise([(f['validation']['family_auc'].get(k) or {}).get('auc')
                                         for f in out['folds']])
                           for k in out['folds'][0]['validation'].get('family_auc', {})}}
    if len(test_index):
        q, p = fit_predict(features, data, dev_index, test_index, seed)
        out['test'] = metrics(data, test_index, q, p)
    return out
