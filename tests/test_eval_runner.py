"""The click protocol end to end with numpy engines of known behaviour.

An oracle that returns the truth must give NoC = 1, an engine that returns
nothing must give the cap, and the evaluation must go through the app's own
windowing, task and prompt functions (not copies).
"""

import numpy as np
import pytest

from napari_medsam.evaluation import runner
from napari_medsam.evaluation.cases import iter_cases, labels_present, parse_labels
from oracle_engines import EmptyEngine, OracleEngine
from napari_medsam.evaluation.metrics import summarize
from napari_medsam.evaluation.report import summarize_by_label
from napari_medsam.prompts import geometry, intensity
from napari_medsam.tasks import segment as segment_tasks
from napari_medsam.types import SlicePrediction

WINDOW = intensity.IntensityWindow.from_level_width(40, 400)


def toy_volume():
    """(4, 24, 24) HU-like image and labels: label 1 a square, label 2 a disc-ish block."""
    labels = np.zeros((4, 24, 24), np.uint8)
    labels[1:3, 4:14, 4:14] = 1
    labels[2:4, 15:21, 14:22] = 2
    labels[0, 0:3, 0:3] = 1  # 9 px: below min_area below
    image = np.where(labels > 0, 60, -100).astype(np.int16)
    return image, labels


def test_cases_follow_axis0_with_min_area():
    _, labels = toy_volume()
    cases = list(iter_cases(labels, [1, 2], min_area=10))
    assert [(c.z, c.label) for c in cases] == [(1, 1), (2, 1), (2, 2), (3, 2)]
    assert cases[0].area == 100
    assert len(list(iter_cases(labels, [1], min_area=1))) == 3
    assert labels_present(labels) == [1, 2]
    assert parse_labels(None, labels) == [1, 2] and parse_labels("2", labels) == [2]
    with pytest.raises(ValueError, match="not present"):
        parse_labels("1,7", labels)
    with pytest.raises(ValueError, match="integers"):
        parse_labels("liver", labels)


def run(engine, prompt="clicks", max_clicks=6, min_area=10):
    image, labels = toy_volume()
    cases = list(iter_cases(labels, [1, 2], min_area))
    results = runner.evaluate_volume(
        engine, image, labels, WINDOW, cases, prompt=prompt, max_clicks=max_clicks, volume_key="toy"
    )
    return cases, results


def test_oracle_gives_noc_one():
    _, labels = toy_volume()
    cases, results = run(OracleEngine(labels))
    s = summarize(results, 6, "clicks")
    assert s["noc85"] == 1 and s["noc90"] == 1 and s["n_fail90"] == 0
    assert all(r.ious == [1.0] for r in results)


def test_empty_engine_gives_the_cap():
    engine = EmptyEngine()
    cases, results = run(engine, max_clicks=6)
    s = summarize(results, 6, "clicks")
    assert s["noc85"] == 6 and s["noc90"] == 6 and s["n_fail90"] == len(cases)
    assert all(len(r.ious) == 6 and r.ious[-1] == 0.0 for r in results)
    assert engine.predict_calls == 6 * len(cases)
    # every click positive and new; the embedding is computed once per slice
    for prompt in engine.prompts:
        assert np.all(prompt.point_labels == 1)
        assert len({tuple(p) for p in prompt.points_yx}) == len(prompt.points_yx)
    assert engine.embed_calls >= len({c.z for c in cases})


def test_oracle_on_the_phantom_gives_noc_one():
    from napari_medsam.io.phantom import make_phantom

    ph = make_phantom()
    labels = np.asarray(ph.labels_zyx)
    names = labels_present(labels)
    cases = list(iter_cases(labels, names, min_area=20))
    assert len(cases) > 5
    results = runner.evaluate_volume(
        OracleEngine(labels),
        np.asarray(ph.image_zyx),
        labels,
        intensity.auto_window(ph.image_zyx),
        cases,
        max_clicks=20,
        volume_key="phantom",
    )
    per_label, overall = summarize_by_label(results, names, 20, "clicks")
    assert overall["noc90"] == 1.0 and overall["n_fail90"] == 0
    assert all(s["noc90"] == 1.0 for s in per_label.values())


class LogitsEngine(EmptyEngine):
    """Returns an empty mask with logits equal to the call number, to trace feedback."""

    def predict(self, image_yx, prompt, cache_key=None):
        super().predict(image_yx, prompt, cache_key)
        logits = np.full((256, 256), -float(self.predict_calls), np.float32)
        return SlicePrediction(np.zeros(np.shape(image_yx), bool), logits, 0.0)


