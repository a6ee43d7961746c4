"""Med-SA checkpoints: parts-only and full round trips, wrong backbones, convert / model-info CLI."""

from __future__ import annotations

import json

import pytest
import torch

from napari_medsam.cli import main
from napari_medsam.model.medsa.build import backbone_spec, build_medsa
from napari_medsam.model.medsa.checkpoint import (
    backbone_fingerprint,
    load_medsa,
    load_medsa_parts,
    read_medsa,
    save_medsa,
)
from napari_medsam.model.medsa.config import MedSAConfig, MedSAError, is_medsa_key


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _backbone_weights(name="tiny_sam", seed=0):
    torch.manual_seed(seed)
    return backbone_spec(name).builder().state_dict()


def _trained(name="tiny_sam", seed=0, **config):
    model = build_medsa(name, _backbone_weights(name, seed), MedSAConfig(backbone=name, **config))
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for key, param in model.named_parameters():
            if is_medsa_key(key):
                param.add_(torch.randn(param.shape, generator=gen) * 0.1)
    return model


def _outputs(model, side=64):
    torch.manual_seed(3)
    images = torch.randn(2, 3, side, side)
    maps = (torch.rand(2, 3, side, side) > 0.9).float()
    with torch.no_grad():
        emb = model.encode(images, maps, depth=2)
        return emb, model.decode(emb[:1], boxes=torch.tensor([[5.0, 6.0, 40.0, 50.0]]))[0]


def test_parts_only_round_trip(tmp_path):
    model = _trained()
    path = save_medsa(model, tmp_path / "parts.pt")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    assert payload["format"] == "napari-medsam/medsa" and payload["version"] == 1
    assert "backbone_state_dict" not in payload
    assert payload["state_dict"] and all(is_medsa_key(k) for k in payload["state_dict"])
    assert payload["backbone"]["fingerprint"] == backbone_fingerprint(_backbone_weights())

    fresh = build_medsa("tiny_sam", _backbone_weights())
    before = _outputs(fresh)
    load_medsa_parts(fresh, read_medsa(path))
    after, expected = _outputs(fresh), _outputs(model)
    assert not torch.allclose(before[0], after[0])
    assert torch.equal(after[0], expected[0]) and torch.equal(after[1], expected[1])


def test_full_round_trip(tmp_path):
    model = _trained(sd_trans=False, hyp_adapter=False, depth=3)
    path = save_medsa(model, tmp_path / "full.pt", full=True)
    loaded = load_medsa(path)
    assert loaded.config == model.config
    assert (
        loaded.mask_decoder.transformer.layers[0].medsa_prompt_adapter.__class__.__name__
        == "Adapter"
    )
    for (ka, a), (kb, b) in zip(
        model.state_dict().items(), loaded.state_dict().items(), strict=True
    ):
        assert ka == kb and torch.equal(a, b), ka
    assert torch.equal(_outputs(model)[1], _outputs(loaded)[1])


def test_wrong_backbone_weights_are_a_clear_error(tmp_path):
    path = save_medsa(_trained(seed=0), tmp_path / "parts.pt")
    other = build_medsa("tiny_sam", _backbone_weights(seed=1))
    with pytest.raises(MedSAError, match="fingerprint"):
        load_medsa_parts(other, read_medsa(path))
    torch.save(_backbone_weights(seed=1), tmp_path / "other_backbone.pth")
    with pytest.raises(MedSAError, match="fingerprint"):
        load_medsa(path, tmp_path / "other_backbone.pth")


def test_wrong_backbone_kind_and_missing_backbone_are_clear_errors(tmp_path):
    path = save_medsa(_trained(), tmp_path / "parts.pt")
    vit = build_medsa("tiny_tinyvit")
    with pytest.raises(MedSAError, match="'tiny_sam'.*'tiny_tinyvit'"):
        load_medsa_parts(vit, read_medsa(path))
    with pytest.raises(MedSAError, match="only Med-SA parts"):
        load_medsa(path)  # a SAM backbone has no bundled weights
    torch.save(_backbone_weights(), tmp_path / "plain.pth")
    with pytest.raises(MedSAError, match="not a Med-SA checkpoint"):
        read_medsa(tmp_path / "plain.pth")


def test_other_medsa_config_is_a_clear_error(tmp_path):
    path = save_medsa(_trained(sd_trans=False), tmp_path / "parts.pt")
    payload = dict(read_medsa(path))
    model = build_medsa("tiny_sam", _backbone_weights(), MedSAConfig(backbone="tiny_sam"))
    with pytest.raises(MedSAError, match="do not fit"):
        load_medsa_parts(model, payload)


def test_convert_and_model_info_cli(tmp_path, capsys):
    out = tmp_path / "medsa.pt"
    assert main(["convert", "--backbone", "tiny_sam", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["model-info", str(out)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["kind"] == "medsa" and info["backbone"] == "tiny_sam"
    assert info["parts"] == {
        "adapters": True,
        "hyp_adapter": True,
        "sd_trans": True,
        "click_embed": True,
    }
    assert 0 < info["trainable_parameters"] < info["total_parameters"]
    # converted = zero-initialised: every up-projection and the click embedding are zero
    loaded = load_medsa(out)
    for key, value in loaded.state_dict().items():
        if key.endswith(("up.weight", "up.bias")) or "click_embed" in key or "depth_bias" in key:
            assert not value.any(), key

    plain = tmp_path / "plain.pth"
    torch.save(_backbone_weights(), plain)
    parts = tmp_path / "parts.pt"
    args = ["convert", "--backbone", "tiny_sam", "--backbone-checkpoint", str(plain)]
    args += ["--out", str(parts), "--parts-only", "--no-sd-trans", "--no-click-embed"]
    assert main(args) == 0
    capsys.readouterr()
    assert main(["model-info", str(parts)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["parts"]["sd_trans"] is False and info["parts"]["click_embed"] is False
    assert info["holds_backbone_weights"] is False
    assert load_medsa(parts, plain).config.sd_trans is False

    assert main(["model-info", str(plain)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["kind"] == "sam_custom" and info["parts"]["adapters"] is False
