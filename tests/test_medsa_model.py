"""Med-SA model: a fresh Med-SA equals its backbone; freezing; SD-Trans; HyP-Adpt.

Tiny random backbones: ``tiny_sam`` (SAM ViT, 64 px, 8 x 8 tokens, a windowed then a
global block) and ``tiny_tinyvit`` (TinyViT, 256 px, windowed attention stages).
"""

from __future__ import annotations

import pytest
import torch

from napari_medsam.model.medsa.build import (
    backbone_spec,
    build_medsa,
    count_parameters,
    freeze_backbone,
)
from napari_medsam.model.medsa.config import MedSAConfig, is_medsa_key
from napari_medsam.model.medsa.hyp_adapter import HypAdapter

SIDES = {"tiny_sam": 64, "tiny_tinyvit": 128}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models run fastest on one thread, above all on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _plain_and_medsa(name: str, seed: int = 0, **config):
    """A random plain backbone and a fresh Med-SA on the same weights."""
    torch.manual_seed(seed)
    plain = backbone_spec(name).builder()
    state = {k: v.clone() for k, v in plain.state_dict().items()}
    for k, v in state.items():  # non-zero biases / position tables, so they matter
        if "attention_biases" in k or "rel_pos" in k or "pos_embed" in k:
            v.normal_(0, 0.5)
    plain.load_state_dict(state)
    plain.eval()
    model = build_medsa(name, state, MedSAConfig(backbone=name, depth=4, **config))
    return plain, model


