"""The click decoder on OpenVINO fp32 agrees with torch; conversion is cached and rebuilt.

The OpenVINO tests skip where OpenVINO does not import. The converted-model cache is a fresh
temporary folder, so every conversion path runs.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pytest
import torch

from napari_medsam.model.backends.openvino_decoder import OpenVINODecoder
from napari_medsam.model.backends.select import openvino_available
from napari_medsam.model.click.decoder import ClickConfig, ClickDecoder
from napari_medsam.model.medsa.build import TINY_SAM
from napari_medsam.model.registry import build_model
from napari_medsam.types import SlicePrompt

needs_openvino = pytest.mark.skipif(not openvino_available(), reason="OpenVINO does not import")


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_MEDSAM_CACHE_DIR", str(tmp_path))
    threads = torch.get_num_threads()
    torch.set_num_threads(min(2, threads))
    yield
    torch.set_num_threads(threads)


#: A tiny SAM whose input side is 4x its embedding side (32 px -> 8 x 8), as LiteMedSAM's
#: (256 px -> 64 x 64): the click-map stem downsamples the maps 4x onto the embedding grid.
CLICK_SAM = dataclasses.replace(TINY_SAM, name="tiny click SAM", image_size=32, patch_size=4)


def _tiny_click_decoder(seed: int) -> ClickDecoder:
    """A click decoder on a tiny SAM with every part, adapters and stem included, non-zero."""
    torch.manual_seed(seed)
    sam = build_model(CLICK_SAM)
    decoder = ClickDecoder(sam.prompt_encoder, sam.mask_decoder, ClickConfig())
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in decoder.named_parameters():
            if "medsa" in name or "click_stem" in name:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.1)
    return decoder.eval()


def test_a_click_decoder_needs_an_input_side_4x_its_embedding_side():
    sam = build_model(TINY_SAM)  # 64 px -> 8 x 8: the stem would give 16 x 16
    with pytest.raises(ValueError, match="4x the embedding side"):
        ClickDecoder(sam.prompt_encoder, sam.mask_decoder, ClickConfig())
    plain = ClickDecoder(sam.prompt_encoder, sam.mask_decoder, ClickConfig(disk_maps=False))
    assert plain.click_stem is None  # no stem, no constraint


def _chw(decoder: ClickDecoder) -> tuple[int, int, int]:
    pe = decoder.prompt_encoder
    return (int(pe.embed_dim), *(int(v) for v in pe.image_embedding_size))


def _prompt(n: int, side: int, seed: int):
    rng = np.random.default_rng(seed)
    coords = torch.as_tensor(rng.uniform(0, side, (1, n, 2)), dtype=torch.float32)
    labels = torch.as_tensor(rng.integers(0, 2, (1, n)))
    return coords, labels


@needs_openvino
def test_tiny_click_decoder_matches_torch_for_any_click_count_and_output():
    decoder = _tiny_click_decoder(0)
    fast = OpenVINODecoder(decoder.mask_decoder, _chw(decoder))
    assert fast.prepare() and "convert_s" in fast.timings
    c, h, w = _chw(decoder)
    embedding = torch.randn((1, c, h, w), generator=torch.Generator().manual_seed(1))
    side = decoder.input_side
    prev = torch.randn((1, 1, 4 * h, 4 * w))
    for n, masks in ((1, None), (5, prev), (40, prev)):  # one shape per click count
        points = _prompt(n, side, n)
        box = torch.tensor([[2.0, 3.0, 20.0, 25.0]]) if n == 5 else None
        with torch.inference_mode():
            ref = decoder.forward_all(embedding, points, box, masks)
            sparse, dense = decoder.prompt_encoder(points=points, boxes=box, masks=masks)
        for multimask in (None, True, False):
            with torch.inference_mode():
                want = decoder.mask_decoder(embedding, decoder.prompt_encoder.get_dense_pe(),
                                            sparse, dense, multimask)  # fmt: skip
            got = fast(embedding, decoder.prompt_encoder.get_dense_pe(), sparse, dense, multimask)
            assert got[0].shape == want[0].shape and got[1].shape == want[1].shape
            for a, b in zip(got, want, strict=True):
                np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-4)
        with torch.inference_mode():  # through the click decoder's hook, as the engine calls it
            hooked = decoder(embedding, points, box, masks, mask_decoder=fast)
        np.testing.assert_allclose(hooked[0].numpy(), ref[0][:, :1].numpy(), rtol=1e-4, atol=1e-4)


@needs_openvino
def test_no_token_prompt_runs_on_torch():
    decoder = _tiny_click_decoder(2)
    fast = OpenVINODecoder(decoder.mask_decoder, _chw(decoder))
    c, h, w = _chw(decoder)
    embedding = torch.randn((1, c, h, w))
    sparse = torch.zeros((1, 0, c))
    with torch.inference_mode():
        want = decoder.mask_decoder(embedding, embedding, sparse, embedding, False)
    got = fast(embedding, embedding, sparse, embedding, False)  # Med-SA's zero-prompt branch
    assert torch.equal(got[0], want[0]) and not fast.ready()  # never even converted


@needs_openvino
def test_decoder_loads_from_the_cache_new_weights_convert_and_corrupt_entries_rebuild(
    tmp_path, caplog
):
    decoder = _tiny_click_decoder(3)
    assert OpenVINODecoder(decoder.mask_decoder, _chw(decoder)).prepare()
    again = OpenVINODecoder(decoder.mask_decoder, _chw(decoder))
    assert again.prepare() and "convert_s" not in again.timings  # read from the cache
    (entry,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    weights = next(entry.glob("*.bin"))
    weights.write_bytes(weights.read_bytes()[:-64])  # truncated: must not be trusted
    with caplog.at_level(logging.WARNING):
        rebuilt = OpenVINODecoder(decoder.mask_decoder, _chw(decoder))
        assert rebuilt.prepare() and "convert_s" in rebuilt.timings
    assert any("corrupt" in r.getMessage() for r in caplog.records)
    with torch.no_grad():
        decoder.mask_decoder.iou_prediction_head.layers[0].weight.mul_(2.0)
    changed = OpenVINODecoder(decoder.mask_decoder, _chw(decoder))
    assert changed.prepare() and "convert_s" in changed.timings


@needs_openvino
def test_background_conversion_answers_with_torch_meanwhile():
    decoder = _tiny_click_decoder(4)
    fast = OpenVINODecoder(decoder.mask_decoder, _chw(decoder), background=True)
    c, h, w = _chw(decoder)
    embedding = torch.randn((1, c, h, w))
    with torch.inference_mode():
        sparse, dense = decoder.prompt_encoder(points=_prompt(3, 32, 0), boxes=None, masks=None)
    pe = decoder.prompt_encoder.get_dense_pe()
    first = fast(embedding, pe, sparse, dense, False)  # answered now, on either backend
    assert fast.prepare(wait=True)
    second = fast(embedding, pe, sparse, dense, False)
    np.testing.assert_allclose(second[0].numpy(), first[0].numpy(), rtol=1e-4, atol=1e-4)


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * (a & b).sum() / max(1, a.sum() + b.sum()))


@needs_openvino
@pytest.mark.slow
def test_shipped_click_engine_on_openvino_agrees_with_torch_on_the_phantom():
    from napari_medsam.io.phantom import make_phantom
    from napari_medsam.model.engine import load_engine
    from napari_medsam.prompts.intensity import auto_window

    reference = load_engine(None, device="cpu", backend="torch")
    fast = load_engine(None, device="cpu", backend="openvino", background=False)
    assert reference.click_backend == "torch fp32" and fast.click_backend == "openvino fp32"
    phantom = make_phantom(shape_zyx=(8, 128, 128), spacing_zyx_mm=(4.0, 2.0, 2.0))
    z = 4
    image = auto_window(phantom.image_zyx).apply(phantom.image_zyx[z])
    reference.embed(image, "s")  # one embedding for both: this compares the decoders
    fast.cache.put("s", image.shape, reference.cache.get("s", image.shape))
    dices = []
    for label in np.unique(phantom.labels_zyx[z])[1:]:
        rows, cols = np.nonzero(phantom.labels_zyx[z] == label)
        clicks = [(rows[len(rows) // 2], cols[len(cols) // 2], 1), (rows[0], cols[0], 0),
                  (rows[-1], cols[-1], 1)]  # fmt: skip
        prev = {id(reference): None, id(fast): None}
        for k in range(1, len(clicks) + 1):
            pts = np.array([c[:2] for c in clicks[:k]], np.float32)
            labels = np.array([c[2] for c in clicks[:k]])
            out = {}
            for engine in (reference, fast):
                prompt = SlicePrompt(pts, labels, prev_logits_lowres=prev[id(engine)])
                out[id(engine)] = engine.predict(image, prompt, "s")
                prev[id(engine)] = out[id(engine)].logits_lowres
            a, b = out[id(reference)], out[id(fast)]
            assert a.mask_yx.any()
            assert np.abs(a.logits_lowres - b.logits_lowres).max() < 1e-2
            dices.append(_dice(a.mask_yx, b.mask_yx))
    assert fast.click_decoder_backend.ready()
    print(f"openvino vs torch click decoder, phantom: {len(dices)} cases, "
          f"mean Dice {np.mean(dices):.4f}, min {min(dices):.4f}")
    assert len(dices) >= 12, dices
    assert np.mean(dices) >= 0.99 and min(dices) >= 0.97, dices


@needs_openvino
def test_warm_up_finishes_both_conversions_before_ready():
    """The app warms the engine up before it says "ready": after ``warm_up`` the encoder
    and the click decoder answer on OpenVINO, so the first prompt waits for no conversion."""
    from napari_medsam.model.click.engine import ClickEngine

    engine = ClickEngine(
        build_model(CLICK_SAM), CLICK_SAM, _tiny_click_decoder(3),
        device="cpu", backend="openvino", background=True,
    )  # fmt: skip
    engine.warm_up()
    import threading

    converting = [t.name for t in threading.enumerate() if t.name.startswith("medsam-ov")]
    assert not converting, converting  # nothing left for the first prompt to wait on
    assert engine.encoder_backend.ready() and engine.click_decoder_backend.ready()
    assert engine.cache_info().entries == 0  # the blank slice was not cached


def test_preload_warms_the_engine_up_and_prompts_meanwhile_are_not_blocked():
    """preload_job and load_job say "warming up" before their EngineLoaded ("ready"), and a
    segment job asking for the engine during the warm-up gets it at once (a first start's
    conversion can take minutes on a slow CPU: clicks then answer on torch)."""
    import threading

    from napari_medsam.tasks.engine_holder import EngineHolder
    from napari_medsam.tasks.jobs import load_job, preload_job

    order = []
    release = threading.Event()

    class Warming:
        name = "fake"

        def warm_up(self):
            order.append("warm start")
            release.wait(5)
            order.append("warm end")

    holder = EngineHolder(loader=lambda path, device: Warming())
    items = preload_job(holder, "fake")()
    kinds = []
    for item in items:
        kinds.append(getattr(item, "message", type(item).__name__))
        if kinds[-1].startswith("warming up fake…"):
            break
    runner = threading.Thread(target=lambda: kinds.extend(type(i).__name__ for i in items))
    runner.start()
    while not order:
        threading.Event().wait(0.01)
    got = []
    asker = threading.Thread(target=lambda: got.append((holder.get(), order.copy())))
    asker.start()
    asker.join(2)
    assert got and got[0][1] == ["warm start"], "a prompt was blocked by the warm-up"
    release.set()
    runner.join(5)
    assert kinds == ["loading fake…", "warming up fake… (clicks work meanwhile, slower)",
                     "EngineLoaded"] and order == ["warm start", "warm end"]  # fmt: skip
    loaded = [getattr(i, "message", type(i).__name__) for i in load_job(holder, None, "cpu", "x")()]
    assert loaded[1].startswith("warming up x…") and loaded[-1] == "EngineLoaded"
    assert order[-1] == "warm end" and len(order) == 4


def test_dense_pe_is_computed_once_while_inferring_and_again_when_its_matrix_changes():
    decoder = _tiny_click_decoder(0)
    calls = []
    original = decoder.prompt_encoder.get_dense_pe
    decoder.prompt_encoder.get_dense_pe = lambda: calls.append(1) or original()
    with torch.no_grad():
        first = decoder.dense_pe()
        assert decoder.dense_pe() is first and len(calls) == 1
        torch.testing.assert_close(first, original(), rtol=0, atol=0)
        decoder.prompt_encoder.pe_layer.positional_encoding_gaussian_matrix.mul_(2.0)
        changed = decoder.dense_pe()
        assert len(calls) == 2 and not torch.equal(changed, first)
        torch.testing.assert_close(changed, original(), rtol=0, atol=0)
    with torch.inference_mode():
        assert decoder.dense_pe() is not changed  # an inference tensor of its own
        assert len(calls) == 3
    with torch.enable_grad():
        decoder.dense_pe()
        decoder.dense_pe()
    assert len(calls) == 5  # training: recomputed every time
