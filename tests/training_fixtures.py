"""Fixtures shared by the fine-tuning tests: one torch thread, a tiny SAM backbone file, a phantom.

Import them into a test module (``from training_fixtures import ...``) to use them.
"""

from __future__ import annotations

import pytest
import torch

from napari_medsam.io.phantom import make_phantom
from napari_medsam.model.medsa.build import build_medsa
from napari_medsam.model.medsa.checkpoint import backbone_part
from napari_medsam.training.config import FinetuneConfig
from napari_medsam.training.data import make_volume


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: the tiny model gains nothing from two, and the CPU is shared."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def backbone_path(tmp_path_factory):
    torch.manual_seed(0)
    model = build_medsa("tiny_sam")
    with torch.no_grad():
        for mlp in model.mask_decoder.output_hypernetworks_mlps:
            mlp.layers[-1].weight.mul_(30.0)
            mlp.layers[-1].bias.mul_(30.0)
    path = tmp_path_factory.mktemp("backbone") / "tiny_sam_backbone.pt"
    torch.save(backbone_part(model), path)
    return str(path)


@pytest.fixture(scope="module")
def phantom_volume():
    ph = make_phantom((8, 64, 64), (4.0, 1.0, 1.0), seed=0)
    return make_volume("phantom", ph.image_zyx, ph.labels_zyx, ph.spacing_zyx_mm)


def tiny_finetune_config(out_dir, backbone_path, **kw) -> FinetuneConfig:
    """A fine-tuning config on the tiny backbone and the phantom's labels 1, 2, 6 (``kw`` override).

    Training data come as ``volumes=`` to ``finetune``; the checkpoint goes to
    ``out_dir / "medsa.pt"``.
    """
    base = dict(
        data=(("unused.nii.gz", "unused.nii.gz"),),
        out=str(out_dir / "medsa.pt"),
        backbone="tiny_sam",
        backbone_checkpoint=backbone_path,
        batch_size=4,
        lr=1e-2,
        device="cpu",
        min_area=20,
        labels=(1, 2, 6),
        val_fraction=0.0,
    )
    base.update(kw)
    return FinetuneConfig(**base)
