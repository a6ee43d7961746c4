"""Intensity windows: presets, apply, MR percentiles, CT detection, auto choice."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from napari_medsam.prompts.intensity import (
    WINDOW_PRESETS,
    IntensityWindow,
    auto_window,
    looks_like_ct,
    mr_window,
)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def test_presets_and_level_width():
    assert WINDOW_PRESETS == {
        "soft tissue": (40, 400),
        "lung": (-600, 1500),
        "bone": (400, 1800),
    }
    soft = IntensityWindow.from_level_width(40, 400)
    assert (soft.lo, soft.hi, soft.kind) == (-160.0, 240.0, "ct")
    assert soft.level_width == (40.0, 400.0)
    assert IntensityWindow.from_preset("lung").contrast_limits == (-1350.0, 150.0)
    with pytest.raises(AttributeError):
        soft.lo = 0.0  # frozen


@pytest.mark.parametrize("lo,hi", [(1.0, 1.0), (2.0, 1.0), (np.nan, 1.0), (0.0, np.inf)])
def test_invalid_windows(lo, hi):
    with pytest.raises(ValueError):
        IntensityWindow(lo, hi)


def test_zero_width_is_refused():
    with pytest.raises(ValueError):
        IntensityWindow.from_level_width(0, 0)


def test_apply_clips_scales_and_zeroes_nan():
    window = IntensityWindow.from_level_width(40, 400)
    image = np.array([[-1000, -160, 40], [240, 3000, 140]], dtype=np.int16)
    out = window.apply(image)
    assert out.dtype == np.float32 and out.shape == image.shape
    np.testing.assert_allclose(out, [[0, 0, 0.5], [1, 1, 0.75]], atol=1e-6)
    floats = np.array([np.nan, np.inf, -np.inf, 40.0], dtype=np.float64)
    np.testing.assert_allclose(window.apply(floats), [0, 1, 0, 0.5])
    # The input is not modified.
    src = np.array([np.nan, 500.0], dtype=np.float32)
    window.apply(src)
    assert np.isnan(src[0]) and src[1] == 500.0


def test_mr_window_percentiles_and_edge_cases():
    rng = np.random.default_rng(0)
    volume = rng.uniform(0, 1000, size=(20, 50, 50)).astype(np.float32)
    volume[0, 0, :10] = np.nan
    window = mr_window(volume)
    assert window.kind == "mr"
    finite = volume[np.isfinite(volume)]
    assert window.lo == pytest.approx(np.percentile(finite, 0.5), rel=1e-6)
    assert window.hi == pytest.approx(np.percentile(finite, 99.5), rel=1e-6)
    constant = mr_window(np.full((4, 4, 4), 7, np.uint8))
    assert (constant.lo, constant.hi) == (7.0, 8.0)
    assert (mr_window(np.full((3, 3), np.nan)).lo, mr_window(np.full((3, 3), np.nan)).hi) == (
        0.0,
        1.0,
    )
    # Mostly background: percentiles that collapse fall back to min/max.
    sparse = np.zeros((10, 10, 10), np.uint16)
    sparse[0, 0, 0] = 500
    assert (mr_window(sparse).lo, mr_window(sparse).hi) == (0.0, 500.0)


def test_mr_window_subsamples_large_volumes_deterministically():
    rng = np.random.default_rng(1)
    big = rng.normal(300, 50, size=(40, 256, 256)).astype(np.float32)  # 2.6 M voxels
    first, second = mr_window(big), mr_window(big)
    assert first == second
    exact = np.percentile(big, [0.5, 99.5])
    assert first.lo == pytest.approx(exact[0], abs=2.0)
    assert first.hi == pytest.approx(exact[1], abs=2.0)


def _ct_like(dtype=np.int16):
    rng = np.random.default_rng(2)
    vol = rng.normal(40, 30, size=(10, 40, 40))
    vol[:, :8, :] = -1000  # air
    vol[:, -3:, :] = 900  # bone
    return vol.astype(dtype)


def test_ct_detection_on_synthetic_arrays():
    assert looks_like_ct(_ct_like(np.int16))
    assert looks_like_ct(_ct_like(np.float32))
    assert looks_like_ct(_ct_like(np.int32))
    padded = _ct_like(np.int16)
    padded[:, :, :3] = -3024  # scanner padding outside the field of view
    assert looks_like_ct(padded)
    assert not looks_like_ct(_ct_like(np.int16) + 1500)  # no air: not HU
    assert not looks_like_ct(np.abs(_ct_like(np.int16)).astype(np.uint16))  # unsigned
    rng = np.random.default_rng(3)
    assert not looks_like_ct(rng.normal(0, 1, (10, 10, 10)))  # z-scored MR
    assert not looks_like_ct(rng.uniform(-30000, 30000, (10, 10, 10)).astype(np.int16))
    assert not looks_like_ct(np.full((4, 4, 4), np.nan))


def test_auto_window_choice():
    ct = auto_window(_ct_like())
    assert (ct.kind, ct.contrast_limits) == ("ct", (-160.0, 240.0))
    rng = np.random.default_rng(4)
    mr = auto_window(rng.integers(0, 255, (8, 32, 32)).astype(np.uint8))
    assert mr.kind == "mr" and 0 <= mr.lo < mr.hi <= 254


@pytest.mark.parametrize(
    "relpath,kind",
    [
        ("totalseg_ct/example_ct_sm.nii.gz", "ct"),
        ("totalseg_ct_full/example_ct.nii.gz", "ct"),
        ("pyrad_lung1/lung1_image.nii.gz", "ct"),
        ("mricron_colin27_aal/ch2.nii.gz", "mr"),
    ],
)
def test_auto_window_on_shared_data(relpath, kind):
    path = DATA / relpath
    if not path.exists():
        pytest.skip(f"{path} missing")
    from napari_medsam.io.nifti import load_nifti

    window = auto_window(load_nifti(path).data_zyx)
    assert window.kind == kind
    if kind == "mr":
        assert 0 <= window.lo < 20 and 120 < window.hi <= 254


def test_the_docks_window_choices_give_their_windows():
    from napari_medsam.prompts import intensity

    ct = np.full((4, 8, 8), -1000, np.int16)
    ct[:, 2:6, 2:6] = 40
    mr = np.arange(4 * 8 * 8, dtype=np.uint16).reshape(4, 8, 8)
    choices = intensity.window_choices()
    assert choices[:3] == list(intensity.WINDOW_PRESETS)
    assert choices[-2:] == [intensity.MR_AUTO, intensity.CURRENT_DISPLAY]
    soft = intensity.window_for_choice("soft tissue", ct)
    assert (soft.lo, soft.hi) == (-160.0, 240.0)
    assert intensity.window_for_choice(intensity.CURRENT_DISPLAY, ct) is None
    mr_auto = intensity.window_for_choice(intensity.MR_AUTO, mr)
    assert (mr_auto.lo, mr_auto.hi) == (intensity.mr_window(mr).lo, intensity.mr_window(mr).hi)
    assert intensity.default_window_choice(ct) == "soft tissue"
    assert intensity.default_window_choice(mr) == intensity.MR_AUTO
