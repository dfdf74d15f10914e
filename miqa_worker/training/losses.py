"""Loss: Huber regression of overall quality plus a focal loss per indicator (and, optionally,
Huber regression of each family's quality points), unknowns masked."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..constants import NUM_OUTPUTS


def focal_loss_with_logits(logits: torch.Tensor, targets: torch.Tensor,
                           gamma: float = 2.0, alpha: float | None = None) -> torch.Tensor:
    """Element-wise sigmoid focal loss (Lin et al. 2017); targets 0/1."""
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction='none')
    prob = torch.sigmoid(logits)
    p_t = prob * targets + (1 - prob) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha is not None:
        loss = loss * (alpha * targets + (1 - alpha) * (1 - targets))
    return loss


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over ``mask``; 0 (still differentiable) when nothing is known."""
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp_min(1.0)


def miqa_loss(outputs: torch.Tensor, quality: torch.Tensor, indicators: torch.Tensor,
              quality_weight: float = 1.0, indicator_weight: float = 5.0,
              gamma: float = 2.0, points: torch.Tensor | None = None
              ) -> tuple[torch.Tensor, dict[str, float]]:
    """Total loss and its parts; NaN in ``quality`` / ``indicators`` / ``points`` marks unknown
    labels. ``points`` ``[B, F]`` are the targets of the outputs after the 11 (weight 1)."""
    q_mask = ~torch.isnan(quality)
    i_mask = ~torch.isnan(indicators)
    q_loss = masked_mean(F.huber_loss(outputs[:, 0], torch.nan_to_num(quality),
                                      reduction='none', delta=1.0), q_mask)
    i_loss = masked_mean(focal_loss_with_logits(outputs[:, 1:NUM_OUTPUTS],
                                                torch.nan_to_num(indicators), gamma=gamma),
                         i_mask)
    total = quality_weight * q_loss + indicator_weight * i_loss
    parts = {'quality': float(q_loss.detach()), 'indicators': float(i_loss.detach())}
    if points is not None and points.shape[1]:
        p_loss = masked_mean(F.huber_loss(outputs[:, NUM_OUTPUTS:], torch.nan_to_num(points),
                                          reduction='none', delta=1.0), ~torch.isnan(points))
        total = total + p_loss
        parts['points'] = float(p_loss.detach())
    return total, parts
