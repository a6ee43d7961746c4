"""The click decoder: LiteMedSAM's prompt encoder and mask decoder, trained for clicks.

A :class:`ClickDecoder` is a trainable copy of a SAM-style model's prompt encoder
and mask decoder, with two additions:

- **HyP-Adpt** (Med-SA's Hyper-Prompting Adapter) and the two other Med-SA decoder
  adapters in every two-way block (:class:`~napari_medsam.model.medsa.decoder.MedSAMaskDecoder`).
- **SimpleClick disk maps as a dense prompt.** The positive and negative disk maps
  (radius 5 model pixels) and the previous mask (logit > 0) form three channels at
  the model's input resolution. A small convolutional stem (the shape of SAM's
  ``mask_downscaling``) maps them to the image-embedding grid and adds them to
  SAM's dense prompt embedding (the previous logits through ``mask_downscaling``,
  or ``no_mask_embed``). The stem's last convolution starts at zero.

The clicks also remain SAM point tokens. With every new part at zero the decoder
computes exactly the model it was copied from. Box-only prompts never reach this
module (:class:`~napari_medsam.model.click.engine.ClickEngine` routes them to the
bundled decoder), so the box path stays bit-exact.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from napari_medsam.model.medsa.config import MedSAConfig
from napari_medsam.model.medsa.decoder import MedSAMaskDecoder

#: SimpleClick's disk radius, model-input pixels
DISK_RADIUS = 5.0


@dataclass(frozen=True)
class ClickConfig:
    """What a click decoder adds to the decoder it copies.

    Attributes
    ----------
    backbone : str
        The model whose encoder and box decoder it rides on ("litemedsam").
    hyp_adapter : bool
        HyP-Adpt in the decoder's two-way blocks (else plain adapters).
    disk_maps : bool
        The disk-map / previous-mask stem as a dense prompt.
    adapter_ratio : float
        Hidden width of the adapters as a fraction of the token width.
    first_click_multimask : bool
        SAM's answer to an ambiguous single click: a prompt that is one positive
        click alone (no box, no previous mask) gets SAM's 3 multimask outputs,
        and the one the IoU head scores highest is returned. Every other prompt
        gets the single output.
    """

    backbone: str = "litemedsam"
    hyp_adapter: bool = True
    disk_maps: bool = True
    adapter_ratio: float = 0.25
    first_click_multimask: bool = False


class LayerNorm2d(nn.Module):
    """LayerNorm over the channel axis of (B, C, H, W) maps (as SAM's)."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        x = (x - mean) / torch.sqrt(var + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class ClickMapStem(nn.Module):
    """(B, 3, S, S) disk maps + previous mask -> (B, C, S/4, S/4), zero at start."""

    def __init__(self, embed_dim: int, hidden: int = 16) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(3, hidden, kernel_size=2, stride=2),
            LayerNorm2d(hidden),
            nn.GELU(),
            nn.Conv2d(hidden, hidden * 4, kernel_size=2, stride=2),
            LayerNorm2d(hidden * 4),
            nn.GELU(),
            nn.Conv2d(hidden * 4, embed_dim, kernel_size=1),
        )
        nn.init.zeros_(self.layers[-1].weight)
        nn.init.zeros_(self.layers[-1].bias)

    def forward(self, maps: Tensor) -> Tensor:
        return self.layers(maps)


