"""Which inference backend and precision to use, and whether the fast runtime is there.

Backends: ``torch`` (the reference: eager PyTorch on the engine's device) and
``openvino`` (OpenVINO on the CPU). ``auto`` picks OpenVINO on a CPU when it is
installed and torch on CUDA / MPS. Precision ``auto`` is bf16 where the CPU
computes it natively (AVX512-BF16 or AMX), fp32 otherwise; ``fp32`` forces fp32.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import os
import sys
import threading

logger = logging.getLogger(__name__)

BACKENDS = ("auto", "torch", "openvino")
PRECISIONS = ("auto", "fp32", "bf16")
ENV_BACKEND = "NAPARI_MEDSAM_BACKEND"
ENV_PRECISION = "NAPARI_MEDSAM_PRECISION"
INSTALL_HINT = "pip install 'openvino>=2024.0'"
#: What ``auto`` runs on OpenVINO on a CPU, so what falls back to torch without it
#: (the one notice names them all)
AUTO_OPENVINO_PARTS = ("image encoder", "click decoder")

_notice_lock = threading.Lock()
_notice_given = False


class BackendError(ValueError):
    """An unknown backend or precision, or a backend that cannot run here."""


def openvino_available() -> bool:
    """True when the ``openvino`` package imports.

    A package that is found but fails to import (a broken or half-removed install)
    counts as missing, so ``auto`` falls back to torch instead of failing later.
    """
    if sys.modules.get("openvino") is not None:
        return True
    try:
        if importlib.util.find_spec("openvino") is None:
            return False
        import openvino  # noqa: F401
    except Exception:  # noqa: BLE001 - any failure to import means: not usable here
        return False
    return True


def _notice_missing_runtime() -> None:
    """Say once per process that the fast runtime is missing and torch is used."""
    global _notice_given
    with _notice_lock:
        if _notice_given:
            return
        _notice_given = True
    logger.warning(
        "napari-medsam: OpenVINO is not installed; the %s run on torch "
        "(the encoder about 3x slower on a CPU). For speed: %s",
        " and the ".join(AUTO_OPENVINO_PARTS),
        INSTALL_HINT,
    )


def _choice(value: str | None, env: str) -> str:
    """``value`` lower-cased; ``auto`` or None defer to the environment variable ``env``."""
    name = (value or "auto").strip().lower()
    if name == "auto":
        name = (os.environ.get(env) or "auto").strip().lower()
    return name


def _device_type(device) -> str:
    return str(getattr(device, "type", device) or "cpu").split(":")[0]


def resolve_backend(backend: str | None, device="cpu") -> str:
    """The concrete backend for a request on ``device``.

    Parameters
    ----------
    backend : str or None
        ``auto`` or None (``$NAPARI_MEDSAM_BACKEND`` when set), ``torch`` or ``openvino``.
    device : torch.device or str
        The engine's torch device.

    Returns
    -------
    str
        ``"torch"`` or ``"openvino"``. ``auto`` without OpenVINO gives torch,
        with one notice per process.

    Raises
    ------
    BackendError
        An unknown name, ``openvino`` without OpenVINO installed, or ``openvino``
        for a CUDA / MPS device.
    """
    name = _choice(backend, ENV_BACKEND)
    if name not in BACKENDS:
        raise BackendError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    on_cpu = _device_type(device) == "cpu"
    if name == "auto":
        if not on_cpu:
            return "torch"
        if openvino_available():
            return "openvino"
        _notice_missing_runtime()
        return "torch"
    if name == "openvino":
        if not on_cpu:
            raise BackendError(
                f"backend 'openvino' runs on the CPU; the engine is on {device} (use --device cpu)"
            )
        if not openvino_available():
            raise BackendError(
                f"backend 'openvino' requested but OpenVINO is not installed: {INSTALL_HINT}"
            )
    return name


@functools.lru_cache(maxsize=1)
def cpu_has_bf16() -> bool:
    """True when the CPU has native bf16 arithmetic (AVX512-BF16 or AMX-BF16)."""
    if openvino_available():
        try:
            import openvino as ov

            caps = ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
            return "BF16" in [str(c).upper() for c in caps]
        except Exception:  # noqa: BLE001 - fall back to the kernel's flags
            pass
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="ignore") as f:
            flags = f.read()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def resolve_precision(precision: str | None) -> str:
    """``"bf16"`` or ``"fp32"`` for a request (``auto``, None: ``$NAPARI_MEDSAM_PRECISION``).

    Raises
    ------
    BackendError
        An unknown name.
    """
    name = _choice(precision, ENV_PRECISION)
    if name not in PRECISIONS:
        raise BackendError(
            f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}"
        )
    if name == "auto":
        return "bf16" if cpu_has_bf16() else "fp32"
    return name
