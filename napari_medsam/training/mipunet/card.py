"""Model cards of automatic-segmentation checkpoints: data, licences, figures, limits."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from napari_medsam.io.atomic import atomic_write_text
from napari_medsam.training.mipunet.data import LabelledVolume

__all__ = ["data_card", "model_card_text", "write_model_card"]


def data_card(train: Sequence[LabelledVolume], heldout: Sequence[LabelledVolume]) -> dict[str, Any]:
    """JSON-ready record of the data of a run (stored in the checkpoint's card)."""

    def row(v: LabelledVolume) -> dict[str, str]:
        return {"name": v.name, "image": v.image, "label": v.label, "patient": v.patient,
                "source": v.source, "licence": v.licence}  # fmt: skip

    return {"train": [row(v) for v in train], "heldout": [row(v) for v in heldout],
            "split": "by patient; labels are automatic (TotalSegmentator, SPINEPS), not manual"}  # fmt: skip


def model_card_text(kind: str, card: Mapping[str, Any], figures: Mapping[str, Any] | None) -> str:
    """The Markdown card of a checkpoint.

    Parameters
    ----------
    kind : str
        ``"mip-unet"`` or ``"slice-unet"``.
    card : mapping
        The checkpoint's card (``data`` from :func:`data_card`, ``settings``, ``config``...).
    figures : mapping, optional
        :func:`..evaluate.evaluate_model`'s result.
    """
    data = card.get("data", {})
    lines = [f"# napari-medsam automatic {card.get('target', 'bone')} segmentation: {kind}", ""]
    lines += ["## Intended use",
              "CT in Hounsfield units only. A first 3D proposal of the target, to be corrected "
              "with clicks; not a diagnostic device.", ""]  # fmt: skip
    lines += ["## Data (all labels automatic, never manual ground truth)", "",
              "| split | volume | patient | source | licence |", "| --- | --- | --- | --- | --- |"]  # fmt: skip
    for split in ("train", "heldout"):
        for row in data.get(split, []):
            lines.append(
                f"| {split} | `{row['image']}` | {row['patient']} | {row['source']} | {row['licence']} |"
            )
    lines += ["", f"Split: {data.get('split', 'by patient')}.", ""]
    lines += ["## Training", "", f"- config: `{card.get('config')}`", f"- settings: `{card.get('settings')}`",
              f"- steps done: {card.get('steps_done')}, minutes: {card.get('minutes')}, "
              f"stopped: {card.get('stopped')}", f"- command: `{card.get('command', '')}`", ""]  # fmt: skip
    if figures:
        lines += ["## Held-out figures (scan grid)", "",
                  "| volume | Dice | seconds | HU threshold Dice (t fitted on train) | best single threshold |",
                  "| --- | --- | --- | --- | --- |"]  # fmt: skip
        for r in figures.get("volumes", []):
            lines.append(f"| {r['name']} | {r['dice']:.3f} | {r['seconds']:.1f} | {r['threshold_dice']:.3f} "
                         f"(t = {figures['threshold_hu']:g} HU) | {r['best_threshold_dice']:.3f} "
                         f"(t = {r['best_threshold_hu']:g} HU) |")  # fmt: skip
        verdict = "beats" if figures.get("beats_baseline") else "does NOT beat"
        lines += [
            "",
            f"The model {verdict} the best single HU threshold on the held-out volumes.",
            "",
        ]
    lines += ["## Limits",
              "- Trained on very few patients; a held-out set of one patient gives a figure, not "
              "a distribution.",
              "- Labels are a model's output: thin cortical bone and ribs carry its errors.", ""]  # fmt: skip
    return "\n".join(lines)


def write_model_card(path: str | Path, kind: str, card: Mapping[str, Any],
                     figures: Mapping[str, Any] | None = None) -> Path:  # fmt: skip
    """Write :func:`model_card_text` atomically to ``path`` (Markdown); returns the path."""
    return atomic_write_text(path, model_card_text(kind, card, figures))
