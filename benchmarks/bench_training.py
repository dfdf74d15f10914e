"""Training throughput of the MIQA network: tiles per second for forward + backward + step.

Run: ``.venv/bin/python benchmarks/bench_training.py [--batch 16] [--steps 5] [--threads N]``.
Prints one JSON line; the training budget of ``miqa-train`` follows from it (an epoch is
volumes x tiles-per-volume tiles).
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from miqa_worker.network import build_network
from miqa_worker.training.losses import miqa_loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--batch', type=int, default=16)
    parser.add_argument('--steps', type=int, default=5)
    parser.add_argument('--threads', type=int, default=None)
    parser.add_argument('--channels-last', action='store_true')
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    model = build_network().to(device)
    fmt = torch.channels_last_3d if args.channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    tiles = torch.rand(args.batch, 1, 64, 64, 64, device=device).to(memory_format=fmt)
    quality = torch.rand(args.batch, device=device) * 10
    indicators = (torch.rand(args.batch, 10, device=device) > 0.7).float()
    times = []
    for step in range(args.steps + 1):
        began = time.perf_counter()
        loss, _ = miqa_loss(model(tiles), quality, indicators)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if device.type == 'cuda':
            torch.cuda.synchronize()
        if step:  # the first step warms up
            times.append(time.perf_counter() - began)
    per_step = sorted(times)[len(times) // 2]
    print(json.dumps({'device': str(device), 'threads': torch.get_num_threads(),
                      'batch': args.batch, 'median_step_s': round(per_step, 4),
                      'tiles_per_s': round(args.batch / per_step, 2),
                      'channels_last': args.channels_last}))


if __name__ == '__main__':
    main()
