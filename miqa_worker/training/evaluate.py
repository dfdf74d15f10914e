"""Volume-level predictions (mean of tile outputs, as at inference) and their metrics."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch
from sklearn.metrics import confusion_matrix, r2_score, roc_auc_score, roc_curve

from ..assessment import (
    OUTPUT_NAMES,
    Assessor,
    Networks,
    blend_outputs,
    mix,
    run_tiles,
    run_view,
)
from ..constants import ARTIFACT_KEYS, NUM_OUTPUTS
from ..image_io import ScanVolume
from ..model_spec import ViewSpec
from .artifacts import FAMILIES
from .dataset import VolumeSet, grid_tiles

# Quality bins of the confusion matrix: [0, 4) poor, [4, 7) fair, [7, 10] good.
QUALITY_BINS = (4.0, 7.0)
BIN_NAMES = ('poor (<4)', 'fair (4-7)', 'good (>=7)')


@torch.no_grad()
def predict_parts(model: torch.nn.Module, data: VolumeSet, index: np.ndarray | None = None,
                  max_tiles: int | None = 16, batch_size: int = 32, flips: int = 1,
                  members: list | tuple = ()) -> tuple[np.ndarray, np.ndarray | None]:
    """Per volume, the two halves a scan's result blends: ``(tiles, view)``, each ``[N, 11]``.

    ``tiles`` is ``blend_outputs`` of the grid tiles alone (mean quality, mean probabilities);
    ``view`` is the whole-volume view's quality and probabilities (None without views), its raw
    outputs averaged over ``flips`` mirror images (of ``model`` and each of the view
    ``members``) as at inference.
    """
    model.eval()
    networks = Networks(model, members, batch_size)  # the worker's stages 1 and 2
    view_spec = ViewSpec(flips=flips)
    index = np.asarray(index if index is not None else np.arange(len(data)), dtype=int)
    tiles_out, view_out = [], []
    for v in index:
        tiles = grid_tiles(data.volumes[v], max_tiles).astype(np.float32) / np.float32(255.0)
        outs = run_tiles(networks, tiles)
        if data.views is not None:
            view = data.views[v].astype(np.float32) / np.float32(255.0)
            view_out.append(blend_outputs(run_view(networks, view, view_spec)[None, :NUM_OUTPUTS]))
        tiles_out.append(blend_outputs(outs[:, :NUM_OUTPUTS]))
    width = 1 + len(ARTIFACT_KEYS)
    tiles_arr = np.asarray(tiles_out, dtype=np.float64).reshape(len(index), width)
    views_arr = (np.asarray(view_out, dtype=np.float64).reshape(len(index), width)
                 if data.views is not None else None)
    return tiles_arr, views_arr


def blend_parts(tiles: np.ndarray, view: np.ndarray | None,
                weight: float | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Quality [N] and probabilities [N, 10] of :func:`predict_parts` blended at ``weight``."""
    out = np.asarray(tiles, dtype=np.float64) if view is None else mix(tiles, view, weight)
    return out[:, 0].astype(np.float32), out[:, 1:].astype(np.float32)


def predict(model: torch.nn.Module, data: VolumeSet, index: np.ndarray | None = None,
            max_tiles: int | None = 16, batch_size: int = 32,
            global_weight: float | np.ndarray = 0.0, flips: int = 1,
            members: list | tuple = ()) -> tuple[np.ndarray, np.ndarray]:
    """Per volume, as at inference: quality [N] and probabilities [N, 10].

    Each is the mean over tiles, blended with the whole-volume view's output at
    ``global_weight`` (one share, or one per output), on the device the model is on.
    """
    share = np.asarray(global_weight, dtype=np.float64)
    if not share.any():
        data = dataclasses.replace(data, views=None)  # tiles only: no view to run
    tiles, view = predict_parts(model, data, index, max_tiles, batch_size, flips, members)
    return blend_parts(tiles, view, share)


