"""Job factories: bind a task's arguments now, run its generator later on a worker.

Loading and embedding jobs live here; the annotation work (segment, propagate,
re-propagate, fill) is a request of the session, run by
:func:`napari_medsam.session.requests.request_task`.

Each factory returns ``task() -> generator`` as the runner expects (the runner,
not the task, knows which job it is and drops a superseded job's items). The
engine comes from an :class:`~napari_medsam.tasks.engine_holder.EngineHolder`
when the job runs, so the first job loads the bundled model on the worker
(announced by a ``Progress`` with ``total == 0``: an indeterminate bar).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Iterator
from dataclasses import dataclass

from napari_medsam.model.protocol import Engine
from napari_medsam.tasks.engine_holder import EngineHolder
from napari_medsam.tasks.segment import Window, embed_slices
from napari_medsam.types import Progress

Task = Callable[[], Iterator[object]]


@dataclass(frozen=True)
class EngineLoaded:
    """Yielded by a load job once the new engine is in use."""

    engine: Engine
    checkpoint: str | None
    announce: bool = True  # False for the quiet load when the dock opens


def _engine(holder: EngineHolder) -> Iterator[Progress]:
    if holder.engine is None:
        yield Progress(0, 0, "loading LiteMedSAM")
    holder.get()


def embed_job(
    holder: EngineHolder, volume_zyx, window: Window, zs: Iterable[int], cache_key_prefix: Hashable
) -> Task:
    """Precompute embeddings of slices ``zs`` (see :func:`~napari_medsam.tasks.segment.embed_slices`)."""
    zs = list(zs)

    def task():
        yield from _engine(holder)
        yield from embed_slices(holder.get(), volume_zyx, window, zs, cache_key_prefix)

    return task


def preload_job(holder: EngineHolder, what: str = "LiteMedSAM") -> Task:
    """Load the bundled model now (when the dock opens) unless an engine is there already.

    Yields ``Progress(..., "loading <what>…")`` first when it loads, then a quiet
    :class:`EngineLoaded` (``announce=False``). A segment job started meanwhile waits
    for this load (the holder's lock) instead of starting a second one.
    """

    def task():
        if holder.engine is None:
            yield Progress(0, 0, f"loading {what}…")
        engine = holder.get()
        yield Progress(0, 0, f"warming up {what}… (clicks work meanwhile, slower)")
        holder.warm_up()  # the first prompt after "ready" takes the usual time
        yield EngineLoaded(engine, holder.checkpoint, announce=False)

    return task


def load_job(holder: EngineHolder, checkpoint: str | None, device: str, what: str) -> Task:
    """Load ``checkpoint`` on ``device``; on failure the holder keeps its engine."""

    def task():
        yield Progress(0, 0, f"loading {what}")
        engine = holder.load(checkpoint, device)
        yield Progress(0, 0, f"warming up {what}… (clicks work meanwhile, slower)")
        holder.warm_up()
        yield EngineLoaded(engine, checkpoint)

    return task
