"""Background autosave of a session, and finding / restoring it when the scan is reopened.

Layout of a session folder (``<scan stem>.medsam-session/`` next to the scan, or
under the user cache when the scan's folder is read-only)::

    session.json            pointer + state: generation, labels file, scan identity, SessionState
    labels-00000042.npz     the labels volume of that generation (``np.savez_compressed``)

A save writes the new ``labels-<gen>.npz`` through a temporary file and
``os.replace``, then ``session.json`` the same way, and only then deletes older
``labels-*.npz``. ``session.json`` therefore always names a complete labels file:
a process killed at any moment leaves the previous or the new generation.

:class:`Autosaver` saves on a daemon thread after each change, at most once per
``min_interval_s`` (changes made meanwhile are coalesced into the next save);
:meth:`Autosaver.mark_dirty` only copies the volume and returns.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_medsam.session.labels import sidecar_stem
from napari_medsam.session.state import SessionState

logger = logging.getLogger(__name__)

FORMAT = "napari-medsam-session"
SESSION_SUFFIX = ".medsam-session"
POINTER = "session.json"


def default_cache_root() -> Path:
    """``$XDG_CACHE_HOME/napari-medsam/sessions`` (``~/.cache/...`` when unset)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "napari-medsam" / "sessions"


def _cache_dir(scan_path: Path, cache_root: Path | None) -> Path:
    digest = hashlib.sha1(str(scan_path.resolve()).encode("utf-8")).hexdigest()[:16]
    return Path(cache_root or default_cache_root()) / f"{sidecar_stem(scan_path).name}-{digest}"


def candidate_dirs(scan_path: str | Path, cache_root: str | Path | None = None) -> list[Path]:
    """Where a scan's session may live: beside the scan, then in the user cache."""
    scan_path = Path(scan_path)
    stem = sidecar_stem(scan_path)
    return [stem.with_name(stem.name + SESSION_SUFFIX), _cache_dir(scan_path, cache_root)]


def session_dir_for(scan_path: str | Path, cache_root: str | Path | None = None) -> Path:
    """The folder to autosave a scan's session in (created): beside the scan if writable, else the cache."""
    beside, cached = candidate_dirs(scan_path, cache_root)
    if os.access(beside.parent, os.W_OK):
        try:
            beside.mkdir(exist_ok=True)
            return beside
        except OSError:
            logger.info("cannot create %s; autosaving to the user cache", beside)
    cached.mkdir(parents=True, exist_ok=True)
    return cached


