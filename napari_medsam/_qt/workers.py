"""Single-flight job runner on worker threads (superqt's, which napari's are built on).

This is the one module that starts worker threads. Not napari's ``create_worker``:
it registers every worker with the viewer's task status list, whose cancel callback
keeps the worker, and so a superseded job's suspended generator with its prompt and
logits, for the viewer's life (a flood of clicks kept one logit map every few clicks).

A :class:`JobRunner` runs one generator job at a time: submitting a new job asks
the running one to quit (generators are checked between yields) and bumps the job
id; anything a superseded job still yields, or raises, is dropped here and never
reaches the widget. Errors of the current job become the :attr:`JobRunner.failed` signal
(the widget turns it into a napari notification), never a console traceback.
"""

from __future__ import annotations

import logging

from qtpy.QtCore import QObject, Signal, Slot
from superqt.utils import create_worker

from napari_medsam.tasks.ledger import JobLedger, Task, drive

logger = logging.getLogger(__name__)

class _JobRelay(QObject):
    """Lives on the GUI thread and tags one worker's signals with its job id.

    Its slots are bound methods of a GUI-thread QObject, so Qt delivers the
    worker thread's emissions to them through queued connections.
    """

    def __init__(self, runner: JobRunner, job_id: int):
        super().__init__(runner)
        self._runner = runner
        self.job_id = job_id

    @Slot(object)
    def on_yielded(self, item: object) -> None:
        self._runner._on_yielded(self.job_id, item)

    @Slot(object)
    def on_errored(self, exc: object) -> None:
        self._runner._on_errored(self.job_id, exc)

    @Slot()
    def on_finished(self) -> None:
        self._runner._on_finished(self.job_id, self)


class JobRunner(QObject):
    """Runs one job at a time; a new job supersedes the running one.

    Signals (always emitted on the GUI thread, only for the current job)
    -------
    progress(Progress)
        A :class:`~napari_medsam.types.Progress` yielded by the job.
    result(object)
        Any other item the job yielded (e.g. a ``SliceMask``); it belongs to the
        job :attr:`job_id` names, the only one whose items get through.
    failed(int, object)
        Job id and the exception the job raised.
    finished(int)
        The job ended (normally, by error, or stopped); the runner is idle.
    """

    progress = Signal(object)
    result = Signal(object)
    failed = Signal(int, object)
    finished = Signal(int)

    def __init__(self, name: str = "job", parent: QObject | None = None):
        super().__init__(parent)
        self.name = name
        self.ledger = JobLedger(name)  # which job is current, and what its items are
        self._worker = None
        self._relays: set[_JobRelay] = set()

    @property
    def job_id(self) -> int:
        """Id of the latest submitted job (0 before the first)."""
        return self.ledger.job_id

    @property
    def dropped(self) -> int:
        """Items of superseded jobs that were thrown away."""
        return self.ledger.dropped

    @property
    def busy(self) -> bool:
        """Whether the current job is still running."""
        return self._worker is not None

    def is_current(self, job_id: int) -> bool:
        """Whether ``job_id`` is the latest job (its results may be applied)."""
        return self.ledger.is_current(job_id)

    def submit(self, task: Task) -> int:
        """Stop the running job (if any) and start ``task`` with a new job id.

        Parameters
        ----------
        task : callable
            ``task()`` returning a generator; it runs on a worker thread.

        Returns
        -------
        int
            The new job id.
        """
        self._stop_current()
        job_id = self.ledger.next_job()
        relay = _JobRelay(self, job_id)
        self._relays.add(relay)
        worker = create_worker(drive, task, _start_thread=False, _ignore_errors=True)
        worker.yielded.connect(relay.on_yielded)
        worker.errored.connect(relay.on_errored)
        worker.finished.connect(relay.on_finished)
        self._worker = worker
        logger.debug("%s: start job %d", self.name, job_id)
        worker.start()
        return job_id

    def cancel(self) -> None:
        """Stop the running job; whatever it still yields is dropped."""
        had_job = self._worker is not None
        self._stop_current()
        job_id = self.ledger.next_job()
        if had_job:
            self.finished.emit(job_id)

    def _stop_current(self) -> None:
        if self._worker is not None:
            logger.debug("%s: superseding job %d", self.name, self.job_id)
            self._worker.quit()
            self._worker = None

    def _on_yielded(self, job_id: int, item: object) -> None:
        routed = self.ledger.route(job_id, item)
        if routed is None:
            return  # a superseded job's
        kind, payload = routed
        if kind == "failed":
            self._on_errored(job_id, payload)
        else:
            getattr(self, kind).emit(payload)  # progress or result

    def _on_errored(self, job_id: int, exc: object) -> None:
        if not self.is_current(job_id):
            logger.debug("%s: stale job %d failed: %s", self.name, job_id, exc)
            return
        logger.debug("%s: job %d failed", self.name, job_id, exc_info=exc)
        self.failed.emit(job_id, exc)

    def _on_finished(self, job_id: int, relay: _JobRelay) -> None:
        self._relays.discard(relay)
        relay.deleteLater()
        if self.is_current(job_id):
            self._worker = None
            self.finished.emit(job_id)
