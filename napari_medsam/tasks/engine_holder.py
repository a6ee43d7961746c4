"""A thread-safe holder of the current engine, loaded lazily on a worker thread.

No Qt, no napari. The widget owns one holder; jobs running on the worker ask it
for the engine (loading the bundled LiteMedSAM the first time), and a
checkpoint load swaps the engine only once the new one loaded successfully, so
a bad file leaves the current model in use.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

from napari_medsam.model.protocol import Engine, needs_box
from napari_medsam.model.triton_guard import keep_triton_away_from_mesa_llvm
from napari_medsam.prompts.zoom import ZOOM_IN_BY_DEFAULT

logger = logging.getLogger(__name__)

Loader = Callable[[str | None, str], Engine]

#: Set to 0 to load the model on the first prompt instead of when the dock opens.
PRELOAD_ENV = "NAPARI_MEDSAM_PRELOAD"
BUNDLED_NAME = "LiteMedSAM + clicks"


def preload_enabled() -> bool:
    """Whether the dock loads the model as soon as it opens (default yes)."""
    return os.environ.get(PRELOAD_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def device_choices() -> list[str]:
    """``auto``, ``cpu``, and ``cuda`` when torch sees a GPU (the dock's device combo)."""
    keep_triton_away_from_mesa_llvm()  # before torch: a canvas (and its GL) may exist already
    import torch

    return ["auto", "cpu", *(["cuda"] if torch.cuda.is_available() else [])]


def ready_text(engine: Engine) -> str:
    """``"ready (cpu, 2 threads)"`` / ``"ready (cuda)"``: where the model runs."""
    device = str(getattr(engine, "device", "cpu"))
    if device.startswith("cpu"):
        import torch  # loaded already: the engine is a torch model

        n = torch.get_num_threads()
        return f"ready (cpu, {n} thread{'' if n == 1 else 's'})"
    return f"ready ({device})"


def _load_engine(checkpoint: str | None, device: str, backend: str = "auto") -> Engine:
    keep_triton_away_from_mesa_llvm()
    # imported here: torch is only needed once a model is actually loaded
    from napari_medsam.model.engine import load_engine

    # background: a first conversion for OpenVINO must not hold up the first click
    return load_engine(checkpoint=checkpoint, device=device, backend=backend, background=True)


class EngineHolder:
    """Holds the engine in use; loads happen under a lock, off the GUI thread.

    Parameters
    ----------
    engine : Engine, optional
        An engine to use right away (tests inject a fake one here).
    device : str
        ``"auto"``, ``"cpu"`` or ``"cuda"``: the device preference for loads.
    loader : callable, optional
        ``loader(checkpoint_path_or_None, device) -> Engine``; defaults to
        :func:`napari_medsam.model.engine.load_engine` with the image-encoder
        backend ``self.backend`` (``auto``, ``torch`` or ``openvino``).
    """

    def __init__(
        self, engine: Engine | None = None, device: str = "auto", loader: Loader | None = None
    ):
        self._engine = engine
        self._lock = threading.RLock()
        self._loader = loader or (lambda path, dev: _load_engine(path, dev, self.backend))
        self.backend = "auto"
        self.device = device
        self.checkpoint: str | None = None
        #: zoom-in preference, applied to every engine that has the option
        self.zoom_in = ZOOM_IN_BY_DEFAULT

    def set_zoom(self, on: bool) -> None:
        """Zoom-in for the click model (a crop around the object) on or off."""
        self.zoom_in = bool(on)
        self._apply_settings(self._engine)

    def choose_device(self, device: str) -> bool:
        """Use ``device`` from now on; True when the loaded engine must be loaded again on it."""
        if not device or device == self.device:
            return False
        self.device = device
        return self.engine is not None and hasattr(self.engine, "device")

    def choose_backend(self, backend: str) -> bool:
        """Use encoder ``backend`` from now on; True when the loaded engine must be reloaded."""
        if not backend or backend == self.backend:
            return False
        self.backend = backend
        return getattr(self.engine, "encoder_backend", None) is not None

    def _apply_settings(self, engine: Engine | None) -> None:
        if engine is not None and hasattr(engine, "zoom_in"):
            engine.zoom_in = self.zoom_in

    @property
    def engine(self) -> Engine | None:
        """The engine in use, or None before the first load."""
        return self._engine

    def set_engine(self, engine: Engine, checkpoint: str | None = None) -> None:
        """Replace the engine (e.g. with a test double)."""
        with self._lock:
            self._engine = engine
            self.checkpoint = checkpoint

    def get(self) -> Engine:
        """Return the engine, loading the bundled model first if there is none.

        Blocks while another thread loads a checkpoint. Call from a worker.
        """
        with self._lock:
            if self._engine is None:
                logger.info("loading the bundled model on %s", self.device)
                self._engine = self._loader(None, self.device)
                self._apply_settings(self._engine)
                self.checkpoint = None
            return self._engine

    def warm_up(self) -> None:
        """Warm the engine in use up (see ``SamEngine.warm_up``) without the load lock.

        A first start converts for OpenVINO for a minute or more on a slow CPU; a segment
        job started meanwhile gets the engine at once and answers on torch (slower), so
        the user is never blocked. Engines without ``warm_up`` (test doubles) are left
        alone. Call from a worker.
        """
        warm_up = getattr(self._engine, "warm_up", None)
        if warm_up is not None:
            warm_up()

    def load(self, checkpoint: str | Path | None, device: str | None = None) -> Engine:
        """Load ``checkpoint`` (None: the bundled model) and make it current.

        On any error the current engine stays in use and the error propagates.
        Call from a worker.
        """
        device = self.device if device is None else device
        path = None if checkpoint is None else str(checkpoint)
        with self._lock:
            engine = self._loader(path, device)
            self._apply_settings(engine)
            self._engine = engine
            self.checkpoint = path
            self.device = device
            logger.info("loaded %s (%s) on %s", engine.name, path or "bundled", device)
            return engine

    def describe(self) -> str:
        """Short text for the status line, e.g. ``"LiteMedSAM on cpu"``."""
        engine = self._engine
        if engine is None:
            return f"model not loaded yet (device {self.device})"
        device = getattr(engine, "device", None) or self.device
        backend = getattr(engine, "backend", None)
        return f"{engine.name} on {device}" + (f", encoder {backend}" if backend else "")

    @property
    def needs_box(self) -> bool:
        """The model's capability flag; before the first load the default model's (clicks)."""
        return self._engine is not None and needs_box(self._engine)

    def status(self, message: str = "", warning: str = "") -> str:
        """The dock's status line: ``"LiteMedSAM ready (cpu, 2 threads)"``, ``"loading …"``.

        ``warning`` (a failing autosave) stays at the end of the line while it lasts.
        """
        engine = self._engine
        if engine is None:
            text = message or self.describe()
        elif message.startswith("ready"):
            text = f"{engine.name} {message}"
        else:
            text = f"{self.describe()} · {message}" if message else self.describe()
        return " · ".join(p for p in (text, warning) if p)
