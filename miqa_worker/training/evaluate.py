"""Volume-level predictions (mean of tile outputs, as at inference) and their metrics."""

from __future__ import annotations

import math

import numpy as np
import torch
from sklearn.metrics import confusion_matrix, r2_score, roc_auc_score, roc_curve

from ..constants import ARTIFACT_KEYS
from .artifacts import FAMILIES
from .dataset import VolumeSet, grid_tiles, to_tensor

# Quality bins of the confusion matrix: [0, 4) poor, [4, 7) fair, [7, 10] good.
QUALITY_BINS = (4.0, 7.0)
BIN_NAMES = ('poor (<4)', 'fair (4-7)', 'good (>=7)')


@torch.no_grad()
def predict(model: torch.nn.Module, data: VolumeSet, index: np.ndarray | None = None,
            max_tiles: int | None = 16, batch_size: int = 32,
            device: str | torch.device = 'cpu') -> tuple[np.ndarray, np.ndarray]:
    """Per volume, as at inference: mean tile quality [N], mean tile probabilities [N, 10]."""
    model.eval()
    index = np.arange(len(data)) if index is None else np.asarray(index, dtype=int)
    quality, logits = [], []
    for v in index:
        tiles = grid_tiles(data.volumes[v], max_tiles)
        outs = torch.cat([model(to_tensor(tiles[s:s + batch_size]).to(device)).float().cpu()
                          for s in range(0, len(tiles), batch_size)])
        outs[:, 1:] = torch.sigmoid(outs[:, 1:])
        mean = outs.mean(dim=0).numpy()
        quality.append(mean[0])
        logits.append(mean[1:])
    return np.asarray(quality, dtype=np.float32), np.asarray(logits, dtype=np.float32).reshape(
        len(index), len(ARTIFACT_KEYS))


def quality_bins(values: np.ndarray) -> np.ndarray:
    """Bin number (0 poor, 1 fair, 2 good) of quality scores."""
    return np.digitize(values, QUALITY_BINS)


def _auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    labels = np.asarray(labels)
    if labels.size == 0 or labels.min() == labels.max():
        return None
    return float(roc_auc_score(labels, scores))


def metrics(data: VolumeSet, index: np.ndarray, pred_quality: np.ndarray,
            logits: np.ndarray) -> dict:
    """R², MAE, quality-bin confusion matrix, indicator and artifact-family ROC AUCs."""
    index = np.asarray(index, dtype=int)
    true_q = data.quality[index]
    known = ~np.isnan(true_q)
    out: dict = {'volumes': int(len(index)), 'subjects': sorted(set(data.subjects[index]))}
    if known.sum() >= 2:
        out['r2'] = float(r2_score(true_q[known], pred_quality[known]))
        out['mae'] = float(np.abs(true_q[known] - pred_quality[known]).mean())
        out['confusion'] = confusion_matrix(quality_bins(true_q[known]),
                                            quality_bins(pred_quality[known]),
                                            labels=[0, 1, 2]).tolist()
    out['indicator_auc'] = {}
    for k, key in enumerate(ARTIFACT_KEYS):
        labels = data.indicators[index, k]
        mask = ~np.isnan(labels)
        out['indicator_auc'][key] = _auc(labels[mask], logits[mask, k])
    out['family_auc'] = family_aucs(data, index, pred_quality, logits)
    return out


def family_aucs(data: VolumeSet, index: np.ndarray, pred_quality: np.ndarray,
                logits: np.ndarray) -> dict:
    """Per simulated family: AUC of its indicator logit, family present vs indicator false.

    Noise has no indicator: its AUC uses the predicted quality (lower = noisier), comparing
    noise-only volumes with clean ones, plus the count of each.
    """
    out: dict = {}
    if not data.severity:
        return out
    sev = {f: s[index] for f, s in data.severity.items()}
    for name, spec in FAMILIES.items():
        if name not in sev:
            continue
        present = sev[name] > 0
        if spec.indicator is not None:
            k = ARTIFACT_KEYS.index(spec.indicator)
            negative = data.indicators[index, k] == 0
            keep = present | negative
            out[name] = {'auc': _auc(present[keep].astype(int), logits[keep, k]),
                         'positives': int(present.sum()), 'negatives': int(negative.sum()),
                         'score': f'logit of {spec.indicator}'}
        else:
            others = np.zeros(len(index), dtype=bool)
            for other, values in sev.items():
                if other != name:
                    others |= values > 0
            keep = ~others
            out[name] = {'auc': _auc(present[keep].astype(int), -pred_quality[keep]),
                         'positives': int((present & keep).sum()),
                         'negatives': int((~present & keep).sum()),
                         'score': 'minus predicted quality (noise-only vs clean volumes)'}
    return out


def roc_points(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """False/true positive rates for a ROC plot, or None with one class."""
    mask = ~np.isnan(labels)
    labels = labels[mask]
    if labels.size == 0 or labels.min() == labels.max():
        return None
    fpr, tpr, _ = roc_curve(labels, scores[mask])
    return fpr, tpr


def summarise(values: list[float | None]) -> dict:
    """Mean and standard deviation of the defined values."""
    good = [v for v in values if v is not None and not math.isnan(v)]
    if not good:
        return {'mean': None, 'std': None, 'n': 0}
    return {'mean': float(np.mean(good)), 'std': float(np.std(good)), 'n': len(good)}
