"""Single-flight bookkeeping of jobs: which job is current, and where each yielded item goes.

Qt-free. The GUI's runner (:class:`napari_medsam._qt.workers.JobRunner`) owns the
threads and the signals; a :class:`JobLedger` decides, for every item a worker
yields, whether it still counts (only the latest job's do) and as what: progress,
a result or a failure. Tasks never see a job id: the ledger pairs ids with items.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator

from napari_medsam.types import Progress

logger = logging.getLogger(__name__)

#: ``task()`` returns the generator to run on the worker thread.
Task = Callable[[], Iterator[object]]


class Failure:
    """Carries a job's exception to the GUI thread as a yielded item."""

    def __init__(self, exc: BaseException):
        self.exc = exc


def drive(task: Task) -> Iterator[object]:
    """Run ``task()``'s generator; an exception becomes a :class:`Failure` item.

    Exceptions travel as items: superqt treats a RuntimeError escaping a worker's
    generator as "worker deleted" and only warns, and torch raises RuntimeError.
    """
    try:
        yield from task()
    except Exception as exc:  # noqa: BLE001 - every failure must reach the user
        yield Failure(exc)


class JobLedger:
    """Job ids of one runner; only the latest job's items get through.

    Parameters
    ----------
    name : str
        The runner's name, for the log.
    """

    def __init__(self, name: str = "job") -> None:
        self.name = name
        self.job_id = 0  # the latest job (0 before the first)
        self.dropped = 0  # items of superseded jobs that were thrown away

    def next_job(self) -> int:
        """A new job supersedes the current one: its id."""
        self.job_id += 1
        return self.job_id

    def is_current(self, job_id: int) -> bool:
        """Whether ``job_id`` is the latest job (its results may be applied)."""
        return job_id == self.job_id

    def route(self, job_id: int, item: object) -> tuple[str, object] | None:
        """What job ``job_id``'s yielded ``item`` is for the GUI, or None if it is stale.

        Returns
        -------
        (kind, payload) or None
            ``("progress", Progress)``, ``("failed", exception)`` or ``("result", item)``.
        """
        if not self.is_current(job_id):
            self.dropped += 1
            what = item.exc if isinstance(item, Failure) else type(item).__name__
            logger.debug("%s: dropped %s of stale job %d", self.name, what, job_id)
            return None
        if isinstance(item, Failure):
            return "failed", item.exc
        if isinstance(item, Progress):
            return "progress", item
        return "result", item


class LatencyClock:
    """Click-to-paint time of the current prompt's job (a superseded job never paints).

    Parameters
    ----------
    clock : callable
        Seconds, monotonic (default :func:`time.perf_counter`; tests pass their own).
    """

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self._clock = clock
        self._started: dict[int, tuple[float, bool]] = {}  # job -> (time, loads the model)
        self.last_ms: float | None = None  # the latest painted prompt's latency

    def start(self, job_id: int, with_load: bool = False) -> None:
        """A prompt's job was submitted (``with_load``: it loads the model first)."""
        self._started = {job_id: (self._clock(), bool(with_load))}  # earlier ones can't paint

    def stop(self, job_id: int) -> tuple[float, bool] | None:
        """Job ``job_id`` painted: ``(latency ms, with model load)``, or None if not timed."""
        started = self._started.pop(job_id, None)
        if started is None:
            return None
        self.last_ms = (self._clock() - started[0]) * 1000.0
        return self.last_ms, started[1]

    @property
    def pending(self) -> bool:
        """Whether a prompt's job is timed and has not painted yet."""
        return bool(self._started)

    def forget(self, job_id: int) -> None:
        """Job ``job_id`` ended without painting (failed, locked, empty)."""
        self._started.pop(job_id, None)
