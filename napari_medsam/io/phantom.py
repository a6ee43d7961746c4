"""A synthetic CT-like abdomen with organ labels, made by code.

Used as napari sample data and by tests that must run without real scans. The volume is
in display orientation (z towards superior, y towards posterior, x towards patient left),
so the liver sits at small x (patient right) and the spine at large y (posterior).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from napari_medsam.io.nifti import metadata_for_display_grid
from napari_medsam.io.orientation import AXIS_LABELS_ZYX
from napari_medsam.prompts.intensity import auto_window

__all__ = ["PHANTOM_LABEL_NAMES", "REFERENCE_NAME", "Phantom", "make_phantom", "make_sample_data"]

#: Label id -> TotalSegmentator-style name.
PHANTOM_LABEL_NAMES: dict[int, str] = {
    1: "liver",
    2: "spleen",
    3: "kidney_right",
    4: "kidney_left",
    5: "aorta",
    6: "vertebra",
}

#: Name of the sample's hidden reference labels layer.
REFERENCE_NAME = "CT phantom reference"

_HU_AIR, _HU_FAT, _HU_MUSCLE, _HU_VISCERA = -1000.0, -100.0, 50.0, -20.0
_NOISE_SIGMA_HU = 15.0


@dataclass(frozen=True, eq=False)
class Phantom:
    """Synthetic CT volume and its labels, both (Z, Y, X) in display orientation.

    Attributes
    ----------
    image_zyx : (Z, Y, X) int16
        Intensities in Hounsfield units.
    labels_zyx : (Z, Y, X) uint8
        Organ ids, see ``label_names``; 0 is background.
    spacing_zyx_mm : tuple of 3 float
        Voxel size, mm.
    label_names : dict[int, str]
        Label id -> organ name.
    """

    image_zyx: np.ndarray
    labels_zyx: np.ndarray
    spacing_zyx_mm: tuple[float, float, float]
    label_names: dict[int, str] = field(default_factory=lambda: dict(PHANTOM_LABEL_NAMES))


@dataclass(frozen=True)
class _Organ:
    label: int
    hu: float
    center_zyx: tuple[float, float, float]  # fraction of the body extent, see _to_mm
    radii_zyx: tuple[float, float, float]  # same units
    wobble: float = 0.12  # amplitude of the low-frequency surface deformation
    core_hu: float | None = None  # inner value (kidney medulla)


# Positions as fractions: z of the volume height (0 inferior, 1 superior); y, x of the
# body's half-axes around its centre (y > 0 posterior, x > 0 patient left).
_ORGANS: tuple[_Organ, ...] = (
    _Organ(1, 60.0, (0.68, -0.08, -0.38), (0.34, 0.52, 0.40), wobble=0.14),
    _Organ(2, 50.0, (0.70, 0.30, 0.58), (0.20, 0.26, 0.18)),
    _Organ(3, 150.0, (0.32, 0.42, -0.40), (0.22, 0.22, 0.13), 0.08, core_hu=90.0),
    _Organ(4, 150.0, (0.38, 0.42, 0.40), (0.22, 0.22, 0.13), 0.08, core_hu=90.0),
)


def _ellipsoid_mask(
    zz: np.ndarray,
    yy: np.ndarray,
    xx: np.ndarray,
    center: Sequence[float],
    radii: Sequence[float],
    wobble: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Deformed ellipsoid: inside where the normalised radius < 1 + smooth ripple.

    Returns the mask and the normalised radius (for inner structures).
    """
    dz, dy, dx = ((g - c) / r for g, c, r in zip((zz, yy, xx), center, radii, strict=True))
    rho = np.sqrt(dz * dz + dy * dy + dx * dx)
    theta = np.arctan2(dy, dx)
    phi = np.arctan2(dz, np.hypot(dx, dy))
    ripple = np.zeros_like(rho)
    for k in (2, 3):
        a, b = rng.uniform(0, 2 * np.pi, size=2)
        ripple += np.sin(k * theta + a) * np.cos((k - 1) * phi + b)
    return rho < 1.0 + wobble * ripple / 2.0, rho


