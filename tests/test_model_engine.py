"""The engine: preprocessing, byte-bounded embedding cache, prompts, loading, devices."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from napari_medsam.model.checkpoints import CheckpointError
from napari_medsam.model.device import choose_device
from napari_medsam.model.embedding_cache import EmbeddingCache
from napari_medsam.model.engine import SamEngine, load_engine
from napari_medsam.model.preprocess import preprocess_slices
from napari_medsam.model.protocol import Engine
from napari_medsam.model.registry import LITEMEDSAM, SAM_VIT_B, ModelConfig, build_model
from napari_medsam.model.sam import tiny_sam_config
from napari_medsam.types import SlicePrediction, SlicePrompt

EMBED_BYTES = 32 * 64 * 64 * 4  # tiny SAM embedding: (1, 32, 64, 64) float32


@pytest.fixture(scope="module")
def tiny_engine():
    torch.manual_seed(0)
    cfg = tiny_sam_config()
    return SamEngine(build_model(cfg), cfg, device="cpu", cache_bytes=2 * EMBED_BYTES + 10)


def _slice(h=40, w=70, seed=0):
    return np.random.default_rng(seed).random((h, w), dtype=np.float32)


# ---- preprocessing -------------------------------------------------------------------


def test_preprocess_litemedsam_stretches_to_the_square_input():
    # LiteMedSAM is fed as its own package feeds it: both axes resized to 256, no padding
    image = np.zeros((50, 100), np.float32)
    image[:25] = 1.0  # top half bright
    batch = preprocess_slices([image, np.ones((256, 128), np.float32)], LITEMEDSAM.input_spec)
    assert batch.shape == (2, 3, 256, 256) and batch.dtype == torch.float32
    assert batch[0, :, :120].min() == 1 and batch[0, :, 136:].max() == 0  # no normalisation
    assert batch[1].min() == 1  # (256, 128) fills the whole square: no padding


def test_preprocess_longest_side_pads_bottom_and_right():
    spec = replace(LITEMEDSAM.input_spec, resize="longest_side")
    batch = preprocess_slices([np.full((50, 100), 0.5, np.float32)], spec)
    torch.testing.assert_close(batch[0, :, :128, :], torch.full((3, 128, 256), 0.5))
    assert batch[0, :, 128:].abs().max() == 0


def test_preprocess_sam_scales_and_normalises_before_padding():
    batch = preprocess_slices([np.ones((64, 32), np.float32)], SAM_VIT_B.input_spec)
    assert batch.shape == (1, 3, 1024, 1024)
    expected = (255.0 - 123.675) / 58.395
    assert batch[0, 0, 10, 10].item() == pytest.approx(expected, rel=1e-5)
    assert batch[0, :, :, 512:].abs().max() == 0


# ---- cache ---------------------------------------------------------------------------


def test_cache_is_lru_and_bounded_in_bytes():
    cache = EmbeddingCache(max_bytes=3 * 400)
    t = [torch.zeros(100) for _ in range(4)]  # 400 bytes each
    for i in range(3):
        cache.put(i, (5, 5), t[i])
    assert cache.get(0, (5, 5)) is t[0]  # 0 becomes most recent
    cache.put(3, (5, 5), t[3])  # evicts 1, the least recently used
    assert 1 not in cache and 0 in cache and 2 in cache and 3 in cache
    info = cache.info()
    assert info.nbytes == 1200 and info.entries == 3 and info.hits == 1
    assert cache.get(0, (6, 5)) is None  # same key, other slice shape: a miss
    cache.put("big", (5, 5), torch.zeros(1000))  # larger than the whole cache: not kept
    assert "big" not in cache and cache.info().nbytes == 1200
    cache.clear()
    assert cache.info().entries == 0 and cache.info().nbytes == 0


def test_engine_cache_hits_and_byte_limit(tiny_engine):
    tiny_engine.clear_cache()
    start = tiny_engine.cache_info()
    image = _slice()
    tiny_engine.embed(image, "a")
    tiny_engine.embed(image, "a")
    tiny_engine.predict(image, SlicePrompt(box_yxyx=np.array([5, 5, 30, 60.0])), "a")
    info = tiny_engine.cache_info()
    assert info.hits - start.hits == 2 and info.misses - start.misses == 1
    assert info.nbytes == EMBED_BYTES
    tiny_engine.embed_batch([_slice(seed=1), _slice(30, 30, seed=2)], ["b", "c"])
    info = tiny_engine.cache_info()
    assert info.entries == 2 and info.nbytes == 2 * EMBED_BYTES  # "a" evicted by the byte bound
    assert "a" not in tiny_engine.cache and "c" in tiny_engine.cache


def test_embed_batch_matches_single_embedding(tiny_engine):
    tiny_engine.clear_cache()
    images = [_slice(seed=3), _slice(50, 20, seed=4)]
    tiny_engine.embed_batch(images, ["x", "y"], batch_size=2)
    batched = tiny_engine.cache.get("y", (50, 20)).clone()
    tiny_engine.clear_cache()
    tiny_engine.embed(images[1], "y")
    torch.testing.assert_close(tiny_engine.cache.get("y", (50, 20)), batched, atol=1e-5, rtol=1e-4)


# ---- prediction ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "prompt",
    [
        SlicePrompt(box_yxyx=np.array([5, 5, 30, 60.0])),
        SlicePrompt(points_yx=np.array([[10.0, 20.0]]), point_labels=np.array([1])),
        SlicePrompt(points_yx=np.array([[10.0, 20], [30, 5]]), point_labels=np.array([1, 0])),
        SlicePrompt(
            points_yx=np.array([[10.0, 20.0]]),
            point_labels=np.array([1]),
            box_yxyx=np.array([5, 5, 30, 60.0]),
            prev_logits_lowres=np.zeros((256, 256), np.float32),
        ),
    ],
)
def test_tiny_engine_prediction_shapes(tiny_engine, prompt):
    image = _slice()
    pred = tiny_engine.predict(image, prompt, cache_key="shapes")
    assert isinstance(pred, SlicePrediction)
    assert pred.mask_yx.shape == (40, 70) and pred.mask_yx.dtype == bool
    assert pred.logits_lowres.shape == (256, 256) and pred.logits_lowres.dtype == np.float32
    assert isinstance(pred.score, float)
    again = tiny_engine.predict(image, prompt, cache_key="shapes")
    assert not np.shares_memory(pred.logits_lowres, again.logits_lowres)
    np.testing.assert_allclose(pred.logits_lowres, again.logits_lowres, atol=1e-5)


def test_tiny_engine_rejects_bad_prompts(tiny_engine):
    with pytest.raises(ValueError, match="empty prompt"):
        tiny_engine.predict(_slice(), SlicePrompt())
    with pytest.raises(ValueError, match="prev_logits_lowres"):
        tiny_engine.predict(
            _slice(),
            SlicePrompt(box_yxyx=np.array([1, 1, 5, 5.0]), prev_logits_lowres=np.zeros((64, 64))),
        )
    with pytest.raises(ValueError, match="2-D"):
        tiny_engine.embed(np.zeros((2, 3, 4), np.float32))


def test_engine_satisfies_protocol(tiny_engine):
    assert isinstance(tiny_engine, Engine)
    assert tiny_engine.image_size == 256 and tiny_engine.lowres_side == 256


# ---- loading -------------------------------------------------------------------------


def test_load_engine_from_tiny_checkpoint_and_strict_errors(tmp_path):
    cfg = tiny_sam_config()
    state = build_model(cfg).state_dict()
    path = tmp_path / "tiny.pth"
    torch.save({"model": state}, path)
    engine = load_engine(path, device="cpu")
    assert engine.name.startswith("SAM custom") and engine.image_size == 256
    pred = engine.predict(_slice(), SlicePrompt(box_yxyx=np.array([2, 2, 20, 20.0])))
    assert pred.mask_yx.shape == (40, 70)

    broken = dict(state)
    broken.pop("mask_decoder.iou_token.weight")
    broken["mask_decoder.extra.weight"] = torch.zeros(3)
    torch.save(broken, tmp_path / "broken.pth")
    with pytest.raises(CheckpointError, match=r"missing keys: mask_decoder\.iou_token\.weight"):
        load_engine(tmp_path / "broken.pth", device="cpu")
    with pytest.raises(CheckpointError, match="unexpected keys: mask_decoder.extra.weight"):
        load_engine(tmp_path / "broken.pth", device="cpu")


def test_build_model_unknown_family():
    with pytest.raises(KeyError, match="no model builder"):
        build_model(ModelConfig(family="nope", name="x"))


def test_choose_device():
    assert choose_device("cpu") == torch.device("cpu")
    assert choose_device(None).type in ("cpu", "cuda", "mps")
    with pytest.raises(ValueError, match="unknown device"):
        choose_device("tpu")
    if not torch.cuda.is_available():
        assert choose_device("auto").type in ("cpu", "mps")
        with pytest.raises(ValueError, match="no CUDA"):
            choose_device("cuda")


# ---- the real LiteMedSAM (bundled weights) ---------------------------------------------


def test_litemedsam_box_segments_synthetic_organ():
    """A bright ellipse in soft tissue, boxed tightly, comes back as the ellipse (< 10 s)."""
    yy, xx = np.mgrid[:96, :128]
    body = ((yy - 48) / 44) ** 2 + ((xx - 64) / 60) ** 2 <= 1
    organ = ((yy - 40) / 14) ** 2 + ((xx - 50) / 20) ** 2 <= 1
    image = np.where(body, 0.45, 0.0) + np.where(organ, 0.3, 0.0)
    image = (image + np.random.default_rng(0).normal(0, 0.02, image.shape)).clip(0, 1)
    engine = load_engine(device="cpu")
    assert engine.name.startswith("LiteMedSAM") and engine.image_size == 256
    ys, xs = np.nonzero(organ)
    box = np.array([ys.min(), xs.min(), ys.max(), xs.max()], np.float32)
    pred = engine.predict(image.astype(np.float32), SlicePrompt(box_yxyx=box), cache_key=0)
    dice = 2 * (pred.mask_yx & organ).sum() / (pred.mask_yx.sum() + organ.sum())
    assert dice > 0.85, dice
    assert pred.score > 0.5


def test_a_single_click_uses_the_multimask_output_only_where_it_was_trained():
    from napari_medsam.model.prompt_inputs import prompt_tensors
    from napari_medsam.model.registry import LITEMEDSAM, SAM_VIT_B
    from napari_medsam.types import SlicePrompt

    one_click = SlicePrompt(points_yx=np.array([[10.0, 12.0]]), point_labels=np.array([1]))
    two_clicks = SlicePrompt(
        points_yx=np.array([[10.0, 12.0], [3, 4]]), point_labels=np.array([1, 0])
    )
    assert SAM_VIT_B.input_spec.multimask_single_click
    assert not LITEMEDSAM.input_spec.multimask_single_click  # box-trained, one output
    for spec, expected in ((SAM_VIT_B.input_spec, True), (LITEMEDSAM.input_spec, False)):
        tensors = prompt_tensors(
            one_click, (64, 64), spec.side, "cpu", spec.resize, None, spec.multimask_single_click
        )
        assert tensors.multimask is expected
        tensors = prompt_tensors(
            two_clicks, (64, 64), spec.side, "cpu", spec.resize, None, spec.multimask_single_click
        )
        assert tensors.multimask is False
