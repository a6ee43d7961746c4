"""Saved sessions that are damaged: rebuild a lost pointer, set folders aside, never delete.

The rule (README, "Reliability"): a session is never deleted by the app, only
set aside (its folder renamed ``<name>.<reason>-<time>``), and cleanup never
removes the only readable copy. This module holds the pieces that keep it:

- :func:`recover_pointer`: when ``session.json`` is unreadable or missing, the
  newest readable snapshot and the journal segments of the newest lineage make
  a pointer again (in memory; nothing is written).
- :func:`set_aside`: rename a session folder that will not be continued.
- :func:`holds_session_files`: whether a folder holds any session file.

Numpy and the standard library only.
"""

from __future__ import annotations

import json
import logging
import time
import zipfile
from pathlib import Path

import numpy as np

from napari_medsam.session.journal import parse_segment_name, read_segment_report

logger = logging.getLogger(__name__)

SESSION_GLOBS = ("session.json", "labels-*.npz", "journal-*.bin")
#: In the note of a rebuilt ``session.json``: a repair, nothing lost by itself
REBUILT = "rebuilt it from the files in"


def holds_session_files(session_dir: str | Path) -> bool:
    """Whether ``session_dir`` holds a pointer, a snapshot or a journal segment."""
    session_dir = Path(session_dir)
    return session_dir.is_dir() and any(
        next(session_dir.glob(pattern), None) is not None for pattern in SESSION_GLOBS
    )


def set_aside(session_dir: str | Path, reason: str = "unreadable") -> Path:
    """Rename a session folder so that no new session ever writes into it.

    Parameters
    ----------
    session_dir : path
        The folder (``<scan>.medsam-session`` or its cache twin).
    reason : str
        One word in the new name: ``<name>.<reason>-<YYYYmmdd-HHMMSS>[-N]``.

    Returns
    -------
    Path
        The new name.

    Raises
    ------
    OSError
        The folder could not be renamed (its files are then untouched).
    """
    session_dir = Path(session_dir)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    kept = session_dir.with_name(f"{session_dir.name}.{reason}-{stamp}")
    n = 1
    while kept.exists():
        n += 1
        kept = session_dir.with_name(f"{session_dir.name}.{reason}-{stamp}-{n}")
    session_dir.rename(kept)
    logger.warning("set the session %s aside as %s", session_dir, kept.name)
    return kept


def snapshot_generation(name: str) -> int | None:
    """The generation of ``labels-<generation>.npz``, or None."""
    if not (name.startswith("labels-") and name.endswith(".npz")):
        return None
    digits = name[len("labels-") : -len(".npz")]
    return int(digits) if digits.isdigit() else None


def read_snapshot_meta(path: Path) -> tuple[dict, tuple[int, ...], np.dtype] | None:
    """``(meta, shape, dtype)`` of a snapshot without reading its voxels; None if unreadable.

    ``meta`` is ``{"lineage", "generation", "state", "scan"}`` for snapshots written
    since it was added, else ``{}``.
    """
    try:
        with zipfile.ZipFile(path) as zf:
            with zf.open("labels_zyx.npy") as f:
                version = np.lib.format.read_magic(f)
                read_header = (
                    np.lib.format.read_array_header_1_0
                    if version == (1, 0)
                    else np.lib.format.read_array_header_2_0
                )
                shape, _, dtype = read_header(f)
            meta = {}
            if "meta.npy" in zf.namelist():
                with zf.open("meta.npy") as f:
                    raw = np.lib.format.read_array(f, allow_pickle=False)
                meta = json.loads(raw.tobytes().decode("utf-8"))
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError):
        return None
    return (meta if isinstance(meta, dict) else {}), tuple(int(s) for s in shape), np.dtype(dtype)