def make_phantom(
    shape_zyx: Sequence[int] = (32, 96, 96),
    spacing_zyx_mm: Sequence[float] = (4.0, 1.0, 1.0),
    seed: int = 0,
) -> Phantom:
    """Make a synthetic CT abdomen.

    Air (-1000 HU) around an elliptical body of fat (-100) with a muscle wall (50) and
    viscera (-20); liver (60), spleen (50), kidneys (cortex 150, medulla 90), aorta (200)
    and vertebral bodies (700) separated by discs (label 0). Gaussian noise, sigma 15 HU.

    Parameters
    ----------
    shape_zyx : 3 ints
        Volume shape; each side at least 8 voxels.
    spacing_zyx_mm : 3 floats
        Voxel size along (z, y, x), mm. Shapes are laid out in mm, so anisotropy is real.
    seed : int
        Same seed, same phantom.

    Returns
    -------
    Phantom
    """
    shape = tuple(int(s) for s in shape_zyx)
    spacing = tuple(float(s) for s in spacing_zyx_mm)
    if len(shape) != 3 or min(shape) < 8:
        raise ValueError(f"phantom shape must be 3D with sides >= 8, got {shape}")
    if len(spacing) != 3 or min(spacing) <= 0:
        raise ValueError(f"spacing must be 3 positive values, got {spacing}")
    rng = np.random.default_rng(seed)
    nz, ny, nx = shape
    # Normalised coordinates: z in [0, 1] along the height, y/x in body half-axes.
    ext_y, ext_x = ny * spacing[1], nx * spacing[2]
    half_y, half_x = 0.36 * ext_y, 0.45 * ext_x
    z = (np.arange(nz) + 0.5) / nz
    y = ((np.arange(ny) + 0.5) * spacing[1] - ext_y / 2) / half_y
    x = ((np.arange(nx) + 0.5) * spacing[2] - ext_x / 2) / half_x
    zz, yy, xx = np.meshgrid(z, y, x, indexing="ij", sparse=True)

    image = np.full(shape, _HU_AIR, dtype=np.float32)
    labels = np.zeros(shape, dtype=np.uint8)
    sway = 1.0 + 0.04 * np.sin(2 * np.pi * zz + rng.uniform(0, 2 * np.pi))
    body_r = np.sqrt(yy**2 + xx**2) / sway
    image[np.broadcast_to(body_r < 1.0, shape)] = _HU_FAT
    wall_y, wall_x = yy / 0.86, xx / 0.88
    image[np.broadcast_to(np.sqrt(wall_y**2 + wall_x**2) / sway < 1.0, shape)] = _HU_MUSCLE
    image[np.broadcast_to(np.sqrt(wall_y**2 + wall_x**2) / sway < 0.93, shape)] = _HU_VISCERA

    for organ in _ORGANS:
        center = [c + rng.normal(0, 0.02) for c in organ.center_zyx]
        inside, rho = _ellipsoid_mask(zz, yy, xx, center, organ.radii_zyx, organ.wobble, rng)
        inside = np.broadcast_to(inside, shape)
        image[inside] = organ.hu
        labels[inside] = organ.label
        if organ.core_hu is not None:
            core = inside & np.broadcast_to(rho < 0.55, shape)
            image[core] = organ.core_hu

    # Vertebral bodies (label 6) in the posterior midline, discs between them every ~30 mm.
    height_mm = nz * spacing[0]
    z_mm = zz * height_mm
    disc = np.broadcast_to((z_mm + rng.uniform(0, 30.0)) % 30.0 < 6.0, shape)
    vertebra = np.broadcast_to(((yy - 0.64) / 0.22) ** 2 + (xx / 0.19) ** 2 < 1.0, shape)
    image[vertebra] = 700.0
    labels[vertebra] = 6
    image[vertebra & disc] = 80.0
    labels[vertebra & disc] = 0
    # Aorta (label 5): a tube anterior-left of the spine, drifting slightly with z.
    ay = 0.27 + 0.02 * np.sin(3 * zz)
    aorta = np.broadcast_to(((yy - ay) / 0.11) ** 2 + ((xx - 0.12) / 0.09) ** 2 < 1.0, shape)
    image[aorta] = 200.0
    labels[aorta] = 5

    image += rng.normal(0.0, _NOISE_SIGMA_HU, size=shape).astype(np.float32)
    image_hu = np.clip(np.rint(image), -1024, 3071).astype(np.int16)
    return Phantom(image_hu, labels, spacing, dict(PHANTOM_LABEL_NAMES))  # type: ignore[arg-type]


def make_sample_data() -> list[tuple[np.ndarray, dict[str, Any], str]]:
    """napari sample data: the default phantom, and its reference labels as a hidden layer.

    The reference (``"CT phantom reference"``) starts hidden, so the scan opens
    unsegmented; tick its eye to compare with what you segmented. Both layers carry
    ``scale`` = spacing and source-grid ``metadata`` (a diagonal affine consistent with
    the display orientation), so the writer works on them.
    """
    phantom = make_phantom()
    window = auto_window(phantom.image_zyx)
    image_meta = metadata_for_display_grid(phantom.image_zyx.shape, phantom.spacing_zyx_mm)
    labels_meta = metadata_for_display_grid(phantom.labels_zyx.shape, phantom.spacing_zyx_mm)
    labels_meta["label_names"] = dict(phantom.label_names)
    return [
        (
            phantom.image_zyx,
            {
                "name": "CT phantom",
                "scale": phantom.spacing_zyx_mm,
                "axis_labels": AXIS_LABELS_ZYX,
                "metadata": image_meta,
                "colormap": "gray",
                "contrast_limits": window.contrast_limits,
            },
            "image",
        ),
        (
            phantom.labels_zyx,
            {
                "name": REFERENCE_NAME,
                "scale": phantom.spacing_zyx_mm,
                "axis_labels": AXIS_LABELS_ZYX,
                "metadata": labels_meta,
                "visible": False,
                "opacity": 0.4,
            },
            "labels",
        ),
    ]
