"""The click model: box path bit-exact, zoom-in frames, training that helps, shipped weights."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from napari_medsam.io.phantom import make_phantom
from napari_medsam.model.checkpoints import CheckpointError
from napari_medsam.model.click.checkpoint import click_decoder_from, save_click_decoder
from napari_medsam.model.click.decoder import (
    ClickConfig,
    ClickDecoder,
    _disk_maps_dense,
    disk_maps,
)
from napari_medsam.model.click.engine import ClickEngine
from napari_medsam.prompts import zoom
from napari_medsam.prompts.clickmaps import click_maps
from napari_medsam.prompts.geometry import RESIZE_STRETCH
from napari_medsam.prompts.intensity import IntensityWindow
from napari_medsam.types import SlicePrompt

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
TOTALSEG = SHARED / "totalseg_ct_full" / "example_ct.nii.gz"


@pytest.fixture(scope="module")
def engines():
    from napari_medsam.model.engine import load_engine

    return load_engine(None, device="cpu"), load_engine("litemedsam", device="cpu")


def _box_masks_equal(default, plain, slice_yx, box):
    prompt = SlicePrompt(box_yxyx=np.asarray(box, np.float32))
    a, b = default.predict(slice_yx, prompt, "s"), plain.predict(slice_yx, prompt, "s")
    assert np.array_equal(a.mask_yx, b.mask_yx)
    assert np.array_equal(a.logits_lowres, b.logits_lowres)
    assert a.score == b.score
    return a


@pytest.mark.slow
def test_default_engine_takes_clicks_and_box_is_bit_exact_on_phantom(engines):
    default, plain = engines
    assert isinstance(default, ClickEngine) and not default.needs_box
    assert plain.needs_box
    ph = make_phantom()
    window = IntensityWindow.from_preset("soft tissue")
    z = ph.image_zyx.shape[0] // 2
    slice_yx = window.apply(ph.image_zyx[z])
    for label in np.unique(ph.labels_zyx[z])[1:]:
        rows, cols = np.nonzero(ph.labels_zyx[z] == label)
        out = _box_masks_equal(default, plain, slice_yx, [rows.min(), cols.min(), rows.max(), cols.max()])
        assert out.mask_yx.any()


@pytest.mark.slow
@pytest.mark.skipif(not TOTALSEG.is_file(), reason="no shared data")
def test_box_is_bit_exact_on_a_shared_ct(engines):
    from napari_medsam.io.nifti import load_nifti

    default, plain = engines
    vol = load_nifti(TOTALSEG)
    labels = load_nifti(TOTALSEG.parent / "example_seg_fast_force_split.nii.gz").data_zyx
    window = IntensityWindow.from_preset("soft tissue")
    for organ in (1, 5):  # spleen, liver
        z = int(np.argmax((labels == organ).sum(axis=(1, 2))))
        rows, cols = np.nonzero(labels[z] == organ)
        box = [rows.min() - 2, cols.min() - 2, rows.max() + 2, cols.max() + 2]
        _box_masks_equal(default, plain, window.apply(vol.data_zyx[z]), box)


def test_crop_frame_round_trip_and_paste():
    hw = (300, 280)
    region = np.array([100.0, 40.0, 130.0, 60.0])
    crop = zoom.crop_around(region, hw)
    assert crop[2] - crop[0] == crop[3] - crop[1] == 50  # ceil(1.6 x 31 rows)
    assert zoom.contains(crop, region)
    pts = np.array([[101.0, 41.0], [129.5, 59.0]], np.float32)
    back = zoom.points_from_crop(zoom.points_to_crop(pts, crop), crop)
    np.testing.assert_allclose(back, pts)
    box = zoom.box_to_crop(np.array([100, 40, 130, 60], np.float32), crop)
    np.testing.assert_allclose(box + np.tile(crop[:2], 2), [100, 40, 130, 60])
    values = np.ones((50, 50), np.float32)
    pasted = zoom.paste_crop(values, crop, hw, fill=-1.0)
    assert (pasted > 0).sum() == 2500 and pasted[crop[0], crop[1]] == 1 and pasted[0, 0] == -1
    # near the edge the crop shifts inside; it is kept while the object stays inside
    edge = zoom.crop_around(np.array([0.0, 270.0, 5.0, 279.0]), hw)
    assert edge[0] == 0 and edge[3] == hw[1]
    assert np.array_equal(zoom.keep_or_new_crop(crop, region + [2, 2, 2, 2], hw), crop)
    assert not np.array_equal(zoom.keep_or_new_crop(crop, region + 60, hw), crop)
    # the region from a low-res mask covers each low-res pixel's footprint, and the clicks
    lowres = np.zeros((256, 256), bool)
    lowres[10:20, 30:40] = True
    np.testing.assert_array_equal(zoom.lowres_region_yxyx(lowres, np.zeros((0, 2)), (512, 512)),
                                  [20, 60, 39, 79])  # fmt: skip
    with_click = zoom.lowres_region_yxyx(lowres, np.array([[100.0, 5.0]]), (512, 512))
    np.testing.assert_array_equal(with_click, [20, 5, 100, 79])
    assert zoom.lowres_region_yxyx(np.zeros((256, 256), bool), np.zeros((0, 2)), (512, 512)) is None
    # only small objects zoom: a crop over 0.4 of the slice side stays on the whole slice
    assert zoom.worth_zooming(np.array([0, 0, 200, 200]), (512, 512))
    assert not zoom.worth_zooming(np.array([0, 0, 210, 210]), (512, 512))


def test_torch_disk_maps_match_numpy_click_maps():
    pts_yx = np.array([[10.0, 20.0], [100.5, 3.0], [60.0, 60.0]], np.float32)
    labels = np.array([1, 0, 1])
    ref = click_maps(pts_yx, labels, (128, 128), 128, resize=RESIZE_STRETCH)
    coords = torch.tensor(pts_yx[:, ::-1] + 0.5)[None]
    out = disk_maps(coords, torch.tensor(labels)[None], 128)[0].numpy()
    np.testing.assert_array_equal(out, ref[:2])


def test_windowed_disk_maps_equal_the_every_pixel_rule():
    # clicks near and past the borders, on pixel centres and edges (distance ties), padding
    gen = torch.Generator().manual_seed(0)
    for trial in range(30):
        n = int(torch.randint(1, 40, (1,), generator=gen))
        coords = torch.rand((3, n, 2), generator=gen) * 140 - 6
        if trial % 3 == 1:
            coords = coords.round()
        elif trial % 3 == 2:
            coords = coords.round() + 0.5
        labels = torch.randint(-1, 2, (3, n), generator=gen)
        radius = (5.0, 2.5, 1.0)[trial % 3]
        ours = disk_maps(coords, labels, 128, radius)
        assert torch.equal(ours, _disk_maps_dense(coords, labels, 128, radius)), trial
    assert disk_maps(coords, labels, 128).sum() > 0


def test_fresh_click_decoder_equals_the_decoder_it_copies(engines):
    _, plain = engines
    model = plain.model
    decoder = ClickDecoder(model.prompt_encoder, model.mask_decoder, ClickConfig()).eval()
    emb = torch.randn(2, 256, 64, 64)
    points = (torch.rand(2, 3, 2) * 256, torch.tensor([[1, 0, 1], [1, 1, -1]]))
    with torch.no_grad():
        ours, _ = decoder(emb, points)
        sparse, dense = model.prompt_encoder(points=points, boxes=None, masks=None)
        ref, _ = model.mask_decoder(emb, model.prompt_encoder.get_dense_pe(), sparse, dense, False)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-5)


def test_click_checkpoint_refuses_bad_weights(engines, tmp_path):
    _, plain = engines
    decoder = ClickDecoder(plain.model.prompt_encoder, plain.model.mask_decoder, ClickConfig())
    path = save_click_decoder(decoder, plain.model, tmp_path / "c.pt", {"note": "test"})
    payload = torch.load(path, map_location="cpu", weights_only=True)
    assert click_decoder_from(payload, plain.model).config == ClickConfig()
    bad = dict(payload, state_dict=dict(payload["state_dict"]))
    key = next(k for k, v in bad["state_dict"].items() if v.is_floating_point())
    bad["state_dict"][key] = torch.full_like(bad["state_dict"][key], float("nan"))
    with pytest.raises(CheckpointError, match="NaN"):
        click_decoder_from(bad, plain.model)
    with pytest.raises(CheckpointError, match="fingerprint"):
        click_decoder_from(dict(payload, backbone={"fingerprint": "0"}), plain.model)
    with pytest.raises(CheckpointError, match="config"):
        click_decoder_from(dict(payload, config={"hyp_adapter": "yes"}), plain.model)


@pytest.mark.slow
def test_shipped_click_weights_load_with_a_model_card():
    from napari_medsam.model.click.default import shipped_click_weights

    payload = torch.load(shipped_click_weights(), map_location="cpu", weights_only=True)
    assert shipped_click_weights().stat().st_size <= 20 * 2**20
    card = payload["card"]
    assert card["data"] and card["steps_done"] > 0 and card["heldout_volumes"]
    assert all(torch.isfinite(v).all() for v in payload["state_dict"].values() if v.is_floating_point())


@pytest.mark.slow
def test_tiny_training_run_improves_noc(engines, tmp_path, monkeypatch):
    import napari_medsam.training.clicks.build as builder
    from napari_medsam.training.clicks import validate
    from napari_medsam.training.clicks.encode import training_encoder
    from napari_medsam.training.clicks.sources import VolumeSource
    from napari_medsam.training.clicks.trainer import Trainer, TrainSettings

    _, plain = engines
    ph = make_phantom(shape_zyx=(12, 96, 96), spacing_zyx_mm=(3.0, 1.0, 1.0))
    affine = np.diag([1.0, 1.0, 3.0, 1.0])
    nib.save(nib.Nifti1Image(np.ascontiguousarray(ph.image_zyx.T), affine), tmp_path / "ct.nii.gz")
    nib.save(nib.Nifti1Image(np.ascontiguousarray(ph.labels_zyx.T), affine), tmp_path / "lab.nii.gz")
    monkeypatch.setattr(builder, "SLICES_AXIAL", 6)
    monkeypatch.setattr(builder, "SLICES_OTHER", 0)
    src = VolumeSource("phantom", "ct.nii.gz", "lab.nii.gz", "ct", "p")
    store = builder.build_store([src], tmp_path, tmp_path / "store",
                                training_encoder(plain, "torch"), capacity=24)
    assert 6 <= store.count <= 12 and store.arrays["emb"].dtype == np.float16
    # the new layers' initial weights come from torch's global generator, which earlier tests
    # advance: seed it, as the CLI does, so the run does not depend on test order
    torch.manual_seed(0)
    decoder = ClickDecoder(plain.model.prompt_encoder, plain.model.mask_decoder, ClickConfig())
    settings = TrainSettings(steps=30, batch_size=4, max_rounds=2, lr_new=2e-3, lr_pretrained=2e-4)
    trainer = Trainer(plain.model, decoder, store, range(store.count), settings)
    cases = validate.heldout_cases(store, n=8)
    before = validate.click_ious(trainer, store, cases, clicks=5)
    for _ in range(settings.steps):
        trainer.train_step()
    after = validate.click_ious(trainer, store, cases, clicks=5)
    assert validate.noc(after, 0.5) < validate.noc(before, 0.5)
    assert after.mean() > before.mean() + 0.05
    # a resumed store keeps its records
    assert builder.build_store([src], tmp_path, tmp_path / "store",
                               training_encoder(plain, "torch"), capacity=24).count == store.count


@pytest.mark.slow
def test_zoomed_correction_predicts_on_a_cached_crop_and_pastes_back(engines):
    default, _ = engines
    ph = make_phantom()
    window = IntensityWindow.from_preset("soft tissue")
    z = ph.image_zyx.shape[0] // 2
    # padded to 240 px: on the 96 px phantom slice every crop is over zoom's size gate
    slice_yx = np.pad(window.apply(ph.image_zyx[z]), 72).astype(np.float32)
    labels_yx = np.pad(ph.labels_zyx[z], 72)
    label = min(np.unique(labels_yx)[1:], key=lambda v: (labels_yx == v).sum())
    rows, cols = np.nonzero(labels_yx == label)
    click = np.array([[rows[len(rows) // 2], cols[len(cols) // 2]]], np.float32)
    default.zoom_in = True
    try:
        default.clear_cache()
        first = default.predict(slice_yx, SlicePrompt(points_yx=click, point_labels=np.array([1])), "z")
        assert "z" not in default._zoom_state  # the first click sees the whole slice
        prompt = SlicePrompt(points_yx=click, point_labels=np.array([1]),
                             prev_logits_lowres=first.logits_lowres)
        second = default.predict(slice_yx, prompt, "z")
        crop = default._zoom_state["z"][0]
        outside = np.ones(slice_yx.shape, bool)
        outside[crop[0]:crop[2], crop[1]:crop[3]] = False
        default.zoom_in = False
        whole = default.predict(slice_yx, prompt, "z")  # the same prompt on the whole slice
        default.zoom_in = True
        # outside the crop the mask is the whole slice's (an object can grow past the crop)
        assert np.array_equal(second.mask_yx[outside], whole.mask_yx[outside])
        assert not np.array_equal(second.mask_yx, whole.mask_yx)  # inside, the crop's
        assert second.logits_lowres.shape == first.logits_lowres.shape
        n = default.cache_info().entries
        default.predict(slice_yx, prompt, "z")  # the crop stays and its embedding is cached
        assert default.cache_info().entries == n
        # a correction that continues from the zoomed mask, inside the kept crop: one decoder
        # pass (the crop), and outside the crop the last prediction stays
        again = default.predict(slice_yx, prompt, "z")
        decodes = []
        original = default._decode_clicks
        default._decode_clicks = lambda *a: decodes.append(1) or original(*a)
        try:
            follow = SlicePrompt(points_yx=np.concatenate([click, click + 1]),
                                 point_labels=np.array([1, 1]),
                                 prev_logits_lowres=again.logits_lowres)  # fmt: skip
            third = default.predict(slice_yx, follow, "z")
        finally:
            del default._decode_clicks
        assert len(decodes) == 1
        assert np.array_equal(third.mask_yx[outside], again.mask_yx[outside])
    finally:
        default.zoom_in = False


class _RecordingDecoder:
    """A fast-backend stand-in: torch's mask decoder, recording torch's thread count."""

    def __init__(self, inner, ready: bool):
        self.inner, self._ready, self.threads = inner, ready, []

    def ready(self) -> bool:
        return self._ready

    def __call__(self, **kwargs):
        self.threads.append(torch.get_num_threads())
        return self.inner(**kwargs)


def test_click_torch_ops_run_on_one_thread_only_around_a_ready_fast_decoder(engines):
    default, _ = engines
    ph = make_phantom(shape_zyx=(8, 128, 128))
    slice_yx = IntensityWindow.from_preset("soft tissue").apply(ph.image_zyx[4])
    rows, cols = np.nonzero(ph.labels_zyx[4] > 0)
    prompt = SlicePrompt(np.array([[rows[0], cols[0]]], np.float32), np.array([1]))
    saved, threads = default.click_decoder_backend, torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        for ready, expected in ((True, 1), (False, 2)):
            default.click_decoder_backend = _RecordingDecoder(default.click_decoder.mask_decoder, ready)
            assert default.predict(slice_yx, prompt, "threads").mask_yx.any()
            assert default.click_decoder_backend.threads == [expected]
            assert torch.get_num_threads() == 2  # restored
    finally:
        default.click_decoder_backend = saved
        torch.set_num_threads(threads)
