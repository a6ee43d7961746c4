"""The Med-SA engine: a converted LiteMedSAM Med-SA reproduces LiteMedSAM; clicks; slabs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_medsam.model.engine import load_engine
from napari_medsam.model.medsa.build import backbone_spec, build_medsa
from napari_medsam.model.medsa.checkpoint import save_medsa
from napari_medsam.model.medsa.config import MedSAConfig, is_medsa_key
from napari_medsam.model.medsa.engine import MedSAEngine
from napari_medsam.model.protocol import Engine
from napari_medsam.types import SlicePrompt


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _slices(n=3, hw=(96, 120), seed=0):
    """Windowed [0, 1] slices with a bright ellipse that moves a little from slice to slice."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: hw[0], : hw[1]]
    out = []
    for z in range(n):
        cy, cx = 45 + 3 * z, 60 - 2 * z
        inside = ((yy - cy) / 22) ** 2 + ((xx - cx) / 30) ** 2 <= 1
        image = 0.25 + 0.5 * inside + rng.normal(0, 0.03, hw)
        out.append(np.clip(image, 0, 1).astype(np.float32))
    return out


BOX = np.array([20.0, 25.0, 75.0, 95.0])  # y0, x0, y1, x1
CLICKS = SlicePrompt(
    points_yx=np.array([[47.0, 60.0], [10.0, 10.0]], np.float32),
    point_labels=np.array([1, 0]),
)


@pytest.mark.slow
def test_converted_litemedsam_medsa_reproduces_litemedsam(tmp_path):
    from napari_medsam.cli import main

    path = tmp_path / "medsa_lite.pt"
    assert main(["convert", "--backbone", "litemedsam", "--parts-only", "--out", str(path)]) == 0
    medsa = load_engine(path, device="cpu")
    plain = load_engine("litemedsam", device="cpu")
    assert isinstance(medsa, MedSAEngine) and isinstance(medsa, Engine)
    assert not medsa.clicks_change_embedding
    for z, image in enumerate(_slices(2)):
        for prompt in (SlicePrompt(box_yxyx=BOX), CLICKS):
            a = plain.predict(image, prompt, cache_key=("v", z))
            b = medsa.predict(image, prompt, cache_key=("v", z))
            assert np.array_equal(a.mask_yx, b.mask_yx)
            assert a.mask_yx.any()
            np.testing.assert_allclose(a.logits_lowres, b.logits_lowres, atol=1e-5)
            assert abs(a.score - b.score) < 1e-5


def _tiny_engine(name="tiny_tinyvit", **config):
    torch.manual_seed(0)
    weights = backbone_spec(name).builder().state_dict()
    model = build_medsa(name, weights, MedSAConfig(backbone=name, depth=4, **config))
    return model, MedSAEngine(model, device="cpu")


def _set(model, part, seed=1):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for key, param in model.named_parameters():
            if is_medsa_key(key) and part in key:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.3)


def test_trained_click_embedding_feeds_clicks_to_the_encoder():
    model, engine = _tiny_engine()
    image = _slices(1)[0]
    fresh = engine.predict(image, CLICKS, cache_key="s")
    _set(model, "click_embed")
    trained = MedSAEngine(model, device="cpu")
    assert trained.clicks_change_embedding
    with_clicks = trained.predict(image, CLICKS, cache_key="s")
    assert not np.allclose(fresh.logits_lowres, with_clicks.logits_lowres, atol=1e-4)
    # a box alone makes no click maps: the cached click-free embedding is used
    box = SlicePrompt(box_yxyx=BOX)
    np.testing.assert_array_equal(
        engine.predict(image, box, cache_key="s").logits_lowres,
        trained.predict(image, box, cache_key="s").logits_lowres,
    )
    # the previous mask is a click-map channel too
    again = SlicePrompt(
        points_yx=CLICKS.points_yx,
        point_labels=CLICKS.point_labels,
        prev_logits_lowres=with_clicks.logits_lowres,
    )
    maps = trained.click_maps_tensor([image], [again])
    assert maps.shape == (1, 3, 128, 128) and maps[0, 2].any() and maps[0, 0].any()


def test_predict_stack_fresh_equals_slice_by_slice_and_sd_trans_links_slices():
    model, engine = _tiny_engine()
    images = _slices(3)
    prompts = [SlicePrompt(box_yxyx=BOX), CLICKS, SlicePrompt()]
    stack = engine.predict_stack(images, prompts, cache_key=("stack", 0))
    assert stack[2] is None
    for image, prompt, pred in zip(images[:2], prompts[:2], stack[:2], strict=True):
        single = engine.predict(image, prompt)
        np.testing.assert_allclose(single.logits_lowres, pred.logits_lowres, atol=1e-5)
        assert np.array_equal(single.mask_yx, pred.mask_yx)
    assert engine.cache_info().entries >= 1  # the slab is cached as one entry

    _set(model, "depth_adapter")
    trained = MedSAEngine(model, device="cpu")
    changed = [images[0], images[1], np.flipud(images[2]).copy()]
    a = trained.predict_stack(images, prompts)[0]
    b = trained.predict_stack(changed, prompts)[0]
    assert not np.allclose(a.logits_lowres, b.logits_lowres, atol=1e-5)
    with pytest.raises(ValueError, match="depth"):
        trained.predict_stack(_slices(5), [SlicePrompt(box_yxyx=BOX)] * 5)


def test_full_checkpoint_loads_through_load_engine(tmp_path):
    model, _ = _tiny_engine("tiny_sam")
    _set(model, "mlp_adapter")
    path = save_medsa(model, tmp_path / "tiny.pt", full=True)
    engine = load_engine(path, device="cpu")
    assert isinstance(engine, MedSAEngine) and engine.image_size == 64
    pred = engine.predict(_slices(1)[0], SlicePrompt(box_yxyx=BOX))
    assert pred.mask_yx.shape == (96, 120) and pred.logits_lowres.shape == (32, 32)


def test_trained_medsa_parts_take_clicks():
    """Issue 14: a box-less click is refused only for a box-only model (capability flag)."""
    from napari_medsam.model.medsa.build import build_medsa
    from napari_medsam.model.medsa.engine import MedSAEngine, medsa_parts_trained

    model = build_medsa("litemedsam")
    fresh = MedSAEngine(model, device="cpu")
    assert not medsa_parts_trained(model) and fresh.needs_box  # a fresh Med-SA is LiteMedSAM
    up = next(p for k, p in model.named_parameters() if "medsa_prompt_adapter.up.weight" in k)
    with torch.no_grad():
        up[0, 0] = 0.01  # what fine-tuning (even decoder-only) changes
    assert medsa_parts_trained(model) and not MedSAEngine(model, device="cpu").needs_box