def disk_maps(
    coords_xy: Tensor | None, labels: Tensor | None, side: int, radius: float = DISK_RADIUS
) -> Tensor:
    """Positive / negative disk maps of a batch of clicks, in the model frame.

    Parameters
    ----------
    coords_xy : Tensor or None
        (B, N, 2) float (x, y) model-input pixels (pixel c spans [c, c + 1)).
    labels : Tensor or None
        (B, N) int: 1 positive, 0 negative, -1 padding (ignored).
    side : int
        Model input side S.

    Returns
    -------
    Tensor
        (B, 2, S, S) float32 0/1; channel 0 positive, 1 negative. Same rule as
        :func:`napari_medsam.prompts.clickmaps.click_maps`.

    Notes
    -----
    Each click is tested only against the pixels of a small square around it
    (those its disk can reach), with the same float32 distance rule as a test
    against every pixel: the cost grows with the clicks, not with N x S x S
    (400 clicks on a 256 x 256 map: 26 M tests before, 90 k now; measured
    255 ms -> 4 ms of CPU).
    """
    if coords_xy is None or coords_xy.shape[1] == 0:
        b = 1 if coords_xy is None else coords_xy.shape[0]
        device = "cpu" if coords_xy is None else coords_xy.device
        return torch.zeros((b, 2, side, side), device=device)
    b, n = coords_xy.shape[:2]
    device = coords_xy.device
    coords = coords_xy.float()
    reach = int(math.ceil(radius)) + 1  # pixels a disk can reach on either side of its first
    offsets = torch.arange(2 * reach + 1, device=device)
    # first candidate pixel per click and axis: centre c + 0.5 >= x - radius - 1
    first = torch.floor(coords - radius - 1.0).long()  # (B, N, 2)
    cols = first[..., 0:1] + offsets  # (B, N, K)
    rows = first[..., 1:2] + offsets
    dx2 = ((cols.float() + 0.5) - coords[..., 0:1]) ** 2  # the dense rule's float32 maths
    dy2 = ((rows.float() + 0.5) - coords[..., 1:2]) ** 2
    inside = (dy2[..., :, None] + dx2[..., None, :]) <= radius**2  # (B, N, K, K)
    on_map_rows = (rows >= 0) & (rows < side)
    on_map_cols = (cols >= 0) & (cols < side)
    inside &= on_map_rows[..., :, None] & on_map_cols[..., None, :]
    channel = torch.where(labels == 1, 0, torch.where(labels == 0, 1, -1)).to(device)  # (B, N)
    inside &= (channel >= 0)[..., None, None]
    flat = (rows[..., :, None] * side + cols[..., None, :]).clamp(0, side * side - 1)
    plane = torch.arange(b, device=device)[:, None] * 2 + channel.clamp(min=0)  # (B, N)
    index = plane[..., None, None] * (side * side) + flat
    out = torch.zeros(b * 2 * side * side, device=device)
    out[index[inside]] = 1.0
    return out.view(b, 2, side, side)


def _disk_maps_dense(coords_xy: Tensor, labels: Tensor, side: int, radius: float = DISK_RADIUS):
    """Reference: every click against every pixel, (B, 2, S, S) (tests compare to it)."""
    centres = torch.arange(side, device=coords_xy.device, dtype=torch.float32) + 0.5
    dx2 = (centres[None, None, :] - coords_xy[..., 0:1].float()) ** 2  # (B, N, S)
    dy2 = (centres[None, None, :] - coords_xy[..., 1:2].float()) ** 2
    inside = (dy2[..., :, None] + dx2[..., None, :]) <= radius**2  # (B, N, S, S)
    pos = (inside & (labels == 1)[..., None, None]).any(dim=1)
    neg = (inside & (labels == 0)[..., None, None]).any(dim=1)
    return torch.stack([pos, neg], dim=1).float()


def single_click_rows(
    points: tuple[Tensor, Tensor] | None, boxes: Tensor | None, mask_inputs: Tensor | None
) -> Tensor | None:
    """(B,) bool: the prompts that are one positive click alone; None when there are none.

    Parameters
    ----------
    points : tuple of Tensor or None
        ((B, N, 2) coordinates, (B, N) labels 1/0/-1 padding).
    boxes, mask_inputs : Tensor or None
        A box or a previous mask makes every row a non-single prompt.
    """
    if points is None or boxes is not None or mask_inputs is not None:
        return None
    labels = points[1]
    rows = ((labels >= 0).sum(1) == 1) & ((labels == 1).sum(1) == 1)
    return rows if bool(rows.any()) else None


def choose_outputs(
    logits_all: Tensor, iou_all: Tensor, single: Tensor | None
) -> tuple[Tensor, Tensor]:
    """(B, 1, H, W) logits and (B, 1) IoU: the best multimask output for single-click rows.

    Parameters
    ----------
    logits_all : Tensor
        (B, 4, H, W): the single output, then the 3 multimask outputs.
    iou_all : Tensor
        (B, 4) predicted IoU of each.
    single : Tensor or None
        (B,) bool rows that take the multimask choice.
    """
    pick = torch.zeros(logits_all.shape[0], dtype=torch.long, device=logits_all.device)
    if single is not None:
        best = iou_all[:, 1:].argmax(1) + 1
        pick = torch.where(single.to(pick.device), best, pick)
    rows = torch.arange(logits_all.shape[0], device=logits_all.device)
    return logits_all[rows, pick][:, None], iou_all[rows, pick][:, None]


