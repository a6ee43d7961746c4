"""Held-out evaluation during training, with the eval protocol and the app's engine.

The held-out objects' axis-0 slices are the eval's cases
(:func:`napari_medsam.evaluation.cases.iter_cases`); a fixed, seeded subset is
run through :func:`napari_medsam.evaluation.runner.evaluate_volume` with a
:class:`napari_medsam.model.medsa.engine.MedSAEngine` around the model being
trained -- the same click simulator, metrics and inference path as
``napari-medsam eval``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from napari_medsam.evaluation.cases import Case, iter_cases
from napari_medsam.evaluation.metrics import summarize
from napari_medsam.evaluation.runner import evaluate_volume
from napari_medsam.training.data import Volume


def heldout_cases(
    volumes: Sequence[Volume],
    objects: set[tuple[int, int]],
    min_area: int,
    n_cases: int,
    seed: int,
) -> list[tuple[int, Case]]:
    """A seeded subset of at most ``n_cases`` eval cases of the held-out objects.

    Returns
    -------
    list of (volume index, Case)
        Ordered by volume, slice and label (slices shared between labels embed once).
    """
    everything: list[tuple[int, Case]] = []
    for v, vol in enumerate(volumes):
        labels = sorted(lab for (vv, lab) in objects if vv == v)
        if labels:
            everything += [(v, c) for c in iter_cases(vol.labels_zyx, labels, min_area)]
    if len(everything) > n_cases:
        rng = np.random.default_rng(seed)
        keep = np.sort(rng.choice(len(everything), size=n_cases, replace=False))
        everything = [everything[i] for i in keep]
    return everything


def evaluate_model(
    model: torch.nn.Module,
    volumes: Sequence[Volume],
    cases: Sequence[tuple[int, Case]],
    device: torch.device,
    max_clicks: int = 20,
    box: bool = True,
    engine=None,
) -> dict:
    """Evaluate a Med-SA model on eval cases as ``napari-medsam eval`` would.

    The model is put in eval mode (the caller restores its training mode).
    ``engine``: a :class:`~napari_medsam.model.medsa.engine.MedSAEngine` around
    ``model`` to reuse (its cached embeddings too: only valid while the encoder
    does not change); default: a fresh one per prompt kind.

    Returns
    -------
    dict
        ``n_cases``, ``noc85``, ``noc90``, ``n_fail90``, ``dice1`` (Dice after
        one click), ``miou_curve`` and, with ``box``, ``box_dice``.
    """
    from napari_medsam.model.medsa.engine import MedSAEngine

    if not cases:
        return {"n_cases": 0}
    results = {"clicks": [], "box": []}
    prompts = ("clicks", "box") if box else ("clicks",)
    for prompt in prompts:
        # torch: the encoder may be training (a converted copy would go stale)
        run_engine = engine or MedSAEngine(
            model, device=device, cache_bytes=256 << 20, backend="torch"
        )
        run_engine.model.eval()
        for v, vol in enumerate(volumes):
            mine = [c for (vv, c) in cases if vv == v]
            if mine:
                results[prompt] += evaluate_volume(
                    run_engine,
                    vol.image_zyx,
                    vol.labels_zyx,
                    vol.window,
                    mine,
                    prompt=prompt,
                    max_clicks=max_clicks,
                    volume_key=("finetune-val", v),
                )
    clicks = summarize(results["clicks"], max_clicks, "clicks")
    out = {
        "n_cases": clicks["n_cases"],
        "noc85": clicks["noc85"],
        "noc90": clicks["noc90"],
        "n_fail90": clicks["n_fail90"],
        "dice1": clicks["dice_at"]["1"],
        "miou_curve": clicks["miou_curve"],
    }
    if box:
        out["box_dice"] = summarize(results["box"], 1, "box")["box_dice"]
    return out
