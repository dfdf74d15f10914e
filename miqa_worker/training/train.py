"""Train one network: AdamW, exponential learning-rate decay, checkpoints every epoch, resume."""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..network import CHANNELS, build_network
from .config import TrainConfig
from .dataset import VolumeSet, penalty_targets, tile_batches
from .evaluate import metrics, predict
from .losses import miqa_loss

#: Settings of checkpoints written before they were removed, and the value that means "off".
RETIRED_SETTINGS = {'average_last': 0.0}
#: Settings added since a run's checkpoint or metrics may have been written, at the value that
#: means what those runs did (no warm start, every volume).
ADDED_SETTINGS = {'init_from': '', 'variant_group': ''}


def pick_device(name: str | None = None) -> torch.device:
    """CUDA when present (or the named device), else CPU."""
    if name:
        return torch.device(name)
    return torch.device('cuda' if torch.cuda.is_available() else 'cpu')


def init_output_bias(model: torch.nn.Module, data: VolumeSet, index: np.ndarray) -> None:
    """Start the output biases at the training mean quality and the indicator log-odds.

    Adam moves a parameter by about the learning rate per step, so a bias starting at 0 would
    need thousands of steps to reach a mean quality near 5.
    """
    final = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    quality = data.quality[index]
    with torch.no_grad():
        if np.isfinite(quality).any():
            final.bias[0] = float(np.nanmean(quality))
        for k in range(data.indicators.shape[1]):
            labels = data.indicators[index, k]
            labels = labels[~np.isnan(labels)]
            if labels.size:
                p = float(np.clip(labels.mean(), 0.02, 0.98))
                final.bias[1 + k] = float(np.log(p / (1 - p)))


