"""Stop rules fitted to the scan, the stop reasons, and the previous mask as a dense prompt."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from napari_medsam.prompts.geometry import lowres_logits_to_slice, slice_mask_to_lowres_logits
from napari_medsam.prompts.intensity import IntensityWindow
from napari_medsam.tasks.propagate import propagate, stop_thresholds
from napari_medsam.tasks.propagate_prompts import mask_prompt_logits
from napari_medsam.tasks.stop_rules import StopRule, StopThresholds, spacing_step
from napari_medsam.tasks.propagate_options import PropagationOptions
from napari_medsam.types import DirectionEnd, SliceMask, SlicePrediction

WINDOW = IntensityWindow(0.0, 1.0)


def test_thresholds_give_the_first_reason_in_words():
    t = StopThresholds(0.85, 0.6, 5)
    assert t.reason(3, 0.9, 0.9) == "area 3 px < 5 px"
    assert t.reason(50, 0.74, 0.9) == "score 0.74 < 0.85"
    assert t.reason(50, 0.9, 0.53) == "overlap 0.53 < 0.60"
    # a value just under its floor never reads as equal to it
    assert t.reason(50, 0.849, 0.9) == "score 0.849 < 0.850"
    assert t.reason(50, 0.8496, 0.9) == "score 0.8496 < 0.8500"
    assert t.reason(50, 0.9, 0.9) is None


def test_rule_scales_the_overlap_floor_by_spacing_over_radius_and_the_score_by_the_seed():
    disk = np.zeros((100, 100), bool)
    yy, xx = np.mgrid[:100, :100]
    disk[(yy - 50) ** 2 + (xx - 50) ** 2 <= 10**2] = True  # radius ~10 px = 5 mm at 0.5 mm
    step = spacing_step((5.0, 0.5, 0.5), disk)
    assert step == pytest.approx(1.0, rel=0.02)
    rule = StopRule(0.85, 0.7, 5, score_ratio=0.9, overlap_slope=0.5, overlap_min=0.1)
    fitted = rule.fit((5.0, 0.5, 0.5), disk, seed_score=0.8)
    assert fitted.score == pytest.approx(0.72) and fitted.overlap == pytest.approx(0.2, abs=0.02)
    assert rule.fit((1.0, 0.5, 0.5), disk, 0.8).overlap == pytest.approx(0.6, abs=0.01)
    assert rule.fit((50.0, 0.5, 0.5), disk, 0.8).overlap == 0.1  # never below overlap_min
    assert rule.fit(None, disk, None) == StopThresholds(0.85, 0.7, 5)  # nothing known: flat
    # a user's explicit numbers are applied as given
    assert stop_thresholds(rule, 0.5, 0.3, None, (5.0, 0.5, 0.5), disk, 0.8) == StopThresholds(
        0.5, 0.3, 5
    )
    assert spacing_step((5.0, 0.5, 0.5), np.zeros_like(disk)) == 0.0


class ShrinkingEngine:
    """Masks shrink by one pixel a slice; every prompt is recorded."""

    name = "shrink"
    image_size = 32
    lowres_side = 32

    class spec:  # noqa: N801 (an engine's InputSpec stand-in)
        resize = "stretch"

    def __init__(self, n_z, size=32):
        yy, xx = np.mgrid[:size, :size]
        self.masks = [(yy - 16) ** 2 + (xx - 16) ** 2 <= max(0, 10 - abs(z - 10)) ** 2 for z in range(n_z)]
        self.prompts = {}

    def embed(self, image_yx, cache_key=None):
        pass

    def predict(self, image_yx, prompt, cache_key=None):
        self.prompts[cache_key[1]] = prompt
        logits = np.full((32, 32), float(cache_key[1]), np.float32)
        score = 0.95 - 0.03 * abs(cache_key[1] - 10)
        return SlicePrediction(self.masks[cache_key[1]].copy(), logits, score)


def _items(engine, n_z=21, **kw):
    image = np.zeros((n_z, 32, 32), np.float32)
    return list(propagate(engine, image, WINDOW, 10, engine.masks[10], 1, "v", PropagationOptions(**kw)))


def test_each_direction_reports_where_and_why_it_stopped():
    ends = [i for i in _items(ShrinkingEngine(21), stop_score=0.0, stop_overlap=0.6)
            if isinstance(i, DirectionEnd)]
    assert [e.direction for e in ends] == ["up", "down"]
    up = ends[0]
    assert up.label == 1 and up.stop_z == up.last_z + 1
    assert up.reason.startswith("overlap ") and up.reason.endswith("< 0.60")
    assert up.describe() == f"stopped above slice {up.stop_z}: {up.reason}"
    assert ends[1].describe().startswith(f"stopped below slice {ends[1].stop_z}: ")
    edge = [i for i in _items(ShrinkingEngine(21), stop_score=-math.inf, stop_overlap=0.0,
                              min_area=0, direction="up") if isinstance(i, DirectionEnd)]  # fmt: skip
    assert edge[0].stop_z is None and edge[0].last_z == 20
    assert edge[0].describe() == "reached the last slice (end of the volume)"


def test_mask_prompt_modes_feed_the_previous_mask_as_dense_input():
    engine = ShrinkingEngine(21)
    _items(engine, stop_overlap=0.0, mask_prompt="none")
    assert all(p.prev_logits_lowres is None for p in engine.prompts.values())
    engine = ShrinkingEngine(21)
    _items(engine, stop_overlap=0.0, mask_prompt="logits")
    first = engine.prompts[11].prev_logits_lowres  # the seed has no logits: its mask, converted
    np.testing.assert_array_equal(first > 0, slice_mask_to_lowres_logits(engine.masks[10], 32, 32, "stretch") > 0)
    assert (engine.prompts[12].prev_logits_lowres == 11.0).all()  # slice 11's own logits
    engine = ShrinkingEngine(21)
    _items(engine, stop_overlap=0.0, mask_prompt="binary")
    np.testing.assert_array_equal(engine.prompts[12].prev_logits_lowres > 0, engine.masks[11])
    with pytest.raises(ValueError, match="mask_prompt"):
        _items(ShrinkingEngine(21), mask_prompt="dense")
    assert mask_prompt_logits("binary", None, engine.masks[11], None) is None  # no frame


@pytest.mark.parametrize(("hw", "resize"), [((40, 64), "longest_side"), ((512, 512), "stretch"),
                                            ((101, 122), "stretch")])  # fmt: skip
def test_a_binary_mask_survives_the_round_trip_through_the_model_frame(hw, resize):
    mask = np.zeros(hw, bool)
    mask[hw[0] // 4 : hw[0] // 2, hw[1] // 3 : hw[1] * 2 // 3] = True
    logits = slice_mask_to_lowres_logits(mask, 1024 if resize == "longest_side" else 256, 256, resize)
    assert logits.shape == (256, 256) and logits.dtype == np.float32
    back = lowres_logits_to_slice(logits, hw, 1024 if resize == "longest_side" else 256, resize) > 0
    assert (back ^ mask).sum() <= 2 * (hw[0] + hw[1]) * 0.05 + 4  # only edge pixels may differ
    assert np.abs(logits).max() == pytest.approx(8.0)


def _sweep_module():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "sweep_propagation.py"
    spec = importlib.util.spec_from_file_location("sweep_propagation", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_sweep_replay_of_one_unstopped_run_equals_propagation_with_each_rule():
    """benchmarks/sweep_propagation.py replays rules on one recorded chain: its Dice and
    slice count must be exactly those of a real run with the rule."""
    sweep = _sweep_module()
    engine = ShrinkingEngine(21)
    truth = np.array(engine.masks)
    image = np.zeros((21, 32, 32), np.float32)
    spacing = (5.0, 1.0, 1.0)
    box = sweep.loose_box(truth[10], np.random.default_rng(0))
    obj = sweep.record_object(engine, image, WINDOW, truth, spacing, box, ["none"], 30, "v", 1)
    seen = set()
    for rule in sweep.candidate_rules()[::3]:
        dice, n = sweep.replay(obj, "none", rule)
        seed = np.asarray(engine.predict(image[10], _box_prompt(obj), ("v", 10)).mask_yx)
        pred = np.zeros_like(truth)
        pred[10] = seed
        options = PropagationOptions(stop_rule=rule, spacing_zyx_mm=spacing,
                                     seed_score=obj["seed_score"], mask_prompt="none")  # fmt: skip
        items = propagate(ShrinkingEngine(21), image, WINDOW, 10, seed, 1, "v", options)
        masks = [m for m in items if isinstance(m, SliceMask)]
        for m in masks:
            pred[m.z] = m.mask_yx
        d = 2 * (pred & truth).sum() / (pred.sum() + truth.sum())
        assert (dice, n) == pytest.approx((d, len(masks) + 1)), sweep.rule_text(rule)
        seen.add(n)
    assert len(seen) >= 3  # the rules cut the chain in different places


def _box_prompt(obj):
    from napari_medsam.types import SlicePrompt

    return SlicePrompt(box_yxyx=np.array(obj["box"], np.float32))


def test_the_default_mask_prompt_is_the_engines_then_the_measured_one(monkeypatch):
    from napari_medsam.tasks import propagate_prompts as pp

    engine = ShrinkingEngine(21)
    assert pp.default_mask_prompt(engine) == "none"
    monkeypatch.setitem(pp.MEASURED_MASK_PROMPTS, "shrink", "logits")
    assert pp.default_mask_prompt(engine) == "logits"
    engine.propagation_mask_prompt = "binary"  # a checkpoint's own declaration wins
    assert pp.default_mask_prompt(engine) == "binary"
    _items(engine, stop_overlap=0.0)  # and reaches the prompts
    np.testing.assert_array_equal(engine.prompts[12].prev_logits_lowres > 0, engine.masks[11])


def test_the_click_engine_propagates_with_the_box_alone_as_measured():
    """The shipped default engine declares box-only propagation (the bundled decoder);
    ``mask_prompt`` still overrides it (``--mask-prompt logits``)."""
    from napari_medsam.model.click.engine import ClickEngine
    from napari_medsam.tasks import propagate_prompts as pp

    engine = ClickEngine.__new__(ClickEngine)  # the declaration only, no weights
    assert pp.default_mask_prompt(engine) == "none"
    shrink = ShrinkingEngine(21)
    shrink.propagation_mask_prompt = ClickEngine.propagation_mask_prompt
    _items(shrink, stop_overlap=0.0)
    assert shrink.prompts and all(p.prev_logits_lowres is None for p in shrink.prompts.values())
    shrink = ShrinkingEngine(21)
    shrink.propagation_mask_prompt = ClickEngine.propagation_mask_prompt
    _items(shrink, stop_overlap=0.0, mask_prompt="logits")
    assert shrink.prompts[12].prev_logits_lowres is not None
