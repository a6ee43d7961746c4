"""Which job is current and what its items are: the runner's bookkeeping, without threads."""

from napari_medsam.tasks.ledger import Failure, JobLedger, LatencyClock, drive
from napari_medsam.types import Progress


def test_only_the_latest_jobs_items_get_through_as_what_they_are():
    ledger = JobLedger("test")
    first = ledger.next_job()
    progress = Progress(1, 3, "slice 1")
    assert ledger.route(first, progress) == ("progress", progress)
    assert ledger.route(first, "mask") == ("result", "mask")
    second = ledger.next_job()
    assert (first, second) == (1, 2) and ledger.is_current(2) and not ledger.is_current(1)
    assert ledger.route(first, "late mask") is None
    assert ledger.route(first, Failure(RuntimeError("late"))) is None
    assert ledger.dropped == 2
    error = ValueError("bad checkpoint")
    assert ledger.route(second, Failure(error)) == ("failed", error)


def test_drive_turns_an_exception_into_a_failure_item():
    def task():
        yield 1
        raise RuntimeError("CUDA out of memory")

    items = list(drive(task))
    assert items[0] == 1 and isinstance(items[1], Failure)
    assert str(items[1].exc) == "CUDA out of memory"


def test_latency_counts_only_the_current_prompts_job():
    now = [10.0]
    clock = LatencyClock(lambda: now[0])
    clock.start(1)
    clock.start(2, with_load=True)  # supersedes job 1: its time is gone
    now[0] = 10.25
    assert clock.stop(1) is None
    assert clock.stop(2) == (250.0, True) and clock.last_ms == 250.0
    assert clock.stop(2) is None  # a propagated slice of the same job is not timed again
    clock.start(3)
    assert clock.pending
    clock.forget(3)
    assert not clock.pending
    assert clock.stop(3) is None and clock.last_ms == 250.0
