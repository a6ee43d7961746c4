"""Propagation cases past an object's end: a neighbour's mask as prompt, an empty target."""

import numpy as np

from napari_medsam.training.clicks.sampler import CaseSampler
from napari_medsam.training.clicks.store import NEIGHBOUR_OFFSETS, SliceStore
from napari_medsam.training.clicks import rounds

SIDE = 32


def _store(folder):
    """One record holding label 1; its slice below (offset +1) also holds label 2."""
    store = SliceStore(folder, capacity=2, embedding_shape=(2, 4, 4), side=SIDE)
    lab = np.zeros((1, SIDE, SIDE), np.int16)
    lab[0, 4:12, 4:12] = 1
    nbr = np.zeros((1, len(NEIGHBOUR_OFFSETS), SIDE, SIDE), np.int16)
    below = NEIGHBOUR_OFFSETS.index(1)
    nbr[0, below, 4:12, 4:12] = 1
    nbr[0, below, 18:26, 18:28] = 2
    store.append([{"split": "train", "volume": "v", "labels": [1], "contiguous": True,
                   "spacing_mm": 3.0}],
                 {"emb": np.zeros((1, 2, 4, 4), np.float16), "lab": lab, "nbr": nbr,
                  "spx": np.zeros((1, SIDE, SIDE), np.int16)})
    return store


def test_ended_cases_prompt_with_the_vanished_object_and_target_nothing(tmp_path):
    sampler = CaseSampler(_store(tmp_path / "s"), [0], seed=3)
    sampler.superpixel_fraction = 0.0
    sampler.empty_propagation_fraction = 1.0
    start, cases = sampler.batch(4, start="propagate")
    assert start == "propagate" and len(cases) == 4
    for case in cases:
        assert not case.gt.any()
        # the prompt is label 2 of the slice below, the object that is absent here
        assert case.prev_mask.sum() == 80 and case.prev_mask[18:26, 18:28].all()
    # the model's previous mask over the vanished object earns a negative click there
    logits = rounds.prev_tensor(cases)
    rounds.feed_back(cases, logits)
    assert all(case.labels == [0] for case in cases)
    y, x = cases[0].points_yx[0]
    assert 18 <= y < 26 and 18 <= x < 28
    # an IoU-head target of 0 for any painted pixel, 1 for an empty answer
    gt = rounds.targets(cases)
    assert float(rounds.iou_of(logits, gt).max()) == 0.0
    assert float(rounds.iou_of(-logits.abs() - 1, gt).min()) == 1.0


def test_without_the_fraction_propagation_keeps_the_present_object(tmp_path):
    sampler = CaseSampler(_store(tmp_path / "s"), [0], seed=3)
    sampler.superpixel_fraction = 0.0
    _, cases = sampler.batch(4, start="propagate")
    for case in cases:
        assert case.gt.sum() == 64 and case.prev_mask.sum() == 64
