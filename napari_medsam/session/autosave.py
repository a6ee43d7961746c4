"""Background autosave of a session: every change is on disk before the next one is made.

:class:`Autosaver` keeps the session folder described in
:mod:`napari_medsam.session.store` up to date: a sparse journal record per
change (written and fsynced on a saver thread), and a full snapshot every few
seconds (on a second thread, while the journal goes on). Finding and restoring
a saved session (:func:`~.saved.find_session`, :func:`~.saved.restore`) live in
:mod:`napari_medsam.session.saved`.

Its health is visible: :attr:`Autosaver.health` says whether the last saves
worked and why not, and ``on_health`` is called each time that flips (a
failure, then the recovery). It never deletes a session it does not continue:
a folder holding a damaged or unreadable session is set aside first.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_medsam.session.journal import SegmentWriter, encode_runs, segment_name
from napari_medsam.session.recovery import holds_session_files, set_aside
from napari_medsam.session.saver_parts import Copies, SaveHealth, reason_of
from napari_medsam.session.state import SessionState
from napari_medsam.session.saved import read_session_info
from napari_medsam.session.store import (
    _scan_identity,
    base_entry,
    cleanup,
    write_pointer,
    write_snapshot,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Item:
    generation: int
    labels_zyx: np.ndarray  # the saver's own copy, never written to
    state: dict


class Autosaver:
    """Makes every change of a session durable on background threads.

    Each :meth:`mark_dirty` is one change: its labels are copied and queued; the
    saver thread diffs them against the previous change and appends the sparse
    diff and the session state to the journal (written and fsynced). Every
    ``snapshot_interval_s`` (or when the journal passes ``max_journal_bytes``) a
    second thread writes a full snapshot, while the journal goes on.

    Guarantee: when ``mark_dirty`` returns, the change before it is on disk, so
    a crash at any moment loses at most the last change, at any pace. To keep
    it, ``mark_dirty`` waits (up to ``max_wait_s``) while the previous change is
    still being written. Changes are never merged while that wait succeeds; if
    the disk falls behind anyway and more than ``max_pending`` changes queue up,
    the queued ones are merged into the newest (which is always kept), so memory
    stays bounded and the disk catches up with the latest state.

    Parameters
    ----------
    session_dir : path
        From :func:`session_dir_for`.
    snapshot_interval_s : float
        Least time between two full snapshots.
    on_error : callable, optional
        Called with the exception of a failed save (on a saver thread).
    max_pending : int
        Most queued copies of the volume before they are merged.
    max_wait_s : float
        Longest ``mark_dirty`` waits for the previous change to be saved.
    max_journal_bytes : int
        Journal size that triggers a snapshot before the interval.
    on_health : callable, optional
        Called with a :class:`SaveHealth` (on a saver thread) each time saving
        starts failing or works again.

    Attributes
    ----------
    set_aside_to : Path or None
        Where a damaged session found in ``session_dir`` was moved before this
        autosaver started (None: there was none).
    """

    def __init__(
        self,
        session_dir: str | Path,
        snapshot_interval_s: float = 5.0,
        on_error: Callable[[BaseException], None] | None = None,
        max_pending: int = 4,
        max_wait_s: float = 3.0,
        max_journal_bytes: int = 32 << 20,
        on_health: Callable[[SaveHealth], None] | None = None,
    ) -> None:
        self.session_dir = Path(session_dir)
        self.on_health = on_health
        self._failing: dict[str, str] = {}  # part ("journal", "snapshot") -> reason
        self._health_lock = threading.Lock()
        self.snapshot_interval_s = float(snapshot_interval_s)
        self.on_error = on_error
        self.max_pending, self.max_wait_s = max(1, int(max_pending)), float(max_wait_s)
        self.max_journal_bytes = int(max_journal_bytes)
        self.last_error: BaseException | None = None
        self.merged = 0  # changes merged into a later one because the disk fell behind
        for stale in self.session_dir.glob(".*.tmp-*"):  # left by a process killed mid-save
            stale.unlink(missing_ok=True)
        existing = read_session_info(self.session_dir)
        self.set_aside_to: Path | None = None
        if holds_session_files(self.session_dir) and (
            existing is None or existing.recovered or existing.notes
        ):  # never continue (and so clean up) a session that is not intact: keep it aside
            self.set_aside_to = set_aside(self.session_dir, "damaged")
            existing = None
        self._generation = existing.generation if existing else 0
        self.saved_generation = self._done = self._generation
        self.lineage: str | None = None
        self._queue: deque[_Item] = deque()
        self._writing = self._closed = self._want_snapshot = False
        self._snapshot_on_close = True
        self._cond = threading.Condition()
        # saver-thread state
        self._writer: SegmentWriter | None = None
        self._base: _Item | None = None  # the last change in the journal
        self._bases: list[dict] = []
        self._since_snapshot = 0
        self._last_snapshot = time.monotonic()
        self._snapper: threading.Thread | None = None
        self._copies = Copies()
        self._thread = threading.Thread(
            target=self._run, name="napari-medsam-autosave", daemon=True
        )
        self._thread.start()

    # ------------------------------------------------------------ caller side
    def mark_dirty(self, labels_zyx: np.ndarray, state: SessionState | dict) -> int:
        """Queue this change; returns once the previous change is saved.

        Parameters
        ----------
        labels_zyx : np.ndarray
            (Z, Y, X) labels after the change (copied).
        state : SessionState or dict
            The session state after the change.

        Returns
        -------
        int
            The generation of this change.
        """
        if self._closed:
            raise RuntimeError("the autosaver is closed")
        item_labels = self._copies.copy_of(labels_zyx)
        state_dict = state.to_dict() if isinstance(state, SessionState) else dict(state)
        with self._cond:
            if self._closed:
                raise RuntimeError("the autosaver is closed")
            self._generation += 1
            generation = self._generation
            self._queue.append(_Item(generation, item_labels, state_dict))
            if len(self._queue) > self.max_pending:  # the disk fell behind: keep the newest
                self.merged += len(self._queue) - 1
                for dropped in list(self._queue)[:-1]:
                    self._copies.release(dropped.labels_zyx)
                self._queue = deque([self._queue[-1]])
            self._cond.notify_all()
            self._cond.wait_for(
                lambda: self._done >= generation - 1 or self._closed or not self._thread.is_alive(),
                self.max_wait_s,
            )
            return generation

    def flush(self, timeout: float | None = None, snapshot: bool = False) -> bool:
        """Wait until every change is saved (and, with ``snapshot``, in a full snapshot).

        Returns
        -------
        bool
            False when ``timeout`` passed first.
        """
        with self._cond:
            self._want_snapshot = self._want_snapshot or snapshot
            self._cond.notify_all()
            return self._cond.wait_for(
                lambda: (
                    not (self._queue or self._writing or self._want_snapshot)
                    or not self._thread.is_alive()
                ),
                timeout,
            )

    def close(self, timeout: float | None = 10.0, snapshot: bool = True) -> None:
        """Save what is pending and stop; with ``snapshot``, end with a full snapshot.

        The snapshot only makes the next restore faster: without it the
        journal still holds every change.
        """
        with self._cond:
            self._closed = True
            self._snapshot_on_close = snapshot
            self._cond.notify_all()
        self._thread.join(timeout)

    # ------------------------------------------------------------ saver thread
    def _snapshot_due_in(self) -> float | None:
        if self._want_snapshot:
            return 0.0
        if not self._since_snapshot or (self._snapper and self._snapper.is_alive()):
            return None  # nothing new, or woken when the snapshot in flight ends
        if self._writer is not None and self._writer.size >= self.max_journal_bytes:
            return 0.0
        return self._last_snapshot + self.snapshot_interval_s - time.monotonic()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not (self._queue or self._closed):
                    due = self._snapshot_due_in()
                    if due is not None and due <= 0:
                        break
                    self._cond.wait(due)
                item = self._queue.popleft() if self._queue else None
                self._writing = item is not None
                closing = self._closed and not self._queue
                wanted = self._want_snapshot and not self._queue
            if item is not None:
                self._save(item)
            due = self._snapshot_due_in()
            if wanted or (closing and self._snapshot_on_close):
                self._snapshot(wait=True)
            elif due is not None and due <= 0:
                self._snapshot(wait=False)
            if item is None:
                with self._cond:
                    self._want_snapshot = self._want_snapshot and not wanted
                    self._cond.notify_all()
            if closing:
                if self._snapper is not None:
                    self._snapper.join()
                self._end_segment()
                return

    @property
    def health(self) -> SaveHealth:
        """Whether the last journal append and the last snapshot worked."""
        with self._health_lock:
            reason = "; ".join(self._failing.values())
        return SaveHealth(not reason, reason, self.session_dir)

    def _set_health(self, part: str, exc: BaseException | None) -> None:
        with self._health_lock:
            was_ok = not self._failing
            if exc is None:
                self._failing.pop(part, None)
            else:
                self._failing[part] = f"{part} failed: {reason_of(exc)}"
            flipped = was_ok != (not self._failing)
        if flipped and self.on_health is not None:
            try:
                self.on_health(self.health)
            except Exception:  # noqa: BLE001 - a broken listener must not stop the saver
                logger.exception("autosave health listener failed")

    def _report(self, exc: BaseException, part: str = "journal") -> None:
        logger.error("autosave to %s failed: %s", self.session_dir, reason_of(exc))
        logger.debug("autosave failure", exc_info=exc)
        self.last_error = exc
        self._set_health(part, exc)
        if self.on_error is not None:
            self.on_error(exc)

    def _save(self, item: _Item) -> None:
        """Append ``item`` to the journal (a new lineage when there is no usable one)."""
        base = self._base
        try:
            if (
                base is None
                or self._writer is None
                or (base.labels_zyx.shape, base.labels_zyx.dtype)
                != (item.labels_zyx.shape, item.labels_zyx.dtype)
            ):
                self._start_lineage(item)
            else:
                runs = encode_runs(base.labels_zyx.reshape(-1), item.labels_zyx.reshape(-1))
                state = None if item.state == base.state else item.state
                self._writer.append(item.generation, base.generation, runs, state, time.time())
            self._base = item
            self._since_snapshot += 1
            saved = True
            self._set_health("journal", None)
        except Exception as exc:  # a failed save must not kill the saver
            self._report(exc)
            self._end_segment()
            self._base, self._since_snapshot, saved = None, 0, False  # next: a new lineage
            self._copies.release(item.labels_zyx)
        if base is not None:  # replaced by the item, or dropped
            self._copies.release(base.labels_zyx)
        with self._cond:
            self._done = max(self._done, item.generation)
            if saved:
                self.saved_generation = max(self.saved_generation, item.generation)
            self._writing = False
            self._cond.notify_all()

    def _new_segment(
        self, lineage: str, base_generation: int, labels_zyx: np.ndarray, from_zero: bool = False
    ) -> None:
        header = {
            "lineage": lineage,
            "base": int(base_generation),
            "shape_zyx": list(labels_zyx.shape),
            "dtype": labels_zyx.dtype.str,
            "from_zero": bool(from_zero),  # a lineage's start: its base is all zeros
        }
        self._writer = SegmentWriter(
            self.session_dir / segment_name(lineage, base_generation), header
        )

    def _end_segment(self) -> None:
        """Close the journal segment, deleting it if it holds no change."""
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()
            if writer.n_records == 0:
                writer.path.unlink(missing_ok=True)

    def _start_lineage(self, item: _Item) -> None:
        """A new lineage: a journal from an all-zero base whose first record is ``item``."""
        if self._snapper is not None:
            self._snapper.join()  # its pointer must not replace the new lineage's
        self._end_segment()
        self.session_dir.mkdir(parents=True, exist_ok=True)
        lineage, zero_generation = uuid.uuid4().hex[:16], item.generation - 1
        self._new_segment(lineage, zero_generation, item.labels_zyx, from_zero=True)
        runs = encode_runs(None, item.labels_zyx.reshape(-1))
        self._writer.append(item.generation, zero_generation, runs, item.state, time.time())
        bases = [base_entry(zero_generation, None, None)]
        write_pointer(self.session_dir, lineage, bases, item.labels_zyx, item.state)
        self.lineage, self._bases = lineage, bases
        self._since_snapshot, self._last_snapshot = 0, time.monotonic()

    def _snapshot(self, wait: bool) -> None:
        """Snapshot the last change on a second thread; the journal goes on in a new segment."""
        if self._snapper is not None:
            if self._snapper.is_alive() and not wait:
                return
            self._snapper.join()
        base = self._base
        if base is None or self._writer is None or not self._since_snapshot:
            return
        try:
            self._end_segment()
            self._new_segment(self.lineage, base.generation, base.labels_zyx)
        except Exception as exc:
            self._report(exc, "snapshot")
            self._copies.release(base.labels_zyx)
            self._base, self._since_snapshot = None, 0  # the next change starts a new lineage
            return
        self._since_snapshot, self._last_snapshot = 0, time.monotonic()
        self._copies.hold(base.labels_zyx)  # released when written
        self._snapper = threading.Thread(
            target=self._write_snapshot,
            args=(self.lineage, base, list(self._bases)),
            name="napari-medsam-snapshot",
            daemon=True,
        )
        self._snapper.start()
        if wait:
            self._snapper.join()

    def _write_snapshot(self, lineage: str, base: _Item, bases: list[dict]) -> None:
        try:
            scan = _scan_identity(base.state.get("scan_path"))
            meta = {"lineage": lineage, "state": base.state, "scan": scan}
            name = write_snapshot(self.session_dir, base.generation, base.labels_zyx, meta)
            older = [b for b in bases if b["labels_file"]][:1]  # the fallback
            bases = [base_entry(base.generation, name, base.state), *older]
            write_pointer(self.session_dir, lineage, bases, base.labels_zyx, base.state)
            self._bases = bases
            cleanup(self.session_dir, lineage, bases)
            self._set_health("snapshot", None)
        except Exception as exc:
            self._report(exc, "snapshot")
        finally:
            self._copies.release(base.labels_zyx)
            with self._cond:
                self._cond.notify_all()
