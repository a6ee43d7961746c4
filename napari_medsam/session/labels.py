"""The label registry: id -> name, colour, lock; saved as sidecar files next to the NIfTI.

Next to ``<stem>.nii.gz`` three small files are written:

``<stem>.labels.json``
    This package's own record (ids, names, RGB colours, locked and visible flags);
    read back first.
``<stem>.label.txt``
    An ITK-SNAP label description file (``IDX -R- -G- -B- -A-- VIS MSH "LABEL"``);
    ITK-SNAP loads it with *Segmentation > Import Label Descriptions*.
``<stem>.ctbl``
    A 3D Slicer colour table (``id name R G B A``); Slicer loads it as a colour node
    and can assign it to the segmentation's labelmap.

Locks exist only in the JSON; the other two formats have no such field.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from napari_medsam.io.atomic import atomic_write_text
from napari_medsam.session.presets import default_color, preset_id, preset_name

FORMAT = "napari-medsam-labels"
FORMAT_VERSION = 1
#: Key of a napari labels layer's metadata holding :meth:`LabelRegistry.to_dict`;
#: the npe2 writer writes the sidecars from it.
LAYER_METADATA_KEY = "medsam_labels"

_ITKSNAP_LINE = re.compile(
    r'^\s*(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+([0-9.eE+-]+)\s+(\d+)\s+(\d+)\s+"(.*)"\s*$'
)


@dataclass(frozen=True)
class LabelInfo:
    """One object in the labels layer.

    Attributes
    ----------
    id : int
        Value of the object's voxels (>= 1; 0 is background).
    name : str
    color : tuple of int
        (R, G, B), each 0..255.
    locked : bool
        A locked label's voxels are never overwritten by a new mask.
    visible : bool
    """

    id: int
    name: str
    color: tuple[int, int, int]
    locked: bool = False
    visible: bool = True

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "name": self.name,
            "color": list(self.color),
            "locked": self.locked,
            "visible": self.visible,
        }

    @classmethod
    def from_dict(cls, d: dict) -> LabelInfo:
        r, g, b = (int(c) for c in d.get("color") or default_color(int(d["id"])))
        return cls(
            int(d["id"]),
            str(d["name"]),
            (r, g, b),
            bool(d.get("locked", False)),
            bool(d.get("visible", True)),
        )


def _auto_color(label_id: int, name: str | None) -> tuple[int, int, int]:
    """The colour an object gets unless the user picks one: its preset organ's, else its id's."""
    wanted = preset_id(name) if name else None
    return tuple(default_color(label_id if wanted is None else wanted))


def sidecar_stem(nifti_path: str | Path) -> Path:
    """``/a/scan.nii.gz`` -> ``/a/scan`` (drops ``.nii.gz`` / ``.nii``, else the last suffix)."""
    path = Path(nifti_path)
    name = path.name
    if path.is_dir():  # a DICOM series folder: sidecars beside it
        return path
    for ext in (".nii.gz", ".nii"):
        if name.lower().endswith(ext):
            return path.with_name(name[: -len(ext)])
    return path.with_suffix("")


def sidecar_paths(nifti_path: str | Path) -> dict[str, Path]:
    """The sidecar files of a NIfTI: keys ``"json"``, ``"itksnap"``, ``"slicer"``."""
    stem = sidecar_stem(nifti_path)
    return {
        "json": stem.with_name(stem.name + ".labels.json"),
        "itksnap": stem.with_name(stem.name + ".label.txt"),
        "slicer": stem.with_name(stem.name + ".ctbl"),
    }


class LabelRegistry:
    """Names, colours and locks of the objects in one labels volume.

    Parameters
    ----------
    labels : iterable of LabelInfo, optional
    """

    def __init__(self, labels: Iterable[LabelInfo] = ()) -> None:
        self._labels: dict[int, LabelInfo] = {}
        for info in labels:
            self._put(info)

    def _put(self, info: LabelInfo) -> LabelInfo:
        if info.id < 1:
            raise ValueError(f"label ids start at 1 (0 is background), got {info.id}")
        self._labels[int(info.id)] = info
        return info

    # -- mapping-like access -------------------------------------------------
    def __contains__(self, label_id: object) -> bool:
        return label_id in self._labels

    def __getitem__(self, label_id: int) -> LabelInfo:
        return self._labels[int(label_id)]

    def __iter__(self) -> Iterator[LabelInfo]:
        return iter(sorted(self._labels.values(), key=lambda i: i.id))

    def __len__(self) -> int:
        return len(self._labels)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LabelRegistry) and self._labels == other._labels

    def ids(self) -> list[int]:
        return sorted(self._labels)

    def name(self, label_id: int) -> str:
        """Name of ``label_id``; ``"label <id>"`` when it is not registered."""
        info = self._labels.get(int(label_id))
        return info.name if info else f"label {int(label_id)}"

    def locked_ids(self) -> frozenset[int]:
        return frozenset(i for i, info in self._labels.items() if info.locked)

    def next_free_id(self, start: int = 1) -> int:
        """Smallest id >= ``start`` not registered."""
        label_id = max(int(start), 1)
        while label_id in self._labels:
            label_id += 1
        return label_id

    # -- edits ------------------------------------------------------------------
    def add(
        self,
        name: str | None = None,
        label_id: int | None = None,
        color: tuple[int, int, int] | None = None,
    ) -> LabelInfo:
        """Register an object.

        With no ``label_id``, a TotalSegmentator preset name gets its preset id
        when that id is free; otherwise the next free id is used. With no name,
        the preset name of the id (or ``"label <id>"``) is used.

        Raises
        ------
        ValueError
            If ``label_id`` is already registered.
        """
        if label_id is None:
            wanted = preset_id(name) if name else None
            label_id = (
                wanted if wanted is not None and wanted not in self._labels else self.next_free_id()
            )
        label_id = int(label_id)
        if label_id in self._labels:
            raise ValueError(f"label {label_id} already exists ({self._labels[label_id].name!r})")
        if not name:
            name = preset_name(label_id) or f"label {label_id}"
        color = tuple(color or _auto_color(label_id, name))
        return self._put(LabelInfo(label_id, str(name), color))

    def rename(self, label_id: int, name: str) -> LabelInfo:
        """Rename; an automatic colour follows the name (a preset organ gets its preset colour)."""
        info = self[label_id]
        color = info.color
        if tuple(color) == _auto_color(label_id, info.name):  # not chosen by the user
            color = _auto_color(label_id, name)
        return self._put(replace(info, name=str(name), color=color))

    def set_name(self, label_id: int, name: str) -> bool:
        """Name object ``label_id`` (registered if new); False for an empty or the same name."""
        name = name.strip()
        if not name or (label_id in self and self.name(label_id) == name):
            return False
        if label_id in self:
            self.rename(label_id, name)
        else:
            self.add(name, int(label_id))
        return True

    def set_color(self, label_id: int, color: tuple[int, int, int]) -> LabelInfo:
        return self._put(replace(self[label_id], color=tuple(int(c) for c in color)))

    def set_locked(self, label_id: int, locked: bool = True) -> LabelInfo:
        return self._put(replace(self[label_id], locked=bool(locked)))

    def set_visible(self, label_id: int, visible: bool = True) -> LabelInfo:
        return self._put(replace(self[label_id], visible=bool(visible)))

    def remove(self, label_id: int) -> LabelInfo:
        return self._labels.pop(int(label_id))

    def sync_with(self, labels_zyx: np.ndarray, names_from_presets: bool = True) -> list[int]:
        """Register every id present in a labels volume but missing here.

        Parameters
        ----------
        labels_zyx : np.ndarray
            (Z, Y, X) integer labels.
        names_from_presets : bool
            Name new ids by the TotalSegmentator presets (else ``"label <id>"``).

        Returns
        -------
        list of int
            The ids added.
        """
        added = []
        for value in np.unique(np.asarray(labels_zyx)):
            value = int(value)
            if value > 0 and value not in self._labels:
                name = (preset_name(value) if names_from_presets else None) or f"label {value}"
                self.add(name, value)
                added.append(value)
        return added

    # -- serialisation ----------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"format": FORMAT, "version": FORMAT_VERSION, "labels": [i.to_dict() for i in self]}

    @classmethod
    def from_dict(cls, d: dict) -> LabelRegistry:
        if d.get("format", FORMAT) != FORMAT:
            raise ValueError(f"not a {FORMAT} record: format {d.get('format')!r}")
        return cls(LabelInfo.from_dict(x) for x in d.get("labels", []))

    def to_itksnap(self) -> str:
        """ITK-SNAP label description text (row 0 is ITK-SNAP's ``Clear Label``)."""
        lines = [
            "################################################",
            "# ITK-SnAP Label Description File",
            "# written by napari-medsam",
            "# IDX   -R-  -G-  -B-  -A--  VIS MSH  LABEL",
            "################################################",
            '    0     0    0    0        0  0  0    "Clear Label"',
        ]
        for info in self:
            r, g, b = info.color
            vis = int(info.visible)
            name = info.name.replace('"', "'")
            lines.append(f'{info.id:5d} {r:5d}{g:5d}{b:5d}        1  {vis}  {vis}    "{name}"')
        return "\n".join(lines) + "\n"

    @classmethod
    def from_itksnap(cls, text: str) -> LabelRegistry:
        """Parse an ITK-SNAP label description file (row 0 is skipped)."""
        labels = []
        for line in text.splitlines():
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            m = _ITKSNAP_LINE.match(line)
            if m is None:
                raise ValueError(f"not an ITK-SNAP label line: {line!r}")
            label_id = int(m.group(1))
            if label_id == 0:
                continue
            color = (int(m.group(2)), int(m.group(3)), int(m.group(4)))
            labels.append(LabelInfo(label_id, m.group(8), color, visible=bool(int(m.group(6)))))
        return cls(labels)

    def to_slicer_ctbl(self) -> str:
        """3D Slicer colour table text: ``id name R G B A`` (spaces in names become ``_``)."""
        lines = ["# Color table file written by napari-medsam", f"# {len(self) + 1} values"]
        lines.append("0 Background 0 0 0 0")
        for info in self:
            r, g, b = info.color
            name = re.sub(r"\s+", "_", info.name.strip()) or f"label_{info.id}"
            lines.append(f"{info.id} {name} {r} {g} {b} 255")
        return "\n".join(lines) + "\n"

    @classmethod
    def from_slicer_ctbl(cls, text: str) -> LabelRegistry:
        """Parse a 3D Slicer colour table (``id name R G B A``; id 0 and comments skipped).

        A colour with alpha 0 becomes a hidden label.
        """
        labels = []
        for line in text.splitlines():
            parts = line.split()
            if not parts or parts[0].startswith("#"):
                continue
            if len(parts) < 5:
                raise ValueError(f"not a Slicer colour table line: {line!r}")
            try:
                label_id = int(parts[0])
                rgba = [int(float(v)) for v in parts[-4:]] if len(parts) >= 6 else None
                if rgba is None:
                    rgba = [int(float(v)) for v in parts[-3:]] + [255]
            except ValueError:
                raise ValueError(f"not a Slicer colour table line: {line!r}") from None
            if label_id == 0:
                continue
            name = " ".join(parts[1 : len(parts) - (4 if len(parts) >= 6 else 3)])
            color = (rgba[0], rgba[1], rgba[2])
            labels.append(LabelInfo(label_id, name or f"label_{label_id}", color, visible=rgba[3] > 0))
        return cls(labels)

    def save_sidecars(self, nifti_path: str | Path) -> dict[str, Path]:
        """Write ``<stem>.labels.json``, ``<stem>.label.txt`` (ITK-SNAP) and ``<stem>.ctbl`` (Slicer).

        Returns
        -------
        dict
            The paths written (keys as :func:`sidecar_paths`).
        """
        paths = sidecar_paths(nifti_path)
        atomic_write_text(paths["json"], json.dumps(self.to_dict(), indent=2) + "\n")
        atomic_write_text(paths["itksnap"], self.to_itksnap())
        atomic_write_text(paths["slicer"], self.to_slicer_ctbl())
        return paths

    @classmethod
    def load_sidecar(cls, nifti_path: str | Path) -> LabelRegistry | None:
        """Read the sidecar of a label file: the JSON, else ITK-SNAP's, else Slicer's; or None."""
        paths = sidecar_paths(nifti_path)
        if paths["json"].is_file():
            return cls.from_dict(json.loads(paths["json"].read_text(encoding="utf-8")))
        if paths["itksnap"].is_file():
            return cls.from_itksnap(paths["itksnap"].read_text(encoding="utf-8"))
        if paths["slicer"].is_file():
            return cls.from_slicer_ctbl(paths["slicer"].read_text(encoding="utf-8"))
        return None


MIN_FALLBACK_IDS = 255  # ids 1..N that keep the viewer's cyclic colours when not registered
MAX_FALLBACK_IDS = 4095  # never list more than this many unregistered ids
UNLISTED_RGBA = (0.7, 0.7, 0.7, 1.0)  # unregistered ids above the listed range still show


def registry_colors(registry: LabelRegistry, cycle_rgba: np.ndarray, max_id: int = 0) -> dict:
    """``id -> RGBA`` (0..1) for a labels display: registry colours, else the cycle's.

    Parameters
    ----------
    registry : LabelRegistry
        Its colours (a hidden label is transparent).
    cycle_rgba : np.ndarray
        (K, 4) colours of a cyclic colormap whose row 0 is the background; ids
        1..N not registered take row ``(id - 1) % (K - 1) + 1``,
        N = ``max(255, max_id)`` (at most 4095).
    max_id : int
        The largest id in the volume.

    Returns
    -------
    dict
        Keys ``None`` (ids not listed: light grey), 0 (transparent) and the ids.
    """
    n = min(max(MIN_FALLBACK_IDS, int(max_id), *registry.ids(), 0), MAX_FALLBACK_IDS)
    ids = np.arange(1, n + 1)
    colors = np.asarray(cycle_rgba, float)
    cycled = colors[(ids - 1) % (len(colors) - 1) + 1]
    color_dict: dict = {None: UNLISTED_RGBA, 0: (0.0, 0.0, 0.0, 0.0)}
    color_dict.update(zip(ids.tolist(), (tuple(c) for c in cycled), strict=True))
    for info in registry:
        alpha = 1.0 if info.visible else 0.0
        color_dict[info.id] = (*(c / 255.0 for c in info.color), alpha)
    return color_dict
