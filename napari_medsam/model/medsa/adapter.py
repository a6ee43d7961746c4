"""The bottleneck adapter of Med-SA: down-projection, GELU, zero-initialised up-projection."""

from __future__ import annotations

import torch
from torch import nn


def adapter_width(dim: int, ratio: float) -> int:
    """Hidden width of an adapter on a ``dim``-wide embedding (at least 1)."""
    return max(1, round(dim * ratio))


class Adapter(nn.Module):
    """``x -> up(GELU(down(x)))`` acting on the last axis.

    The up-projection starts at zero, so a fresh adapter outputs exactly 0 and a
    fresh Med-SA computes what its backbone computes. The adapter returns only its
    contribution; callers add it to the path it adapts.

    Parameters
    ----------
    dim : int
        Width of the embedding adapted.
    ratio : float
        Hidden width as a fraction of ``dim`` (Med-SA: 0.25).
    """

    def __init__(self, dim: int, ratio: float = 0.25) -> None:
        super().__init__()
        hidden = adapter_width(dim, ratio)
        self.down = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.up = nn.Linear(hidden, dim)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., dim) -> (..., dim)."""
        return self.up(self.act(self.down(x)))
