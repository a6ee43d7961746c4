"""Append-only journal of sparse labels changes, for the autosave (numpy only).

A journal *segment* is one file ``journal-<lineage>-<base generation>.bin``: a
header record, then one record per saved change. Each record is::

    magic (4 bytes) | header length (u32) | payload length (u32) | crc32 (u32)
    | header (JSON, UTF-8) | payload (zlib)

all little-endian; the CRC covers header and payload. A process killed while
appending leaves a *torn* last record (short, or a CRC mismatch):
:func:`read_segment` stops there and keeps every record before it.

A change record's header is ``{"seq", "prev", "n", "t", "state"}``: it turns the
labels of generation ``prev`` into those of generation ``seq`` by writing ``n``
runs; ``state`` is the ``SessionState.to_dict()`` after the change, or None when
unchanged. Its payload holds the runs of the flattened (C order) volume: where
they start (delta-coded int64), their lengths (int64) and the value each run
writes (the volume's dtype). A brush stroke or a painted blob is a few runs per
image row, so a record is small whatever the volume's size.
"""

from __future__ import annotations

import json
import os
import re
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

JOURNAL_FORMAT = "napari-medsam-journal"
HEAD_MAGIC = b"MSJH"
RECORD_MAGIC = b"MSJR"
_FRAME = struct.Struct("<4sIII")  # magic, header length, payload length, crc32
_MAX_HEADER = 64 << 20
_CHUNK = 1 << 20  # voxels compared at a time when looking for the changed span
_APPLY_CHUNK = 1 << 22  # voxels written at a time when replaying
_SEGMENT = re.compile(r"^journal-([0-9a-f]+)-(\d+)\.bin$")


class Runs(NamedTuple):
    """Runs of equal new values in a flattened labels volume.

    Attributes
    ----------
    starts : np.ndarray
        (N,) int64 flat index of each run's first voxel, increasing.
    lengths : np.ndarray
        (N,) int64 number of voxels of each run.
    values : np.ndarray
        (N,) value written by each run (the volume's dtype).
    """

    starts: np.ndarray
    lengths: np.ndarray
    values: np.ndarray


def _changed_span(old_flat: np.ndarray | None, new_flat: np.ndarray) -> tuple[int, int] | None:
    """``[first, stop)`` chunk-aligned bounds of the voxels that differ (None if none)."""

    def differs(s: int) -> bool:
        new = new_flat[s : s + _CHUNK]
        return (
            bool(new.any())
            if old_flat is None
            else not np.array_equal(old_flat[s : s + _CHUNK], new)
        )

    starts = range(0, new_flat.size, _CHUNK)
    first = next((s for s in starts if differs(s)), None)
    if first is None:
        return None
    last = next(s for s in reversed(starts) if differs(s))
    return first, min(last + _CHUNK, new_flat.size)


def encode_runs(old_flat: np.ndarray | None, new_flat: np.ndarray) -> Runs:
    """The runs that turn ``old_flat`` into ``new_flat``.

    Parameters
    ----------
    old_flat : np.ndarray or None
        (V,) previous labels, flattened; None means all zeros.
    new_flat : np.ndarray
        (V,) new labels, flattened, same dtype.

    Returns
    -------
    Runs
        Maximal runs of changed voxels that take the same new value.
    """
    span = _changed_span(old_flat, new_flat)
    if span is None:
        empty = np.zeros(0, np.int64)
        return Runs(empty, empty, np.zeros(0, new_flat.dtype))
    lo, hi = span
    new = new_flat[lo:hi]
    changed = new != 0 if old_flat is None else old_flat[lo:hi] != new
    # voxel i continues the run of voxel i - 1 when both changed to the same value
    cont = np.zeros(changed.shape, bool)
    np.logical_and(changed[1:], changed[:-1], out=cont[1:])
    cont[1:] &= new[1:] == new[:-1]
    starts = np.flatnonzero(changed & ~cont)
    ends = np.flatnonzero(changed & ~np.append(cont[1:], False))  # inclusive
    values = new[starts].copy()
    return Runs(starts.astype(np.int64) + lo, (ends - starts + 1).astype(np.int64), values)