def _lineages(session_dir: Path) -> dict[str, list[tuple[int, Path, object]]]:
    """lineage -> [(base generation, path, SegmentRead)] of the readable segments."""
    found: dict[str, list] = {}
    for path in session_dir.glob("journal-*.bin"):
        parsed = parse_segment_name(path.name)
        if parsed is None:
            continue
        try:
            got = read_segment_report(path)
        except OSError:
            continue
        if got.header is None or got.header.get("lineage") != parsed[0]:
            continue
        found.setdefault(parsed[0], []).append((parsed[1], path, got))
    return {k: sorted(v, key=lambda t: t[0]) for k, v in found.items()}


def _last_seq(segments) -> int:
    return max(
        (rec.seq for _, _, got in segments for rec in got.records),
        default=max(base for base, _, _ in segments),
    )


def _state_at(segments, generation: int) -> dict | None:
    """The newest session state recorded in the journal up to ``generation``."""
    state = None
    for _, _, got in segments:
        for rec in got.records:
            if rec.seq <= generation and rec.state is not None:
                state = rec.state
    return state


def recover_pointer(session_dir: str | Path, why: str) -> tuple[dict, list[str]] | None:
    """Rebuild a session pointer (version 2, in memory) from the files of a folder.

    Parameters
    ----------
    session_dir : path
    why : str
        What is wrong with ``session.json`` (for the note).

    Returns
    -------
    (pointer, notes) or None
        ``pointer`` as ``store`` reads it (``shape_zyx`` a tuple, ``dtype`` a
        numpy dtype, ``recovered`` True); ``notes`` say what it was rebuilt from.
        None when no snapshot or journal can be read.
    """
    session_dir = Path(session_dir)
    lineages = _lineages(session_dir)
    snapshots = []
    for path in session_dir.glob("labels-*.npz"):
        generation = snapshot_generation(path.name)
        info = read_snapshot_meta(path) if generation is not None else None
        if info is not None:
            snapshots.append((generation, path.name, *info))
    snapshots.sort(key=lambda s: s[0], reverse=True)
    lineage = max(lineages, key=lambda k: _last_seq(lineages[k]), default=None)
    segments = lineages.get(lineage, [])
    if segments:
        header = segments[-1][2].header
        shape = tuple(int(s) for s in header.get("shape_zyx") or ())
        dtype = np.dtype(header.get("dtype"))
        bases_gen = {base for base, _, _ in segments}
        fits = [
            s
            for s in snapshots
            if (s[3], s[4]) == (shape, dtype)
            and (s[0] in bases_gen or s[2].get("lineage") == lineage)
        ]
    elif snapshots:
        shape, dtype, fits = snapshots[0][3], snapshots[0][4], snapshots[:1]
    else:
        return None
    bases, notes = [], [f"{why}; {REBUILT} {session_dir.name}"]
    for generation, name, meta, _, _ in fits:
        state = meta.get("state") or _state_at(segments, generation)
        if state is None:
            notes.append(f"{name} holds no object names; they come from the journal, if at all")
        bases.append({"generation": generation, "labels_file": name, "state": state})
    zero = [seg for seg in segments if seg[2].header.get("from_zero")]
    if zero or (segments and not any(b["generation"] <= segments[0][0] for b in bases)):
        first = zero[0] if zero else segments[0]
        bases.append({"generation": first[0], "labels_file": None, "state": None})
        if not zero:
            notes.append(
                f"no snapshot for the start of the journal (generation {first[0]}): "
                "changes before it may be missing"
            )
    if not bases:
        return None
    for base in bases:
        path = session_dir / (base["labels_file"] or segments[0][1].name)
        base["saved_at"] = path.stat().st_mtime if path.exists() else 0.0
        if base["state"] is None and base["labels_file"] is not None:
            base["state"] = {}  # names and prompts are replayed from the journal, if any
    scan = next((s[2].get("scan") for s in fits if s[2].get("scan")), None)
    pointer = {
        "format": "napari-medsam-session",
        "version": 2,
        "lineage": lineage,
        "generation": bases[0]["generation"],
        "shape_zyx": shape,
        "dtype": dtype,
        "scan": scan,
        "bases": bases,
        "recovered": True,
    }
    return pointer, notes