class ClickDecoder(nn.Module):
    """Trainable prompt encoder + Med-SA mask decoder + click-map stem (module docstring).

    Parameters
    ----------
    prompt_encoder, mask_decoder : nn.Module
        SAM-style modules to copy (the originals are left untouched).
    config : ClickConfig
    """

    def __init__(self, prompt_encoder: nn.Module, mask_decoder: nn.Module, config: ClickConfig):
        super().__init__()
        self.config = config
        self.prompt_encoder = copy.deepcopy(prompt_encoder)
        medsa = MedSAConfig(
            backbone=config.backbone,
            adapter_ratio=config.adapter_ratio,
            hyp_adapter=config.hyp_adapter,
            sd_trans=False,
            click_embed=False,
        )
        self.mask_decoder = MedSAMaskDecoder(copy.deepcopy(mask_decoder), medsa)
        dim = int(self.prompt_encoder.embed_dim)
        grid = tuple(int(v) for v in self.prompt_encoder.image_embedding_size)
        if config.disk_maps and grid != (self.input_side // 4,) * 2:
            raise ValueError(
                f"the click-map stem maps {self.input_side} px inputs 4x down to "
                f"{self.input_side // 4} x {self.input_side // 4}, not to the {grid} "
                "embedding grid: a click decoder needs an input side 4x the embedding side"
            )
        self.click_stem = ClickMapStem(dim) if config.disk_maps else None
        self._dense_pe: tuple[tuple, Tensor] | None = None

    def dense_pe(self) -> Tensor:
        """(1, C, h, w) ``prompt_encoder.get_dense_pe()``, computed once while inferring.

        It depends only on the positional encoding's fixed random matrix, yet costs
        ~1.6 ms a click to recompute. Without gradients, it is kept for that matrix
        (its identity, version, device and dtype); with gradients it is recomputed.
        """
        if torch.is_grad_enabled():
            return self.prompt_encoder.get_dense_pe()
        matrix = self.prompt_encoder.pe_layer.positional_encoding_gaussian_matrix
        key = (id(matrix), matrix._version, matrix.device, matrix.dtype,
               torch.is_inference_mode_enabled())  # fmt: skip
        if self._dense_pe is None or self._dense_pe[0] != key:
            self._dense_pe = (key, self.prompt_encoder.get_dense_pe())
        return self._dense_pe[1]

    @property
    def input_side(self) -> int:
        return int(self.prompt_encoder.input_image_size[0])

    def forward(
        self,
        image_embeddings: Tensor,
        points: tuple[Tensor, Tensor] | None,
        boxes: Tensor | None = None,
        mask_inputs: Tensor | None = None,
        mask_decoder=None,
    ) -> tuple[Tensor, Tensor]:
        """Single-mask logits for B prompts.

        Parameters
        ----------
        image_embeddings : Tensor
            (B, C, h, w) one per prompt, or (1, C, h, w) shared.
        points : tuple of Tensor or None
            ((B, N, 2) float (x, y) model pixels, (B, N) int labels 1/0/-1 padding).
        boxes : Tensor, optional
            (B, 4) float (x0, y0, x1, y1) model pixels.
        mask_inputs : Tensor, optional
            (B, 1, 4h, 4w) previous low-res logits.
        mask_decoder : callable, optional
            Runs ``self.mask_decoder``'s computation, called as it is (the engine's
            fast backend, :mod:`napari_medsam.model.backends.openvino_decoder`);
            default the module itself.

        Returns
        -------
        logits : Tensor
            (B, 1, 4h, 4w) low-res logits.
        iou : Tensor
            (B, 1) predicted IoU.
        """
        decode = mask_decoder or self.mask_decoder
        if not self.config.first_click_multimask:
            return self._decode(image_embeddings, points, boxes, mask_inputs, False, decode)
        logits_all, iou_all = self._decode(image_embeddings, points, boxes, mask_inputs, None,
                                           decode)  # fmt: skip
        return choose_outputs(logits_all, iou_all, single_click_rows(points, boxes, mask_inputs))

    def forward_all(
        self,
        image_embeddings: Tensor,
        points: tuple[Tensor, Tensor] | None,
        boxes: Tensor | None = None,
        mask_inputs: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """All 4 outputs, (B, 4, 4h, 4w) logits and (B, 4) IoU: single one first (training)."""
        return self._decode(image_embeddings, points, boxes, mask_inputs, None, self.mask_decoder)

    def _decode(self, image_embeddings, points, boxes, mask_inputs, multimask, decode):
        sparse, dense = self.prompt_encoder(points=points, boxes=boxes, masks=mask_inputs)
        if self.click_stem is not None:
            side = self.input_side
            coords, labels = points if points is not None else (None, None)
            maps = disk_maps(coords, labels, side)
            b = sparse.shape[0]
            if maps.shape[0] != b:
                maps = maps.expand(b, -1, -1, -1)
            if mask_inputs is not None:
                prev = nn.functional.interpolate(
                    mask_inputs.float(), size=(side, side), mode="bilinear", align_corners=False
                )
                prev = (prev > 0).float()
            else:
                prev = maps.new_zeros((b, 1, side, side))
            dense = dense + self.click_stem(torch.cat([maps.to(dense.device), prev], 1)).to(
                dense.dtype
            )
        return decode(
            image_embeddings=image_embeddings,
            image_pe=self.dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask,
        )
