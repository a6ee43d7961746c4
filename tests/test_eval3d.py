"""The interactive 3D protocol with numpy engines of known answers."""

from __future__ import annotations

import numpy as np
import pytest

from oracle_engines import EmptyEngine, OracleEngine
from napari_medsam.evaluation.protocol3d import (
    dice3d,
    dsc_auc,
    next_click_3d,
    Protocol3DSettings,
    run_protocol3d,
)
from napari_medsam.evaluation.report3d import format_table3d
from napari_medsam.prompts.intensity import IntensityWindow
from napari_medsam.tasks.policy import GAP_MODES, RepropagationPolicy

WINDOW = IntensityWindow(0.0, 1.0)


def _volume():
    labels = np.zeros((14, 32, 32), np.uint8)
    yy, xx = np.mgrid[:32, :32]
    for z in range(2, 12):
        # largest in the middle; neighbouring slices overlap (IoU >= 0.75) as organs do,
        # above propagation's default stop_overlap
        r = 6 + min(z - 2, 11 - z)
        labels[z][(yy - 10) ** 2 + (xx - 10) ** 2 <= r * r] = 1
    labels[4:9, 22:28, 22:28] = 2
    return labels


def test_dsc_auc_arithmetic():
    assert dsc_auc([0.0, 1.0]) == 0.5
    assert dsc_auc([0.5] * 6) == pytest.approx(0.5)
    assert dsc_auc([0.0, 1, 1, 1, 1, 1]) == pytest.approx((0.5 + 4) / 5)
    assert dsc_auc([0.7]) == 0.7
    with pytest.raises(ValueError):
        dsc_auc([])
    a = np.zeros((2, 2, 2), bool)
    assert dice3d(a, a) == 1.0
    b = a.copy()
    b[0, 0, 0] = True
    assert dice3d(b, a) == 0.0 and dice3d(b, b) == 1.0


def test_next_click_goes_to_centre_of_largest_error_component():
    gt = np.zeros((9, 12, 12), bool)
    gt[1:8, 1:8, 1:8] = True  # 7^3 missed: false negative
    pred = np.zeros_like(gt)
    pred[0:2, 9:12, 9:12] = True  # small false positive
    assert next_click_3d(pred, gt) == (4, 4, 4, True)
    pred2 = gt.copy()
    pred2[:, 9:12, 0:12] = True  # big false positive slab
    z, y, x, positive = next_click_3d(pred2, gt)
    assert not positive and y == 10 and not gt[z, y, x]
    assert next_click_3d(gt, gt) is None
    # the spacing enters the distance transform: thick slices push the centre in-plane
    slab = np.ones((3, 9, 9), bool)
    assert next_click_3d(np.zeros_like(slab), slab)[:3] == (1, 1, 1)  # ties: first in raster order
    assert next_click_3d(np.zeros_like(slab), slab, spacing_zyx_mm=(10.0, 1.0, 1.0))[1:3] == (4, 4)


def test_oracle_engine_gives_dice_one_without_clicks():
    labels = _volume()
    engine = OracleEngine(labels)
    report = run_protocol3d(engine, labels.astype(np.float32), labels, [1, 2, 9], WINDOW,
                            Protocol3DSettings(max_clicks=5), {1: "ball", 2: "cube"})  # fmt: skip
    assert report["skipped"] == [9]
    for key in ("1", "2"):
        r = report["labels"][key]
        assert r["dice_per_interaction"] == [1.0] * 6
        assert r["final_dice"] == 1.0 and r["dsc_auc"] == 1.0 and r["clicks"] == []
        assert r["propagation_seconds"] >= 0.0
    assert report["labels"]["1"]["z_start"] == 6 and report["labels"]["1"]["name"] == "ball"
    assert report["labels"]["1"]["initial_slices"] == 9
    assert report["mean"]["final_dice"] == 1.0
    table = format_table3d(report)
    assert "ball" in table and "mean" in table


def test_empty_engine_gives_dice_zero_and_clicks_positive():
    labels = _volume()
    engine = EmptyEngine()
    report = run_protocol3d(engine, labels.astype(np.float32), labels, [1], WINDOW,
                            Protocol3DSettings(max_clicks=3))
    r = report["labels"]["1"]
    assert r["dice_per_interaction"] == [0.0] * 4 and r["final_dice"] == 0.0 and r["dsc_auc"] == 0.0
    assert len(r["clicks"]) == 3 and all(c["positive"] for c in r["clicks"])
    assert all(labels[c["z"], c["y"], c["x"]] == 1 for c in r["clicks"])


class StubbornOracle(OracleEngine):
    """The oracle, except that slice ``bad_z`` comes out empty unless it gets a positive click."""

    def __init__(self, labels_zyx, bad_z):
        super().__init__(labels_zyx)
        self.bad_z = bad_z

    def _mask(self, image_yx, prompt, cache_key):
        if cache_key[1] == self.bad_z and not (np.asarray(prompt.point_labels) == 1).any():
            return np.zeros(np.shape(image_yx), bool)
        return super()._mask(image_yx, prompt, cache_key)


