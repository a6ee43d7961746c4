"""The state of a segmentation session besides the voxels: prompts, names, locks, corrections.

Pure Python / numpy, JSON-serialisable through :meth:`SessionState.to_dict`. The
widget keeps one :class:`SessionState` per scan; the labels volume itself lives
in the napari layer (and in the autosave's ``.npz``).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np

from napari_medsam.session.labels import LabelRegistry
from napari_medsam.types import SlicePrompt

STATE_VERSION = 1


def prompt_to_dict(prompt: SlicePrompt) -> dict:
    """JSON form of a prompt: points (row, col), labels, box (y0, x0, y1, x1). Logits are dropped."""
    return {
        "points_yx": np.asarray(prompt.points_yx, float).reshape(-1, 2).tolist(),
        "point_labels": [int(v) for v in np.asarray(prompt.point_labels).reshape(-1)],
        "box_yxyx": None
        if prompt.box_yxyx is None
        else [float(v) for v in np.asarray(prompt.box_yxyx)],
    }


def prompt_from_dict(d: dict) -> SlicePrompt:
    box = d.get("box_yxyx")
    return SlicePrompt(
        points_yx=np.asarray(d.get("points_yx") or np.zeros((0, 2)), np.float32).reshape(-1, 2),
        point_labels=np.asarray(d.get("point_labels") or [], np.int64),
        box_yxyx=None if box is None else np.asarray(box, np.float32),
    )


@dataclass
class SessionState:
    """Everything needed to resume a session, except the labels volume.

    Attributes
    ----------
    scan_path : str or None
        The image the labels belong to.
    shape_zyx : tuple of int or None
        Shape of the labels volume.
    registry : LabelRegistry
        Names, colours and locks.
    active_label : int or None
        The object being edited.
    prompts : dict
        ``label -> z -> SlicePrompt``: the clicks / box last used on that slice.
    corrected : dict
        ``label -> set of z``: slices corrected by hand (kept by re-propagation).
    window : tuple of float or None
        (lo, hi) intensity window in use.
    model : str or None
        Name of the engine used.
    affine_ras : tuple of 16 float or None
        The scan's voxel-to-RAS affine (row-major 4 x 4), to check that a
        restored session lies on the same grid.
    """

    scan_path: str | None = None
    shape_zyx: tuple[int, ...] | None = None
    registry: LabelRegistry = field(default_factory=LabelRegistry)
    active_label: int | None = None
    prompts: dict[int, dict[int, SlicePrompt]] = field(default_factory=dict)
    corrected: dict[int, set[int]] = field(default_factory=dict)
    window: tuple[float, float] | None = None
    model: str | None = None
    affine_ras: tuple[float, ...] | None = None

    # -- prompts -----------------------------------------------------------------
    def set_prompt(self, label: int, z: int, prompt: SlicePrompt) -> None:
        """Remember the prompt of object ``label`` on slice ``z`` (low-res logits are not kept)."""
        stored = SlicePrompt(
            np.array(prompt.points_yx, np.float32).reshape(-1, 2),
            np.array(prompt.point_labels, np.int64).reshape(-1),
            None if prompt.box_yxyx is None else np.array(prompt.box_yxyx, np.float32),
        )
        self.prompts.setdefault(int(label), {})[int(z)] = stored

    def get_prompt(self, label: int, z: int) -> SlicePrompt | None:
        return self.prompts.get(int(label), {}).get(int(z))

    def clear_prompts(self, label: int, z: int | None = None) -> None:
        """Forget the prompts of ``label`` on slice ``z`` (all slices when None)."""
        if z is None:
            self.prompts.pop(int(label), None)
        else:
            self.prompts.get(int(label), {}).pop(int(z), None)

    # -- corrections ---------------------------------------------------------------
    def mark_corrected(self, label: int, z: int) -> None:
        self.corrected.setdefault(int(label), set()).add(int(z))

    def unmark_corrected(self, label: int, z: int | None = None) -> None:
        if z is None:
            self.corrected.pop(int(label), None)
        else:
            self.corrected.get(int(label), set()).discard(int(z))

    def replay_corrections(self, extra: dict, undo: bool) -> None:
        """Undo (or redo) the marks an undo step changed.

        ``extra["corrected"]`` lists the (label, z) the step marked, ``extra["uncorrected"]``
        those it unmarked (e.g. the slice's last prompt was deleted).
        """
        for label, z in extra.get("corrected", ()):
            (self.unmark_corrected if undo else self.mark_corrected)(label, z)
        for label, z in extra.get("uncorrected", ()):
            (self.mark_corrected if undo else self.unmark_corrected)(label, z)

    def corrected_zs(self, label: int) -> frozenset[int]:
        """Slices of ``label`` corrected by hand: pass as ``locked_zs`` to propagation."""
        return frozenset(self.corrected.get(int(label), ()))

    def forget_label(self, label: int) -> None:
        """Drop prompts and corrections of a label (e.g. after deleting the object)."""
        self.clear_prompts(label)
        self.unmark_corrected(label)

    def copy(self) -> SessionState:
        """A deep copy (e.g. to keep in an undo step's ``extra``)."""
        return copy.deepcopy(self)

    # -- serialisation ---------------------------------------------------------------
    def to_dict(self) -> dict:
        """JSON-serialisable form (integer keys become strings)."""
        return {
            "version": STATE_VERSION,
            "scan_path": self.scan_path,
            "shape_zyx": None if self.shape_zyx is None else [int(s) for s in self.shape_zyx],
            "labels": self.registry.to_dict(),
            "active_label": self.active_label,
            "prompts": {
                str(label): {str(z): prompt_to_dict(p) for z, p in sorted(by_z.items())}
                for label, by_z in sorted(self.prompts.items())
            },
            "corrected": {
                str(label): sorted(zs) for label, zs in sorted(self.corrected.items()) if zs
            },
            "window": None if self.window is None else [float(v) for v in self.window],
            "model": self.model,
            "affine_ras": None if self.affine_ras is None else [float(v) for v in self.affine_ras],
        }

    @classmethod
    def from_dict(cls, d: dict) -> SessionState:
        if int(d.get("version", STATE_VERSION)) > STATE_VERSION:
            raise ValueError(
                f"session state version {d['version']} is newer than this napari-medsam"
            )
        return cls(
            scan_path=d.get("scan_path"),
            shape_zyx=None if d.get("shape_zyx") is None else tuple(int(s) for s in d["shape_zyx"]),
            registry=LabelRegistry.from_dict(d.get("labels") or {}),
            active_label=None if d.get("active_label") is None else int(d["active_label"]),
            prompts={
                int(label): {int(z): prompt_from_dict(p) for z, p in by_z.items()}
                for label, by_z in (d.get("prompts") or {}).items()
            },
            corrected={
                int(label): {int(z) for z in zs} for label, zs in (d.get("corrected") or {}).items()
            },
            window=None
            if d.get("window") is None
            else (float(d["window"][0]), float(d["window"][1])),
            model=d.get("model"),
            affine_ras=None
            if d.get("affine_ras") is None
            else tuple(float(v) for v in d["affine_ras"]),
        )
