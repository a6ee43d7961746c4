"""Fill and Re-propagate through the session never overwrite a hand-edited slice nor a
locked object, even when the model's answer covers them (the app's path: requests run,
results painted by ``apply_result``)."""

from __future__ import annotations

import numpy as np

from oracle_engines import OracleEngine
from napari_medsam.prompts.intensity import IntensityWindow
from napari_medsam.session.annotation import AnnotationSession
from napari_medsam.session.requests import run_request
from napari_medsam.types import SliceMask, SlicePrompt

WINDOW = IntensityWindow(0.0, 1.0)
LOCKED = 2


def _truth(n_z: int = 14) -> np.ndarray:
    """Object 1: a disc of radius 6 on slices 2..11 of a (14, 24, 24) volume."""
    labels = np.zeros((n_z, 24, 24), np.uint8)
    yy, xx = np.mgrid[:24, :24]
    labels[2:12][:, (yy - 11) ** 2 + (xx - 11) ** 2 <= 36] = 1
    return labels


def _run(session: AnnotationSession, engine, truth, request, by_user: bool = False) -> list[int]:
    painted = []
    for item in run_request(engine, truth.astype(np.float32), WINDOW, request, "v"):
        if isinstance(item, SliceMask):
            session.apply_result(item, by_user=by_user)
            painted.append(item.z)
    return painted


def test_fill_and_repropagate_keep_hand_edits_and_locked_objects():
    truth = _truth()
    engine = OracleEngine(truth)  # answers with the whole disc, wherever the other object is
    session = AnnotationSession(np.zeros(truth.shape, np.uint16))
    box = SlicePrompt(box_yxyx=np.array([4, 4, 18, 18], np.float32))
    for z in (3, 10):  # two boxed slices: corrected by the user's prompts
        _run(session, engine, truth, session.segment_request(1, z, box), by_user=True)
    # a hand edit on slice 6: half the disc erased with the brush
    session.labels[6] = np.where(truth[6] == 1, 1, 0)
    session.labels[6][:, :11] = 0
    session.note_corrected(1, 6)
    hand = np.array(session.labels[6], copy=True)
    # another object, locked, inside the disc on slice 8
    session.ensure_registered(LOCKED, "locked")
    session.labels[8][9:13, 9:13] = LOCKED
    session.state.registry.set_locked(LOCKED, True)
    locked_voxels = session.labels == LOCKED

    with session.run(1, "fill"):
        painted = _run(session, engine, truth, session.fill_request(1))
    assert painted == [4, 5, 7, 8, 9]  # between the corrected slices 3, 6, 10 only
    np.testing.assert_array_equal(session.labels[6], hand)
    np.testing.assert_array_equal(session.labels == LOCKED, locked_voxels)
    assert ((session.labels[8] == 1) == ((truth[8] == 1) & ~locked_voxels[8])).all()

    session.labels[6][:, 11:14] = 0  # a second hand edit, then Re-propagate from it
    session.note_corrected(1, 6)
    hand = np.array(session.labels[6], copy=True)
    boxed = {z: np.array(session.labels[z], copy=True) for z in (3, 10)}
    with session.run(1):
        painted = _run(session, engine, truth, session.propagate_request(1, again=True))
    assert painted and not {3, 6, 10} & set(painted)
    np.testing.assert_array_equal(session.labels[6], hand)
    for z, before in boxed.items():
        np.testing.assert_array_equal(session.labels[z], before)
    np.testing.assert_array_equal(session.labels == LOCKED, locked_voxels)

    with session.run(1):  # Propagate from slice 3 passes through the corrected slices too
        painted = _run(session, engine, truth, session.propagate_request(1, start_z=3))
    assert not {3, 6, 10} & set(painted)
    np.testing.assert_array_equal(session.labels[6], hand)
    np.testing.assert_array_equal(session.labels == LOCKED, locked_voxels)
