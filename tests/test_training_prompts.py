"""Training prompt simulation: clicks land where they should, and the training
forward computes what the app's Med-SA engine computes."""

import numpy as np
import pytest
import torch

from napari_medsam.evaluation.clicker import next_click
from napari_medsam.model.medsa.build import build_medsa
from napari_medsam.model.medsa.engine import MedSAEngine
from napari_medsam.training.config import PromptSimConfig
from napari_medsam.training.forward import PromptedMedSA, click_maps_batch, run_prompts
from napari_medsam.training.prompts_sim import (
    PromptState,
    add_error_click,
    initial_prompt,
    jitter_box,
    sample_negative,
    sample_positive,
)
from napari_medsam.types import SlicePrompt


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: tiny models gain nothing from two, and the CPU is shared."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _square(hw=(40, 50), y0=10, y1=30, x0=15, x1=35):
    gt = np.zeros(hw, bool)
    gt[y0:y1, x0:x1] = True
    return gt


def test_random_clicks_fall_inside_and_around_the_object():
    gt = _square()
    rng = np.random.default_rng(0)
    pos = sample_positive(gt, 50, rng)
    assert len(pos) == 50 and gt[pos[:, 0], pos[:, 1]].all()
    # away from the edge: a quarter of the deepest inner distance (10 px) or more
    assert (pos[:, 0] >= 12).all() and (pos[:, 0] <= 27).all()
    neg = sample_negative(gt, 200, rng, far_probability=0.0)
    assert not gt[neg[:, 0], neg[:, 1]].any()
    # the band: within ~15% of the equivalent diameter (>= 3 px) of the object
    assert (neg[:, 0] >= 10 - 5).all() and (neg[:, 0] < 30 + 5).all()
    far = sample_negative(gt, 200, rng, far_probability=1.0)
    assert not gt[far[:, 0], far[:, 1]].any()
    assert (np.abs(far[:, 0] - 20) > 15).any()  # some far from the object


def test_jittered_box_stays_near_the_object_and_inside_the_slice():
    gt = _square()
    rng = np.random.default_rng(1)
    for _ in range(50):
        y0, x0, y1, x1 = jitter_box(gt, rng, 0.1)
        assert 0 <= y0 <= y1 <= 39 and 0 <= x0 <= x1 <= 49
        assert abs(y0 - 10) <= 2 and abs(y1 - 29) <= 2 and abs(x0 - 15) <= 2 and abs(x1 - 34) <= 2


def test_initial_prompt_mixes_clicks_protocol_clicks_and_boxes():
    gt = _square()
    rng = np.random.default_rng(2)
    cfg = PromptSimConfig(box_fraction=0.25, box_with_clicks=0.5, protocol_first_click=0.5)
    states = [initial_prompt(gt, rng, cfg) for _ in range(400)]
    kinds = {
        k: sum(s.kind == k for s in states) for k in ("clicks", "protocol", "box", "box+clicks")
    }
    assert 30 <= kinds["box"] <= 70 and 30 <= kinds["box+clicks"] <= 70
    assert kinds["protocol"] > 100 and kinds["clicks"] > 100
    first = next_click(gt, np.zeros_like(gt))
    for s in states:
        if s.kind == "protocol":  # the eval clicker's first click: the object's centre
            assert s.points_yx == [(first.y, first.x)] and s.labels == [1]
        if s.kind.startswith("box"):
            assert s.box_yxyx is not None and not s.points_yx
            assert s.takes_clicks == (s.kind == "box+clicks")
        if s.kind == "clicks":
            assert s.labels[0] == 1 and all(
                gt[y, x] == (lab == 1) for (y, x), lab in zip(s.points_yx, s.labels, strict=True)
            )


def test_error_click_goes_to_the_error_and_feeds_the_prediction_back():
    gt = _square(hw=(64, 64), y0=8, y1=40, x0=8, x1=40)
    state = PromptState(gt)
    state.add_click(24, 24, True)
    side = 64
    # predicted logits (32 x 32 low-res frame, 64 px model): the top half of the square only
    logits = np.full((32, 32), -10.0, np.float32)
    logits[4:12, 4:20] = 10.0
    assert add_error_click(state, logits, side)
    (y, x), label = state.points_yx[-1], state.labels[-1]
    assert label == 1 and gt[y, x] and y >= 24  # a positive click in the missed lower half
    assert state.prev_logits_lowres is not None and np.array_equal(state.prev_logits_lowres, logits)
    # an over-segmentation gets a negative click outside the object
    over = np.full((32, 32), 10.0, np.float32)
    assert add_error_click(state, over, side)
    (y, x), label = state.points_yx[-1], state.labels[-1]
    assert label == 0 and not gt[y, x]
    assert len(set(state.points_yx)) == len(state.points_yx)


@pytest.fixture(scope="module")
def trained_like_model():
    """A tiny Med-SA whose Med-SA parts are non-zero (as after training)."""
    torch.manual_seed(0)
    model = build_medsa("tiny_sam")
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "medsa_" in name:
                p.add_(0.05 * torch.randn_like(p))
    return model.eval()


@pytest.mark.parametrize("prompt_kind", ["one click", "clicks+prev", "box", "box+clicks"])
def test_training_forward_matches_the_app_engine(trained_like_model, prompt_kind):
    rng = np.random.default_rng(3)
    image = rng.random((48, 40)).astype(np.float32)  # not square: exercises resize + padding
    engine = MedSAEngine(trained_like_model, device="cpu", cache_bytes=0)
    assert engine.clicks_change_embedding
    prev = rng.normal(size=(32, 32)).astype(np.float32)
    points = np.array([[20, 18], [30, 5]], np.float32)
    labels = np.array([1, 0])
    box = np.array([10, 8, 40, 30], np.float32)
    prompt = {
        "one click": SlicePrompt(points_yx=points[:1], point_labels=labels[:1]),
        "clicks+prev": SlicePrompt(points_yx=points, point_labels=labels, prev_logits_lowres=prev),
        "box": SlicePrompt(box_yxyx=box),
        "box+clicks": SlicePrompt(
            points_yx=points, point_labels=labels, box_yxyx=box, prev_logits_lowres=prev
        ),
    }[prompt_kind]
    expected = engine.predict(image, prompt)
    from napari_medsam.model.preprocess import preprocess_slices

    images = preprocess_slices([image, image], engine.spec)
    with torch.no_grad():
        logits, _ = run_prompts(
            PromptedMedSA(trained_like_model), images, [prompt, prompt], [image.shape] * 2, 64
        )
    np.testing.assert_allclose(logits[0].numpy(), expected.logits_lowres, atol=1e-4)
    np.testing.assert_allclose(logits[1].numpy(), expected.logits_lowres, atol=1e-4)
    if prompt_kind != "box":
        ours = click_maps_batch([prompt], [image.shape], 64)
        theirs = engine.click_maps_tensor([image], [prompt]).numpy()
        np.testing.assert_array_equal(ours, theirs)