def apply_runs(flat: np.ndarray, runs: Runs) -> None:
    """Write ``runs`` into the flattened labels ``flat`` (in place).

    Raises
    ------
    ValueError
        A run lies outside ``flat`` (nothing is written then).
    """
    starts, lengths, values = runs
    if len(starts) == 0:
        return
    if (starts < 0).any() or (lengths <= 0).any() or (starts + lengths > flat.size).any():
        raise ValueError("runs outside the volume")
    ends = np.cumsum(lengths)
    i = 0
    while i < len(starts):  # bounded chunks of voxels: no index array as big as the volume
        before = ends[i - 1] if i else 0
        j = max(i + 1, int(np.searchsorted(ends, before + _APPLY_CHUNK, side="right")))
        lens = lengths[i:j]
        offsets = np.repeat(starts[i:j] - (ends[i:j] - lens - before), lens)
        flat[np.arange(int(lens.sum()), dtype=np.int64) + offsets] = np.repeat(values[i:j], lens)
        i = j


def _pack_payload(runs: Runs) -> bytes:
    starts = np.diff(runs.starts, prepend=np.int64(0)).astype("<i8")
    return zlib.compress(
        starts.tobytes()
        + runs.lengths.astype("<i8").tobytes()
        + runs.values.astype(runs.values.dtype.newbyteorder("<")).tobytes(),
        1,
    )


def _unpack_payload(payload: bytes, n: int, dtype: np.dtype) -> Runs:
    try:
        raw = zlib.decompress(payload)
    except zlib.error as exc:
        raise ValueError(f"undecodable journal record: {exc}") from exc
    dtype = np.dtype(dtype).newbyteorder("<")
    if len(raw) != n * (16 + dtype.itemsize):
        raise ValueError("journal record of the wrong size")
    starts = np.cumsum(np.frombuffer(raw, "<i8", n, 0)).astype(np.int64)
    lengths = np.frombuffer(raw, "<i8", n, 8 * n).astype(np.int64)
    values = np.frombuffer(raw, dtype, n, 16 * n).astype(dtype.newbyteorder("="))
    return Runs(starts, lengths, values)


def pack_record(magic: bytes, header: dict, payload: bytes = b"") -> bytes:
    """One framed record (see the module docstring)."""
    head = json.dumps(header, separators=(",", ":")).encode("utf-8")
    crc = zlib.crc32(payload, zlib.crc32(head))
    return _FRAME.pack(magic, len(head), len(payload), crc) + head + payload


@dataclass(frozen=True)
class ChangeRecord:
    """One complete change record of a segment.

    Attributes
    ----------
    seq, prev : int
        It turns generation ``prev`` into generation ``seq``.
    time : float
        POSIX time it was written.
    state : dict or None
        Session state after the change; None when unchanged.
    n_runs : int
    payload : bytes
        Compressed runs; decode with :meth:`runs`.
    """

    seq: int
    prev: int
    time: float
    state: dict | None
    n_runs: int
    payload: bytes

    def runs(self, dtype: np.dtype) -> Runs:
        return _unpack_payload(self.payload, self.n_runs, dtype)


def segment_name(lineage: str, base_generation: int) -> str:
    return f"journal-{lineage}-{int(base_generation):08d}.bin"


def parse_segment_name(name: str) -> tuple[str, int] | None:
    """``(lineage, base generation)`` of a segment file name, or None."""
    m = _SEGMENT.match(name)
    return (m.group(1), int(m.group(2))) if m else None


@dataclass(frozen=True)
class SegmentRead:
    """What :func:`read_segment_report` found in a segment.

    Attributes
    ----------
    header : dict or None
        The segment's header (lineage, base, shape_zyx, dtype); None if unreadable.
    records : list of ChangeRecord
        Every complete record before the first bad one, in order.
    torn : bool
        Bytes after the last complete record were dropped.
    damaged_at : int or None
        Byte offset of a damaged record that is not a torn tail (a complete frame
        with a bad checksum, or valid records after the bad bytes); None otherwise.
    dropped_seqs : tuple of int
        Generations of the valid records found after the damage (not replayed).
    """

    header: dict | None
    records: list[ChangeRecord]
    torn: bool
    damaged_at: int | None = None
    dropped_seqs: tuple[int, ...] = ()


