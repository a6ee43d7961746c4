"""Job factories: bind a task's arguments now, run its generator later on a worker.

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
from napari_medsam.session.policy import DEFAULT_POLICY, RepropagationPolicy
from napari_medsam.tasks.propagate import propagate
from napari_medsam.tasks.propagate_options import DEFAULT_OPTIONS, PropagationOptions
from napari_medsam.tasks.repropagate import fill_object, repropagate
from napari_medsam.tasks.segment import Window, embed_slices, segment_slice
from napari_medsam.types import Progress, SlicePrompt

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


def segment_job(
    holder: EngineHolder,
    volume_zyx,
    window: Window,
    z: int,
    prompt: SlicePrompt,
    label: int,
    cache_key_prefix: Hashable,
    negatives_from_yx=None,
) -> Task:
    """Segment one object on slice ``z`` (see :func:`~napari_medsam.tasks.segment.segment_slice`).

    ``negatives_from_yx``: (Y, X) labels of slice ``z`` copied when the job is
    made (on the GUI thread); its other objects become negative clicks. None: off.
    """

    def task():
        yield from _engine(holder)
        yield from segment_slice(
            holder.get(),
            volume_zyx,
            window,
            z,
            prompt,
            label,
            cache_key_prefix,
            negatives_from_yx=negatives_from_yx,
        )

    return task


def propagate_job(
    holder: EngineHolder,
    volume_zyx,
    window: Window,
    start_z: int,
    start_mask_yx,
    label: int,
    cache_key_prefix: Hashable,
    options: PropagationOptions = DEFAULT_OPTIONS,
) -> Task:
    """Propagate one object from slice ``start_z`` (see :func:`~napari_medsam.tasks.propagate.propagate`).

    ``options`` hold copies made on the GUI thread (locked masks, the labels as
    negatives), never live layers.
    """

    def task():
        yield from _engine(holder)
        yield from propagate(
            holder.get(), volume_zyx, window, start_z, start_mask_yx, label, cache_key_prefix,
            options,
        )  # fmt: skip

    return task


def repropagate_job(
    holder: EngineHolder,
    volume_zyx,
    window: Window,
    changed_zs,
    corrected_masks,
    label: int,
    cache_key_prefix: Hashable,
    policy: RepropagationPolicy = DEFAULT_POLICY,
    options: PropagationOptions = DEFAULT_OPTIONS,
    seed_scores=None,
) -> Task:
    """Re-propagate after corrections (see :func:`~napari_medsam.tasks.repropagate.repropagate`).

    ``corrected_masks`` and the arrays in ``options`` are copies made on the GUI thread.
    """

    def task():
        yield from _engine(holder)
        yield from repropagate(
            holder.get(), volume_zyx, window, changed_zs, corrected_masks, label,
            cache_key_prefix, policy, options, seed_scores,
        )  # fmt: skip

    return task


def fill_job(
    holder: EngineHolder,
    volume_zyx,
    window: Window,
    corrected_masks,
    label: int,
    cache_key_prefix: Hashable,
    **options,
) -> Task:
    """Fill between corrected slices (see :func:`~napari_medsam.tasks.repropagate.fill_object`)."""

    def task():
        yield from _engine(holder)
        yield from fill_object(
            holder.get(), volume_zyx, window, corrected_masks, label, cache_key_prefix,
            **options,
        )  # fmt: skip

    return task


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
        yield EngineLoaded(engine, holder.checkpoint, announce=False)

    return task


def load_job(holder: EngineHolder, checkpoint: str | None, device: str, what: str) -> Task:
    """Load ``checkpoint`` on ``device``; on failure the holder keeps its engine."""

    def task():
        yield Progress(0, 0, f"loading {what}")
        engine = holder.load(checkpoint, device)
        yield EngineLoaded(engine, checkpoint)

    return task
