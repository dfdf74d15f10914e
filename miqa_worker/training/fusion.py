"""Fit the trees that decide one indicator from the network's logit and background metrics.

See :mod:`miqa_worker.fusion` for why and how the worker uses them. The trees are scikit-learn
gradient boosting, fitted on the development volumes (and on fresh generated volumes of the
same people, :class:`FusionSource`), never on the held-out subjects, and exported as plain
arrays.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.ensemble import GradientBoostingClassifier
from tqdm import tqdm

from ..fusion import FORMAT, NETWORK_INPUT, Fusion, fusion_from_dict
from ..quality_metrics import BACKGROUND_METRICS, background_metrics
from .dataset import VolumeSet, subject_folds
from .evaluate import auc_or_none

FUSED_INDICATOR = 'ghosting_motion'
#: Name of the source holding the volumes the network trained on (the others are fresh).
DEVELOPMENT_SOURCE = 'development volumes'
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


@dataclass(frozen=True)
class FusionSource:
    """Volumes the trees learn from: the network's logit, background metrics, labels, people.

    ``name`` says where they come from (the development volumes the network trained on, or a
    further cache of fresh volumes it never saw) and keys the per-source figures.
    """

    name: str
    logits: np.ndarray
    features: np.ndarray
    labels: np.ndarray
    subjects: np.ndarray

    def known(self) -> FusionSource:
        """Only the volumes whose label is known."""
        keep = ~np.isnan(self.labels)
        return FusionSource(self.name, self.logits[keep], self.features[keep],
                            self.labels[keep], self.subjects[keep])


def run_fusion(sources: list[FusionSource], n_folds: int, seed: int = 0,
               indicator: str = FUSED_INDICATOR) -> tuple[Fusion | None, dict]:
    """Fit on every source's volumes with a known label; also out-of-fold figures.

    Folds split people across all sources at once, so a person's fresh volumes never help
    score that person's development ones. Returns the fitted fusion (None when the labels have
    one class) and a summary: the indicator's ROC AUC out of subject folds, the network's
    alone beside it, overall and per source.
    """
    known = [source.known() for source in sources]
    inputs = np.concatenate([np.c_[s.logits, s.features] for s in known])
    labels = np.concatenate([s.labels for s in known])
    subjects = np.concatenate([s.subjects for s in known])
    origin = np.repeat(np.arange(len(known)), [len(s.labels) for s in known])
    summary: dict = {'indicator': indicator, 'method': METHOD, 'volumes': int(len(labels)),
                     'inputs': [NETWORK_INPUT, *BACKGROUND_METRICS],
                     'sources': {s.name: int(len(s.labels)) for s in known}}
    if len(labels) < 10 or len(np.unique(labels)) < 2:
        summary['skipped'] = 'fewer than 10 labelled development volumes, or one class only'
        return None, summary
    if n_folds >= 2 and len(np.unique(subjects)) >= n_folds:
        fold_of = subject_folds(subjects, n_folds, seed)
        oof = np.zeros(len(labels))
        for fold in range(n_folds):
            train, val = fold_of != fold, fold_of == fold
            if len(np.unique(labels[train])) < 2:
                continue
            oof[val] = classifier(seed).fit(inputs[train], labels[train].astype(
                int)).decision_function(inputs[val])
        summary['out_of_fold_auc'] = {'fused': auc_or_none(labels, oof),
                                      'network': auc_or_none(labels, inputs[:, 0])}
        if len(known) > 1:
            summary['out_of_fold_auc_by_source'] = {
                s.name: {'fused': auc_or_none(labels[origin == i], oof[origin == i]),
                         'network': auc_or_none(labels[origin == i], inputs[origin == i, 0])}
                for i, s in enumerate(known)}
    parts = [f'{len(s.labels)} {s.name}' for s in known]
    fitted_on = ' and '.join([', '.join(parts[:-1]), parts[-1]] if len(parts) > 1 else parts)
    fusion = fit_fusion(inputs, labels, seed, indicator, extra={'fitted_on': fitted_on})
    return fusion, summary
