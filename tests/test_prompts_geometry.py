"""Resize-longest-side maths: shapes, the y/x flip, logits back to the slice, boxes from masks."""

import numpy as np
import pytest

from napari_medsam.prompts.geometry import (
    bilinear_matrix,
    box_from_mask,
    box_yxyx_to_model_xyxy,
    longest_side_shape,
    lowres_logits_to_slice,
    points_yx_to_model_xy,
    resize_bilinear,
    resized_shape,
)


@pytest.mark.parametrize(
    ("hw", "side", "expected"),
    [
        ((512, 512), 1024, (1024, 1024)),
        ((101, 122), 256, (212, 256)),  # 101 * 256 / 122 = 211.9 -> 212 (round half up)
        ((122, 101), 256, (256, 212)),
        ((3, 5), 256, (154, 256)),  # 153.6 -> 154
        ((640, 480), 1024, (1024, 768)),
    ],
)
def test_longest_side_shape(hw, side, expected):
    assert longest_side_shape(hw, side) == expected


def test_longest_side_shape_rejects_empty():
    with pytest.raises(ValueError):
        longest_side_shape((0, 10), 256)


def test_points_flip_yx_to_xy_on_non_square_slice():
    # (H, W) = (50, 100) -> model (128, 256): both axes scale by 2.56, x must come from col;
    # a click is the centre of its pixel: (i + 0.5) * scale
    pts = points_yx_to_model_xy(np.array([[10.0, 80.0], [49.0, 0.0]]), (50, 100), 256)
    assert pts.dtype == np.float32 and pts.shape == (2, 2)
    np.testing.assert_allclose(
        pts, [[80.5 * 2.56, 10.5 * 2.56], [0.5 * 2.56, 49.5 * 2.56]], rtol=1e-6
    )


def test_points_per_axis_scale_uses_rounded_shape():
    # (101, 122) -> (212, 256): y scales by 212/101, x by 256/122 (as SAM's apply_coords)
    pts = points_yx_to_model_xy(np.array([[100.0, 121.0]]), (101, 122), 256)
    np.testing.assert_allclose(pts[0], [121.5 * 256 / 122, 100.5 * 212 / 101], rtol=1e-6)


def test_box_to_model_xyxy_flips_and_sorts():
    box = box_yxyx_to_model_xyxy(np.array([40.0, 10.0, 20.0, 90.0]), (50, 100), 256)
    assert box.dtype == np.float32 and box.shape == (4,)
    # inclusive corner pixels -> pixel edges: [i0, i1 + 1) * scale
    np.testing.assert_allclose(box, [10 * 2.56, 20 * 2.56, 91 * 2.56, 41 * 2.56], rtol=1e-6)


def test_stretch_mode_scales_each_axis_to_the_full_side():
    # LiteMedSAM's convention: (50, 100) -> (256, 256), y by 5.12 and x by 2.56, no padding
    assert resized_shape((50, 100), 256, "stretch") == (256, 256)
    assert resized_shape((50, 100), 256, "longest_side") == (128, 256)
    pts = points_yx_to_model_xy(np.array([[10.0, 80.0]]), (50, 100), 256, "stretch")
    np.testing.assert_allclose(pts[0], [80.5 * 2.56, 10.5 * 5.12], rtol=1e-6)
    box = box_yxyx_to_model_xyxy(np.array([0.0, 0.0, 49.0, 99.0]), (50, 100), 256, "stretch")
    np.testing.assert_allclose(box, [0, 0, 256, 256], rtol=1e-6)  # whole slice = whole input
    with pytest.raises(ValueError):
        resized_shape((50, 100), 256, "crop")


def test_stretch_lowres_logits_map_back_without_cropping():
    logits = np.full((256, 256), -10.0, np.float32)
    logits[:128] = 10.0  # top half of the model frame = top half of the slice when stretched
    mask = lowres_logits_to_slice(logits, (50, 100), 256, "stretch") > 0
    assert mask[:24].all() and not mask[26:].any()


def test_bilinear_matrix_matches_half_pixel_rule():
    m = bilinear_matrix(4, 2)  # upsampling 2 -> 4: src = (i + .5) / 2 - .5
    np.testing.assert_allclose(m, [[1, 0], [0.75, 0.25], [0.25, 0.75], [0, 1]])
    np.testing.assert_allclose(bilinear_matrix(7, 7), np.eye(7))
    np.testing.assert_allclose(bilinear_matrix(3, 9).sum(axis=1), 1.0)


def test_bilinear_matrix_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    a = rng.normal(size=(13, 29)).astype(np.float32)
    ref = torch.nn.functional.interpolate(
        torch.from_numpy(a)[None, None], size=(40, 17), mode="bilinear", align_corners=False
    )[0, 0].numpy()
    np.testing.assert_allclose(resize_bilinear(a, (40, 17)), ref, atol=1e-5)


def test_lowres_logits_to_slice_crops_padding_and_keeps_orientation():
    # slice (64, 128) at side 256 fills rows [0, 128) of the model input; the rest is padding.
    hw, side = (64, 128), 256
    logits = np.full((256, 256), -10.0, np.float32)
    logits[128:, :] = 50.0  # padding region only: must not leak into the slice
    logits[0:32, 192:256] = 10.0  # model top-right quadrant of the slice region
    out = lowres_logits_to_slice(logits, hw, side)
    assert out.shape == hw and out.dtype == np.float32
    mask = out > 0
    assert not mask[-4:].any()  # the padding stayed out
    ys, xs = np.nonzero(mask)
    # model rows [0, 32) of 128 -> slice rows [0, 16) of 64; cols [192, 256) -> [96, 128)
    assert (ys.min(), ys.max()) == (0, 15)
    assert (xs.min(), xs.max()) == (96, 127)


def test_lowres_logits_to_slice_with_sam_side_matches_torch_two_step():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(256, 256)).astype(np.float32)
    hw, side = (90, 120), 1024
    new_h, new_w = longest_side_shape(hw, side)
    t = torch.from_numpy(logits)[None, None]
    t = F.interpolate(t, (side, side), mode="bilinear", align_corners=False)[..., :new_h, :new_w]
    ref = F.interpolate(t, hw, mode="bilinear", align_corners=False)[0, 0].numpy()
    np.testing.assert_allclose(lowres_logits_to_slice(logits, hw, side), ref, atol=1e-4)


def test_box_from_mask():
    mask = np.zeros((20, 30), bool)
    mask[3:7, 11:25] = True
    mask[9, 12] = True
    np.testing.assert_array_equal(box_from_mask(mask), [3, 11, 9, 24])
    assert box_from_mask(np.zeros((4, 4))) is None
    with pytest.raises(ValueError):
        box_from_mask(np.zeros((2, 2, 2)))
