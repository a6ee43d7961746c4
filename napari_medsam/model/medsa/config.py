"""The typed Med-SA configuration, its error type and the Med-SA key naming rule.

Every Med-SA module is registered under an attribute whose name starts with
``medsa_`` (``medsa_space_adapter``, ``medsa_click_embed`` ...), while the backbone's
modules keep their original names. So a state-dict key belongs to Med-SA exactly
when one of its dotted components starts with ``medsa_`` (:func:`is_medsa_key`),
and the backbone's keys are those of the plain SAM / LiteMedSAM checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass

from napari_medsam.model.checkpoints import CheckpointError

MEDSA_PREFIX = "medsa_"


class MedSAError(CheckpointError):
    """A Med-SA model or checkpoint that cannot be built, loaded or used as asked.

    A :class:`~napari_medsam.model.checkpoints.CheckpointError` (so a ``ValueError``):
    callers of ``load_engine`` that report checkpoint errors report these too.
    """


@dataclass(frozen=True)
class MedSAConfig:
    """What a Med-SA model adds to its backbone.

    Attributes
    ----------
    backbone : str
        Backbone name in :data:`napari_medsam.model.medsa.build.BACKBONES`
        ("litemedsam", "sam_vit_b", "sam_vit_l", "sam_vit_h", "tiny_sam", "tiny_tinyvit").
    adapter_ratio : float
        Hidden width of every adapter as a fraction of the width it adapts (0.25).
    mlp_scale : float
        Scale ``s`` of the MLP adapter that runs parallel to each block's MLP (0.5).
    sd_trans : bool
        Space-Depth Transpose: a depth-attention branch in every encoder attention block.
    hyp_adapter : bool
        The decoder's first adapter is the Hyper-Prompting Adapter (else a plain adapter).
    click_embed : bool
        SimpleClick click maps are patch-embedded and added to the image tokens.
    depth : int
        Largest number of slices D a slab may have (sizes the depth position bias);
        the engine's slab size for 3D inference.
    """

    backbone: str = "litemedsam"
    adapter_ratio: float = 0.25
    mlp_scale: float = 0.5
    sd_trans: bool = True
    hyp_adapter: bool = True
    click_embed: bool = True
    depth: int = 8

    def __post_init__(self) -> None:
        for name, kinds in _FIELD_TYPES.items():
            value = getattr(self, name)
            # bool is an int subclass: a flag is never a number, a number never a flag
            if not isinstance(value, kinds) or (bool not in kinds and isinstance(value, bool)):
                raise MedSAError(
                    f"config value {name} must be {_KIND_NAMES[kinds]}, got {value!r} "
                    f"({type(value).__name__})"
                )
        if not 0 < self.adapter_ratio <= 4:
            raise MedSAError(f"adapter_ratio must be in (0, 4], got {self.adapter_ratio}")
        if self.depth < 1:
            raise MedSAError(f"depth must be >= 1, got {self.depth}")


_FIELD_TYPES = {
    "backbone": (str,),
    "adapter_ratio": (int, float),
    "mlp_scale": (int, float),
    "sd_trans": (bool,),
    "hyp_adapter": (bool,),
    "click_embed": (bool,),
    "depth": (int,),
}
_KIND_NAMES = {(str,): "a string", (int, float): "a number", (bool,): "true or false",
               (int,): "an integer"}  # fmt: skip


def is_medsa_key(key: str) -> bool:
    """True when a parameter / state-dict key belongs to a Med-SA part (not the backbone)."""
    return any(part.startswith(MEDSA_PREFIX) for part in key.split("."))
