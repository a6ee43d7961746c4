"""The one re-propagation policy: its plan, its executor, and the never-overwrite rules."""

from __future__ import annotations

import numpy as np
import pytest

from oracle_engines import OracleEngine
from napari_medsam.prompts.intensity import IntensityWindow
from napari_medsam.tasks.policy import (
    DEFAULT_POLICY,
    PlannedStep,
    RepropagationPolicy,
    plan_repropagation,
)
from napari_medsam.tasks.repropagate import fill_object, repropagate
from napari_medsam.types import DirectionEnd, SliceMask

WINDOW = IntensityWindow(0.0, 1.0)


def _column(n_z=20, size=24):
    """Label 1 on every slice 2..17: a disk whose radius drifts slowly."""
    labels = np.zeros((n_z, size, size), np.uint8)
    yy, xx = np.mgrid[:size, :size]
    for z in range(2, 18):
        r = 7 + (z % 2)
        labels[z][(yy - 12) ** 2 + (xx - 12) ** 2 <= r * r] = 1
    return labels


def test_plan_fills_gaps_and_propagates_beyond_the_outermost_corrections():
    assert plan_repropagation(10, {4, 10, 15}) == [
        PlannedStep("fill", 10, 15), PlannedStep("fill", 4, 10),
    ]  # fmt: skip
    assert plan_repropagation(15, {4, 10, 15}) == [
        PlannedStep("propagate", 15, None, "up", False), PlannedStep("fill", 10, 15),
    ]  # fmt: skip
    assert plan_repropagation(4, {4}) == [
        PlannedStep("propagate", 4, None, "up", False), PlannedStep("propagate", 4, None, "down", False),
    ]  # fmt: skip
    assert plan_repropagation(5, {4, 5, 6}) == []  # nothing between neighbours
    keep = RepropagationPolicy(gaps="keep", clear_past_end=True)
    assert plan_repropagation(10, {4, 10}, keep) == [PlannedStep("propagate", 10, None, "up", True)]
    prop = RepropagationPolicy(gaps="propagate")
    assert plan_repropagation(10, {4, 10}, prop)[1] == PlannedStep("propagate", 10, 4, "down")
    assert DEFAULT_POLICY.to_dict() == {"gaps": "fill", "clear_past_end": False, "fill_refine": "box"}
    with pytest.raises(ValueError, match="gaps"):
        RepropagationPolicy(gaps="both")


def _run(task):
    items = list(task)
    return [i for i in items if isinstance(i, SliceMask)], [i for i in items if isinstance(i, DirectionEnd)]


@pytest.mark.parametrize("gaps", ["fill", "propagate", "keep"])
def test_repropagation_never_yields_a_corrected_slice(gaps):
    labels = _column()
    truth = labels == 1
    corrected = {5: truth[5], 9: np.zeros_like(truth[9]), 12: truth[12]}  # 9: object erased by hand
    corrected[9][10:14, 10:14] = True
    masks, _ = _run(repropagate(
        OracleEngine(labels), labels.astype(np.float32), WINDOW, 12, corrected, 1, "v",
        RepropagationPolicy(gaps=gaps),
    ))  # fmt: skip
    zs = [m.z for m in masks]
    assert not set(zs) & set(corrected)
    assert [z for z in zs if z > 12] == list(range(13, 18))  # beyond: to the object's end
    between = sorted(z for z in zs if z < 12)
    assert between == ([] if gaps == "keep" else [10, 11])  # only the gap next to slice 12


def test_fill_object_fills_every_gap_and_keeps_corrected_slices():
    labels = _column()
    truth = labels == 1
    corrected = {3: truth[3], 9: truth[9], 16: truth[16]}
    masks, _ = _run(fill_object(OracleEngine(labels), labels.astype(np.float32), WINDOW,
                                corrected, 1, "v"))  # fmt: skip
    assert [m.z for m in masks] == [4, 5, 6, 7, 8, 10, 11, 12, 13, 14, 15]
    for m in masks:
        np.testing.assert_array_equal(m.mask_yx, truth[m.z])
    with pytest.raises(ValueError, match="not corrected slices"):
        list(repropagate(OracleEngine(labels), labels, WINDOW, 7, corrected, 1))


def test_corrections_on_several_slices_are_spread_at_once_without_repeats():
    steps = plan_repropagation({6, 9}, {6, 8, 9})
    assert steps == [
        PlannedStep("fill", 6, 8), PlannedStep("propagate", 6, None, "down", False),
        PlannedStep("propagate", 9, None, "up", False),
    ]  # fmt: skip
    assert plan_repropagation({4, 10}, {4, 10}) == [
        PlannedStep("fill", 4, 10), PlannedStep("propagate", 4, None, "down", False),
        PlannedStep("propagate", 10, None, "up", False),
    ]  # fmt: skip


def test_the_policy_fills_as_fill_between_does_by_default():
    from napari_medsam.tasks.fill import DEFAULT_REFINE, REFINES

    assert DEFAULT_POLICY.fill_refine == DEFAULT_REFINE and DEFAULT_REFINE in REFINES
