"""The on-disk store of embedded training slices: fp16 embeddings, label maps, metadata.

A store is a folder of memory-mapped arrays, all in the model frame (the slice, or
a zoom-in crop, stretched to the model's 256 x 256 low-res grid)::

    emb.f16   (N, C, h, w)  float16 image embeddings
    lab.i16   (N, S, S)     int16 label map of the slice (0 background)
    nbr.i16   (N, K, S, S)  int16 label maps of the neighbouring slices, offsets
                            ``NEIGHBOUR_OFFSETS`` (zeros where there is none)
    spx.i16   (N, S, S)     int16 superpixels of the windowed slice (synthetic targets)
    meta.jsonl              one JSON object per record, in record order
    store.json              shapes, count of complete records, build settings

Records are appended in order and ``store.json``'s count is rewritten (atomically)
only after their arrays are flushed, so an interrupted build resumes where it
stopped and a reader never sees a half-written record.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from napari_medsam.io.atomic import atomic_write_text

NEIGHBOUR_OFFSETS = (-3, -2, -1, 1, 2, 3)
_ARRAYS = {"emb": np.float16, "lab": np.int16, "nbr": np.int16, "spx": np.int16}


def _write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=1))


class SliceStore:
    """Memory-mapped training records (module docstring).

    Parameters
    ----------
    folder : str or Path
    capacity : int, optional
        Number of records to allocate when creating the store.
    embedding_shape : tuple of int
        (C, h, w) of one embedding.
    side : int
        S, the side of the label maps.
    settings : dict, optional
        Build settings recorded in ``store.json`` (a mismatch on reopen is an error).
    """

    def __init__(
        self,
        folder: str | Path,
        capacity: int | None = None,
        embedding_shape: tuple[int, int, int] = (256, 64, 64),
        side: int = 256,
        settings: dict | None = None,
    ) -> None:
        self.folder = Path(folder)
        header = self.folder / "store.json"
        if header.is_file():
            info = json.loads(header.read_text())
            if settings is not None and info.get("settings") != settings:
                raise ValueError(f"{self.folder}: built with other settings; use a new folder")
        else:
            if capacity is None:
                raise FileNotFoundError(f"no training store in {self.folder}")
            self.folder.mkdir(parents=True, exist_ok=True)
            info = {
                "capacity": int(capacity),
                "count": 0,
                "embedding_shape": list(embedding_shape),
                "side": int(side),
                "settings": settings or {},
            }
            _write_json(header, info)
        self.info = info
        self.capacity = int(info["capacity"])
        c, h, w = info["embedding_shape"]
        s = int(info["side"])
        shapes = {
            "emb": (self.capacity, c, h, w),
            "lab": (self.capacity, s, s),
            "nbr": (self.capacity, len(NEIGHBOUR_OFFSETS), s, s),
            "spx": (self.capacity, s, s),
        }
        mode = "r+" if os.access(header, os.W_OK) else "r"
        self.arrays = {}
        for name, dtype in _ARRAYS.items():
            path = self.folder / f"{name}.{np.dtype(dtype).str[1:]}"
            if not path.exists():
                np.lib.format.open_memmap(path, "w+", dtype, shapes[name]).flush()
            self.arrays[name] = np.load(path, mmap_mode=mode)
        meta_path = self.folder / "meta.jsonl"
        lines = meta_path.read_text().splitlines() if meta_path.is_file() else []
        self.meta = [json.loads(line) for line in lines[: self.count]]
        if len(lines) > self.count and mode == "r+":  # records of an interrupted batch
            atomic_write_text(meta_path, "".join(line + "\n" for line in lines[: self.count]))

    @property
    def count(self) -> int:
        """Number of complete records."""
        return int(self.info["count"])

    def refresh(self) -> int:
        """Re-read the count and metadata another process may have appended; returns the count."""
        self.info = json.loads((self.folder / "store.json").read_text())
        lines = (self.folder / "meta.jsonl").read_text().splitlines()
        self.meta = [json.loads(line) for line in lines[: self.count]]
        return self.count

    def append(self, records: list[dict], arrays: dict[str, np.ndarray]) -> None:
        """Write a batch of records (``arrays[name]`` has one row per record)."""
        start, n = self.count, len(records)
        if start + n > self.capacity:
            raise ValueError(f"store full ({self.capacity} records)")
        for name in _ARRAYS:
            self.arrays[name][start : start + n] = arrays[name]
            self.arrays[name].flush()
        with open(self.folder / "meta.jsonl", "a") as fh:
            for record in records:
                fh.write(json.dumps(record) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        self.meta.extend(records)
        self.info["count"] = start + n
        _write_json(self.folder / "store.json", self.info)

    def embedding(self, index: int) -> np.ndarray:
        """(C, h, w) float16 embedding of one record (a memory-mapped view)."""
        return self.arrays["emb"][index]


class _UnionRows:
    """Row access across the same array of several stores (global record index)."""

    def __init__(self, union: "StoreUnion", name: str) -> None:
        self._union, self._name = union, name

    def __getitem__(self, index: int) -> np.ndarray:
        store, local = self._union.locate(int(index))
        return store.arrays[self._name][local]


class StoreUnion:
    """Several stores read as one: records numbered store by store, in order.

    Training on two stores built with different seeds (other slices and
    augmentations of the same training volumes) doubles the variety without
    rebuilding either. The union is read-only: it has no ``append``.

    Parameters
    ----------
    stores : list of SliceStore
        All with the same embedding shape and label side.
    """

    def __init__(self, stores: list[SliceStore]) -> None:
        if not stores:
            raise ValueError("no store given")
        shapes = {(tuple(s.info["embedding_shape"]), int(s.info["side"])) for s in stores}
        if len(shapes) != 1:
            raise ValueError(f"stores differ in embedding shape or side: {sorted(shapes)}")
        self.stores = list(stores)
        self.arrays = {name: _UnionRows(self, name) for name in _ARRAYS}
        self._index()

    def _index(self) -> None:
        self.meta = [m for s in self.stores for m in s.meta]
        self._starts = np.cumsum([0] + [s.count for s in self.stores])

    @property
    def count(self) -> int:
        """Number of complete records over all stores."""
        return int(self._starts[-1])

    @property
    def capacity(self) -> int:
        """Records allocated over all stores."""
        return sum(s.capacity for s in self.stores)

    def refresh(self) -> int:
        """Re-read every store (another process may still be building one)."""
        for store in self.stores:
            store.refresh()
        self._index()
        return self.count

    def locate(self, index: int) -> tuple[SliceStore, int]:
        """The store holding global record ``index`` and its index there."""
        if not 0 <= index < self.count:
            raise IndexError(f"record {index} of {self.count}")
        which = int(np.searchsorted(self._starts, index, side="right")) - 1
        return self.stores[which], index - int(self._starts[which])

    def embedding(self, index: int) -> np.ndarray:
        """(C, h, w) float16 embedding of one record (a memory-mapped view)."""
        store, local = self.locate(index)
        return store.embedding(local)


def open_stores(folders: list[str | Path]) -> SliceStore | StoreUnion:
    """One store, or the union of several (``train-clicks train --store A B``)."""
    stores = [SliceStore(f) for f in folders]
    return stores[0] if len(stores) == 1 else StoreUnion(stores)
