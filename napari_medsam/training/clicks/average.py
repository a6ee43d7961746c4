"""Average the weights of several click checkpoints of one run (SWA-style).

Snapshots taken every ``save_every`` steps of one training run lie in one basin;
their mean is a smoother model than any one of them (stochastic weight averaging,
Izmailov et al. 2018, applied offline). Only checkpoints with the same config and
backbone are averaged; integer buffers are taken from the last checkpoint.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from napari_medsam.model.checkpoints import CheckpointError, read_state_dict
from napari_medsam.model.click.checkpoint import click_decoder_from
from napari_medsam.model.click.decoder import ClickDecoder


def average_click_decoders(
    paths: Sequence[str | Path], backbone: nn.Module, first_click_multimask: bool | None = None
) -> tuple[ClickDecoder, list[dict]]:
    """One :class:`ClickDecoder` whose float weights are the mean of ``paths``' weights.

    Parameters
    ----------
    paths : sequence of path
        Click checkpoints of one run (same config, same backbone).
    backbone : nn.Module
        The bundled model they ride on (each checkpoint's fingerprint is checked).
    first_click_multimask : bool, optional
        Override the averaged decoder's single-click rule (None keeps it).

    Returns
    -------
    decoder : ClickDecoder
        In eval mode.
    cards : list of dict
        Each checkpoint's training card, in order.
    """
    if not paths:
        raise ValueError("no checkpoints to average")
    decoders, cards = [], []
    for path in paths:
        payload = read_state_dict(path)
        decoders.append(click_decoder_from(payload, backbone))
        cards.append(dict(payload.get("card") or {}))
    config = decoders[-1].config
    if any(d.config != config for d in decoders):
        raise CheckpointError("click checkpoints to average have different configs")
    states = [d.state_dict() for d in decoders]
    mean = {}
    for key, last in states[-1].items():
        if last.is_floating_point():
            mean[key] = torch.stack([s[key].float() for s in states]).mean(0).to(last.dtype)
        else:
            mean[key] = last
    out = decoders[-1]
    out.load_state_dict(mean, strict=True)
    if first_click_multimask is not None:
        out.config = dataclasses.replace(config, first_click_multimask=first_click_multimask)
    return out.eval(), cards