def _scan_identity(scan_path: str | None) -> dict | None:
    if not scan_path:
        return None
    try:
        st = os.stat(scan_path)
    except OSError:
        return {"path": str(scan_path)}
    return {"path": str(Path(scan_path).resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _write_atomic(path: Path, write: Callable) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_session(
    session_dir: str | Path, generation: int, labels_zyx: np.ndarray, state: dict
) -> Path:
    """Save one generation of a session atomically (see the module docstring).

    Parameters
    ----------
    session_dir : path
        The session folder (created if missing).
    generation : int
        Increasing save counter.
    labels_zyx : np.ndarray
        (Z, Y, X) integer labels.
    state : dict
        ``SessionState.to_dict()``.

    Returns
    -------
    Path
        The ``session.json`` written.
    """
    session_dir = Path(session_dir)
    session_dir.mkdir(parents=True, exist_ok=True)
    labels_name = f"labels-{int(generation):08d}.npz"
    _write_atomic(
        session_dir / labels_name, lambda f: np.savez_compressed(f, labels_zyx=labels_zyx)
    )
    pointer = {
        "format": FORMAT,
        "version": 1,
        "generation": int(generation),
        "saved_at": time.time(),
        "labels_file": labels_name,
        "shape_zyx": [int(s) for s in labels_zyx.shape],
        "dtype": str(labels_zyx.dtype),
        "scan": _scan_identity(state.get("scan_path")),
        "state": state,
    }
    data = (json.dumps(pointer, indent=1) + "\n").encode("utf-8")
    _write_atomic(session_dir / POINTER, lambda f: f.write(data))
    for old in session_dir.glob("labels-*.npz"):
        if old.name != labels_name:
            old.unlink(missing_ok=True)
    return session_dir / POINTER


@dataclass(frozen=True)
class SessionInfo:
    """A saved session found for a scan.

    Attributes
    ----------
    session_dir : Path
    generation : int
    saved_at : float
        POSIX time of the save.
    shape_zyx : tuple of int
    scan_matches : bool
        False when the scan's size or modification time differ from when the
        session was saved (the file changed: restoring is probably wrong).
    label_names : dict
        id -> name of the saved labels, for the "restore?" question.
    """

    session_dir: Path
    generation: int
    saved_at: float
    shape_zyx: tuple[int, ...]
    scan_matches: bool
    label_names: dict[int, str]


def read_session_info(
    session_dir: str | Path, scan_path: str | Path | None = None
) -> SessionInfo | None:
    """Describe the session saved in a folder; None if there is no complete one."""
    session_dir = Path(session_dir)
    try:
        pointer = json.loads((session_dir / POINTER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if (
        pointer.get("format") != FORMAT
        or not (session_dir / pointer.get("labels_file", "")).is_file()
    ):
        return None
    saved_scan = pointer.get("scan") or {}
    now_scan = _scan_identity(str(scan_path)) if scan_path else None
    matches = now_scan is None or all(
        saved_scan.get(k) == now_scan.get(k) for k in ("size", "mtime_ns")
    )
    labels = (pointer.get("state") or {}).get("labels") or {}
    names = {int(d["id"]): str(d["name"]) for d in labels.get("labels", [])}
    return SessionInfo(
        session_dir,
        int(pointer["generation"]),
        float(pointer["saved_at"]),
        tuple(pointer["shape_zyx"]),
        bool(matches),
        names,
    )


def find_session(scan_path: str | Path, cache_root: str | Path | None = None) -> SessionInfo | None:
    """The most recent saved session of a scan (beside it or in the cache), or None."""
    found = [read_session_info(d, scan_path) for d in candidate_dirs(scan_path, cache_root)]
    found = [f for f in found if f is not None]
    return max(found, key=lambda f: f.saved_at) if found else None


def restore(session: SessionInfo | str | Path) -> tuple[np.ndarray, SessionState]:
    """Load a saved session.

    Parameters
    ----------
    session : SessionInfo or path
        From :func:`find_session`, or a session folder.

    Returns
    -------
    labels_zyx : np.ndarray
        (Z, Y, X) labels as saved.
    state : SessionState
    """
    session_dir = session.session_dir if isinstance(session, SessionInfo) else Path(session)
    pointer = json.loads((session_dir / POINTER).read_text(encoding="utf-8"))
    with np.load(session_dir / pointer["labels_file"], allow_pickle=False) as npz:
        labels_zyx = np.array(npz["labels_zyx"])
    return labels_zyx, SessionState.from_dict(pointer.get("state") or {})


def discard(session_dir: str | Path) -> None:
    """Delete a saved session (the user declined to restore it)."""
    session_dir = Path(session_dir)
    for path in list(session_dir.glob("labels-*.npz")) + [session_dir / POINTER]:
        path.unlink(missing_ok=True)
    try:
        session_dir.rmdir()
    except OSError:
        pass


class Autosaver:
    """Saves the latest session snapshot on a background thread.

    Parameters
    ----------
    session_dir : path
        From :func:`session_dir_for`.
    min_interval_s : float
        Least time between two saves; changes in between are coalesced.
    on_error : callable, optional
        Called with the exception of a failed save (on the saver thread).
    """

    def __init__(
        self,
        session_dir: str | Path,
        min_interval_s: float = 1.0,
        on_error: Callable[[BaseException], None] | None = None,
    ) -> None:
        self.session_dir = Path(session_dir)
        self.min_interval_s = float(min_interval_s)
        self.on_error = on_error
        self.last_error: BaseException | None = None
        for stale in self.session_dir.glob(".*.tmp-*"):  # left by a process killed mid-save
            stale.unlink(missing_ok=True)
        existing = read_session_info(self.session_dir)
        self._generation = existing.generation if existing else 0
        self.saved_generation = self._generation
        self._pending: tuple[int, np.ndarray, dict] | None = None
        self._writing = False
        self._hurry = False
        self._closed = False
        self._last_save = -math.inf
        self._cond = threading.Condition()
        self._thread = threading.Thread(
            target=self._run, name="napari-medsam-autosave", daemon=True
        )
        self._thread.start()

    def mark_dirty(self, labels_zyx: np.ndarray, state: SessionState | dict) -> int:
        """Schedule a save of this snapshot; copies the volume and returns at once.

        Returns
        -------
        int
            The generation this snapshot will be saved as.
        """
        snapshot = np.array(labels_zyx, copy=True)
        state_dict = state.to_dict() if isinstance(state, SessionState) else dict(state)
        with self._cond:
            if self._closed:
                raise RuntimeError("the autosaver is closed")
            self._generation += 1
            self._pending = (self._generation, snapshot, state_dict)
            self._cond.notify_all()
            return self._generation

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._pending is None and not self._closed:
                    self._cond.wait()
                if self._pending is None:
                    return
                wait = self._last_save + self.min_interval_s - time.monotonic()
                if wait > 0 and not (self._hurry or self._closed):
                    self._cond.wait(wait)
                    continue
                job, self._pending = self._pending, None
                self._writing = True
            saved = False
            try:
                write_session(self.session_dir, *job)
                saved = True
            except Exception as exc:  # a failed save must not kill the saver
                logger.exception("autosave to %s failed", self.session_dir)
                self.last_error = exc
                if self.on_error is not None:
                    self.on_error(exc)
            with self._cond:
                self._writing = False
                self._last_save = time.monotonic()
                if saved:
                    self.saved_generation = max(self.saved_generation, job[0])
                self._cond.notify_all()

    def flush(self, timeout: float | None = None) -> bool:
        """Save what is pending now (ignoring the interval) and wait; True when all is saved."""
        with self._cond:
            self._hurry = True
            self._cond.notify_all()
            ok = self._cond.wait_for(lambda: self._pending is None and not self._writing, timeout)
            self._hurry = False
            return ok

    def close(self, timeout: float | None = 10.0) -> None:
        """Save what is pending and stop the thread."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout)
