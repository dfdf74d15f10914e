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
            device: str | torch.device = 'cpu', global_weight: float = 0.0
            ) -> tuple[np.ndarray, np.ndarray]:
    """Per volume, as at inference: quality [N] and probabilities [N, 10].

    Each is the mean over tiles, blended with the whole-volume view's output at
    ``global_weight`` (``combine``).
    """
    model.eval()
    index = np.asarray(index if index is not None else np.arange(len(data)), dtype=int)
    use_view = global_weight > 0 and data.views is not None
    out = []
    for v in index:
        tiles = grid_tiles(data.volumes[v], max_tiles)
        if use_view:
            tiles = np.concatenate([tiles, data.views[v][None]])
        outs = torch.cat([model(to_tensor(tiles[s:s + batch_size]).to(
            device, memory_format=torch.channels_last_3d)).float().cpu()
            for s in range(0, len(tiles), batch_size)]).numpy()
        if use_view:
            out.append(combine(outs[:-1], outs[-1], global_weight))
        else:
            out.append(combine(outs, None, 0.0))
    result = np.asarray(out, dtype=np.float32).reshape(len(index), 1 + len(ARTIFACT_KEYS))
    return result[:, 0], result[:, 1:]


def combine(tile_outputs: np.ndarray, view_output: np.ndarray | None,
            weight: float) -> np.ndarray:
    """A scan's [quality, probabilities...] from raw network outputs, as the worker does it.

    Tiles: mean quality and mean sigmoid probability; the whole-volume view's output is
    blended in at ``weight``.
    """
    tile_outputs = np.asarray(tile_outputs, dtype=np.float64)
    tiles = np.concatenate([tile_outputs[:, :1], 1 / (1 + np.exp(-tile_outputs[:, 1:]))], axis=1)
    result = tiles.mean(axis=0)
    if view_output is not None and weight > 0:
        view = np.asarray(view_output, dtype=np.float64)
        view = np.concatenate([view[:1], 1 / (1 + np.exp(-view[1:]))])
        result = (1 - weight) * result + weight * view
    return result


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


@torch.no_grad()
def assess_array(model: torch.nn.Module, array: np.ndarray, spacing=(1.0, 1.0, 1.0),
                 device: str | torch.device = 'cpu', batch_size: int = 16,
                 global_weight: float = 0.0) -> dict:
    """Inference on one raw volume (all grid tiles and the whole view, as in assessment.py)."""
    from ..preprocessing import rescale_intensity
    from ..tiling import extract_tiles, global_view

    model.eval()
    scaled = rescale_intensity(array)
    tiles, _, _ = extract_tiles(scaled)
    if global_weight > 0:
        tiles = np.concatenate([tiles, global_view(scaled, spacing)[None]])
    batch = torch.from_numpy(tiles.astype(np.float32))[:, None]
    outs = torch.cat([model(batch[s:s + batch_size].to(device)).float().cpu()
                      for s in range(0, len(batch), batch_size)]).numpy()
    result = (combine(outs[:-1], outs[-1], global_weight) if global_weight > 0
              else combine(outs, None, 0.0))
    return {'quality': float(np.clip(result[0], 0, 10)), 'tiles': len(tiles),
            'artifacts': {k: round(float(p), 4) for k, p in zip(ARTIFACT_KEYS, result[1:],
                                                                 strict=True)}}


def real_scan_check(model: torch.nn.Module, shared_dir, device: str | torch.device = 'cpu',
                    subjects_of: dict[str, str] | None = None,
                    global_weight: float = 0.0) -> list[dict]:
    """The model on every unmodified real scan of ``shared_dir`` (no labels: a sanity look).

    4D files give each of their first two volumes (the dcm_qa series has a real head motion
    in its second volume).
    """
    from pathlib import Path

    import nibabel as nib

    from .dataset import read_image_array

    out = []
    shared_dir = Path(shared_dir)
    if not shared_dir.is_dir():
        return out
    names = sorted(p.name for p in shared_dir.iterdir() if p.is_file() and p.name.endswith(
        ('.nii', '.nii.gz', '.nrrd', '.mha')))
    for name in names:
        path = shared_dir / name
        try:
            if name.endswith(('.nii', '.nii.gz')) and len(nib.load(path).shape) == 4:
                img = nib.as_closest_canonical(nib.load(path))
                zooms = img.header.get_zooms()[:3]
                arrays = [(f'{name}[{t}]', np.asarray(img.dataobj[..., t], dtype=np.float32),
                           zooms) for t in range(min(2, img.shape[3]))]
            else:
                arrays = [(name, *read_image_array(str(path)))]
        except Exception as exc:  # an unreadable file is reported, not fatal
            out.append({'file': name, 'error': f'{type(exc).__name__}: {exc}'})
            continue
        for label, array, spacing in arrays:
            entry = {'file': label, 'subject': (subjects_of or {}).get(name, 'not a base'),
                     **assess_array(model, array, spacing, device,
                                    global_weight=global_weight)}
            out.append(entry)
    return out