def test_a_click_corrects_a_slice_and_repropagation_recovers_the_rest():
    labels = _volume()
    engine = StubbornOracle(labels, bad_z=8)
    report = run_protocol3d(engine, labels.astype(np.float32), labels, [1], WINDOW,
                            Protocol3DSettings(max_clicks=5))
    r = report["labels"]["1"]
    d = r["dice_per_interaction"]
    assert d[0] < 0.9  # propagation up stopped at slice 8
    assert r["clicks"][0]["positive"] and r["clicks"][0]["z"] >= 8
    # the click's slice is kept and re-propagation fills the object up to its end; the
    # slice the engine cannot do without a click needs its own click
    assert d[0] < d[1] <= d[2] == 1.0 and r["final_dice"] == 1.0 and len(r["clicks"]) <= 2
    assert r["dsc_auc"] == pytest.approx(dsc_auc(d))
    assert all(labels[c["z"], c["y"], c["x"]] == 1 for c in r["clicks"])


def test_shape_mismatch_is_an_error():
    labels = _volume()
    with pytest.raises(ValueError, match="shape"):
        run_protocol3d(EmptyEngine(), labels[:3].astype(np.float32), labels, [1], WINDOW)


def test_correction_box_uses_the_neighbour_and_contains_positive_clicks():
    from napari_medsam.evaluation.protocol3d import correction_box

    pred = np.zeros((6, 10, 10), bool)
    pred[2, 2:5, 3:6] = True  # the box slice is 2; slices 3.. are empty
    np.testing.assert_array_equal(correction_box(pred, 2, 2, np.zeros((0, 2))), [2, 3, 4, 5])
    np.testing.assert_array_equal(correction_box(pred, 4, 2, np.zeros((0, 2))), [2, 3, 4, 5])
    np.testing.assert_array_equal(correction_box(pred, 4, 2, np.array([[8, 1]])), [2, 1, 8, 5])
    assert correction_box(np.zeros_like(pred), 4, 2, np.zeros((0, 2))) is None
    np.testing.assert_array_equal(
        correction_box(np.zeros_like(pred), 4, 2, np.array([[1, 1]])), [1, 1, 1, 1]
    )


def test_clicked_voxels_are_not_clicked_again():
    gt = np.zeros((3, 5, 5), bool)
    gt[1, 2, 2] = True
    gt[1, 2, 3] = True
    clicked = np.zeros_like(gt)
    first = next_click_3d(np.zeros_like(gt), gt, clicked_zyx=clicked)
    clicked[first[:3]] = True
    second = next_click_3d(np.zeros_like(gt), gt, clicked_zyx=clicked)
    assert second[:3] != first[:3] and second[3]
    clicked[second[:3]] = True
    assert next_click_3d(np.zeros_like(gt), gt, clicked_zyx=clicked) is None


def test_every_gap_policy_recovers_and_the_report_states_policy_box_and_stops():
    labels = _volume()
    reports = {
        gaps: run_protocol3d(
            StubbornOracle(labels, bad_z=8), labels.astype(np.float32), labels, [1], WINDOW,
            Protocol3DSettings(policy=RepropagationPolicy(gaps=gaps)),
        )
        for gaps in GAP_MODES
    }  # fmt: skip
    for gaps, report in reports.items():
        assert report["policy"] == {"gaps": gaps, "clear_past_end": False, "fill_refine": "box"}
        assert report["box"]["kind"] == "loose" and report["box"]["seed"] == 0
        assert report["labels"]["1"]["final_dice"] == 1.0
    r = reports["fill"]["labels"]["1"]
    ups = [s for s in r["stops"] if s["direction"] == "up"]
    assert ups[0]["stop_z"] == 8 and ups[0]["reason"].startswith("area 0 px")
    assert ups[0]["text"] == f"stopped above slice 8: {ups[0]['reason']}"
    assert r["slices_reached"] < r["truth_slices"]
    tight = run_protocol3d(OracleEngine(labels), labels.astype(np.float32), labels, [1], WINDOW,
                           Protocol3DSettings(box="tight"))  # fmt: skip
    assert tight["box"] == {"kind": "tight"}
    with pytest.raises(ValueError, match="box"):
        Protocol3DSettings(box="x")
    with pytest.raises(ValueError, match="gaps"):
        RepropagationPolicy(gaps="x")


def test_the_loose_box_is_seeded_and_holds_the_object():
    labels = _volume()
    a = run_protocol3d(OracleEngine(labels), labels.astype(np.float32), labels, [1], WINDOW)
    b = run_protocol3d(OracleEngine(labels), labels.astype(np.float32), labels, [1], WINDOW)
    c = run_protocol3d(OracleEngine(labels), labels.astype(np.float32), labels, [1], WINDOW,
                       Protocol3DSettings(box_seed=3))  # fmt: skip
    box_a, box_c = a["labels"]["1"]["box"], c["labels"]["1"]["box"]
    assert box_a == b["labels"]["1"]["box"] and box_a != box_c
    z = a["labels"]["1"]["z_start"]
    ys, xs = np.nonzero(labels[z] == 1)
    assert box_a[0] <= ys.min() and box_a[1] <= xs.min()
    assert box_a[2] >= ys.max() and box_a[3] >= xs.max()
