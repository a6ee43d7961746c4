"""The typed fine-tuning configuration (what ``napari-medsam finetune`` is given)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

TRAINABLE_PARTS = ("all", "decoder")


@dataclass(frozen=True)
class PromptSimConfig:
    """How training prompts are simulated (SimpleClick / RITM training protocol).

    Attributes
    ----------
    max_init_positive : int
        Random initial positive clicks: 1..max, sampled inside the object.
    max_init_negative : int
        Random initial negative clicks: 0..max, sampled in a band around the object
        (or, with probability ``far_negative``, anywhere in the background).
    protocol_first_click : float
        Probability that the initial prompt is instead the eval clicker's first
        click (the object's most interior pixel), as in ``napari-medsam eval``.
    max_iter_clicks : int
        Each batch runs 0..max iterative clicks, each at the error region of the
        model's own previous prediction, that prediction fed back as previous mask.
    box_fraction : float
        Fraction of cases prompted with a jittered box.
    box_with_clicks : float
        Of the box cases, the fraction that then take iterative clicks (box first,
        clicks after, as the eval's ``box+clicks``); the others stay box-only.
    box_jitter : float
        Each box edge moves by up to this fraction of the box side (uniform).
    far_negative : float
        Probability that a random negative click is drawn from the whole background.
    """

    max_init_positive: int = 3
    max_init_negative: int = 2
    protocol_first_click: float = 0.5
    max_iter_clicks: int = 3
    box_fraction: float = 0.25
    box_with_clicks: float = 0.5
    box_jitter: float = 0.1
    far_negative: float = 0.3


@dataclass(frozen=True)
class FinetuneConfig:
    """Everything a fine-tuning run depends on.

    Attributes
    ----------
    data : tuple of (str, str)
        (scan, labels) NIfTI path pairs on the same grid.
    out : str
        The Med-SA checkpoint to write (Med-SA parts; full when the backbone has
        no file to be found again). Training state goes to ``<out>.state.pt``.
    backbone, backbone_checkpoint : str, str or None
        Backbone key (``litemedsam``, ``sam_vit_b`` ...) and its weights (None:
        bundled LiteMedSAM; random for the others).
    epochs : int
        Passes over the training cases (ignored when ``steps`` is set).
    steps : int or None
        Total optimiser steps; epochs then last ``steps_per_epoch`` steps each.
    batch_size : int
        Cases per step and per process.
    lr, weight_decay : float
        AdamW settings.
    device : str
        ``auto``, ``cpu``, ``cuda`` ... (under torchrun: this process's GPU).
    seed : int
        Fixes the split, the case order and the prompt simulation.
    resume : bool
        Continue from ``<out>.state.pt``.
    val_fraction : float
        Fraction of objects (or volumes) held out; 0 disables held-out evaluation.
    split : str
        ``object`` (hold out whole label ids of a volume) or ``volume``.
    labels : tuple of int or None
        Label ids to use (default: all present in each label volume).
    window : tuple of float or None
        (level, width) for every scan; None: the app's ``auto_window`` per scan.
    min_area : int
        Object slices with fewer pixels are no case (training and held-out).
    other_axes : bool
        Also take object slices along axes 1 and 2 (resampled to square pixels).
    other_axes_stride : int
        Keep every n-th slice along the other axes.
    val_cases, val_max_clicks : int
        Held-out cases evaluated each epoch (a fixed subset) and their click cap.
    val_box : bool
        Also evaluate the held-out cases with the box prompt (box Dice).
    eval_before : bool
        Evaluate once before the first step (the "before" figures).
    dice_weight, focal_gamma : float
        Loss = NFL(gamma) + dice_weight * Dice loss.
    prompts : PromptSimConfig
    save_full : bool or None
        Store the backbone in ``out`` (None: only when it has no file / bundle).
    parts : str
        ``all``: every Med-SA part trains (encoder adapters, click embedding,
        decoder adapters). ``decoder``: only the mask decoder's adapters train, on
        image embeddings computed once per slice before the first step
        (:mod:`napari_medsam.training.cached`); the encoder's parts stay at zero.
    backend, precision : str
        Image-encoder backend for the embedding cache and the held-out engine of
        ``parts="decoder"`` (a frozen encoder): ``auto``, ``torch``, ``openvino``;
        precision ``auto``, ``bf16``, ``fp32`` (see :mod:`napari_medsam.model.backends`).
        With ``parts="all"`` the encoder trains, and torch runs it.
    """

    data: tuple[tuple[str, str], ...]
    out: str
    backbone: str = "litemedsam"
    backbone_checkpoint: str | None = None
    epochs: int = 1
    steps: int | None = None
    batch_size: int = 8
    lr: float = 2e-4
    weight_decay: float = 0.01
    device: str = "auto"
    seed: int = 0
    resume: bool = False
    val_fraction: float = 0.2
    split: str = "object"
    labels: tuple[int, ...] | None = None
    window: tuple[float, float] | None = None
    min_area: int = 100
    other_axes: bool = False
    other_axes_stride: int = 4
    val_cases: int = 16
    val_max_clicks: int = 20
    val_box: bool = True
    eval_before: bool = True
    dice_weight: float = 1.0
    focal_gamma: float = 2.0
    prompts: PromptSimConfig = field(default_factory=PromptSimConfig)
    save_full: bool | None = None
    parts: str = "all"
    backend: str = "auto"
    precision: str = "auto"

    def __post_init__(self) -> None:
        if self.parts not in TRAINABLE_PARTS:
            raise ValueError(f"parts must be one of {TRAINABLE_PARTS}, got {self.parts!r}")
        if not self.data:
            raise ValueError("no training data: give at least one SCAN:LABELS pair")
        if self.split not in ("object", "volume"):
            raise ValueError(f"split must be 'object' or 'volume', got {self.split!r}")
        if not 0 <= self.val_fraction < 1:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.batch_size < 1 or self.epochs < 1 or (self.steps is not None and self.steps < 1):
            raise ValueError("batch size, epochs and steps must be positive")

    @property
    def state_path(self) -> Path:
        """Where the resumable training state goes."""
        return Path(str(self.out) + ".state.pt")

    def to_dict(self) -> dict:
        """Plain (JSON- and weights_only-safe) dict of the configuration."""
        d = asdict(self)
        d["data"] = [list(pair) for pair in self.data]
        d["labels"] = None if self.labels is None else list(self.labels)
        d["window"] = None if self.window is None else list(self.window)
        return d
