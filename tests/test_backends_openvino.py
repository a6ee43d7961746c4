"""The OpenVINO backend agrees with torch: tiny models exactly (fp32), LiteMedSAM's masks (bf16).

Skipped where OpenVINO is not installed. The converted-model cache is a fresh
temporary folder, so every conversion path runs.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("openvino")

from napari_medsam.model.backends import make_image_encoder  # noqa: E402
from napari_medsam.model.backends.openvino_encoder import Signature  # noqa: E402
from napari_medsam.model.engine import SamEngine  # noqa: E402
from napari_medsam.model.medsa.build import TINY_SAM, backbone_spec, build_medsa  # noqa: E402
from napari_medsam.model.medsa.config import MedSAConfig, is_medsa_key  # noqa: E402
from napari_medsam.model.medsa.engine import MedSAEngine  # noqa: E402
from napari_medsam.model.registry import build_model  # noqa: E402
from napari_medsam.types import SlicePrompt  # noqa: E402


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("ov-cache")


@pytest.fixture(autouse=True)
def _cache(cache_dir, monkeypatch):
    monkeypatch.setenv("NAPARI_MEDSAM_CACHE_DIR", str(cache_dir))
    threads = torch.get_num_threads()
    torch.set_num_threads(min(2, threads))
    yield
    torch.set_num_threads(threads)


def _cosine(a, b) -> float:
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _torch(encoder, x, maps=None, depth=1):
    with torch.inference_mode():
        if hasattr(encoder, "medsa_click_embed"):
            return encoder(torch.as_tensor(x), maps, depth).numpy()
        return encoder(torch.as_tensor(x)).numpy()


def test_tiny_sam_fp32_matches_torch_and_bf16_is_close():
    torch.manual_seed(0)
    model = build_model(TINY_SAM).eval()
    x = np.random.default_rng(0).normal(size=(3, 3, 64, 64)).astype(np.float32)
    ref = _torch(model.image_encoder, x)
    fp32 = make_image_encoder(model, backend="openvino", precision="fp32")
    assert (fp32.backend, fp32.precision) == ("openvino", "fp32")
    out = fp32(x)
    assert isinstance(out, np.ndarray) and out.shape == ref.shape == (3, 32, 8, 8)
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
    as_torch = fp32(torch.as_tensor(x[:1]))
    assert isinstance(as_torch, torch.Tensor) and as_torch.dtype == torch.float32
    bf16 = make_image_encoder(model, backend="openvino", precision="bf16")
    assert _cosine(bf16(x), ref) > 0.99


def test_second_encoder_loads_from_the_cache_and_new_weights_convert_again():
    torch.manual_seed(7)  # weights no other test converts
    model = build_model(TINY_SAM).eval()
    first = make_image_encoder(model, backend="openvino", precision="fp32")
    assert "convert_s" in first.backend_impl.timings
    again = make_image_encoder(model, backend="openvino", precision="fp32")
    assert "convert_s" not in again.backend_impl.timings  # read from the cache
    with torch.no_grad():
        model.image_encoder.neck[0].weight.mul_(2.0)
    changed = make_image_encoder(model, backend="openvino", precision="fp32")
    assert "convert_s" in changed.backend_impl.timings
    x = np.random.default_rng(1).random((1, 3, 64, 64), dtype=np.float32)
    np.testing.assert_allclose(changed(x), _torch(model.image_encoder, x), rtol=1e-4, atol=1e-4)


def _tiny_medsa(**config):
    torch.manual_seed(0)
    weights = backbone_spec("tiny_tinyvit").builder().state_dict()
    model = build_medsa("tiny_tinyvit", weights, MedSAConfig(backbone="tiny_tinyvit", **config))
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():  # "trained" Med-SA parts: adapters, depth attention, click embedding
        for key, param in model.named_parameters():
            if is_medsa_key(key):
                param.copy_(torch.randn(param.shape, generator=gen) * 0.2)
    return model.eval()


def test_medsa_click_maps_and_slabs_match_torch():
    model = _tiny_medsa(depth=4)
    encoder = model.image_encoder
    rng = np.random.default_rng(2)
    x = rng.random((4, 3, 128, 128), dtype=np.float32)
    maps = torch.as_tensor((rng.random((4, 3, 128, 128)) > 0.95).astype(np.float32))
    encode = make_image_encoder(model, backend="openvino", precision="fp32")
    for click_maps, depth in ((None, 1), (maps, 4)):
        ref = _torch(encoder, x, click_maps, depth)
        out = encode(x, click_maps, depth)
        np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
    assert encode.backend_impl.ready(Signature(4, 4, True))


def test_conversion_uses_the_loaded_weights_not_stale_tinyvit_biases():
    # TinyViT computes its attention-bias table in eval(); weights loaded after eval()
    # leave that table stale. The conversion must see the loaded weights.
    spec = backbone_spec("tiny_tinyvit")
    torch.manual_seed(0)
    target = spec.builder()
    with torch.no_grad():
        for key, param in target.named_parameters():
            if "attention_biases" in key:
                param.copy_(torch.randn(param.shape) * 2.0)
    reference = spec.builder()
    reference.load_state_dict(target.state_dict())
    reference.eval()  # eval after loading: the right table
    stale = spec.builder().eval()
    stale.load_state_dict(target.state_dict())  # loaded after eval: stale table
    x = np.random.default_rng(3).random((1, 3, 128, 128), dtype=np.float32)
    expected = _torch(reference.image_encoder, x)
    encode = make_image_encoder(stale, backend="openvino", precision="fp32")
    np.testing.assert_allclose(encode(x), expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_engine_converts_in_the_background_and_answers_meanwhile():
    torch.manual_seed(0)
    engine = SamEngine(
        build_model(TINY_SAM), TINY_SAM, device="cpu", backend="openvino", precision="fp32"
    )
    assert engine.backend == "openvino fp32" and engine.decoder_precision == "fp32"
    image = np.random.default_rng(4).random((50, 60), dtype=np.float32)
    prompt = SlicePrompt(box_yxyx=np.array([10.0, 10.0, 40.0, 50.0]))
    first = engine.predict(image, prompt)  # answered now (torch, or OpenVINO if it was quick)
    assert engine.encoder_backend.prepare(wait=True)
    second = engine.predict(image, prompt)
    assert second.mask_yx.shape == first.mask_yx.shape == image.shape
    np.testing.assert_allclose(second.logits_lowres, first.logits_lowres, rtol=1e-3, atol=1e-3)


def test_medsa_engine_with_trained_clicks_runs_the_encoder_on_openvino():
    model = _tiny_medsa(depth=1)
    torch_engine = MedSAEngine(model, device="cpu", backend="torch")
    ov_engine = MedSAEngine(model, device="cpu", backend="openvino", precision="fp32",
                            background=False)  # fmt: skip
    assert ov_engine.clicks_change_embedding
    image = np.random.default_rng(5).random((100, 90), dtype=np.float32)
    prompt = SlicePrompt(np.array([[50.0, 45.0]], np.float32), np.array([1]))
    a, b = torch_engine.predict(image, prompt), ov_engine.predict(image, prompt)
    assert ov_engine.encoder_backend.ready(Signature(1, 1, True))
    np.testing.assert_allclose(b.logits_lowres, a.logits_lowres, rtol=1e-3, atol=1e-3)