def plain_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The weights as contiguous CPU tensors (what model_store loads)."""
    return {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}


def _save_atomic(obj: object, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + '.tmp')
    torch.save(obj, tmp)
    os.replace(tmp, path)


def train_epoch(model: torch.nn.Module, batches, optimizer: torch.optim.Optimizer,
                config: TrainConfig, device: torch.device, desc: str,
                total: int | None = None, progress: bool = True) -> tuple[dict[str, float], int]:
    """One optimizer pass over ``batches`` (``tile_batches`` output): the loss and its parts
    summed over the batches, and how many batches there were. Shared by training and the
    fine-tune of a shipped model, so both take the same steps.

    Args:
        model: the network, in training mode, on ``device``.
        batches: (tiles, quality, indicators, points) batches.
        optimizer: the optimizer stepping ``model``'s parameters.
        config: the loss weights and focal gamma.
        device: where the batches go.
        desc: the progress bar's label.
        total: the number of batches expected, for the bar (None: unknown).
        progress: whether to show the bar.
    """
    sums = {'loss': 0.0, 'quality': 0.0, 'indicators': 0.0}
    count = 0
    bar = tqdm(batches, total=total, desc=desc, unit='batch', leave=False, disable=not progress)
    for tiles, quality, indicators, points in bar:
        outputs = model(tiles.to(device, memory_format=torch.channels_last_3d))
        loss, parts = miqa_loss(outputs, quality.to(device), indicators.to(device),
                                config.quality_weight, config.indicator_weight,
                                config.focal_gamma, points.to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        sums['loss'] += float(loss.detach())
        sums['quality'] += parts['quality']
        sums['indicators'] += parts['indicators']
        if 'points' in parts:
            sums['points'] = sums.get('points', 0.0) + parts['points']
        count += 1
        bar.set_postfix(loss=f'{float(loss.detach()):.3f}')
    return sums, count


def train_model(data: VolumeSet, train_index: np.ndarray, val_index: np.ndarray | None,
                config: TrainConfig, run_dir: Path, resume: bool = False,
                device: torch.device | None = None, desc: str = 'train',
                progress: bool = True, init_weights: Path | None = None
                ) -> tuple[torch.nn.Module, list[dict]]:
    """Train on ``train_index``; per-epoch loss (and validation R²/loss) go to the history.

    ``init_weights`` (a network's ``.pt`` of the same shape) starts the training from those
    weights instead of random ones (a warm start, ``TrainConfig.init_from``).

    ``run_dir/checkpoint.pt`` is written after every epoch; with ``resume`` training continues
    from it (also to more epochs than before). The finished weights are ``run_dir/weights.pt``.
    """
    device = device or pick_device()
    run_dir.mkdir(parents=True, exist_ok=True)
    penalties = penalty_targets(data) if config.penalty_outputs else None
    if penalties is not None and not penalties[0]:
        raise ValueError('penalty outputs need volumes with known artifact severities '
                         '(generated ones); these have none')
    torch.manual_seed(config.seed)
    # channels-last 3D memory: several times faster convolutions on CPU (same numbers)
    model = build_network(config.channels, len(penalties[0]) if penalties else 0).to(
        device, memory_format=torch.channels_last_3d)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate,
                                  weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=config.lr_decay)
    if init_weights is not None:
        start_weights = torch.load(init_weights, map_location=device, weights_only=True)
        try:
            model.load_state_dict(start_weights)
        except RuntimeError as exc:
            raise ValueError(f'cannot start from {init_weights}: its network has another '
                             'shape (channels or points outputs) than this training') from exc
    else:
        init_output_bias(model, data, train_index)
    history: list[dict] = []
    start = 0
    checkpoint = run_dir / 'checkpoint.pt'
    if resume and checkpoint.is_file():
        state = torch.load(checkpoint, map_location=device, weights_only=False)
        # older runs: the defaults of settings added since
        saved = {'channels': CHANNELS, 'penalty_outputs': False, **ADDED_SETTINGS,
                 **state.get('config', {})}
        saved['channels'] = tuple(saved['channels'])
        saved.pop('epochs', None)
        for key, off in RETIRED_SETTINGS.items():  # a retired setting left off is no change
            if saved.get(key, off) == off:
                saved.pop(key, None)
        if saved != {k: v for k, v in asdict(config).items() if k != 'epochs'}:
            raise ValueError(f'{checkpoint} was written with other settings; remove it or '
                             'run without --resume')
        model.load_state_dict(state['model'])
        optimizer.load_state_dict(state['optimizer'])
        scheduler.load_state_dict(state['scheduler'])
        history = state['history']
        start = state['epoch'] + 1
    for epoch in range(start, config.epochs):
        rng = np.random.default_rng([config.seed, epoch])
        torch.manual_seed(config.seed * 1000 + epoch)
        model.train()
        began = time.time()
        use_views = config.global_view_weight > 0 and data.views is not None
        views = config.views_per_volume if use_views else 0
        per_volume = config.tiles_per_volume + views
        n_batches = -(-len(train_index) * per_volume // config.batch_size)
        batches = tile_batches(data, train_index, config.tiles_per_volume, config.batch_size,
                               rng, views, config.augment, penalties)
        sums, _ = train_epoch(model, batches, optimizer, config, device,
                              f'{desc} epoch {epoch + 1}/{config.epochs}', n_batches, progress)
        entry = {'epoch': epoch + 1, 'lr': scheduler.get_last_lr()[0],
                 **{f'train_{k}': v / max(n_batches, 1) for k, v in sums.items()},
                 'seconds': time.time() - began}
        if val_index is not None and len(val_index):
            pq, probs = predict(model, data, val_index, config.eval_tiles,
                                global_weight=config.global_view_weight)
            m = metrics(data, val_index, pq, probs)
            logits = np.log(np.clip(probs, 1e-6, 1 - 1e-6) / np.clip(1 - probs, 1e-6, 1))
            with torch.no_grad():
                _, parts = miqa_loss(torch.from_numpy(np.c_[pq, logits]),
                                     torch.from_numpy(data.quality[val_index]),
                                     torch.from_numpy(data.indicators[val_index]))
            entry.update({'val_r2': m.get('r2'), 'val_quality_loss': parts['quality'],
                          'val_indicator_loss': parts['indicators']})
        scheduler.step()
        history.append(entry)
        if progress:
            tqdm.write(f'{desc} epoch {epoch + 1}: ' + ', '.join(
                f'{k}={v:.4g}' for k, v in entry.items()
                if isinstance(v, float) and k != 'lr'))
        _save_atomic({'model': model.state_dict(), 'optimizer': optimizer.state_dict(),
                      'scheduler': scheduler.state_dict(), 'epoch': epoch, 'history': history,
                      'config': asdict(config)}, checkpoint)
    torch.save(plain_state_dict(model), run_dir / 'weights.pt')
    (run_dir / 'history.json').write_text(json.dumps(history, indent=1), encoding='utf-8')
    return model, history
