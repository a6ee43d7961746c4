"""Checkpoint reading: wrappers, safety refusal, corrupt files, kind detection."""

import pickle

import pytest
import torch

from napari_medsam.model.checkpoints import (
    CheckpointError,
    config_for_state_dict,
    detect_kind,
    infer_sam_config,
    read_state_dict,
)
from napari_medsam.model.registry import SamViTConfig, build_model
from napari_medsam.model.sam import tiny_sam_config


@pytest.fixture(scope="module")
def tiny_state():
    torch.manual_seed(0)
    return build_model(tiny_sam_config()).state_dict()


def test_tiny_sam_round_trip_and_inferred_config(tmp_path, tiny_state):
    path = tmp_path / "tiny.pth"
    torch.save(tiny_state, path)
    state = read_state_dict(path)
    assert set(state) == set(tiny_state)
    assert detect_kind(state) == "sam_custom"
    cfg = infer_sam_config(state)
    expected = tiny_sam_config()
    for field in ("embed_dim", "depth", "num_heads", "image_size", "patch_size", "window_size",
                  "prompt_embed_dim", "decoder_depth", "decoder_mlp_dim", "iou_head_hidden_dim",
                  "mask_in_chans", "num_multimask_outputs", "global_attn_indexes"):  # fmt: skip
        assert getattr(cfg, field) == getattr(expected, field), field


def test_global_attention_blocks_are_inferred():
    cfg = SamViTConfig(
        name="t", embed_dim=64, depth=3, num_heads=1, global_attn_indexes=(1,), image_size=64,
        patch_size=8, window_size=3, prompt_embed_dim=32, decoder_depth=1, decoder_mlp_dim=32,
        iou_head_hidden_dim=16, mask_in_chans=8,
    )  # fmt: skip
    inferred = infer_sam_config(build_model(cfg).state_dict())
    assert inferred.global_attn_indexes == (1,)
    assert inferred.window_size == 3 and inferred.num_heads == 1 and inferred.image_size == 64


@pytest.mark.parametrize(
    "wrap",
    [
        lambda s: {"model": s, "epoch": 3},
        lambda s: {"state_dict": s},
        lambda s: {"model": {f"module.{k}": v for k, v in s.items()}},
        lambda s: {f"module.{k}": v for k, v in s.items()},
    ],
)
def test_wrappers_and_module_prefix_are_unwrapped(tmp_path, tiny_state, wrap):
    path = tmp_path / "wrapped.pt"
    torch.save(wrap(tiny_state), path)
    assert set(read_state_dict(path)) == set(tiny_state)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        read_state_dict(tmp_path / "nope.pth")


def test_corrupt_file(tmp_path):
    path = tmp_path / "corrupt.pth"
    path.write_bytes(b"this is not a checkpoint at all" * 10)
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        read_state_dict(path)


def test_truncated_zip(tmp_path, tiny_state):
    path = tmp_path / "cut.pth"
    torch.save(tiny_state, path)
    path.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(CheckpointError, match="not a readable"):
        read_state_dict(path)


class _Payload:  # an arbitrary class: unpickling it would import and run code
    def __reduce__(self):
        return (print, ("pwned",))


def test_pickled_code_is_refused(tmp_path, capsys):
    path = tmp_path / "evil.pth"
    torch.save({"model": _Payload()}, path)
    with pytest.raises(CheckpointError, match="pickled code, refusing to load it for safety"):
        read_state_dict(path)
    assert "pwned" not in capsys.readouterr().out
    plain = tmp_path / "plain.pkl"
    plain.write_bytes(pickle.dumps(_Payload(), protocol=2))
    with pytest.raises(CheckpointError):
        read_state_dict(plain)


def test_dict_without_weights_or_unknown_model(tmp_path):
    path = tmp_path / "meta.pth"
    torch.save({"epoch": 1, "lr": 0.1}, path)
    with pytest.raises(CheckpointError, match="no model weights"):
        read_state_dict(path)
    other = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(2, 3, 3, 3), "fc.bias": torch.zeros(2)}, other)
    state = read_state_dict(other)
    with pytest.raises(CheckpointError, match="not a known model"):
        detect_kind(state)


def test_detect_kind_litemedsam_bundled_keys():
    from napari_medsam.model.litemedsam import bundled_checkpoint_path

    state = read_state_dict(bundled_checkpoint_path())
    assert detect_kind(state) == "litemedsam"
    assert config_for_state_dict(state).input_spec.side == 256


def test_detect_kind_sam_sizes_and_medsa():
    def fake(embed, depth):
        state = {"image_encoder.patch_embed.proj.weight": torch.zeros(embed, 3, 16, 16)}
        state.update(
            {f"image_encoder.blocks.{i}.norm1.weight": torch.zeros(1) for i in range(depth)}
        )
        state["prompt_encoder.no_mask_embed.weight"] = torch.zeros(1)
        state["mask_decoder.iou_token.weight"] = torch.zeros(1)
        return state

    assert detect_kind(fake(768, 12)) == "sam_vit_b"
    assert detect_kind(fake(1024, 24)) == "sam_vit_l"
    assert detect_kind(fake(1280, 32)) == "sam_vit_h"
    assert detect_kind(fake(768, 6)) == "sam_custom"
    assert detect_kind({"format": "napari-medsam/medsa", "state_dict": {}}) == "medsa"


def test_medsa_checkpoint_kept_whole(tmp_path):
    path = tmp_path / "medsa.pth"
    torch.save(
        {"format": "napari-medsam/medsa", "config": {"a": 1}, "state_dict": {"w": torch.ones(1)}},
        path,
    )
    state = read_state_dict(path)
    assert state["format"] == "napari-medsam/medsa" and "state_dict" in state
