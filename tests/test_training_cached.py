# ruff: noqa: F811  (pytest fixtures imported from training_fixtures)
"""Decoder-only fine-tuning on cached image embeddings (``parts="decoder"``).

The tiny backbone is random (``tiny_sam``: 64 px SAM ViT) with its hypernetwork
output layers scaled x30 so the logits span a usable range (see
tests/test_training_loop.py).
"""

import numpy as np
import pytest
import torch
from training_fixtures import (  # noqa: F401
    backbone_path,
    one_thread,
    phantom_volume,
    tiny_finetune_config,
)

from napari_medsam.model.medsa.checkpoint import load_medsa
from napari_medsam.model.medsa.config import is_medsa_key
from napari_medsam.model.medsa.encoders import MedSAViTEncoder
from napari_medsam.model.medsa.engine import MedSAEngine
from napari_medsam.model.prompt_inputs import prompt_tensors
from napari_medsam.training.cached import cache_embeddings, is_decoder_medsa_key
from napari_medsam.training.forward import PromptedMedSA, click_maps_batch, has_click_input
from napari_medsam.training.loop import build_model, finetune, training_set_for
from napari_medsam.types import SlicePrompt

CPU = torch.device("cpu")


@pytest.fixture
def encoded_slices(monkeypatch):
    """Counts the slices that go through the (ViT) image encoder's patch embedding."""
    counted = []
    original = MedSAViTEncoder.embed_patches

    def counting(self, images):
        counted.append(int(images.shape[0]))
        return original(self, images)

    monkeypatch.setattr(MedSAViTEncoder, "embed_patches", counting)
    return counted


def _config(tmp_path, backbone_path, **kw):
    return tiny_finetune_config(tmp_path, backbone_path, **{"parts": "decoder", **kw})


def test_decoder_mode_trains_only_the_decoder_parts_on_embeddings_computed_once(
    tmp_path, backbone_path, phantom_volume, encoded_slices
):
    config = _config(tmp_path, backbone_path, steps=60)
    model = build_model(config)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(is_decoder_medsa_key(n) for n in trainable)
    assert {n for n in model.state_dict() if is_decoder_medsa_key(n)} == trainable

    history = finetune(config, volumes=[phantom_volume], progress=False)
    # every training slice went through the encoder exactly once, before the first step
    assert history["n_embedded_slices"] == history["n_train_slices"] > 0
    assert sum(encoded_slices) == history["n_train_slices"]
    loss = history["loss"]
    assert len(loss) == 60
    assert np.mean(loss[-10:]) < np.mean(loss[:10]) - 0.05

    trained = load_medsa(config.out).state_dict()  # the written checkpoint, as the app loads it
    fresh = build_model(config).state_dict()
    changed = {k for k in trained if not torch.equal(trained[k], fresh[k])}
    assert changed and all(is_decoder_medsa_key(k) for k in changed)
    for key, value in trained.items():  # the encoder's zero-initialised parts are still zero
        if is_medsa_key(key) and key.startswith("image_encoder.") and ".up." in key:
            assert not value.any(), key


def test_decoder_checkpoint_keeps_clicks_on_the_engines_cached_embedding(
    tmp_path, backbone_path, phantom_volume, encoded_slices
):
    config = _config(tmp_path, backbone_path, steps=3)
    finetune(config, volumes=[phantom_volume], progress=False)
    engine = MedSAEngine(load_medsa(config.out), device="cpu")
    assert not engine.clicks_change_embedding
    encoded_slices.clear()
    z = int(np.argmax((phantom_volume.labels_zyx == 1).sum(axis=(1, 2))))
    image = phantom_volume.window.apply(phantom_volume.image_zyx[z])
    yx = np.argwhere(phantom_volume.labels_zyx[z] == 1)[0]
    prompt = SlicePrompt(points_yx=np.array([yx], np.float32), point_labels=np.array([1]))
    first = engine.predict(image, prompt, cache_key=("phantom", z))
    again = SlicePrompt(
        points_yx=np.array([yx, yx + 2], np.float32),
        point_labels=np.array([1, 0]),
        prev_logits_lowres=first.logits_lowres,
    )
    engine.predict(image, again, cache_key=("phantom", z))
    engine.predict(image, again, cache_key=("phantom", z))
    assert encoded_slices == [1]  # one encoder pass for three clicked predictions
    assert engine.cache_info().hits == 2


def test_forward_on_cached_embeddings_equals_the_full_forward(
    tmp_path, backbone_path, phantom_volume
):
    """With the encoder's parts at zero, decoding a cached embedding is the full forward."""
    config = _config(tmp_path, backbone_path, steps=1)
    model = build_model(config)
    with torch.no_grad():  # give the decoder's parts some weight, so they matter
        for name, param in model.named_parameters():
            if is_decoder_medsa_key(name):
                param.normal_(0.0, 0.05)
    data = training_set_for(config, model, [phantom_volume])
    cases = data.cases[:3]
    images = torch.stack([data.image(c) for c in cases])
    hws = [data.hw(c) for c in cases]
    side = data.spec.side
    prompts = [
        SlicePrompt(
            points_yx=np.argwhere(data.gt_yx(c))[:2].astype(np.float32),
            point_labels=np.array([1, 0]),
        )
        for c in cases
    ]
    maps = torch.as_tensor(click_maps_batch(prompts, hws, side))
    use = torch.tensor([float(has_click_input(p)) for p in prompts])
    tensors = [prompt_tensors(p, hw, side, CPU) for p, hw in zip(prompts, hws, strict=True)]
    with torch.no_grad():
        full, _ = PromptedMedSA(model)(images, maps, use, tensors)
        cache_embeddings(model, data, CPU, batch_size=2)
        embeddings = torch.stack([data.image(c) for c in cases])
        cached, _ = PromptedMedSA(model, from_embeddings=True)(embeddings, None, use, tensors)
    assert data.embedded and embeddings.shape[1:] == (
        int(model.prompt_encoder.embed_dim),
        *model.prompt_encoder.image_embedding_size,
    )
    torch.testing.assert_close(cached, full, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="already"):
        cache_embeddings(model, data, CPU)


def test_unknown_parts_are_refused(tmp_path, backbone_path):
    with pytest.raises(ValueError, match="parts"):
        _config(tmp_path, backbone_path, parts="encoder")
