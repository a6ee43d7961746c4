"""The prompt history behind undo steps, as data rows (no Qt, no napari)."""

import numpy as np

from napari_medsam.session import SessionState
from napari_medsam.session.prompt_history import (
    BOXES,
    CLICKS,
    LABEL_KEY,
    ROWS_KEY,
    STATE_KEY,
    PromptHistory,
    PromptRow,
    replay_stored_prompts,
    rows_matching,
    rows_to_replay,
    saved_prompt_rows,
)
from napari_medsam.types import SlicePrompt


def _click(z, y, x, positive=True):
    return PromptRow(CLICKS, np.array([z, y, x], float), positive=positive)


def test_prompt_history_hands_over_net_changes_once():
    state, history = SessionState(), PromptHistory()
    history.note_added([_click(1, 2, 3), _click(1, 5, 6, positive=False)])
    history.note_removed([_click(1, 5, 6, positive=False)])  # added and removed again: none
    history.note_state(state, 4, 1)
    state.set_prompt(4, 1, SlicePrompt(np.array([[2.0, 3.0]]), np.array([1])))
    history.note_state(state, 4, 1)  # the first "before" is the one kept
    history.note_state(state, 4, 2)  # unchanged and empty: not handed over
    extra = history.take(state, 4)
    (added, removed) = extra[ROWS_KEY]
    assert len(added) == 1 and removed == () and extra[LABEL_KEY] == 4
    np.testing.assert_allclose(added[0].data, [1, 2, 3])
    assert added[0].positive
    assert list(extra[STATE_KEY]) == [(4, 1)]
    before, after = extra[STATE_KEY][(4, 1)]
    assert before is None and after is state.get_prompt(4, 1)
    assert history.take(state, 4) == {}


def test_a_removed_row_that_was_never_added_is_handed_over_as_removed():
    history = PromptHistory()
    history.note_removed([_click(0, 1, 1)])
    added, removed = history.take(SessionState(), 2)[ROWS_KEY]
    assert added == () and len(removed) == 1


def test_rows_matching_takes_the_latest_equal_row_once_each():
    a, b = _click(0, 1, 1), _click(0, 2, 2)
    current = [a, b, _click(0, 1, 1), _click(0, 1, 1, positive=False)]
    assert rows_matching(current, [_click(0, 1, 1)]) == [2]
    assert rows_matching(current, [_click(0, 1, 1), _click(0, 1, 1)]) == [0, 2]
    assert rows_matching(current, [_click(0, 9, 9)]) == []


def test_replay_undoes_and_redoes_rows_and_stored_prompts():
    state = SessionState()
    prompt = SlicePrompt(np.array([[2.0, 3.0]]), np.array([1]))
    state.set_prompt(4, 1, prompt)
    row = _click(1, 2, 3)
    extra = {ROWS_KEY: ((row,), ()), LABEL_KEY: 4, STATE_KEY: {(4, 1): (None, prompt)}}
    logits = {(4, 1): np.zeros((2, 2)), (4, 2): np.zeros((2, 2))}
    assert rows_to_replay(extra, undo=True) == ((row,), ())
    assert rows_to_replay(extra, undo=False) == ((), (row,))
    replay_stored_prompts(extra, True, state, logits)
    assert state.get_prompt(4, 1) is None and list(logits) == [(4, 2)]  # stale logits dropped
    replay_stored_prompts(extra, False, state, logits)
    np.testing.assert_allclose(state.get_prompt(4, 1).points_yx, [[2, 3]])


def test_saved_prompts_become_rows_in_the_image_frame():
    prompts = {
        4: SlicePrompt(np.array([[2.0, 3.0]], np.float32), np.array([0]), np.array([1, 2, 5, 6])),
        1: SlicePrompt(np.array([[7.0, 8.0], [1.0, 1.0]], np.float32), np.array([1, 1]), None),
    }
    rows = saved_prompt_rows(prompts)
    assert [(r.layer, r.positive) for r in rows] == [
        (CLICKS, True), (CLICKS, True), (CLICKS, False), (BOXES, True)
    ]
    assert rows[0].data.tolist() == [1, 7, 8] and rows[2].data.tolist() == [4, 2, 3]
    assert rows[3].data.tolist() == [[4, 1, 2], [4, 1, 6], [4, 5, 6], [4, 5, 2]]
    assert rows[3].shape_type == "rectangle"
