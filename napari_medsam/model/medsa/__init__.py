"""Med-SA (Medical SAM Adapter, arXiv 2304.12620) with SimpleClick click maps.

Adapters in every image-encoder attention block (space, MLP, and the
Space-Depth Transpose depth branch), three adapters per mask-decoder block (one
the Hyper-Prompting Adapter) and a click-map patch embedding, on a frozen SAM ViT
or LiteMedSAM (TinyViT) backbone. Every Med-SA part starts at zero: a fresh
model computes exactly what its backbone computes.
"""

from napari_medsam.model.medsa.build import (
    BACKBONES,
    build_medsa,
    count_parameters,
    freeze_backbone,
)
from napari_medsam.model.medsa.checkpoint import load_medsa, save_medsa
from napari_medsam.model.medsa.config import MedSAConfig, MedSAError, is_medsa_key
from napari_medsam.model.medsa.engine import MedSAEngine, load_medsa_engine
from napari_medsam.model.medsa.model import MedSAModel

__all__ = [
    "BACKBONES",
    "MedSAConfig",
    "MedSAEngine",
    "MedSAError",
    "MedSAModel",
    "build_medsa",
    "count_parameters",
    "freeze_backbone",
    "is_medsa_key",
    "load_medsa",
    "load_medsa_engine",
    "save_medsa",
]
