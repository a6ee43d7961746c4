"""Backend selection, the converted-model cache, and the torch path without the fast runtime."""

from __future__ import annotations

import logging
import sys

import numpy as np
import pytest
import torch

from napari_medsam.model.backends import (
    BackendError,
    make_image_encoder,
    model_cache,
    resolve_backend,
    resolve_precision,
    select,
)
from napari_medsam.model.engine import SamEngine
from napari_medsam.model.medsa.build import TINY_SAM
from napari_medsam.model.registry import build_model


@pytest.fixture
def no_openvino(monkeypatch):
    """Hide the OpenVINO package, as on a machine where it is not installed."""
    monkeypatch.setitem(sys.modules, "openvino", None)  # import fails, find_spec is None
    monkeypatch.setattr(select, "_notice_given", False)
    monkeypatch.delenv(select.ENV_BACKEND, raising=False)
    select.cpu_has_bf16.cache_clear()
    yield
    select.cpu_has_bf16.cache_clear()


def test_hidden_runtime_is_really_hidden(no_openvino):
    assert not select.openvino_available()
    with pytest.raises(ImportError):
        import openvino  # noqa: F401


def test_auto_without_runtime_is_torch_with_one_notice(no_openvino, caplog):
    with caplog.at_level(logging.WARNING):
        assert resolve_backend("auto", "cpu") == "torch"
        assert resolve_backend(None, "cpu") == "torch"
    notices = [r for r in caplog.records if "OpenVINO is not installed" in r.getMessage()]
    assert len(notices) == 1 and "pip install 'openvino" in notices[0].getMessage()
    text = notices[0].getMessage()
    assert "\n" not in text and "image encoder and the click decoder run on torch" in text


def test_openvino_requested_without_runtime_is_one_clear_error(no_openvino):
    with pytest.raises(BackendError, match="not installed"):
        resolve_backend("openvino", "cpu")


def test_engine_without_runtime_runs_on_torch(no_openvino):
    torch.manual_seed(0)
    engine = SamEngine(build_model(TINY_SAM), TINY_SAM, device="cpu", backend="auto")
    assert engine.backend == "torch fp32" and engine.decoder_precision == "fp32"  # the reference
    engine.embed(np.random.default_rng(0).random((40, 50), dtype=np.float32), ("k", 0))
    assert engine.cache_info().entries == 1
    encode = make_image_encoder(engine)
    assert encode.backend == "torch"
    assert encode(np.zeros((2, 3, 64, 64), np.float32)).shape == (2, 32, 8, 8)


def test_selection_rules(monkeypatch):
    monkeypatch.delenv(select.ENV_BACKEND, raising=False)
    monkeypatch.setattr(select, "openvino_available", lambda: True)
    assert resolve_backend("auto", "cpu") == "openvino"
    assert resolve_backend("auto", torch.device("cuda", 0)) == "torch"
    assert resolve_backend("auto", "mps") == "torch"
    assert resolve_backend("TORCH", "cpu") == "torch"
    with pytest.raises(BackendError, match="runs on the CPU"):
        resolve_backend("openvino", "cuda")
    with pytest.raises(BackendError, match="unknown backend"):
        resolve_backend("tensorrt", "cpu")
    monkeypatch.setenv(select.ENV_BACKEND, "torch")
    assert resolve_backend("auto", "cpu") == "torch"  # the environment decides "auto"
    assert resolve_backend("openvino", "cpu") == "openvino"  # never an explicit choice


def test_precision_rules(monkeypatch):
    monkeypatch.delenv(select.ENV_PRECISION, raising=False)
    monkeypatch.setattr(select, "cpu_has_bf16", lambda: True)
    assert resolve_precision("auto") == "bf16"
    assert resolve_precision("fp32") == "fp32"
    monkeypatch.setattr(select, "cpu_has_bf16", lambda: False)
    assert resolve_precision("auto") == "fp32"
    assert resolve_precision("bf16") == "bf16"
    with pytest.raises(BackendError, match="unknown precision"):
        resolve_precision("fp8")


def test_weights_digest_sees_every_weight():
    torch.manual_seed(0)
    model = build_model(TINY_SAM).image_encoder
    before = model_cache.weights_digest(model)
    assert model_cache.weights_digest(model) == before
    with torch.no_grad():
        next(model.parameters()).view(-1)[0] += 1e-6
    assert model_cache.weights_digest(model) != before


def test_key_depends_on_every_part():
    parts = {"weights": "a", "runtime_version": "1", "precision": "bf16", "signature": (1, 1, 0)}
    key = model_cache.entry_key(parts)
    for name, other in (("weights", "b"), ("runtime_version", "2"), ("precision", "fp32")):
        assert model_cache.entry_key({**parts, name: other}) != key


def _builder(calls):
    def build(folder):
        calls.append(folder)
        (folder / "encoder.xml").write_text("<net/>")
        (folder / "encoder.bin").write_bytes(bytes(range(256)) * 64)

    return build


@pytest.mark.parametrize(
    "damage",
    [
        lambda f: (f / "encoder.bin").write_bytes(b"truncated"),
        lambda f: (f / "encoder.bin").write_bytes(b"\x01" + (f / "encoder.bin").read_bytes()[1:]),
        lambda f: (f / "encoder.xml").unlink(),
        lambda f: (f / model_cache.MANIFEST).unlink(),
        lambda f: (f / model_cache.MANIFEST).write_text("{not json"),
    ],
    ids=["truncated", "flipped-byte", "missing-file", "no-manifest", "bad-manifest"],
)
def test_corrupt_entry_is_rebuilt_never_used(tmp_path, damage, caplog):
    calls = []
    folder = model_cache.cached_entry("k1", _builder(calls), root=tmp_path)
    assert model_cache.cached_entry("k1", _builder(calls), root=tmp_path) == folder
    assert len(calls) == 1  # the second request is a cache hit
    damage(folder)
    assert not model_cache.valid_entry(folder)
    with caplog.at_level(logging.WARNING):
        again = model_cache.cached_entry("k1", _builder(calls), root=tmp_path)
    assert len(calls) == 2 and again == folder and model_cache.valid_entry(folder)
    assert (folder / "encoder.bin").read_bytes() == bytes(range(256)) * 64
    assert any("corrupt" in r.getMessage() for r in caplog.records)


def test_failed_build_leaves_no_entry(tmp_path):
    def broken(folder):
        (folder / "encoder.xml").write_text("half")
        raise RuntimeError("conversion failed")

    with pytest.raises(RuntimeError):
        model_cache.cached_entry("k2", broken, root=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_cache_root_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(model_cache.ENV_CACHE_DIR, str(tmp_path / "c"))
    assert model_cache.cache_root() == tmp_path / "c"
    monkeypatch.delenv(model_cache.ENV_CACHE_DIR)
    assert model_cache.cache_root().name == "models"
