"""A saved session on disk: its folder, snapshots and journal; finding and restoring it.

Layout of a session folder (``<scan stem>.medsam-session/`` next to the scan, or
under the user cache when the scan's folder is read-only)::

    session.json                   pointer: lineage, shape, dtype, scan identity, bases
    labels-00000040.npz            snapshot of the labels at generation 40 (``savez_compressed``)
    journal-<lineage>-00000040.bin the changes after generation 40 (:mod:`.journal`)

Every change the app makes is one *generation*. A *base* is a snapshot (or, at
the start of a lineage, an all-zero volume) with the session state at its
generation; the journal segments of the pointer's lineage hold the changes
after it, each a sparse diff plus the session state. :func:`restore` loads the
newest readable base and replays the complete journal records after it; a
record torn by a kill ends the replay, losing only that record's change.

Crash safety: snapshots and the pointer are written through a temporary file
and ``os.replace``; journal records are appended and fsynced one by one, and a
lineage's pointer is written only after its first record. The pointer keeps the
previous snapshot as a fallback (with the journal from it): if the newest
snapshot is unreadable, :func:`restore` falls back to it and still replays
every change. Only when no base can be read does it raise
:class:`SessionCorruptError`. Journals of another lineage (another autosaver,
another scan) or whose header names another shape or dtype are ignored.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
import uuid
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_medsam.session.journal import (
    apply_runs,
    parse_segment_name,
    read_segment,
)
from napari_medsam.session.labels import sidecar_stem
from napari_medsam.session.state import SessionState

logger = logging.getLogger(__name__)

FORMAT = "napari-medsam-session"
SESSION_SUFFIX = ".medsam-session"
POINTER = "session.json"
PATTERNS = (POINTER, "labels-*.npz", "journal-*.bin", ".*.tmp-*")  # everything a session writes


class SessionCorruptError(ValueError):
    """A saved session exists but none of its snapshots can be read."""


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


def write_snapshot(session_dir: Path, generation: int, labels_zyx: np.ndarray) -> str:
    name = f"labels-{int(generation):08d}.npz"
    _write_atomic(session_dir / name, lambda f: np.savez_compressed(f, labels_zyx=labels_zyx))
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
    _write_atomic(session_dir / POINTER, lambda f: f.write(data))


def _read_pointer(session_dir: Path) -> dict | None:
    """The pointer, version 1 (one snapshot, no journal) read as version 2; None if unusable."""
    try:
        pointer = json.loads((session_dir / POINTER).read_text(encoding="utf-8"))
        if pointer.get("format") != FORMAT:
            return None
        if int(pointer.get("version", 1)) == 1:
            pointer["lineage"] = None
            pointer["bases"] = [
                base_entry(
                    pointer["generation"], pointer["labels_file"], pointer.get("state") or {}
                )
            ]
            pointer["bases"][0]["saved_at"] = float(pointer["saved_at"])
        elif int(pointer["version"]) > 2:
            return None
        pointer["shape_zyx"] = tuple(int(s) for s in pointer["shape_zyx"])
        pointer["dtype"] = np.dtype(pointer["dtype"])
        return pointer
    except (OSError, ValueError, KeyError, TypeError):
        return None


def cleanup(session_dir: Path, lineage: str, bases: list[dict]) -> None:
    """Delete the snapshots and journal segments that ``bases`` do not need."""
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
    bases = [base_entry(generation, write_snapshot(session_dir, generation, labels_zyx), state)]
    write_pointer(session_dir, lineage, bases, labels_zyx, state)
    cleanup(session_dir, lineage, bases)
    return session_dir / POINTER


def _segments(session_dir: Path, pointer: dict) -> list[tuple[int, Path]]:
    """``(base generation, path)`` of the pointer lineage's journal segments, in order."""
    found = []
    for path in session_dir.glob(f"journal-{pointer['lineage']}-*.bin"):
        parsed = parse_segment_name(path.name)
        if parsed and parsed[0] == pointer["lineage"]:
            found.append((parsed[1], path))
    return sorted(found)


def _load_base(session_dir: Path, base: dict, pointer: dict) -> np.ndarray:
    shape, dtype = pointer["shape_zyx"], pointer["dtype"]
    if base["labels_file"] is None:
        return np.zeros(shape, dtype)
    path = session_dir / base["labels_file"]
    if path.is_file() and not zipfile.is_zipfile(path):
        raise ValueError("damaged (not a .npz file)")
    with np.load(path, allow_pickle=False) as npz:
        labels_zyx = np.array(npz["labels_zyx"])
    if labels_zyx.shape != shape or labels_zyx.dtype != dtype:
        raise ValueError(f"holds {labels_zyx.shape} {labels_zyx.dtype}, not {shape} {dtype}")
    return labels_zyx


@dataclass(frozen=True)
class _Replayed:
    generation: int
    saved_at: float
    state: dict
    labels_zyx: np.ndarray | None


