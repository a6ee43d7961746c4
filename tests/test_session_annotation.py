"""The Qt-free annotation session: requests out, results in, one painting rule, undo."""

from __future__ import annotations

import numpy as np
import pytest

from oracle_engines import OracleEngine
from napari_medsam.prompts.intensity import IntensityWindow
from napari_medsam.session.annotation import AnnotationSession, ObjectLockedError
from napari_medsam.session.requests import (
    FillRequest,
    PropagateRequest,
    RepropagateRequest,
    SegmentRequest,
    run_request,
)
from napari_medsam.types import SliceMask, SlicePrompt

WINDOW = IntensityWindow(0.0, 1.0)


def _column(n_z=14):
    labels = np.zeros((n_z, 24, 24), np.uint8)
    yy, xx = np.mgrid[:24, :24]
    for z in range(2, 12):
        r = 5 + min(z - 2, 11 - z) // 2
        labels[z][(yy - 11) ** 2 + (xx - 11) ** 2 <= r * r] = 1
    return labels


def _run_all(session, engine, truth, request, by_user=False):
    results = [i for i in run_request(engine, truth.astype(np.float32), WINDOW, request, "v")
               if isinstance(i, SliceMask)]  # fmt: skip
    for r in results:
        session.apply_result(r, by_user=by_user)
    return results


def test_a_prompt_feeds_back_the_slice_logits_and_is_kept_as_data():
    session = AnnotationSession(np.zeros((4, 8, 8), np.uint16))
    logits = np.ones((256, 256), np.float32)
    mask = np.zeros((8, 8), bool)
    mask[2:5, 2:5] = True
    assert session.apply_result(SliceMask(1, 3, mask, 0.9, logits), by_user=True)
    request = session.segment_request(3, 1, SlicePrompt(box_yxyx=np.array([1, 1, 6, 6.0])))
    assert isinstance(request, SegmentRequest) and request.prompt.prev_logits_lowres is logits
    kept = session.state.get_prompt(3, 1)  # as data, for the autosave and the prompt layers
    np.testing.assert_array_equal(kept.box_yxyx, request.prompt.box_yxyx)
    assert request.negatives_from_yx is None
    others = session.segment_request(4, 1, SlicePrompt(box_yxyx=np.zeros(4)), True)
    assert (others.negatives_from_yx == session.labels[1]).all()
    with pytest.raises(ValueError, match="neither clicks nor a box"):
        session.segment_request(3, 1, SlicePrompt())


def test_results_follow_the_painting_rule_and_undo_as_steps():
    labels = np.zeros((3, 6, 6), np.uint16)
    labels[1, :, :2] = 7  # another object
    session = AnnotationSession(labels)
    session.ensure_registered(7, "liver")
    session.state.registry.set_locked(7, True)
    full = np.ones((6, 6), bool)
    assert session.apply_result(SliceMask(1, 2, full, 0.8, None), by_user=True)
    assert (labels[1, :, :2] == 7).all() and (labels[1, :, 2:] == 2).all()  # the lock holds
    assert session.state.corrected_zs(2) == {1} and session.scores[(2, 1)] == 0.8
    assert not session.apply_result(SliceMask(1, 7, full, 0.8, None), by_user=True)
    with pytest.raises(ObjectLockedError):
        session.segment_request(7, 1, SlicePrompt(box_yxyx=np.zeros(4)))
    step = session.undo(2)
    assert step is not None and (labels[1, :, 2:] == 0).all() and not session.state.corrected_zs(2)
    session.redo(2)
    assert (labels[1, :, 2:] == 2).all() and session.state.corrected_zs(2) == {1}


