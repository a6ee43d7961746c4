"""The batched, differentiable forward pass of a Med-SA model on training prompts.

It computes for each case what :class:`napari_medsam.model.medsa.engine.MedSAEngine`
computes for the same slice and prompt in the app (a test checks they agree):

- the prompt goes through the engines' own conversion
  (:func:`napari_medsam.model.prompt_inputs.prompt_tensors`);
- cases with clicks or a previous mask add the click embedding of their
  SimpleClick maps (:func:`napari_medsam.prompts.clickmaps.click_maps`, the
  previous mask being the bilinearly upsampled logits > 0) to the patch tokens;
  box-only cases do not (the engine uses its click-free embedding for them);
- a single click without box or previous mask uses SAM's three-mask output and
  keeps the mask with the highest predicted IoU, as the engine does.

:class:`PromptedMedSA` wraps the model so that DistributedDataParallel sees the
whole computation in one ``forward``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from napari_medsam.model.prompt_inputs import PromptTensors, prompt_tensors
from napari_medsam.prompts.clickmaps import click_maps
from napari_medsam.prompts.geometry import RESIZE_LONGEST_SIDE
from napari_medsam.types import SlicePrompt


def has_click_input(prompt: SlicePrompt) -> bool:
    """Whether the engine feeds this prompt's click maps to the encoder."""
    return len(prompt.points_yx) > 0 or prompt.prev_logits_lowres is not None


def prev_mask_model(prev_logits_lowres: np.ndarray, side: int) -> np.ndarray:
    """(side, side) bool previous mask in the model frame from (L, L) low-res logits."""
    prev = torch.as_tensor(np.asarray(prev_logits_lowres, np.float32))[None, None]
    return (F.interpolate(prev, size=(side, side), mode="bilinear")[0, 0] > 0).numpy()


def click_maps_batch(
    prompts: Sequence[SlicePrompt],
    hws: Sequence[tuple[int, int]],
    side: int,
    resize: str = RESIZE_LONGEST_SIDE,
) -> np.ndarray:
    """(B, 3, side, side) float32 SimpleClick maps (positive, negative, previous mask)."""
    maps = np.zeros((len(prompts), 3, side, side), np.float32)
    for i, (prompt, hw) in enumerate(zip(prompts, hws, strict=True)):
        if not has_click_input(prompt):
            continue
        prev = None
        if prompt.prev_logits_lowres is not None:
            prev = prev_mask_model(prompt.prev_logits_lowres, side)
        maps[i] = click_maps(prompt.points_yx, prompt.point_labels, hw, side, prev, resize=resize)
    return maps


class PromptedMedSA(nn.Module):
    """A Med-SA model run on B (slice, prompt) cases in one forward.

    Parameters
    ----------
    model : MedSAModel
    from_embeddings : bool
        The ``images`` given to :meth:`forward` are already the (B, C, h, w) image
        embeddings (decoder-only training on cached embeddings); click maps are
        then neither built nor used.
    """

    def __init__(self, model: nn.Module, from_embeddings: bool = False) -> None:
        super().__init__()
        self.model = model
        self.from_embeddings = bool(from_embeddings)

    def forward(
        self,
        images: torch.Tensor,
        maps: torch.Tensor,
        use_maps: torch.Tensor,
        prompts: list[PromptTensors],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Low-res logits of the kept mask of each case.

        Parameters
        ----------
        images : torch.Tensor
            (B, 3, S, S) preprocessed slices, or (B, C, h, w) image embeddings
            with ``from_embeddings``.
        maps : torch.Tensor or None
            (B, 3, S, S) click maps (None with ``from_embeddings``).
        use_maps : torch.Tensor
            (B,) float 0/1: whether the case's click embedding is added.
        prompts : list of PromptTensors
            :func:`~napari_medsam.model.prompt_inputs.prompt_tensors` of each case.

        Returns
        -------
        logits : torch.Tensor
            (B, L, L).
        iou : torch.Tensor
            (B,) predicted IoU of the kept mask.
        """
        embeddings = images if self.from_embeddings else self._encode(images, maps, use_maps)
        logits, ious = [], []
        for i, p in enumerate(prompts):
            low, iou = self.model.decode(
                embeddings[i : i + 1], p.points, p.boxes, p.masks, p.multimask
            )
            best = int(torch.argmax(iou[0])) if p.multimask else 0
            logits.append(low[0, best])
            ious.append(iou[0, best])
        return torch.stack(logits), torch.stack(ious)

    def _encode(
        self, images: torch.Tensor, maps: torch.Tensor, use_maps: torch.Tensor
    ) -> torch.Tensor:
        encoder = self.model.image_encoder
        tokens = encoder.embed_patches(images)
        if encoder.medsa_click_embed is not None and bool(use_maps.any()):
            tokens = tokens + encoder.medsa_click_embed(maps) * use_maps.view(-1, 1, 1, 1).to(
                tokens.dtype
            )
        return encoder.forward_tokens(tokens, None, 1)


def run_prompts(
    module: nn.Module,
    images: torch.Tensor,
    prompts: Sequence[SlicePrompt],
    hws: Sequence[tuple[int, int]],
    side: int,
    resize: str = RESIZE_LONGEST_SIDE,
    multimask_single_click: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Build the inputs of :class:`PromptedMedSA` and call ``module`` (it or its DDP wrapper).

    Parameters
    ----------
    module : nn.Module
        A :class:`PromptedMedSA`, possibly wrapped in DistributedDataParallel.
    images : torch.Tensor
        (B, 3, S, S) on the model's device ((B, C, h, w) embeddings when the
        module is ``from_embeddings``).
    prompts : sequence of SlicePrompt
    hws : sequence of (int, int)
        (H, W) of each case's slice.
    side : int
        Model input side S.
    resize, multimask_single_click
        The model's input conventions (``InputSpec``), as the engine uses them.
    """
    device = images.device
    raw = getattr(module, "module", module)  # unwrap DistributedDataParallel
    maps = None
    if not getattr(raw, "from_embeddings", False):
        maps = torch.as_tensor(click_maps_batch(prompts, hws, side, resize), device=device)
    use = torch.tensor([float(has_click_input(p)) for p in prompts], device=device)
    tensors = [
        prompt_tensors(p, hw, side, device, resize, None, multimask_single_click)
        for p, hw in zip(prompts, hws, strict=True)
    ]
    return module(images, maps, use, tensors)