def _records(session_dir: Path, pointer: dict, generation: int):
    """``(segment path, record)`` of the pointer lineage's journal, from ``generation`` on."""
    segments = _segments(session_dir, pointer) if pointer["lineage"] else []
    for i, (_, path) in enumerate(segments):
        if i + 1 < len(segments) and segments[i + 1][0] <= generation:
            continue  # every record of this segment is in the base already
        header, records, torn = read_segment(path)
        if (
            header is None
            or header.get("lineage") != pointer["lineage"]
            or (tuple(header.get("shape_zyx") or ()), header.get("dtype"))
            != (pointer["shape_zyx"], pointer["dtype"].str)
        ):
            logger.warning("ignoring the journal %s: not of this session", path)
            continue
        yield from ((path, rec) for rec in records)
        if torn:
            logger.info("dropped the incomplete last record of %s", path)


def _replay_journal(session_dir, pointer, base, labels_zyx) -> _Replayed:
    """Apply the journal records after ``base`` to ``labels_zyx`` (None: only follow them)."""
    generation, saved_at, state = base["generation"], base["saved_at"], base["state"]
    flat = None if labels_zyx is None else labels_zyx.reshape(-1)
    for path, rec in _records(session_dir, pointer, generation):
        if rec.seq <= generation:
            continue
        try:
            if rec.prev != generation:
                raise ValueError("a change is missing")
            if flat is not None:
                apply_runs(flat, rec.runs(pointer["dtype"]))  # checks before writing
        except ValueError as exc:
            logger.warning("journal %s: stopped after generation %d: %s", path, generation, exc)
            break
        generation, saved_at = rec.seq, rec.time
        state = rec.state if rec.state is not None else state
    if state is None:
        raise ValueError("its journal holds no change")
    return _Replayed(generation, saved_at, state, labels_zyx)


def _replay(session_dir: Path, pointer: dict, load_labels: bool) -> _Replayed:
    """The latest state of a session: the newest readable base plus its journal."""
    problems = []
    for base in pointer["bases"]:
        name = base["labels_file"] or "the journal"
        try:
            if load_labels:
                labels_zyx = _load_base(session_dir, base, pointer)
            elif base["labels_file"] is not None and not (session_dir / name).is_file():
                raise FileNotFoundError("missing")
            else:
                labels_zyx = None
            replayed = _replay_journal(session_dir, pointer, base, labels_zyx)
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            problems.append(f"{name}: {exc}")
            continue
        if problems:
            logger.warning(
                "session %s: restored from an older snapshot (%s)", session_dir, "; ".join(problems)
            )
        return replayed
    raise SessionCorruptError(
        f"The autosaved session in {session_dir} cannot be read ({'; '.join(problems)}). "
        "Its files are left as they are."
    )


@dataclass(frozen=True)
class SessionInfo:
    """A saved session found for a scan.

    Attributes
    ----------
    session_dir : Path
    generation : int
        The last change saved (snapshot plus journal).
    saved_at : float
        POSIX time of that change's save.
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
    """Describe the session saved in a folder (reads the journal, not the volumes).

    Returns None when there is no session, or its files are missing.
    """
    session_dir = Path(session_dir)
    pointer = _read_pointer(session_dir)
    if pointer is None:
        return None
    try:
        latest = _replay(session_dir, pointer, load_labels=False)
    except SessionCorruptError as exc:
        logger.warning("%s", exc)
        return None
    saved_scan = pointer.get("scan") or {}
    now_scan = _scan_identity(str(scan_path)) if scan_path else None
    matches = now_scan is None or all(
        saved_scan.get(k) == now_scan.get(k) for k in ("size", "mtime_ns")
    )
    labels = latest.state.get("labels") or {}
    names = {int(d["id"]): str(d["name"]) for d in labels.get("labels", [])}
    return SessionInfo(
        session_dir, latest.generation, latest.saved_at, pointer["shape_zyx"], bool(matches), names
    )


def find_session(scan_path: str | Path, cache_root: str | Path | None = None) -> SessionInfo | None:
    """The most recent saved session of a scan (beside it or in the cache), or None."""
    found = [read_session_info(d, scan_path) for d in candidate_dirs(scan_path, cache_root)]
    found = [f for f in found if f is not None]
    return max(found, key=lambda f: f.saved_at) if found else None


def restore(session: SessionInfo | str | Path) -> tuple[np.ndarray, SessionState]:
    """Load a saved session: its newest readable snapshot plus every complete journal record.

    Parameters
    ----------
    session : SessionInfo or path
        From :func:`find_session`, or a session folder.

    Returns
    -------
    labels_zyx : np.ndarray
        (Z, Y, X) labels after the last change saved.
    state : SessionState
        The session state after that change.

    Raises
    ------
    SessionCorruptError
        No snapshot of the session can be read (the message names the files).
    FileNotFoundError
        The folder holds no session.
    """
    session_dir = session.session_dir if isinstance(session, SessionInfo) else Path(session)
    pointer = _read_pointer(session_dir)
    if pointer is None:
        raise FileNotFoundError(f"no readable {POINTER} in {session_dir}")
    latest = _replay(session_dir, pointer, load_labels=True)
    return latest.labels_zyx, SessionState.from_dict(latest.state)


def discard(session_dir: str | Path) -> None:
    """Delete a saved session (the user declined to restore it)."""
    session_dir = Path(session_dir)
    for pattern in PATTERNS:
        for path in session_dir.glob(pattern):
            path.unlink(missing_ok=True)
    try:
        session_dir.rmdir()
    except OSError:
        pass
