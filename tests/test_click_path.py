"""The click path's coordinate work does not grow with the number of earlier clicks."""

from __future__ import annotations

import numpy as np
from napari.layers import Image, Points

from napari_medsam._qt.prompt_layers import clicks_on_slice, from_image_zyx, to_image_zyx


def _layers(n_clicks: int):
    image = Image(np.zeros((12, 40, 50), np.float32), scale=(4.0, 0.7, 0.8), translate=(1, 2, 3))
    rng = np.random.default_rng(0)
    data_zyx = np.column_stack(
        [rng.integers(0, 12, n_clicks), rng.uniform(0, 40, n_clicks), rng.uniform(0, 50, n_clicks)]
    )
    world = np.array([image.data_to_world(p) for p in data_zyx])
    clicks = Points(
        ndim=3,
        scale=(2.0, 0.35, 0.4),
        translate=(-3, 1, 0),
        rotate=5.0,
        features={"positive": np.zeros(0, bool)},
        feature_defaults={"positive": True},
    )
    clicks.add(np.array([clicks.world_to_data(p) for p in world]))
    return image, clicks, data_zyx


def test_batched_conversion_equals_one_point_at_a_time():
    image, clicks, data_zyx = _layers(60)
    one = np.array([image.world_to_data(clicks.data_to_world(p)) for p in clicks.data])
    np.testing.assert_allclose(to_image_zyx(clicks, clicks.data, image), one, atol=1e-9)
    np.testing.assert_allclose(one, data_zyx, atol=1e-6)
    back = from_image_zyx(clicks, data_zyx, image)
    np.testing.assert_allclose(back, clicks.data, atol=1e-6)


def test_clicks_on_slice_converts_a_fixed_number_of_points(monkeypatch):
    image, clicks, data_zyx = _layers(400)
    calls = []
    convert = image.world_to_data
    monkeypatch.setattr(image, "world_to_data", lambda p: calls.append(1) or convert(p))
    z = int(np.round(data_zyx[0, 0]))
    points_yx, labels = clicks_on_slice(clicks, image, z)
    assert len(calls) <= 4  # D + 1 probes, however many clicks there are
    on_z = np.round(data_zyx[:, 0]) == z
    np.testing.assert_allclose(points_yx, data_zyx[on_z, 1:], atol=1e-4)
    assert labels.shape == (on_z.sum(),)
