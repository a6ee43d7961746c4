"""Segmentation losses on logits: SimpleClick's normalized focal loss and the Dice loss.

Both take (B, H, W) logits, a (B, H, W) bool target and an optional (B, H, W)
0/1 weight (the padded part of the model frame gets weight 0), and return the
mean over the batch of per-case losses.
"""

from __future__ import annotations

import torch


def _weight(logits: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    return torch.ones_like(logits) if weight is None else weight.to(logits.dtype)


def normalized_focal_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    alpha: float = 0.5,
    gamma: float = 2.0,
    eps: float = 1e-12,
) -> torch.Tensor:
    """Normalized focal loss (RITM / SimpleClick ``NormalizedFocalLossSigmoid``).

    The focal factor ``(1 - p_t)**gamma`` is rescaled per case so that it sums
    to the case's pixel weight (the rescaling factor is not differentiated), so
    the loss keeps its scale while the model gets better and the remaining
    hard pixels dominate:

    ``loss = sum_px w * a_t * beta * -log(p_t) / sum_px w``, with
    ``beta = (1 - p_t)**gamma * sum_px w / sum_px (w * (1 - p_t)**gamma)``,
    ``p_t`` the probability of the true class and ``a_t`` = ``alpha`` on the
    object, ``1 - alpha`` elsewhere.

    Parameters
    ----------
    logits : torch.Tensor
        (B, H, W) float.
    target : torch.Tensor
        (B, H, W) bool.
    weight : torch.Tensor, optional
        (B, H, W) 0/1 pixel weights.
    alpha, gamma, eps : float

    Returns
    -------
    torch.Tensor
        Scalar.
    """
    logits = logits.float()
    gt = target.bool()
    w = _weight(logits, weight)
    p = torch.sigmoid(logits)
    pt = torch.where(gt, p, 1.0 - p)
    a_t = torch.where(gt, torch.full_like(p, alpha), torch.full_like(p, 1.0 - alpha))
    beta = (1.0 - pt) ** gamma
    w_sum = w.sum(dim=(-2, -1), keepdim=True)
    mult = (w_sum / ((beta * w).sum(dim=(-2, -1), keepdim=True) + eps)).detach()
    # log(p_t) from the logits, stable for large |logits|
    log_pt = -torch.nn.functional.softplus(torch.where(gt, -logits, logits))
    loss = -a_t * beta * mult * log_pt * w
    return (loss.sum(dim=(-2, -1)) / (w_sum[..., 0, 0] + eps)).mean()


def dice_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    smooth: float = 1.0,
) -> torch.Tensor:
    """Soft Dice loss ``1 - (2 sum(p g) + s) / (sum(p) + sum(g) + s)`` per case, averaged.

    Parameters
    ----------
    logits : torch.Tensor
        (B, H, W) float; p = sigmoid(logits).
    target : torch.Tensor
        (B, H, W) bool.
    weight : torch.Tensor, optional
        (B, H, W) 0/1 pixel weights.
    smooth : float
        s, keeps an empty target and empty prediction at loss 0.
    """
    logits = logits.float()
    w = _weight(logits, weight)
    p = torch.sigmoid(logits) * w
    g = target.float() * w
    inter = (p * g).sum(dim=(-2, -1))
    denom = p.sum(dim=(-2, -1)) + g.sum(dim=(-2, -1))
    return (1.0 - (2.0 * inter + smooth) / (denom + smooth)).mean()


def segmentation_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    dice_weight: float = 1.0,
    gamma: float = 2.0,
) -> torch.Tensor:
    """NFL + ``dice_weight`` x Dice loss (the fine-tuning objective)."""
    loss = normalized_focal_loss(logits, target, weight, gamma=gamma)
    if dice_weight:
        loss = loss + dice_weight * dice_loss(logits, target, weight)
    return loss