def test_propagate_then_correct_then_repropagate_through_the_session():
    truth = _column()
    session = AnnotationSession(np.zeros(truth.shape, np.uint16))
    engine = OracleEngine(truth)
    box = SlicePrompt(box_yxyx=np.array([4, 4, 18, 18], np.float32))
    _run_all(session, engine, truth, session.segment_request(1, 6, box), by_user=True)
    request = session.propagate_request(1, start_z=6)
    assert isinstance(request, PropagateRequest) and request.options.clear_past_end
    assert request.options.seed_score == session.scores[(1, 6)]
    with session.run(1):
        _run_all(session, engine, truth, request)
    np.testing.assert_array_equal(session.labels == 1, truth == 1)
    assert session.undo_stack.undo_names[-1] == "propagate label 1"
    # a hand correction on slice 9 (half the object erased), then Re-propagate from it
    session.labels[9][:, :11] = 0
    session.note_corrected(1, 9)
    again = session.propagate_request(1, again=True)
    assert isinstance(again, RepropagateRequest) and again.changed_zs == (9,)
    assert set(again.corrected_masks) == {6, 9} and again.policy == session.policy
    fill = session.fill_request(1)  # two corrected slices hold the object
    assert isinstance(fill, FillRequest) and set(fill.corrected_masks) == {6, 9}
    session.labels[9][:] = 0  # erased by hand: the app refuses to spread an empty slice
    with pytest.raises(ValueError, match="not on slice 9"):
        session.propagate_request(1, again=True)
    with pytest.raises(ValueError, match="two or more corrected slices"):
        session.fill_request(1)


def test_the_session_saves_once_per_change_and_once_per_run():
    saves = []
    session = AnnotationSession(np.zeros((3, 4, 4), np.uint16), on_change=lambda: saves.append(1))
    mask = np.ones((4, 4), bool)
    session.apply_result(SliceMask(0, 1, mask, 1.0, None), by_user=True)
    assert len(saves) == 1
    with session.run(1):
        session.apply_result(SliceMask(1, 1, mask, 1.0, None), by_user=False)
        session.apply_result(SliceMask(2, 1, mask, 1.0, None), by_user=False)
        assert len(saves) == 1  # a propagation is saved once, when it ends
    assert len(saves) == 2


@pytest.mark.parametrize("where", ["one slice", "across slices"])
def test_a_flood_of_prompts_keeps_the_session_bounded(where):
    """Issue 12's race memory, without Qt: logits cache and undo history stay bounded.

    Each result carries a full (256, 256) float32 logit map (256 KiB): a session that kept
    one per prompt, or a slice copy per undo step, grows by tens of MiB over 200 prompts.
    """
    import tracemalloc

    n_z, side = 12, 96
    session = AnnotationSession(np.zeros((n_z, side, side), np.uint8))
    rng = np.random.default_rng(1)
    placed: dict[int, list] = {}
    latest: dict[int, int] = {}  # z -> the prompt whose logits the slice holds

    def prompt(k):
        z = 5 if where == "one slice" else k % n_z
        y, x = (int(v) for v in rng.integers(6, side - 6, 2))
        placed.setdefault(z, []).append((y, x))
        points = np.array(placed[z], np.float32)
        request = session.segment_request(1, z, SlicePrompt(points, np.ones(len(points)), None))
        fed_back = request.prompt.prev_logits_lowres  # the slice's latest result only
        assert (None if fed_back is None else fed_back[0, 0]) == latest.get(z)
        latest[z] = k
        mask = np.zeros((side, side), bool)
        mask[y - 3 : y + 4, x - 3 : x + 4] = True
        logits = np.full((256, 256), k, np.float32)
        session.apply_result(SliceMask(z, 1, mask, 0.9, logits), by_user=True)

    for k in range(120):  # past the undo stack's 100 steps
        prompt(k)
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        for k in range(120, 320):
            prompt(k)
        grown = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    # allocations from before the start are not traced: the live maps (one a slice) count
    live_logits = min(n_z, len(placed)) * 256 * 256 * 4
    assert grown < live_logits + 2**20, f"{grown / 2**20:.1f} MiB over 200 prompts"
    assert len(session.logits) <= n_z  # one logit map per slice, the latest
    assert len(session.undo_stack.undo_names) <= session.undo_stack.max_steps
    assert {z: int(v[0, 0]) for (_, z), v in session.logits.items()} == latest


