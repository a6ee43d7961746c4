"""The segmentation generators, without Qt: what they yield and what they send the engine."""

from __future__ import annotations

import numpy as np
import pytest
from fakes import FakeEngine

from napari_medsam.prompts.intensity import IntensityWindow
from napari_medsam.tasks.engine_holder import EngineHolder
from napari_medsam.tasks.segment import SliceKey, embed_slices, segment_slice
from napari_medsam.types import Progress, SliceMask, SlicePrompt


@pytest.fixture
def volume():
    rng = np.random.default_rng(0)
    return rng.integers(-200, 300, size=(5, 20, 24)).astype(np.int16)


def _box_prompt():
    return SlicePrompt(box_yxyx=np.array([2, 3, 10, 12], np.float32))


def test_segment_slice_yields_progress_then_a_copied_mask(volume):
    engine = FakeEngine()
    window = IntensityWindow(-160.0, 240.0)
    items = list(segment_slice(engine, volume, window, 3, _box_prompt(), 7, "vol"))
    assert [type(i) for i in items] == [Progress, Progress, SliceMask]
    result = items[-1]
    assert (result.z, result.label) == (3, 7)
    assert result.mask_yx.dtype == bool and result.mask_yx.shape == (20, 24)
    assert result.mask_yx[2:11, 3:13].all() and result.mask_yx.sum() == 9 * 10
    assert result.logits_lowres.shape == (256, 256)
    # the engine saw slice 3 windowed to [0, 1] with a key naming volume, z and window
    predict = engine.predict_calls[0]
    assert predict.image_shape == (20, 24)
    assert 0.0 <= predict.image_range[0] and predict.image_range[1] <= 1.0
    assert predict.cache_key == SliceKey("vol", 3, -160.0, 240.0)
    np.testing.assert_allclose(
        window.apply(volume[3]).min(), predict.image_range[0], rtol=0, atol=1e-6
    )


def test_result_is_not_a_view_of_engine_output(volume):
    class SharingEngine(FakeEngine):
        buffer = np.zeros((20, 24), bool)

        def predict(self, image_yx, prompt, cache_key=None):
            pred = super().predict(image_yx, prompt, cache_key)
            self.buffer[:] = pred.mask_yx
            return type(pred)(self.buffer, pred.logits_lowres, pred.score)

    engine = SharingEngine()
    result = list(segment_slice(engine, volume, IntensityWindow(0, 1), 1, _box_prompt(), 1))[-1]
    engine.buffer[:] = False
    assert result.mask_yx.sum() == 90


def test_window_change_changes_the_cache_key(volume):
    engine = FakeEngine()
    for window in (IntensityWindow(-160, 240), IntensityWindow(-1000, 500)):
        list(segment_slice(engine, volume, window, 0, _box_prompt(), 1, "vol"))
    keys = [c.cache_key for c in engine.predict_calls]
    assert keys[0] != keys[1] and keys[0].z == keys[1].z == 0


def test_empty_prompt_and_bad_slice_raise(volume):
    engine = FakeEngine()
    with pytest.raises(ValueError, match="neither clicks nor a box"):
        list(segment_slice(engine, volume, IntensityWindow(0, 1), 0, SlicePrompt(), 1))
    with pytest.raises(IndexError, match="outside the volume"):
        list(segment_slice(engine, volume, IntensityWindow(0, 1), 5, _box_prompt(), 1))


def test_embed_slices_reports_each_slice_and_skips_outside(volume):
    engine = FakeEngine()
    items = list(embed_slices(engine, volume, IntensityWindow(0, 100), range(-2, 4), "v"))
    assert [(p.done, p.total) for p in items] == [(0, 4), (1, 4), (2, 4), (3, 4), (4, 4)]
    assert [c.cache_key.z for c in engine.calls] == [0, 1, 2, 3]
    assert items[-1].message == "embedding 4/4"


def test_engine_holder_loads_lazily_once_and_keeps_engine_on_failure():
    loads = []

    def loader(path, device):
        loads.append((path, device))
        if path == "bad.pth":
            raise ValueError("not a checkpoint")
        return FakeEngine()

    holder = EngineHolder(device="cpu", loader=loader)
    assert holder.engine is None and "not loaded" in holder.describe()
    first = holder.get()
    assert holder.get() is first and loads == [(None, "cpu")]
    with pytest.raises(ValueError, match="not a checkpoint"):
        holder.load("bad.pth")
    assert holder.engine is first and holder.checkpoint is None
    assert holder.describe() == "FakeEngine on cpu"


def test_a_device_or_backend_change_reloads_only_an_engine_that_has_one():
    class Torchy(FakeEngine):
        device = "cpu"
        encoder_backend = "torch"

    holder = EngineHolder(device="cpu", loader=lambda path, dev: FakeEngine())
    assert not holder.choose_device("cpu") and not holder.choose_device("")
    assert not holder.choose_device("cuda") and holder.device == "cuda"  # nothing loaded yet
    holder.set_engine(FakeEngine())  # a numpy engine: no device, no encoder backend
    assert not holder.choose_device("cpu") and not holder.choose_backend("openvino")
    assert holder.device == "cpu" and holder.backend == "openvino"
    holder.set_engine(Torchy())
    assert holder.choose_device("cuda") and holder.choose_backend("torch")
    assert not holder.choose_backend("torch")  # unchanged: no reload


def test_the_status_line_names_the_model_and_keeps_a_warning(monkeypatch):
    from napari_medsam.tasks import engine_holder

    holder = EngineHolder(device="cpu")
    assert holder.status() == "model not loaded yet (device cpu)"
    assert holder.status("loading LiteMedSAM + clicks…") == "loading LiteMedSAM + clicks…"
    assert not holder.needs_box  # the default model takes clicks
    holder.set_engine(FakeEngine())
    assert holder.status("ready (cuda)") == "FakeEngine ready (cuda)"
    assert holder.status("slice 3: 40 px") == "FakeEngine on cpu · slice 3: 40 px"
    assert holder.status("", "autosave FAILED: disk full") == (
        "FakeEngine on cpu · autosave FAILED: disk full"
    )
    for value, on in (("0", False), ("off", False), ("1", True), (" Yes ", True)):
        monkeypatch.setenv(engine_holder.PRELOAD_ENV, value)
        assert engine_holder.preload_enabled() is on


def test_triton_is_hidden_only_when_a_system_llvm_is_loaded(monkeypatch):
    import sys

    from napari_medsam.model import triton_guard

    monkeypatch.delitem(sys.modules, "triton", raising=False)
    monkeypatch.setattr(triton_guard, "_process_maps_llvm", lambda: False)
    assert not triton_guard.keep_triton_away_from_mesa_llvm()
    assert "triton" not in sys.modules
    monkeypatch.setattr(triton_guard, "_process_maps_llvm", lambda: True)
    assert triton_guard.keep_triton_away_from_mesa_llvm()
    assert sys.modules["triton"] is None  # `import triton` now raises ImportError
    assert not triton_guard.keep_triton_away_from_mesa_llvm()  # once is enough


@pytest.mark.parametrize("fill", [np.nan, -1000.0])
def test_blank_slice_is_refused_not_given_a_plausible_mask(volume, fill):
    """Issue 12, item 12: an all-NaN or flat slice gets an error, never a mask."""
    engine = FakeEngine()
    blank = volume.astype(np.float32)
    blank[2] = fill
    with pytest.raises(ValueError, match="blank in the intensity window"):
        list(segment_slice(engine, blank, IntensityWindow(-160, 240), 2, _box_prompt(), 1))
    assert engine.predict_calls == []
