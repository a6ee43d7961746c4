"""The registry of model builders: a plain dict from a config's family to its builder.

Like segment-anything's ``sam_model_registry``, but keyed by the frozen config
dataclass of :mod:`napari_medsam.model.configs`: ``build_model(config)`` looks up
``BUILDERS[config.family]`` and returns an ``nn.Module`` with ``image_encoder``,
``prompt_encoder`` and ``mask_decoder`` attributes (the SAM interface the engine
calls). Builders create random weights; the caller loads a state dict. The
configurations are re-exported here for the callers that import them from this module.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from napari_medsam.model.configs import (  # noqa: F401 - re-exported
    KNOWN_CONFIGS,
    LITEMEDSAM,
    SAM_PIXEL_MEAN,
    SAM_PIXEL_STD,
    SAM_VIT_B,
    SAM_VIT_H,
    SAM_VIT_L,
    InputSpec,
    LiteMedSamConfig,
    ModelConfig,
    SamViTConfig,
)
from napari_medsam.model.litemedsam import build_litemedsam
from napari_medsam.model.sam import build_sam_vit

Builder = Callable[[ModelConfig], nn.Module]

#: family -> ``builder(config) -> nn.Module``.
BUILDERS: dict[str, Builder] = {
    "litemedsam": build_litemedsam,
    "sam": build_sam_vit,
}


def build_model(config: ModelConfig) -> nn.Module:
    """Build a randomly initialised model for ``config`` (eval mode, CPU).

    Raises
    ------
    KeyError
        When no builder exists for ``config.family``.
    """
    try:
        builder = BUILDERS[config.family]
    except KeyError:
        raise KeyError(
            f"no model builder for family {config.family!r}; known: {sorted(BUILDERS)}"
        ) from None
    return builder(config).eval()
