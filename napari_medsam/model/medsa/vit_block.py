"""Med-SA block for SAM's ViT: space / MLP adapters and the Space-Depth Transpose branch.

The block adopts the modules of a segment-anything ``Block`` (``norm1``, ``attn``,
``norm2``, ``mlp``): the same Parameter objects under the same names, so weights
are shared, not copied, and state-dict keys stay those of SAM. For tokens x of
N = B * D slices, (N, H, W, C)::

    xn = norm1(x)
    a  = Attn_spatial(xn)                   # SAM's windowed / global attention, unchanged
    a  = a + SpaceAdapter(a)                # space adapter after attention (residual path)
    a  = a + DepthAdapter(Attn_depth(xn))   # SD-Trans, only when D > 1 and sd_trans
    x  = x + a
    xn = norm2(x)
    x  = x + MLP(xn) + s * MLPAdapter(xn)   # MLP adapter parallel to the MLP, s = 0.5

``Attn_depth`` regroups xn on the un-windowed (B, D, H, W, C) grid into one
sequence of D tokens per spatial position (see :mod:`.depth`) and runs the
block's own ``attn.qkv`` / ``attn.proj`` on it with a zero-initialised depth
bias instead of SAM's spatial relative-position tables. Windowed and global
blocks regroup alike, so slice i's position (y, x) only meets the other slices'
(y, x). With D = 1 (or sd_trans off) the block is the 2D Med-SA block; fresh, it
computes exactly SAM's block.
"""

from __future__ import annotations

import torch
from segment_anything.modeling.image_encoder import Block, window_partition, window_unpartition
from torch import nn

from napari_medsam.model.medsa.adapter import Adapter
from napari_medsam.model.medsa.depth import (
    DepthBias,
    attend,
    from_depth_sequences,
    to_depth_sequences,
)


class MedSAViTBlock(nn.Module):
    """A SAM ViT ``Block`` with Med-SA adapters (see the module docstring).

    Parameters
    ----------
    block : segment_anything.modeling.image_encoder.Block
        The backbone block; its modules are adopted, not copied.
    adapter_ratio : float
        Adapter hidden width / embedding width.
    mlp_scale : float
        Scale of the MLP adapter.
    sd_trans : bool
        Add the depth branch (its adapter and depth bias).
    max_depth : int
        Largest slab depth for the depth bias.
    """

    def __init__(
        self,
        block: Block,
        adapter_ratio: float = 0.25,
        mlp_scale: float = 0.5,
        sd_trans: bool = True,
        max_depth: int = 8,
    ) -> None:
        super().__init__()
        self.norm1 = block.norm1
        self.attn = block.attn
        self.norm2 = block.norm2
        self.mlp = block.mlp
        self.window_size = block.window_size
        dim = block.attn.qkv.in_features
        self.mlp_scale = float(mlp_scale)
        self.medsa_space_adapter = Adapter(dim, adapter_ratio)
        self.medsa_mlp_adapter = Adapter(dim, adapter_ratio)
        self.medsa_depth_adapter: Adapter | None = None
        self.medsa_depth_bias: DepthBias | None = None
        if sd_trans:
            self.medsa_depth_adapter = Adapter(dim, adapter_ratio)
            self.medsa_depth_bias = DepthBias(block.attn.num_heads, max_depth)

    def spatial_attention(self, xn: torch.Tensor) -> torch.Tensor:
        """SAM's attention within each slice (windowed when ``window_size`` > 0); (N, H, W, C)."""
        if self.window_size > 0:
            hw = xn.shape[1], xn.shape[2]
            windows, pad_hw = window_partition(xn, self.window_size)
            return window_unpartition(self.attn(windows), self.window_size, pad_hw, hw)
        return self.attn(xn)

    def depth_attention(self, xn: torch.Tensor, depth: int) -> torch.Tensor:
        """Attention across the D slices at each spatial position, with the block's qkv / proj.

        Parameters
        ----------
        xn : torch.Tensor
            (B * D, H, W, C) normalised tokens on the un-windowed grid.
        depth : int
            Slices per stack, D.

        Returns
        -------
        torch.Tensor
            (B * D, H, W, C).
        """
        seq = to_depth_sequences(xn, depth)  # (M, D, C)
        m, d, c = seq.shape
        heads = self.attn.num_heads
        qkv = self.attn.qkv(seq).reshape(m, d, 3, heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # (M, heads, D, c / heads)
        out = attend(q, k, v, self.attn.scale, self.medsa_depth_bias(d))
        out = self.attn.proj(out.transpose(1, 2).reshape(m, d, c))
        return from_depth_sequences(out, depth, xn)

    def forward(self, x: torch.Tensor, depth: int = 1) -> torch.Tensor:
        """(B * D, H, W, C) tokens of B stacks of D consecutive slices -> same shape."""
        shortcut = x
        xn = self.norm1(x)
        a = self.spatial_attention(xn)
        a = a + self.medsa_space_adapter(a)
        if depth > 1 and self.medsa_depth_adapter is not None:
            a = a + self.medsa_depth_adapter(self.depth_attention(xn, depth))
        x = shortcut + a
        xn = self.norm2(x)
        return x + self.mlp(xn) + self.mlp_scale * self.medsa_mlp_adapter(xn)
