"""Slab propagation (SD-Trans): one ``predict_stack`` call per slab of D slices."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_medsam.prompts.intensity import IntensityWindow
from napari_medsam.tasks.propagate import DEFAULT_BOX_MARGIN, propagate
from napari_medsam.tasks.slab import engine_slab_depth, next_slab, predict_slab
from napari_medsam.tasks.propagate_options import PropagationOptions
from napari_medsam.types import Progress, SliceMask, SlicePrediction, SlicePrompt

WINDOW = IntensityWindow(0.0, 1.0)


def _disk_volume(n_z=12):
    """Label 1: a disk on every slice of a (n_z, 32, 32) volume, radius 6 + z // 2 px.

    The radius grows by a pixel every second slice, so the slices that prompt the
    slabs below (2, 5, 8) have different boxes, while neighbouring slices overlap
    (IoU >= 0.75) above the default ``stop_overlap``, as an organ's slices do.
    """
    yy, xx = np.mgrid[:32, :32]
    labels = np.zeros((n_z, 32, 32), np.uint8)
    for z in range(n_z):
        r = 6 + z // 2
        labels[z][(yy - 16) ** 2 + (xx - 16) ** 2 <= r * r] = 1
    return labels


class SlabEngine:
    """Numpy engine with SD-Trans-like slabs: answers the truth, records every slab."""

    name = "slab fake"
    image_size = 256

    def __init__(self, masks_zyx, depth=3, scores=None):
        self.masks_zyx = np.asarray(masks_zyx, bool)
        self.slab_depth = depth
        self.scores = scores or {}
        self.slabs: list[list[int]] = []
        self.prompts: dict[int, SlicePrompt] = {}
        self.predicted: list = []  # per-slice predict calls (must stay empty)

    def embed(self, image_yx, cache_key=None):
        raise AssertionError("the slab path must not embed slice by slice")

    def predict(self, image_yx, prompt, cache_key=None):
        self.predicted.append(cache_key)
        return SlicePrediction(self.masks_zyx[cache_key[1]].copy(), None, 0.9)

    def predict_stack(self, images_yx, prompts, cache_key=None):
        _, first, last = cache_key  # ("slab", SliceKey(prefix, z0, lo, hi), z1)
        zs = list(range(first.z, last + 1))
        assert len(images_yx) == len(prompts) == len(zs) <= self.slab_depth
        self.slabs.append(zs)
        out = []
        for z, image, prompt in zip(zs, images_yx, prompts, strict=True):
            assert image.dtype == np.float32 and image.shape == self.masks_zyx.shape[1:]
            self.prompts[z] = prompt
            logits = np.full((256, 256), float(z), np.float32)
            out.append(SlicePrediction(self.masks_zyx[z].copy(), logits, self.scores.get(z, 0.9)))
        return out


def _run(engine, labels, start_z, **kw):
    image = labels.astype(np.float32)
    items = list(propagate(engine, image, WINDOW, start_z, labels[start_z] == 1, 1, "v", PropagationOptions(**kw)))
    return [i for i in items if isinstance(i, SliceMask)], [
        i for i in items if isinstance(i, Progress)
    ]


def _box(mask, margin=DEFAULT_BOX_MARGIN):
    ys, xs = np.nonzero(mask)
    h, w = mask.shape
    return [
        max(ys.min() - margin, 0),
        max(xs.min() - margin, 0),
        min(ys.max() + margin, h - 1),
        min(xs.max() + margin, w - 1),
    ]


def test_slabs_of_depth_d_paint_every_slice_prompted_from_the_last_finished_slice():
    labels = _disk_volume()
    engine = SlabEngine(labels == 1, depth=3)
    masks, progress = _run(engine, labels, 5)
    assert [m.z for m in masks] == [6, 7, 8, 9, 10, 11, 4, 3, 2, 1, 0]
    assert engine.slabs == [[6, 7, 8], [9, 10, 11], [2, 3, 4], [0, 1]]  # in slice order
    assert engine.predicted == []  # no per-slice calls
    for m in masks:
        np.testing.assert_array_equal(m.mask_yx, labels[m.z] == 1)
        assert m.label == 1 and m.logits_lowres[0, 0] == m.z
    # every slice of a slab is prompted with the box of the slice finished before the slab
    for slab, source in (([6, 7, 8], 5), ([9, 10, 11], 8), ([2, 3, 4], 5), ([0, 1], 2)):
        for z in slab:
            np.testing.assert_array_equal(engine.prompts[z].box_yxyx, _box(labels[source] == 1))
    assert progress[-1].done == progress[-1].total == 11
    assert [p.done for p in progress] == sorted(p.done for p in progress)


def test_stop_rules_apply_per_slice_and_discard_the_rest_of_the_slab():
    labels = _disk_volume()
    engine = SlabEngine(labels == 1, depth=4, scores={8: 0.1, 3: 0.1})
    masks, progress = _run(engine, labels, 5)
    # 8 fails the score: 9 (same slab) is dropped and nothing further is asked
    assert [m.z for m in masks] == [6, 7, 4]
    assert engine.slabs == [[6, 7, 8, 9], [1, 2, 3, 4]]
    assert progress[-1].done == progress[-1].total
    masks, _ = _run(SlabEngine(labels == 1, depth=4), labels, 5, stop_score=0.95)
    assert masks == []  # the default-style stop rules apply in slab mode too


def test_locked_slices_cut_slabs_and_seed_the_next_one():
    labels = _disk_volume()
    engine = SlabEngine(labels == 1, depth=3)
    hand = np.zeros((32, 32), bool)
    hand[8:25, 7:26] = True  # the user's correction on slice 7 (IoU 0.86 with slice 8's disk)
    masks, _ = _run(engine, labels, 5, direction="up", locked_zs={7}, locked_masks={7: hand})
    assert [m.z for m in masks] == [6, 8, 9, 10, 11]
    assert engine.slabs == [[6], [8, 9, 10], [11]]
    for z in (8, 9, 10):
        np.testing.assert_array_equal(engine.prompts[z].box_yxyx, _box(hand))
    masks, _ = _run(SlabEngine(labels == 1), labels, 5, direction="up", locked_zs={7},
                    locked_masks={7: hand}, stop_at_locked=True)  # fmt: skip
    assert [m.z for m in masks] == [6]


def test_slab_depth_one_and_plain_engines_use_the_per_slice_path():
    labels = _disk_volume(n_z=6)
    engine = SlabEngine(labels == 1, depth=3)
    engine.embed = lambda image_yx, cache_key=None: None
    masks, _ = _run(engine, labels, 2, slab_depth=1)
    assert [m.z for m in masks] == [3, 4, 5, 1, 0]
    assert engine.slabs == [] and [k[1] for k in engine.predicted] == [3, 4, 5, 1, 0]
    assert engine_slab_depth(engine) == 3 and engine_slab_depth(engine, 2) == 2
    assert engine_slab_depth(engine, 9) == 3
    assert engine_slab_depth(object()) == 1
    with pytest.raises(ValueError, match=">= 1"):
        engine_slab_depth(engine, 0)
    assert next_slab([6, 7, 8, 9], 1, 3, {9}) == [7, 8]
    with pytest.raises(ValueError, match="consecutive"):
        predict_slab(engine, labels.astype(np.float32), WINDOW, [1, 3], SlicePrompt(), None)


class PerSliceStack:
    """``predict_stack`` done slice by slice with the wrapped engine (no SD-Trans context)."""

    def __init__(self, engine):
        self.engine = engine
        self.name, self.image_size, self.slab_depth = engine.name, engine.image_size, 4
        self.slabs = []

    def predict_stack(self, images_yx, prompts, cache_key=None):
        self.slabs.append(len(images_yx))
        return [self.engine.predict(im, p) for im, p in zip(images_yx, prompts, strict=True)]


def test_fresh_medsa_slabs_equal_slice_by_slice():
    from napari_medsam.model.medsa.build import backbone_spec, build_medsa
    from napari_medsam.model.medsa.config import MedSAConfig
    from napari_medsam.model.medsa.engine import MedSAEngine

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        weights = backbone_spec("tiny_tinyvit").builder().state_dict()
        config = MedSAConfig(backbone="tiny_tinyvit", depth=4)
        engine = MedSAEngine(build_medsa("tiny_tinyvit", weights, config), device="cpu")
        assert engine.slab_depth == 4 and engine_slab_depth(engine) == 4
        yy, xx = np.mgrid[:48, :48]
        volume = np.stack(
            [
                0.2 + 0.6 * (((yy - 24) / (8 + z)) ** 2 + ((xx - 24) / 14) ** 2 <= 1)
                for z in range(9)
            ]
        ).astype(np.float32)
        seed = volume[4] > 0.5
        loose = PropagationOptions(stop_score=0.0, stop_overlap=0.0, min_area=1)  # a random decoder
        run = lambda e: [  # noqa: E731
            i for i in propagate(e, volume, WINDOW, 4, seed, 1, "v", loose)
            if isinstance(i, SliceMask)
        ]  # fmt: skip
        slab = run(engine)
        reference_engine = PerSliceStack(engine)
        reference = run(reference_engine)
    finally:
        torch.set_num_threads(threads)
    assert reference_engine.slabs == [4, 4]
    assert [m.z for m in slab] == [5, 6, 7, 8, 3, 2, 1, 0]
    assert [m.z for m in reference] == [m.z for m in slab]
    for a, b in zip(slab, reference, strict=True):
        assert a.mask_yx.any()
        np.testing.assert_array_equal(a.mask_yx, b.mask_yx)
        np.testing.assert_allclose(a.logits_lowres, b.logits_lowres, atol=1e-5)
        assert abs(a.score - b.score) < 1e-5
