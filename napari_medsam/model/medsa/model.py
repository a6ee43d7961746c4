"""The Med-SA model: a SAM-interface module (image / prompt encoder, mask decoder) with adapters.

Its state-dict keys are the backbone's (``image_encoder.*``, ``prompt_encoder.*``,
``mask_decoder.*``) plus the Med-SA parts, whose keys contain a ``medsa_``
component (:func:`napari_medsam.model.medsa.config.is_medsa_key`).
"""

from __future__ import annotations

import torch
from torch import nn

from napari_medsam.model.medsa.config import MedSAConfig
from napari_medsam.model.medsa.decoder import MedSAMaskDecoder
from napari_medsam.model.medsa.encoders import MedSATinyViTEncoder, MedSAViTEncoder


class MedSAModel(nn.Module):
    """Med-SA on a SAM ViT or LiteMedSAM (TinyViT) backbone.

    Parameters
    ----------
    backbone : nn.Module
        A ``segment_anything.modeling.Sam`` or a LiteMedSAM module (attributes
        ``image_encoder``, ``prompt_encoder``, ``mask_decoder``). Its modules are
        adopted (weights shared); do not use the backbone object on its own afterwards.
    config : MedSAConfig
    family : str
        "vit" (SAM's ImageEncoderViT) or "tinyvit" (LiteMedSAM's TinyViT).
    """

    def __init__(self, backbone: nn.Module, config: MedSAConfig, family: str) -> None:
        super().__init__()
        self.config = config
        self.family = family
        if family == "vit":
            self.image_encoder: nn.Module = MedSAViTEncoder(backbone.image_encoder, config)
        elif family == "tinyvit":
            self.image_encoder = MedSATinyViTEncoder(backbone.image_encoder, config)
        else:
            raise ValueError(f"unknown backbone family {family!r}")
        self.prompt_encoder = backbone.prompt_encoder
        self.mask_decoder = MedSAMaskDecoder(backbone.mask_decoder, config)

    @property
    def image_size(self) -> int:
        """Side of the square model input in pixels."""
        return int(self.prompt_encoder.input_image_size[0])

    @property
    def has_sd_trans(self) -> bool:
        return self.config.sd_trans

    def encode(
        self, images: torch.Tensor, click_maps: torch.Tensor | None = None, depth: int = 1
    ) -> torch.Tensor:
        """Image embeddings of N = B * D preprocessed slices.

        Parameters
        ----------
        images : torch.Tensor
            (N, 3, S, S) preprocessed model input (as the backbone's encoder takes it).
        click_maps : torch.Tensor, optional
            (N, 3, S, S) SimpleClick maps (positive, negative, previous mask) in the model frame.
        depth : int
            D: the N slices are N / D stacks of D consecutive slices (SD-Trans); 1 for 2D.

        Returns
        -------
        torch.Tensor
            (N, C, h, w) image embeddings.
        """
        return self.image_encoder(images, click_maps, depth)

    def decode(
        self,
        image_embeddings: torch.Tensor,
        points: tuple[torch.Tensor, torch.Tensor] | None = None,
        boxes: torch.Tensor | None = None,
        mask_inputs: torch.Tensor | None = None,
        multimask_output: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Low-resolution masks for B prompts.

        Parameters
        ----------
        image_embeddings : torch.Tensor
            (1, C, h, w) shared, or (B, C, h, w) one per prompt.
        points : tuple of torch.Tensor, optional
            ((B, N, 2) float (x, y) model-frame pixels, (B, N) int labels 1/0).
        boxes : torch.Tensor, optional
            (B, 4) float (x0, y0, x1, y1) model-frame pixels.
        mask_inputs : torch.Tensor, optional
            (B, 1, 4h, 4w) previous low-res logits.
        multimask_output : bool

        Returns
        -------
        low_res_logits : torch.Tensor
            (B, M, 4h, 4w).
        iou_predictions : torch.Tensor
            (B, M).
        """
        sparse, dense = self.prompt_encoder(points=points, boxes=boxes, masks=mask_inputs)
        return self.mask_decoder(
            image_embeddings=image_embeddings,
            image_pe=self.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask_output,
        )

    def forward(
        self,
        images: torch.Tensor,
        points: tuple[torch.Tensor, torch.Tensor] | None = None,
        boxes: torch.Tensor | None = None,
        mask_inputs: torch.Tensor | None = None,
        click_maps: torch.Tensor | None = None,
        depth: int = 1,
        multimask_output: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode N slices and decode one prompt per slice; see :meth:`encode` / :meth:`decode`."""
        return self.decode(
            self.encode(images, click_maps, depth), points, boxes, mask_inputs, multimask_output
        )
