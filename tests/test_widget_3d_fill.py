"""The dock's Fill (F), its stop report and the advanced fold, with the fake engine on real workers."""

from __future__ import annotations

import numpy as np
import pytest
from fakes import FakeEngine
from napari.utils.notifications import NotificationSeverity, notification_manager
from test_widget_3d import (  # the 3D tests' helpers and phantom
    LIVER,
    SEED_Z,
    _add_box,
    _bbox,
    _key,
    _open,
    _propagate_with_key,
    _segment_liver,
    _wait_idle,
    never_ask,  # noqa: F401 (autouse fixture)
    phantom,  # noqa: F401 (fixture)
)


def _infos_since(n0):
    return [
        str(r.message) for r in notification_manager.records[n0:]
        if r.severity == NotificationSeverity.INFO
    ]  # fmt: skip


def test_propagation_reports_where_and_why_each_direction_stopped(make_napari_viewer, qtbot, phantom):  # noqa: F811
    truth = phantom.labels_zyx
    viewer, widget, image = _open(make_napari_viewer, phantom.image_zyx, FakeEngine(truth_zyx=truth))
    _segment_liver(qtbot, viewer, widget, image, truth)
    n0 = len(notification_manager.records)
    _propagate_with_key(qtbot, viewer, widget, image, SEED_Z)
    report = widget.session3d.controls.stop_label.text()
    # the liver's pointy ends overlap their neighbours too little (see test_widget_3d)
    assert report.startswith("label 1: stopped above slice 11: overlap ")
    assert "; stopped below slice 4: overlap " in report
    assert report in widget.controls.status_label.text()
    assert any(report in m for m in _infos_since(n0))


def test_fill_between_two_boxed_slices_keeps_them_and_fills_the_gap(make_napari_viewer, qtbot, phantom):  # noqa: F811
    truth = phantom.labels_zyx
    engine = FakeEngine(truth_zyx=truth)
    viewer, widget, image = _open(make_napari_viewer, phantom.image_zyx, engine)
    labels, s3 = widget.labels, widget.session3d
    for z in (5, 10):
        _segment_liver(qtbot, viewer, widget, image, truth, z=z)
    before = {z: labels.data[z].copy() for z in (5, 10)}
    assert not (labels.data[6:10] == LIVER).any()
    n = len(engine.predict_calls)
    _key(viewer.layers["boxes"], "F")
    assert s3.propagation_job is not None
    _wait_idle(qtbot, widget)
    for z in (5, 10):
        np.testing.assert_array_equal(labels.data[z], before[z])  # corrected slices kept
    got, want = labels.data[6:10] == LIVER, truth[6:10] == LIVER
    assert 2 * (got & want).sum() / (got.sum() + want.sum()) > 0.9
    assert not (labels.data[:5] == LIVER).any() and not (labels.data[11:] == LIVER).any()
    assert {c.cache_key.z for c in engine.predict_calls[n:]} == {6, 7, 8, 9}
    assert s3.undo_stack.undo_names[-1] == "fill label 1"
    s3.undo()
    assert not (labels.data[6:10] == LIVER).any()


def test_fill_needs_two_slices_and_the_advanced_fold_sets_the_options(make_napari_viewer, qtbot, phantom):  # noqa: F811
    truth = phantom.labels_zyx
    viewer, widget, image = _open(make_napari_viewer, phantom.image_zyx, FakeEngine(truth_zyx=truth))
    s3 = widget.session3d
    n0 = len(notification_manager.records)
    assert s3.fill() is None  # nothing to fill between
    assert any("two or more" in str(r.message) for r in notification_manager.records[n0:])
    adv = s3.controls.advanced
    assert adv.body.isHidden() and adv.options() == {}
    assert adv.policy().gaps == "fill"
    adv.toggle.setChecked(True)
    assert not adv.body.isHidden()
    adv.stop_score_spin.setValue(0.5)
    adv.stop_overlap_spin.setValue(0.3)
    adv.mask_prompt_combo.setCurrentText("binary")
    adv.gaps_combo.setCurrentText("keep")
    assert adv.options() == {"stop_score": 0.5, "stop_overlap": 0.3, "mask_prompt": "binary"}
    assert adv.policy().gaps == "keep"
    # the user's floors reach the run: a score floor above the fake's 0.9 stops both directions
    adv.stop_score_spin.setValue(0.95)
    adv.mask_prompt_combo.setCurrentText("none")
    _segment_liver(qtbot, viewer, widget, image, truth)
    s3.propagate(start_z=SEED_Z)
    _wait_idle(qtbot, widget)
    assert {int(z) for z in np.nonzero((widget.labels.data == LIVER).any(axis=(1, 2)))[0]} == {SEED_Z}
    assert s3.controls.stop_label.text() == (
        "label 1: stopped above slice 9: score 0.90 < 0.95; stopped below slice 7: score 0.90 < 0.95"
    )


@pytest.mark.parametrize("key", ["Shift-P"])
def test_repropagate_fills_between_a_new_box_and_the_seed(make_napari_viewer, qtbot, phantom, key):  # noqa: F811
    truth = phantom.labels_zyx
    engine = FakeEngine(truth_zyx=truth)
    viewer, widget, image = _open(make_napari_viewer, phantom.image_zyx, engine)
    labels = widget.labels
    _segment_liver(qtbot, viewer, widget, image, truth, z=5)
    _add_box(viewer.layers["boxes"], image, 9, *_bbox(truth[9] == LIVER))
    qtbot.waitUntil(lambda: (labels.data[9] == LIVER).any(), timeout=10000)
    _wait_idle(qtbot, widget)
    n = len(engine.predict_calls)
    _propagate_with_key(qtbot, viewer, widget, image, 9, key=key)
    zs = {c.cache_key.z for c in engine.predict_calls[n:]}
    # from slice 9 (corrected last): fill 6..8 towards slice 5, propagate up beyond 9
    assert {6, 7, 8, 10} <= zs and not zs & {5, 9}
    assert all((labels.data[z] == LIVER).any() for z in range(5, 11))