def test_previous_logits_are_fed_back():
    engine = LogitsEngine()
    run(engine, max_clicks=3)
    first = engine.prompts[0]
    assert first.prev_logits_lowres is None and first.box_yxyx is None
    np.testing.assert_array_equal(engine.prompts[1].prev_logits_lowres, -1.0)
    np.testing.assert_array_equal(engine.prompts[2].prev_logits_lowres, -2.0)
    assert engine.prompts[3].prev_logits_lowres is None  # next case starts afresh


def test_box_prompt_is_one_tight_box():
    _, labels = toy_volume()
    engine = OracleEngine(labels)
    cases, results = run(engine, prompt="box")
    assert engine.predict_calls == len(cases)
    np.testing.assert_array_equal(engine.prompts[0].box_yxyx, [4, 4, 13, 13])
    assert len(engine.prompts[0].points_yx) == 0
    s = summarize(results, 6, "box")
    assert s["box_dice"] == 1.0 and s["noc90"] is None


def test_box_then_clicks_keeps_the_box():
    engine = EmptyEngine()
    cases, results = run(engine, prompt="box+clicks", max_clicks=4)
    per_case = engine.prompts[:4]
    assert len(per_case[0].points_yx) == 0
    np.testing.assert_array_equal(per_case[0].box_yxyx, [4, 4, 13, 13])
    for k, prompt in enumerate(per_case[1:], start=1):
        assert len(prompt.points_yx) == k  # box counts as interaction 1
        np.testing.assert_array_equal(prompt.box_yxyx, [4, 4, 13, 13])
    assert all(len(r.ious) == 4 for r in results)


def test_eval_uses_the_app_windowing_task_and_box(monkeypatch):
    """Replace the shared functions on their modules and see the evaluation pick them up."""
    calls = {"apply": 0, "segment": 0, "box": 0}
    original_apply = intensity.IntensityWindow.apply
    original_segment = segment_tasks.segment_slice
    original_box = geometry.box_from_mask

    def spy_apply(self, image):
        calls["apply"] += 1
        return original_apply(self, image) * 0.5 + 0.25  # recognisable, and not flat

    def spy_segment(*args, **kwargs):
        calls["segment"] += 1
        yield from original_segment(*args, **kwargs)

    def spy_box(mask):
        calls["box"] += 1
        return original_box(mask)

    monkeypatch.setattr(intensity.IntensityWindow, "apply", spy_apply)
    monkeypatch.setattr(segment_tasks, "segment_slice", spy_segment)
    monkeypatch.setattr(geometry, "box_from_mask", spy_box)

    seen = []

    class Recording(EmptyEngine):
        def predict(self, image_yx, prompt, cache_key=None):
            seen.append((float(np.min(image_yx)), float(np.max(image_yx)), cache_key))
            return super().predict(image_yx, prompt, cache_key)

    engine = Recording()
    cases, _ = run(engine, prompt="box+clicks", max_clicks=2)
    assert calls["segment"] == engine.predict_calls == 2 * len(cases)
    assert calls["box"] == len(cases)
    assert calls["apply"] >= engine.predict_calls
    assert all(0.25 <= lo <= hi <= 0.75 for lo, hi, _ in seen)  # the shared window's output
    # the embedding cache key is the app's SliceKey
    assert seen[0][2] == segment_tasks.slice_key("toy", cases[0].z, WINDOW)


def test_bad_prompt_mode():
    with pytest.raises(ValueError, match="prompt"):
        run(EmptyEngine(), prompt="scribble")


@pytest.mark.slow
def test_real_litemedsam_box_then_clicks_on_the_phantom():
    """The real path: bundled LiteMedSAM, app task, previous logits fed back (one small case)."""
    from napari_medsam.io.phantom import make_phantom
    from napari_medsam.model.engine import load_engine

    ph = make_phantom(shape_zyx=(8, 96, 96))
    labels = np.asarray(ph.labels_zyx)
    z = 4
    liver = 1
    assert ph.label_names[liver] == "liver"
    case = next(c for c in iter_cases(labels, [liver], 50) if c.z == z)
    engine = load_engine(None, "cpu")
    engine.zoom_in = False  # a zoom crop would be a second, legitimate cache entry
    results = runner.evaluate_volume(
        engine,
        np.asarray(ph.image_zyx),
        labels,
        intensity.auto_window(ph.image_zyx),
        [case],
        prompt="box+clicks",
        max_clicks=2,
        target_iou=1.01,  # never reached: both interactions run
        volume_key="phantom",
    )
    (result,) = results
    assert len(result.ious) == 2 and len(result.click_seconds) == 2
    assert result.dices[0] > 0.8  # a tight box on a clear synthetic organ
    info = engine.cache_info()
    assert info.entries == 1 and info.misses == 1  # embedded once, reused by both interactions
