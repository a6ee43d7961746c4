"""``napari-medsam model-info CHECKPOINT``: what a checkpoint holds, as JSON."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "model-info",
        help="print a checkpoint's kind, backbone and parameter counts as JSON",
        description="Describe a LiteMedSAM / SAM / Med-SA checkpoint: kind, backbone, total and "
        "trainable parameter counts and which Med-SA parts it has.",
    )
    parser.add_argument("checkpoint", metavar="CHECKPOINT")
    parser.set_defaults(func=run)
    return parser


def _medsa_info(payload: dict) -> dict:
    from napari_medsam.model.medsa.build import count_medsa_parameters
    from napari_medsam.model.medsa.checkpoint import config_from_payload

    config = config_from_payload(payload)
    keys = list(payload["state_dict"])
    total, trainable = count_medsa_parameters(config)
    return {
        "kind": "medsa",
        "backbone": config.backbone,
        "backbone_fingerprint": payload["backbone"].get("fingerprint"),
        "holds_backbone_weights": "backbone_state_dict" in payload,
        "total_parameters": total,
        "trainable_parameters": trainable,
        "trainable_percent": round(100.0 * trainable / total, 3),
        "parts": {
            "adapters": any("_adapter." in k for k in keys),
            "hyp_adapter": any(".medsa_prompt_adapter.hyper." in k for k in keys),
            "sd_trans": any(".medsa_depth_adapter." in k for k in keys),
            "click_embed": any("medsa_click_embed." in k for k in keys),
        },
        "config": payload["config"],
    }


def check_fits(state: dict, source: str) -> None:
    """Refuse a state dict whose keys or shapes do not fit the model its keys suggest.

    The model is built on the ``meta`` device: shapes only, no memory, no weights.
    """
    import torch

    from napari_medsam.model.checkpoints import CheckpointError, config_for_state_dict
    from napari_medsam.model.checkpoints import state_dict_mismatch
    from napari_medsam.model.registry import build_model

    config = config_for_state_dict(state)
    with torch.device("meta"):
        own = build_model(config).state_dict()
    problems = state_dict_mismatch(own, state)
    if problems:
        raise CheckpointError(
            f"{source}: looks like {config.name} but does not fit it: " + "; ".join(problems)
        )


def run(args: argparse.Namespace) -> int:
    from napari_medsam.model.checkpoints import detect_kind, read_state_dict
    from napari_medsam.model.medsa.checkpoint import is_medsa_payload, read_medsa

    state = read_state_dict(args.checkpoint)
    if is_medsa_payload(state):
        info = _medsa_info(read_medsa(state))
    else:
        kind = detect_kind(state)
        check_fits(state, Path(args.checkpoint).name)
        total = sum(
            v.numel()
            for k, v in state.items()
            if hasattr(v, "numel") and "running_" not in k and not k.endswith("num_batches_tracked")
        )
        info = {
            "kind": kind,
            "backbone": kind,
            "total_parameters": total,
            "trainable_parameters": total,
            "parts": {
                "adapters": False,
                "hyp_adapter": False,
                "sd_trans": False,
                "click_embed": False,
            },
        }
    print(json.dumps(info, indent=2))
    return 0