#: The shares of the whole-volume view that cross-validation chooses among.
VIEW_WEIGHT_GRID = (0.0, 0.25, 0.5, 0.75, 1.0)


def choose_view_weights(data: VolumeSet, index: np.ndarray, tiles: np.ndarray,
                        view: np.ndarray, default: float,
                        grid: tuple[float, ...] = VIEW_WEIGHT_GRID) -> dict:
    """Per output, the view's share that scores best on out-of-fold predictions.

    Quality by R², each indicator by ROC AUC (over the volumes whose label is known, both
    classes present); an output without such labels keeps ``default`` (the training share),
    and a tie goes to the share nearest it.
    Returns ``{'weights': {output: share}, 'scores': {output: {share: score}}}``.
    """
    index = np.asarray(index, dtype=int)
    weights: dict[str, float] = {}
    scores: dict[str, dict[str, float]] = {}
    for k, name in enumerate(OUTPUT_NAMES):
        if k == 0:
            truth = data.quality[index]
        else:
            truth = data.indicators[index, k - 1]
        known = ~np.isnan(truth)
        if known.sum() < 2 or (k and truth[known].min() == truth[known].max()):
            weights[name] = float(default)
            continue
        row = {}
        for share in grid:
            blended = mix(tiles[known, k], view[known, k], share)
            row[f'{share:g}'] = float(r2_score(truth[known], blended) if k == 0
                                      else roc_auc_score(truth[known], blended))
        best = max(row.values())
        # among the shares that reach the best score, the one nearest the training share
        choice = min((float(s) for s, v in row.items() if v == best),
                     key=lambda s: (abs(s - default), s))
        weights[name], scores[name] = choice, row
    return {'weights': weights, 'scores': scores}


def quality_bins(values: np.ndarray) -> np.ndarray:
    """Bin number (0 poor, 1 fair, 2 good) of quality scores."""
    return np.digitize(values, QUALITY_BINS)


def auc_or_none(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """ROC AUC, or None when the labels do not hold both classes."""
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
        out['indicator_auc'][key] = auc_or_none(labels[mask], logits[mask, k])
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
            out[name] = {'auc': auc_or_none(present[keep].astype(int), logits[keep, k]),
                         'positives': int(present.sum()), 'negatives': int(negative.sum()),
                         'score': f'logit of {spec.indicator}'}
        else:
            others = np.zeros(len(index), dtype=bool)
            for other, values in sev.items():
                if other != name:
                    others |= values > 0
            keep = ~others
            out[name] = {'auc': auc_or_none(present[keep].astype(int), -pred_quality[keep]),
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


def real_scan_check(model: torch.nn.Module, shared_dir,
                    subjects_of: dict[str, str] | None = None,
                    global_weight: float = 0.0,
                    weights: dict[str, float] | None = None, flips: int = 1,
                    fusion=None, penalty_families: list[str] | None = None,
                    members: list | tuple = ()) -> list[dict]:
    """The model on every unmodified real scan of ``shared_dir`` (no labels: a sanity look).

    With ``fusion`` (a :class:`miqa_worker.fusion.Fusion`) its indicator is the fused one.

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
    model.eval()
    assessor = Assessor.from_network(model, global_weight, weights=weights, flips=flips,
                                     fusion=fusion, penalty_families=penalty_families,
                                     members=members)
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
            volume = ScanVolume(np.ascontiguousarray(array, dtype=np.float32),
                                tuple(float(s) for s in spacing), 'RAS', 'array')
            result = assessor.assess_volume(volume, metrics=False)
            entry = {'file': label, 'subject': (subjects_of or {}).get(name, 'not a base'),
                     'quality': result['quality'], 'tiles': len(result['tileMap']['starts']),
                     'artifacts': {k: round(p, 4) for k, p in result['artifacts'].items()}}
            if 'penalties' in result:
                entry['penalties'] = {k: round(p, 3) for k, p in result['penalties'].items()}
            out.append(entry)
    return out
