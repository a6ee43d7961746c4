"""A saved session on disk: its folder, snapshots, pointer and journal, and how they are written.

Layout of a session folder (``<scan stem>.medsam-session/`` next to the scan, or
under the user cache when the scan's folder is read-only)::

    session.json                   pointer: lineage, shape, dtype, scan identity, bases
    labels-00000040.npz            snapshot of the labels at generation 40 (``savez_compressed``)
    journal-<lineage>-00000040.bin the changes after generation 40 (:mod:`.journal`)

Every change the app makes is one *generation*. A *base* is a snapshot (or, at
the start of a lineage, an all-zero volume) with the session state at its
generation; the journal segments of the pointer's lineage hold the changes
after it, each a sparse diff plus the session state. :func:`~.saved.restore` loads the
newest readable base and replays the complete journal records after it; a
record torn by a kill ends the replay, losing only that record's change.

Crash safety: snapshots and the pointer are written with
:func:`napari_medsam.io.atomic.atomic_write` (temporary file, fsync, rename); journal records are appended and fsynced one by one, and a
lineage's pointer is written only after its first record. The pointer keeps the
previous snapshot as a fallback (with the journal from it): if the newest
snapshot is unreadable, :func:`~.saved.restore` falls back to it and still replays
every change. Only when no base can be read does it raise
:class:`SessionCorruptError`. Journals of another lineage (another autosaver,
another scan) or whose header names another shape or dtype are ignored.

Nothing is lost silently: an unreadable or missing pointer is rebuilt from the
newest readable snapshot and journal (:mod:`.recovery`); a damaged journal, a
missing change or an unreadable snapshot is named in :attr:`~.saved.SessionInfo.notes`
and :attr:`~.saved.Restored.notes`; cleanup deletes old snapshots only once the new one
reads back.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import uuid
import zipfile
from pathlib import Path

import numpy as np

from napari_medsam.io.atomic import atomic_write
from napari_medsam.session.journal import parse_segment_name
from napari_medsam.session.labels import sidecar_stem
from napari_medsam.session.recovery import holds_session_files, recover_pointer

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


def write_snapshot(
    session_dir: Path, generation: int, labels_zyx: np.ndarray, meta: dict | None = None
) -> str:
    """Write ``labels-<generation>.npz``: the labels and (as JSON bytes) ``meta``.

    ``meta`` (lineage, generation, state, scan) lets :mod:`.recovery` rebuild a
    lost ``session.json`` from the snapshot alone.
    """
    name = f"labels-{int(generation):08d}.npz"
    meta = {"generation": int(generation), **(meta or {})}
    meta_bytes = np.frombuffer(json.dumps(meta).encode("utf-8"), np.uint8)
    atomic_write(
        session_dir / name,
        lambda f: np.savez_compressed(f, labels_zyx=labels_zyx, meta=meta_bytes),
    )
    return name


def base_entry(generation: int, labels_file: str | None, state: dict | None) -> dict:
    return {
        "generation": int(generation),
        "labels_file": labels_file,
        "state": state,
        "saved_at": time.time(),
    }


def write_pointer(
    session_dir: Path, lineage: str, bases: list[dict], labels_zyx: np.ndarray, state: dict
) -> None:
    pointer = {
        "format": FORMAT,
        "version": 2,
        "lineage": lineage,
        "generation": bases[0]["generation"],
        "shape_zyx": [int(s) for s in labels_zyx.shape],
        "dtype": labels_zyx.dtype.str,
        "scan": _scan_identity(state.get("scan_path")),
        "bases": bases,
    }
    data = (json.dumps(pointer, indent=1) + "\n").encode("utf-8")
    atomic_write(session_dir / POINTER, lambda f: f.write(data))


def _read_pointer(session_dir: Path) -> dict | None:
    """The pointer, version 1 (one snapshot, no journal) read as version 2; None if unusable."""
    return _pointer_and_problem(session_dir)[0]


def _pointer_and_problem(session_dir: Path) -> tuple[dict | None, str]:
    """``(pointer, "")``, or ``(None, what is wrong with it)``."""
    path = session_dir / POINTER
    if not path.exists():
        return None, f"{POINTER} is missing"
    try:
        pointer = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(pointer, dict) or pointer.get("format") != FORMAT:
            return None, f"{POINTER} is not a napari-medsam session file"
        if int(pointer.get("version", 1)) == 1:
            pointer["lineage"] = None
            pointer["bases"] = [
                base_entry(
                    pointer["generation"], pointer["labels_file"], pointer.get("state") or {}
                )
            ]
            pointer["bases"][0]["saved_at"] = float(pointer["saved_at"])
        elif int(pointer["version"]) > 2:
            return None, f"{POINTER} is of a newer napari-medsam (version {pointer['version']})"
        pointer["shape_zyx"] = tuple(int(s) for s in pointer["shape_zyx"])
        pointer["dtype"] = np.dtype(pointer["dtype"])
        return pointer, ""
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        return None, f"{POINTER} is unreadable ({type(exc).__name__}: {exc})"


def read_pointer_or_recover(session_dir: str | Path) -> tuple[dict | None, list[str]]:
    """The folder's pointer, else one rebuilt from its snapshots and journal (see :mod:`.recovery`).

    Returns
    -------
    pointer : dict or None
        None when the folder holds no readable session at all.
    notes : list of str
        Empty for an intact pointer; else what was wrong and what it was rebuilt from.
    """
    session_dir = Path(session_dir)
    pointer, problem = _pointer_and_problem(session_dir)
    if pointer is not None or not holds_session_files(session_dir):
        return pointer, []
    recovered = recover_pointer(session_dir, problem)
    if recovered is None:
        return None, [problem, "no snapshot or journal of it can be read"]
    return recovered


def _snapshot_reads_back(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as zf:
            return zf.testzip() is None and "labels_zyx.npy" in zf.namelist()
    except (OSError, zipfile.BadZipFile):
        return False


def cleanup(session_dir: Path, lineage: str, bases: list[dict]) -> None:
    """Delete the snapshots and journal segments that ``bases`` do not need.

    Nothing is deleted unless the newest base's snapshot reads back (zip CRCs
    checked): cleanup never removes the only readable copy.
    """
    newest = bases[0]["labels_file"] if bases else None
    if newest is None or not _snapshot_reads_back(session_dir / newest):
        logger.warning("session %s: not cleaning up, %s does not read back", session_dir, newest)
        return
    keep = {b["labels_file"] for b in bases}
    for old in session_dir.glob("labels-*.npz"):
        if old.name not in keep:
            old.unlink(missing_ok=True)
    oldest = min(b["generation"] for b in bases)
    for seg in session_dir.glob("journal-*.bin"):
        parsed = parse_segment_name(seg.name)
        if parsed is None or parsed[0] != lineage or parsed[1] < oldest:
            seg.unlink(missing_ok=True)


def write_session(
    session_dir: str | Path, generation: int, labels_zyx: np.ndarray, state: dict
) -> Path:
    """Save a whole session as one snapshot (a new lineage, replacing what the folder held).

    Parameters
    ----------
    session_dir : path
        The session folder (created if missing).
    generation : int
        Generation number of this snapshot.
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
    labels_zyx = np.asarray(labels_zyx)
    lineage = uuid.uuid4().hex[:16]
    meta = {"lineage": lineage, "state": state, "scan": _scan_identity(state.get("scan_path"))}
    name = write_snapshot(session_dir, generation, labels_zyx, meta)
    bases = [base_entry(generation, name, state)]
    write_pointer(session_dir, lineage, bases, labels_zyx, state)
    cleanup(session_dir, lineage, bases)
    return session_dir / POINTER