def test_a_prompt_step_carries_its_prompt_and_undo_takes_it_back():
    session = AnnotationSession(np.zeros((4, 8, 8), np.uint16))
    mask = np.zeros((8, 8), bool)
    mask[2:5, 2:5] = True
    session.segment_request(3, 1, SlicePrompt(box_yxyx=np.array([1, 1, 6, 6.0])))
    session.apply_result(SliceMask(1, 3, mask, 0.9, np.ones((4, 4), np.float32)), by_user=True)
    assert session.undo(3) is not None
    assert session.state.get_prompt(3, 1) is None and (3, 1) not in session.logits
    assert session.labels.max() == 0 and 1 not in session.state.corrected_zs(3)
    session.redo(3)
    assert session.state.get_prompt(3, 1) is not None and session.labels[1].sum() == 9 * 3


def test_clearing_a_slice_is_one_step_that_undo_restores():
    session = AnnotationSession(np.zeros((4, 8, 8), np.uint16))
    mask = np.zeros((8, 8), bool)
    mask[2:5, 2:5] = True
    session.segment_request(3, 2, SlicePrompt(box_yxyx=np.array([1, 1, 6, 6.0])))
    session.apply_result(SliceMask(2, 3, mask, 0.9, None), by_user=True)
    assert session.clear_slice(3, 2)
    assert session.labels.max() == 0 and session.state.get_prompt(3, 2) is None
    assert 2 not in session.state.corrected_zs(3)
    assert session.undo(3).name == "clear slice 2"
    assert session.labels[2].sum() == 9 * 3 and 2 in session.state.corrected_zs(3)
    assert session.state.get_prompt(3, 2) is not None
    session.state.registry.set_locked(3, True)
    assert not session.clear_slice(3, 2)  # locked: the prompt goes, the voxels stay
    assert session.state.get_prompt(3, 2) is None and session.labels[2].sum() == 9 * 3


def test_a_hand_edit_is_one_step_and_marks_what_it_touched_corrected():
    labels = np.zeros((3, 4, 4), np.uint16)
    labels[1, 0, 0] = 5
    session = AnnotationSession(labels)
    index = np.array([1 * 16 + 0, 2 * 16 + 5])  # erase object 5 on slice 1, paint 2 on slice 2
    old, new = labels.reshape(-1)[index].copy(), np.array([0, 2], np.uint16)
    labels.reshape(-1)[index] = new  # napari's brush wrote them already
    assert session.record_edit(index, old, new, label=2)
    assert session.state.corrected_zs(5) == {1, 2} and session.state.corrected_zs(2) == {1, 2}
    step = session.undo(2)
    assert step.name == "brush" and labels[1, 0, 0] == 5 and labels[2, 1, 1] == 0
    assert not session.state.corrected_zs(5)  # the marks the step made are undone too
    assert not session.record_edit(np.zeros(0, np.int64), np.zeros(0), np.zeros(0), label=2)
    eraser = AnnotationSession(np.zeros((2, 2, 2), np.uint16))
    eraser.record_edit(np.array([0]), np.array([0]), np.array([0]), label=4)  # background only
    assert eraser.state.corrected_zs(4) == {0}


def test_a_run_reports_where_each_direction_stopped():
    from napari_medsam.types import DirectionEnd

    session = AnnotationSession(np.zeros((4, 8, 8), np.uint16))
    assert session.stop_report() == ""
    with session.run(2):
        session.ends.append(DirectionEnd(2, "up", 2, 3, "area 0 px < 5 px"))
        session.ends.append(DirectionEnd(2, "down", 1, 0, "score 0.50 < 0.80"))
    report = session.stop_report()  # kept after the run, until the next one starts
    up, down = (e.describe() for e in session.ends)
    assert report == f"label 2: {up}; {down}"
    session.begin_run(2)
    assert session.stop_report() == ""


def test_selecting_an_object_drops_the_others_logits_and_pending_prompt_changes():
    session = AnnotationSession(np.zeros((3, 4, 4), np.uint16))
    session.logits.update({(1, 0): np.zeros(1), (2, 0): np.zeros(1), (2, 1): np.zeros(1)})
    session.prompt_history.note_state(session.state, 1, 0)
    session.select_object(2)
    assert sorted(session.logits) == [(2, 0), (2, 1)] and session.state.active_label == 2
    assert session.prompt_history.take(session.state, 1) == {}
