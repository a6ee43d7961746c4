"""Space-Depth Transpose helpers: regroup a stack's tokens so attention runs across slices.

A batch of ``N = B * D`` slices holds ``B`` stacks of ``D`` consecutive slices. The
depth branch must pair the *same spatial position* of every slice of a stack, so
the regroup works on the full, un-windowed token grid (N, *spatial, C): doing it
after window partition (as the official Med-SA code does) would pair different
windows of one slice instead of one position across slices.
"""

from __future__ import annotations

import torch
from torch import nn


def to_depth_sequences(x: torch.Tensor, depth: int) -> torch.Tensor:
    """(B * D, *spatial, C) -> (B * L, D, C), one sequence per spatial position.

    ``L`` is the number of spatial positions; sequence ``b * L + l`` holds position
    ``l`` of every slice of stack ``b``, in slice order.
    """
    n, c = x.shape[0], x.shape[-1]
    if n % depth:
        raise ValueError(f"batch of {n} slices is not a whole number of {depth}-slice stacks")
    b = n // depth
    seq = x.reshape(b, depth, -1, c).transpose(1, 2)  # (B, L, D, C)
    return seq.reshape(-1, depth, c)


def from_depth_sequences(seq: torch.Tensor, depth: int, like: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`to_depth_sequences`: (B * L, D, C) -> the shape of ``like``."""
    c = seq.shape[-1]
    n = like.shape[0]
    b = n // depth
    x = seq.reshape(b, -1, depth, c).transpose(1, 2)  # (B, D, L, C)
    return x.reshape(*like.shape[:-1], c)


class DepthBias(nn.Module):
    """Learned per-head bias of the depth attention over slice offsets, zero at start.

    SAM's relative-position tables and TinyViT's attention biases describe offsets
    within a slice, so the depth branch does not reuse them. This small table
    (heads x (2 * max_depth - 1)) lets training tell slices above from below; at
    zero the depth attention is position-free (permutation-equivariant over slices).

    Parameters
    ----------
    num_heads : int
    max_depth : int
        Largest slab depth D supported.
    """

    def __init__(self, num_heads: int, max_depth: int) -> None:
        super().__init__()
        self.max_depth = int(max_depth)
        self.table = nn.Parameter(torch.zeros(num_heads, 2 * self.max_depth - 1))

    def forward(self, depth: int) -> torch.Tensor:
        """(heads, D, D) bias for a slab of ``depth`` slices; entry [h, i, j] for offset i - j."""
        if depth > self.max_depth:
            raise ValueError(f"slab of {depth} slices exceeds the model's depth {self.max_depth}")
        idx = torch.arange(depth, device=self.table.device)
        offsets = idx[:, None] - idx[None, :] + self.max_depth - 1
        return self.table[:, offsets]


def attend(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float, bias: torch.Tensor
) -> torch.Tensor:
    """Softmax attention ``softmax(q k^T * scale + bias) v``.

    Parameters
    ----------
    q, k : torch.Tensor
        (M, heads, D, d_k).
    v : torch.Tensor
        (M, heads, D, d_v).
    bias : torch.Tensor
        (heads, D, D).

    Returns
    -------
    torch.Tensor
        (M, heads, D, d_v).
    """
    attn = (q * scale) @ k.transpose(-2, -1) + bias
    return attn.softmax(dim=-1) @ v
