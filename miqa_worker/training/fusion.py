"""Fit the trees that decide one indicator from the network's logit and background metrics.

See :mod:`miqa_worker.fusion` for why and how the worker uses them. The trees are scikit-learn
gradient boosting, fitted on the development volumes only, and exported as plain arrays.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from sklearn.ensemble import GradientBoostingClassifier
from tqdm import tqdm

from ..constants import ARTIFACT_KEYS
from ..fusion import FORMAT, NETWORK_INPUT, Fusion, fusion_from_dict
from ..quality_metrics import BACKGROUND_METRICS, background_metrics
from .dataset import VolumeSet, subject_folds
from .evaluate import auc_or_none

FUSED_INDICATOR = 'ghosting_motion'
#: Voxels the metrics see (every f-th voxel along each axis above this): the worker's budget.
MAX_VOXELS = 1 << 18
METHOD = ('scikit-learn GradientBoostingClassifier: 200 trees of at most 31 leaves, at least 20 '
          'volumes per leaf, learning rate 0.05')


def classifier(seed: int = 0) -> GradientBoostingClassifier:
    """The boosted trees (settings chosen on out-of-fold development figures)."""
    return GradientBoostingClassifier(n_estimators=200, learning_rate=0.05, max_depth=None,
                                      max_leaf_nodes=31, min_samples_leaf=20, random_state=seed)


def background_features(data: VolumeSet, cache_dir: Path | None = None,
                        max_voxels: int = MAX_VOXELS, progress: bool = True) -> np.ndarray:
    """:func:`background_metrics` of every volume ``[N, len(BACKGROUND_METRICS)]``.

    Cached per volume id in ``cache_dir/background-v2-<max_voxels>.json`` (v2: the definitions
    of this version; an older file is ignored).
    """
    path = Path(cache_dir) / f'background-v2-{max_voxels}.json' if cache_dir else None
    cached: dict = json.loads(path.read_text(encoding='utf-8')) if path and path.is_file() else {}
    rows = []
    for vid, volume in tqdm(list(zip(data.ids, data.volumes, strict=True)),
                            desc='background metrics', disable=not progress):
        if vid not in cached:
            cached[vid] = background_metrics(volume.astype(np.float32) / 255.0, max_voxels)
        rows.append([float(cached[vid][k]) for k in BACKGROUND_METRICS])
    if path:
        path.write_text(json.dumps(cached), encoding='utf-8')
    return np.asarray(rows, dtype=np.float64).reshape(len(data), len(BACKGROUND_METRICS))


def export_trees(model: GradientBoostingClassifier, sample: np.ndarray) -> dict:
    """The fitted trees as arrays; ``init`` is recovered through the public API on ``sample``."""
    trees, total = [], np.zeros(len(sample))
    for estimator in model.estimators_[:, 0]:
        tree = estimator.tree_
        leaf = tree.children_left < 0
        trees.append({'feature': np.where(leaf, -1, tree.feature).tolist(),
                      'threshold': np.where(leaf, 0.0, tree.threshold).tolist(),
                      'left': tree.children_left.tolist(), 'right': tree.children_right.tolist(),
                      'value': tree.value[:, 0, 0].astype(np.float64).tolist()})
        total += estimator.predict(sample.astype(np.float32))
    init = model.decision_function(sample) - model.learning_rate * total
    return {'init': float(np.median(init)), 'learning_rate': float(model.learning_rate),
            'trees': trees}


def fit_fusion(inputs: np.ndarray, labels: np.ndarray, seed: int = 0,
               indicator: str = FUSED_INDICATOR, max_voxels: int = MAX_VOXELS,
               extra: dict | None = None) -> Fusion:
    """Fit the trees on ``inputs [N, 1 + len(BACKGROUND_METRICS)]`` (network logit first)."""
    model = classifier(seed).fit(inputs, labels.astype(int))
    spec = {'format': FORMAT, 'indicator': indicator,
            'inputs': [NETWORK_INPUT, *BACKGROUND_METRICS], 'max_voxels': max_voxels,
            'method': METHOD, **(extra or {}), **export_trees(model, inputs)}
    return fusion_from_dict(spec)


def run_fusion(data: VolumeSet, dev_index: np.ndarray, network_logits: np.ndarray,
               features: np.ndarray, n_folds: int, seed: int = 0,
               indicator: str = FUSED_INDICATOR) -> tuple[Fusion | None, dict]:
    """Fit on the development volumes with a known label; also out-of-fold figures.

    ``network_logits [N]`` and ``features`` cover every volume of ``data``. Returns the fitted
    fusion (None when the labels have one class) and a summary: the indicator's ROC AUC on
    the development volumes out of subject folds, the network's alone beside it.
    """
    k = ARTIFACT_KEYS.index(indicator)
    inputs = np.c_[network_logits, features]
    labels = data.indicators[:, k]
    known = dev_index[~np.isnan(labels[dev_index])]
    summary: dict = {'indicator': indicator, 'method': METHOD, 'volumes': int(len(known)),
                     'inputs': [NETWORK_INPUT, *BACKGROUND_METRICS]}
    if len(known) < 10 or len(np.unique(labels[known])) < 2:
        summary['skipped'] = 'fewer than 10 labelled development volumes, or one class only'
        return None, summary
    if n_folds >= 2 and len(np.unique(data.subjects[known])) >= n_folds:
        fold_of = subject_folds(data.subjects[known], n_folds, seed)
        oof = np.zeros(len(known))
        for fold in range(n_folds):
            train, val = fold_of != fold, fold_of == fold
            if len(np.unique(labels[known][train])) < 2:
                continue
            oof[val] = classifier(seed).fit(inputs[known][train], labels[known][train].astype(
                int)).decision_function(inputs[known][val])
        summary['out_of_fold_auc'] = {'fused': auc_or_none(labels[known], oof),
                                      'network': auc_or_none(labels[known],
                                                                network_logits[known])}
    fusion = fit_fusion(inputs[known], labels[known], seed, indicator,
                        extra={'fitted_on': f'{len(known)} development volumes'})
    return fusion, summary
