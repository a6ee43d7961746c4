"""Parts of the :class:`~napari_medsam.session.autosave.Autosaver`: its health, its copies."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class SaveHealth:
    """Whether the autosave works.

    Attributes
    ----------
    ok : bool
    reason : str
        Why it fails ("" when ok).
    session_dir : Path
    """

    ok: bool
    reason: str
    session_dir: Path

    @property
    def line(self) -> str:
        """One line for the dock: where the session is saved, or the warning."""
        if self.ok:
            return f"Session: autosaved in {self.session_dir.name}."
        return f"\u26a0 Session NOT autosaved: {self.reason}. Save your labels to keep your work."


def reason_of(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    where = getattr(exc, "filename", None)
    return f"{text} ({where})" if where else text


class Copies:
    """The saver's copies of the volume, recycled once no thread needs them.

    Fresh memory of a volume's size is slow to touch (page faults, huge-page
    compaction: 0.1 to 0.5 s for 150 MB); copying into a recycled array is not.
    """

    def __init__(self, keep: int = 1) -> None:
        self.keep = keep
        self._lock = threading.Lock()
        self._holds: dict[int, int] = {}  # id(array) -> number of holders
        self._free: list[np.ndarray] = []

    def copy_of(self, labels_zyx) -> np.ndarray:
        """A C-contiguous copy of ``labels_zyx``, held once."""
        labels_zyx = np.asarray(labels_zyx)
        with self._lock:
            fits = [
                a for a in self._free if (a.shape, a.dtype) == (labels_zyx.shape, labels_zyx.dtype)
            ]
            self._free = [a for a in self._free if not any(a is b for b in fits[:1])]
        copy = fits[0] if fits else np.empty(labels_zyx.shape, labels_zyx.dtype)
        np.copyto(copy, labels_zyx)
        with self._lock:
            self._holds[id(copy)] = 1
        return copy

    def hold(self, array: np.ndarray) -> None:
        with self._lock:
            self._holds[id(array)] += 1

    def release(self, array: np.ndarray) -> None:
        with self._lock:
            left = self._holds.pop(id(array)) - 1
            if left:
                self._holds[id(array)] = left
            elif len(self._free) < self.keep:
                self._free.append(array)
