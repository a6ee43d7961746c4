"""The synthetic CT phantom: determinism, labels, Hounsfield ranges, anatomy, speed."""

from __future__ import annotations

import time

import numpy as np
import pytest

from napari_medsam.io.phantom import PHANTOM_LABEL_NAMES, Phantom, make_phantom
from napari_medsam.prompts.intensity import auto_window, looks_like_ct


@pytest.fixture(scope="module")
def phantom() -> Phantom:
    return make_phantom()


def test_types_shapes_and_names(phantom):
    assert phantom.image_zyx.shape == phantom.labels_zyx.shape == (32, 96, 96)
    assert phantom.image_zyx.dtype == np.int16
    assert phantom.labels_zyx.dtype == np.uint8
    assert phantom.spacing_zyx_mm == (4.0, 1.0, 1.0)
    assert phantom.label_names == {
        1: "liver",
        2: "spleen",
        3: "kidney_right",
        4: "kidney_left",
        5: "aorta",
        6: "vertebra",
    }
    with pytest.raises(AttributeError):
        phantom.spacing_zyx_mm = (1.0, 1.0, 1.0)  # frozen


def test_every_label_is_present_and_sizeable(phantom):
    counts = np.bincount(phantom.labels_zyx.ravel(), minlength=7)
    assert set(np.flatnonzero(counts)) == {0, *PHANTOM_LABEL_NAMES}
    assert counts[1] > counts[2] > 0  # liver is the biggest organ
    assert min(counts[1:]) > 500


def test_same_seed_same_phantom_other_seed_differs(phantom):
    again = make_phantom(seed=0)
    np.testing.assert_array_equal(again.image_zyx, phantom.image_zyx)
    np.testing.assert_array_equal(again.labels_zyx, phantom.labels_zyx)
    other = make_phantom(seed=1)
    assert not np.array_equal(other.labels_zyx, phantom.labels_zyx)
    assert not np.array_equal(other.image_zyx, phantom.image_zyx)


@pytest.mark.parametrize(
    "label,lo,hi",
    [(1, 50, 70), (2, 40, 60), (3, 110, 160), (4, 110, 160), (5, 185, 215), (6, 650, 750)],
)
def test_organ_hounsfield_means(phantom, label, lo, hi):
    values = phantom.image_zyx[phantom.labels_zyx == label]
    assert lo <= values.mean() <= hi


def test_background_air_fat_and_noise(phantom):
    image = phantom.image_zyx
    corner = image[:, :5, :5]
    assert -1024 <= corner.min() and corner.mean() == pytest.approx(-1000, abs=5)
    assert 10 <= corner.std() <= 20  # gaussian noise, sigma 15 HU (clipped at -1024)
    assert looks_like_ct(image)
    assert auto_window(image).kind == "ct"
    # Fat exists inside the body: a clear peak around -100 HU.
    fat = np.count_nonzero((image > -140) & (image < -60))
    assert fat > 0.02 * image.size


def test_anatomy_in_display_orientation(phantom):
    labels = phantom.labels_zyx

    def centroid(label_id):
        return np.argwhere(labels == label_id).mean(axis=0)

    liver, spleen, k_right, k_left = centroid(1), centroid(2), centroid(3), centroid(4)
    vertebra, aorta = centroid(6), centroid(5)
    assert liver[2] < 48 < spleen[2]  # x grows toward patient left
    assert k_right[2] < 48 < k_left[2]
    assert vertebra[1] > aorta[1] > liver[1]  # y grows toward posterior
    assert liver[0] > k_right[0]  # z grows toward superior


def test_anisotropic_spacing_is_physical():
    fine = make_phantom((32, 64, 64), (2.0, 1.0, 1.0))
    coarse = make_phantom((16, 64, 64), (4.0, 1.0, 1.0))
    # Same body height in mm: liver volume in ml agrees within 15 %.
    ml_fine = np.count_nonzero(fine.labels_zyx == 1) * 2.0 / 1000
    ml_coarse = np.count_nonzero(coarse.labels_zyx == 1) * 4.0 / 1000
    assert ml_fine == pytest.approx(ml_coarse, rel=0.15)


def test_bad_arguments():
    with pytest.raises(ValueError):
        make_phantom((4, 96, 96))
    with pytest.raises(ValueError):
        make_phantom(spacing_zyx_mm=(0.0, 1.0, 1.0))


def test_default_phantom_is_fast():
    make_phantom()  # warm up
    start = time.perf_counter()
    make_phantom(seed=3)
    assert time.perf_counter() - start < 0.5
