"""The Hyper-Prompting Adapter (HyP-Adpt) of Med-SA's mask decoder.

An adapter whose middle weight matrix is generated from the prompt::

    e_down = down(e)                               # (B, T, r), r = ratio * C
    w      = hyper(p).view(B, r, r)                # per prompt, L_in = L_out = r
    e_next = ReLU(LayerNorm(e_down @ w))           # (B, T, r)
    out    = up(e_next)                            # (B, T, C), up starts at zero

``p`` (B, P) is one embedding per prompt (the decoder passes the mean of that
prompt's sparse tokens). ``hyper`` is a two-layer MLP. A fresh HyP-Adpt outputs
exactly 0 because ``up`` starts at zero; once ``up`` is trained, different prompts
give different outputs.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from napari_medsam.model.medsa.adapter import adapter_width


class HypAdapter(nn.Module):
    """Prompt-conditioned adapter (see the module docstring).

    Parameters
    ----------
    dim : int
        Width C of the embedding adapted.
    prompt_dim : int
        Width P of the prompt embedding.
    ratio : float
        Reduced width r as a fraction of ``dim``.
    """

    def __init__(self, dim: int, prompt_dim: int, ratio: float = 0.25) -> None:
        super().__init__()
        self.width = r = adapter_width(dim, ratio)
        self.down = nn.Linear(dim, r)
        self.hyper = nn.Sequential(nn.Linear(prompt_dim, r), nn.GELU(), nn.Linear(r, r * r))
        self.norm = nn.LayerNorm(r)
        self.up = nn.Linear(r, dim)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def prompt_weights(self, prompt: torch.Tensor) -> torch.Tensor:
        """(B, P) prompt embeddings -> (B, r, r) weight matrices."""
        return self.hyper(prompt).view(prompt.shape[0], self.width, self.width)

    def forward(self, x: torch.Tensor, prompt: torch.Tensor) -> torch.Tensor:
        """(B, T, C) embeddings and (B, P) prompt embeddings -> (B, T, C) contribution."""
        e_down = self.down(x)
        e_next = F.relu(self.norm(torch.bmm(e_down, self.prompt_weights(prompt))))
        return self.up(e_next)
