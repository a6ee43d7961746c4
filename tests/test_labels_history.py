"""napari's private paint atom, read by ``session.edits.history_item_to_flat``, pinned.

napari 0.9 stores brush, fill and polygon edits as ``_MaskedPaintAtom`` (a private
NamedTuple) and ``data_setitem`` edits as ``(indices, old, new)`` tuples. The reader
duck-types the first; this test fails when a napari release changes its fields.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")
from napari.layers.labels.labels import _MaskedPaintAtom  # noqa: E402

from napari_medsam.session.edits import brush_edit, history_item_to_flat  # noqa: E402


def test_napari_masked_paint_atom_has_the_fields_the_reader_uses():
    assert {"slice_key", "mask", "old_values", "new_value"} <= set(_MaskedPaintAtom._fields)


def test_both_atom_kinds_become_flat_voxel_diffs():
    shape = (3, 4, 4)
    brush = _MaskedPaintAtom(
        (slice(1, 2), slice(0, 2), slice(1, 3)),
        np.array([[[True, False], [True, True]]]),
        np.array([0, 0, 5]),
        7,
    )
    setitem = ((np.array([0]), np.array([0]), np.array([0])), np.array([3]), 4)
    index, old, new = history_item_to_flat([brush, setitem], shape)
    np.testing.assert_array_equal(index, [17, 21, 22, 0])
    np.testing.assert_array_equal(old, [0, 0, 5, 3])
    np.testing.assert_array_equal(new, [7, 7, 7, 4])


def test_an_unmasked_atom_covers_its_whole_box():
    atom = _MaskedPaintAtom((slice(0, 1), slice(2, 4), slice(0, 1)), None, np.array([1, 2]), 9)
    index, old, new = history_item_to_flat([atom], (2, 4, 4))
    np.testing.assert_array_equal(index, [8, 12])
    np.testing.assert_array_equal(old, [1, 2])
    np.testing.assert_array_equal(new, [9, 9])


def test_brush_edit_keeps_locked_voxels_out_and_names_their_old_values():
    shape = (1, 2, 3)
    # a brush of label 2 over (0,0,0) background and (0,0,1), (0,1,2) of locked label 5;
    # a second atom paints (0,0,1) again (its old value is the first atom's new one)
    zyx = (np.array([0, 0, 0]), np.array([0, 0, 1]), np.array([0, 1, 2]))
    first = (zyx, np.array([0, 5, 5]), 2)
    again = ((np.array([0]), np.array([0]), np.array([1])), np.array([2]), 3)
    edit = brush_edit([[first, again]], shape, locked_ids={5})
    assert edit.reverted == 2
    assert edit.revert_index.tolist() == [1, 5] and edit.revert_old.tolist() == [5, 5]
    assert edit.index.tolist() == [0] and edit.old.tolist() == [0] and edit.new.tolist() == [2]
    free = brush_edit([[first]], shape, locked_ids=())
    assert free.reverted == 0 and free.index.tolist() == [0, 1, 5]