def _frame_at(data: bytes, pos: int, magic: bytes) -> tuple[dict, bytes, int] | None:
    """``(header fields, payload, end)`` of a valid record at ``pos``, or None."""
    if pos + _FRAME.size > len(data):
        return None
    got, n_head, n_pay, crc = _FRAME.unpack_from(data, pos)
    body = pos + _FRAME.size
    end = body + n_head + n_pay
    if got != magic or n_head > _MAX_HEADER or end > len(data):
        return None
    head, payload = data[body : body + n_head], data[body + n_head : end]
    if zlib.crc32(payload, zlib.crc32(head)) != crc:
        return None
    try:
        fields = json.loads(head.decode("utf-8"))
    except ValueError:
        return None
    return (fields, payload, end) if isinstance(fields, dict) else None


def _record(fields: dict, payload: bytes) -> ChangeRecord:
    return ChangeRecord(
        int(fields["seq"]),
        int(fields["prev"]),
        float(fields["t"]),
        fields.get("state"),
        int(fields["n"]),
        payload,
    )


def _records_after(data: bytes, pos: int) -> list[int]:
    """Generations of the valid change records that start after byte ``pos``."""
    seqs, at = [], data.find(RECORD_MAGIC, pos + 1)
    while at >= 0:
        frame = _frame_at(data, at, RECORD_MAGIC)
        if frame is not None:
            try:
                seqs.append(_record(*frame[:2]).seq)
            except (ValueError, KeyError, TypeError):
                frame = None
        at = data.find(RECORD_MAGIC, frame[2] if frame else at + 1)
    return seqs


def read_segment_report(path: str | Path) -> SegmentRead:
    """Read a segment up to its first incomplete or corrupt record, and say what was dropped.

    A torn tail (the record being appended when the process died: short, and no
    valid record after it) is normal and costs only that record. Anything else
    (a complete record with a bad checksum, or valid records after bad bytes) is
    damage: ``damaged_at`` and ``dropped_seqs`` describe it.
    """
    data = Path(path).read_bytes()
    header, records, pos = None, [], 0
    while pos + _FRAME.size <= len(data):
        frame = _frame_at(data, pos, HEAD_MAGIC if header is None else RECORD_MAGIC)
        if frame is None:
            break
        fields, payload, end = frame
        try:
            if header is None:
                header = fields
            else:
                records.append(_record(fields, payload))
        except (ValueError, KeyError, TypeError):
            break
        pos = end
    if pos >= len(data):
        return SegmentRead(header, records, False)
    dropped = tuple(_records_after(data, pos))
    complete = False
    if pos + _FRAME.size <= len(data):
        _, n_head, n_pay, _ = _FRAME.unpack_from(data, pos)
        complete = pos + _FRAME.size + n_head + n_pay <= len(data) and n_head <= _MAX_HEADER
    damaged = bool(dropped) or complete
    return SegmentRead(header, records, True, pos if damaged else None, dropped)


def read_segment(path: str | Path) -> tuple[dict | None, list[ChangeRecord], bool]:
    """Read a segment up to its first incomplete or corrupt record.

    Returns
    -------
    header : dict or None
        The segment's header (lineage, base, shape_zyx, dtype); None if unreadable.
    records : list of ChangeRecord
        Every complete record, in order.
    torn : bool
        True when bytes after the last complete record were dropped.
    """
    got = read_segment_report(path)
    return got.header, got.records, got.torn


class SegmentWriter:
    """Appends change records to a new segment file; each append is flushed and fsynced.

    Parameters
    ----------
    path : path
        The segment file (must not exist).
    header : dict
        ``{"lineage", "base", "shape_zyx", "dtype"}``.
    """

    def __init__(self, path: str | Path, header: dict) -> None:
        self.path = Path(path)
        self.n_records = 0
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        head = pack_record(HEAD_MAGIC, {"format": JOURNAL_FORMAT, "version": 1, **header})
        try:
            self._write(head)
        except BaseException:
            self.close()
            raise
        self.size = len(head)

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]
        os.fsync(self._fd)

    def append(self, seq: int, prev: int, runs: Runs, state: dict | None, time: float) -> int:
        """Append one change record, durably; returns its size in bytes."""
        header = {"seq": int(seq), "prev": int(prev), "n": len(runs.starts), "t": time}
        record = pack_record(RECORD_MAGIC, {**header, "state": state}, _pack_payload(runs))
        self._write(record)
        self.n_records += 1
        self.size += len(record)
        return len(record)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