def _randomise(model, part: str = "") -> None:
    """Give Med-SA parts whose name contains ``part`` non-zero weights."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if is_medsa_key(name) and part in name:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.2)


def _decode_plain(plain, embedding, box):
    sparse, dense = plain.prompt_encoder(points=None, boxes=box, masks=None)
    return plain.mask_decoder(
        image_embeddings=embedding,
        image_pe=plain.prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse,
        dense_prompt_embeddings=dense,
        multimask_output=False,
    )


@pytest.mark.parametrize("name", ["tiny_sam", "tiny_tinyvit"])
def test_fresh_medsa_equals_backbone_2d_and_3d(name):
    plain, model = _plain_and_medsa(name)
    side = SIDES[name]
    torch.manual_seed(2)
    images = torch.randn(3, 3, side, side)
    clicks = (torch.rand(3, 3, side, side) > 0.9).float()
    box = torch.tensor([[side * 0.2, side * 0.1, side * 0.7, side * 0.8]])
    with torch.no_grad():
        ref = plain.image_encoder(images)
        for depth, maps in ((1, None), (3, None), (3, clicks)):
            emb = model.encode(images, maps, depth=depth)
            assert torch.allclose(emb, ref, atol=1e-5), (depth, maps is None)
        emb = model.encode(images, clicks, depth=3)
        for i in range(3):
            ref_logits, ref_iou = _decode_plain(plain, ref[i : i + 1], box)
            logits, iou = model.decode(emb[i : i + 1], boxes=box)
            assert torch.allclose(logits, ref_logits, atol=1e-5)
            assert torch.equal(logits > 0, ref_logits > 0)
            assert torch.allclose(iou, ref_iou, atol=1e-5)


@pytest.mark.parametrize("name", ["tiny_sam", "tiny_tinyvit"])
def test_trained_adapters_change_the_output(name):
    """The equality above is not vacuous: non-zero Med-SA parts do change the model."""
    plain, model = _plain_and_medsa(name)
    _randomise(model)
    side = SIDES[name]
    images = torch.randn(2, 3, side, side)
    with torch.no_grad():
        assert not torch.allclose(model.encode(images), plain.image_encoder(images), atol=1e-3)


@pytest.mark.parametrize("name", ["tiny_sam", "tiny_tinyvit"])
def test_freeze_backbone_gradients_reach_only_medsa_parts(name):
    _, model = _plain_and_medsa(name)
    _randomise(model, "up")  # so every Med-SA part is on a path to the output
    _randomise(model, "click_embed")
    freeze_backbone(model)
    total, trainable = count_parameters(model)
    medsa = sum(p.numel() for n, p in model.named_parameters() if is_medsa_key(n))
    assert 0 < trainable == medsa < total
    side = SIDES[name]
    images = torch.randn(2, 3, side, side)
    maps = (torch.rand(2, 3, side, side) > 0.8).float()
    points = (torch.tensor([[[side / 2, side / 3]]] * 2), torch.ones(2, 1, dtype=torch.int64))
    logits, iou = model(images, points=points, click_maps=maps, depth=2)
    (logits.square().mean() + iou.sum()).backward()
    for n, p in model.named_parameters():
        if is_medsa_key(n):
            assert p.grad is not None, n
        else:
            assert p.grad is None, n
    ups = [p.grad.abs().sum() for n, p in model.named_parameters() if n.endswith("up.weight")]
    assert all(g > 0 for g in ups)


@pytest.mark.parametrize("name", ["tiny_sam", "tiny_tinyvit"])
def test_sd_trans_neighbours_act_only_through_the_depth_branch(name):
    _, model = _plain_and_medsa(name)
    _randomise(model, "space_adapter")
    _randomise(model, "mlp_adapter")
    side = SIDES[name]
    torch.manual_seed(3)
    images = torch.randn(3, 3, side, side)
    changed = images.clone()
    changed[2] += torch.randn(3, side, side)  # slice j = 2 differs

    def slice0(m, x, depth=3):
        with torch.no_grad():
            return m.encode(x, depth=depth)[0]

    # depth adapter at zero: slice 0 does not see slice 2
    assert torch.equal(slice0(model, images), slice0(model, changed))
    _randomise(model, "depth_adapter")
    assert not torch.allclose(slice0(model, images), slice0(model, changed), atol=1e-4)
    # as 2D slices (depth 1) they are independent again
    assert torch.equal(slice0(model, images, 1), slice0(model, changed, 1))
    # without SD-Trans nothing links the slices
    _, flat = _plain_and_medsa(name, sd_trans=False)
    _randomise(flat)
    assert torch.equal(slice0(flat, images), slice0(flat, changed))


def _one_block_check(block, tokens, depth, perturb_at, to_grid):
    """Run one Med-SA block on a stack before / after perturbing slice 1 at one position."""
    changed = tokens.clone()
    # a random vector: a constant shift of all channels would vanish in LayerNorm
    changed[(1, *perturb_at)] += 3.0 * torch.randn(tokens.shape[-1])
    with torch.no_grad():
        diff = (block(changed, depth) - block(tokens, depth)).abs().sum(-1)
    return to_grid(diff[0])  # slice 0's change per spatial position


def test_depth_attention_pairs_the_same_position_in_windowed_vit_block():
    _, model = _plain_and_medsa("tiny_sam")
    _randomise(model, "depth")
    block = model.image_encoder.blocks[0]
    assert block.window_size == 4  # 8 x 8 tokens in four 4 x 4 windows
    torch.manual_seed(4)
    tokens = torch.randn(2, 8, 8, block.attn.qkv.in_features)
    diff = _one_block_check(block, tokens, 2, (1, 6), lambda d: d)
    assert diff[1, 6] > 1e-3
    diff[1, 6] = 0
    assert torch.all(diff == 0), torch.nonzero(diff)


def test_depth_attention_pairs_the_same_position_in_windowed_tinyvit_block():
    _, model = _plain_and_medsa("tiny_tinyvit")
    _randomise(model, "depth")
    block = model.image_encoder.layers[1].blocks[0]
    h, w = block.input_resolution
    assert block.window_size < h  # windowed
    torch.manual_seed(5)
    tokens = torch.randn(2, h * w, block.dim)
    y, x = 3, 9  # in the first row of 8 x 8 windows, second window
    diff = _one_block_check(block, tokens, 2, (y * w + x,), lambda d: d.view(h, w))
    # the local 3x3 convolution after attention spreads a change to the neighbours,
    # never further, and never into the other windows' pixels beyond them
    assert diff[y, x] > 1e-5
    far = diff.clone()
    far[y - 1 : y + 2, x - 1 : x + 2] = 0
    assert torch.all(far == 0), torch.nonzero(far)


def test_hyp_adapter_depends_on_the_prompt():
    torch.manual_seed(6)
    hyp = HypAdapter(dim=32, prompt_dim=16, ratio=0.25)
    x = torch.randn(1, 5, 32).expand(2, 5, 32)
    prompts = torch.randn(2, 16)
    assert torch.equal(hyp(x, prompts), torch.zeros(2, 5, 32))  # fresh: exactly zero
    torch.nn.init.normal_(hyp.up.weight)
    out = hyp(x, prompts)
    assert not torch.allclose(out[0], out[1], atol=1e-4)  # same input, other prompt
    assert hyp.prompt_weights(prompts).shape == (2, 8, 8)


def test_decoder_hyp_adapter_makes_masks_prompt_conditioned():
    """Through the decoder: with HyP-Adpt trained, a prompt changes its adapter's output."""
    _, model = _plain_and_medsa("tiny_sam")
    _randomise(model, "prompt_adapter")
    block = model.mask_decoder.transformer.layers[0]
    assert isinstance(block.medsa_prompt_adapter, HypAdapter)
    x = torch.randn(1, 7, 32)
    p1, p2 = torch.randn(1, 32), torch.randn(1, 32)
    with torch.no_grad():
        assert not torch.allclose(block._prompt_adapt(x, p1), block._prompt_adapt(x, p2))


def test_parameter_counts_vit_b_and_litemedsam():
    from napari_medsam.model.medsa.build import count_medsa_parameters

    total, trainable = count_medsa_parameters(MedSAConfig(backbone="sam_vit_b"))
    assert 90e6 < total - trainable < 95e6  # SAM ViT-B itself: 93.7 M
    assert 0.01 < trainable / total < 0.15
