"""The single-flight runner on real worker threads."""

from __future__ import annotations

import threading

import pytest

from napari_medsam._qt.workers import JobRunner
from napari_medsam.types import Progress


@pytest.fixture
def runner(qtbot):
    r = JobRunner("test")
    yield r
    r.cancel()


def test_results_arrive_on_the_gui_thread_paired_with_their_job(qtbot, runner):
    seen = []
    runner.progress.connect(
        lambda p: seen.append(("progress", runner.job_id, threading.current_thread()))
    )
    runner.result.connect(
        lambda r: seen.append(("result", r, runner.job_id, threading.current_thread()))
    )
    worker_threads = []

    def task():  # a task never sees its job id: the runner pairs them
        worker_threads.append(threading.current_thread())
        yield Progress(0, 1)
        yield "done"

    with qtbot.waitSignal(runner.finished, timeout=5000):
        job = runner.submit(task)
    assert job == 1 and not runner.busy
    main = threading.main_thread()
    assert seen == [("progress", 1, main), ("result", "done", 1, main)]
    assert worker_threads[0] is not main


def test_a_new_job_supersedes_the_running_one(qtbot, runner):
    release = threading.Event()
    started = threading.Event()
    results, finished = [], []
    runner.result.connect(results.append)
    runner.finished.connect(finished.append)
    stopped_early = []

    def slow():
        started.set()
        release.wait(10)
        yield Progress(0, 2)  # a stopped job ends at its next yield
        stopped_early.append(False)
        yield "slow result"

    def fast():
        yield "fast result"

    first = runner.submit(slow)
    assert started.wait(5)
    second = runner.submit(fast)
    assert (first, second) == (1, 2) and runner.is_current(2) and not runner.is_current(1)
    qtbot.waitUntil(lambda: results == ["fast result"], timeout=5000)
    release.set()
    qtbot.waitUntil(lambda: 2 in finished, timeout=5000)
    qtbot.wait(100)
    assert results == ["fast result"] and stopped_early == []


def test_errors_of_the_current_job_become_a_signal(qtbot, runner):
    def broken():
        yield Progress(0, 1)
        raise RuntimeError("model exploded")

    with qtbot.waitSignal(runner.failed, timeout=5000) as blocker:
        runner.submit(broken)
    job_id, exc = blocker.args
    assert job_id == 1 and isinstance(exc, RuntimeError) and "exploded" in str(exc)
    qtbot.waitUntil(lambda: not runner.busy, timeout=5000)


def test_errors_of_a_superseded_job_are_dropped(qtbot, runner):
    release = threading.Event()
    failures = []
    runner.failed.connect(lambda j, e: failures.append(j))

    def broken_later():
        release.wait(10)
        raise RuntimeError("too late")
        yield  # pragma: no cover

    def fine():
        yield "ok"

    runner.submit(broken_later)
    with qtbot.waitSignal(runner.result, timeout=5000):
        runner.submit(fine)
    release.set()
    qtbot.wait(300)
    assert failures == []


class _Payload:
    """Stands for what a job's frame holds: its prompt, the logits fed back and computed."""


def test_a_superseded_job_is_not_kept_alive_by_the_viewer(make_napari_viewer, qtbot, runner):
    """A flood of clicks supersedes job after job mid-run; none may be kept after it ends.

    napari's create_worker registers every worker with the viewer's task status list
    (its cancel callback holds the worker), so each superseded job's suspended generator
    kept its frame for the viewer's life: in the race test, 58 low-res logit maps per
    500 clicks on one slice.
    """
    import gc
    import weakref

    make_napari_viewer()  # the current viewer
    gate, kept = threading.Event(), []

    def held():
        payload = _Payload()
        kept.append(weakref.ref(payload))
        yield Progress(0, 2)
        gate.wait(10)
        yield Progress(1, 2)  # superseded by now: the worker stops here, generator suspended
        yield payload

    with qtbot.waitSignal(runner.progress, timeout=5000):
        runner.submit(held)
    with qtbot.waitSignal(runner.finished, timeout=5000):
        runner.submit(lambda: iter(["next"]))
    gate.set()
    qtbot.waitUntil(lambda: not runner.busy, timeout=5000)
    qtbot.wait(200)  # the superseded worker reaches its next yield and stops
    gc.collect()
    assert kept[0]() is None, "the superseded job's frame is still alive"
