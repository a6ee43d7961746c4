"""Choosing the torch device: CUDA when present, Apple MPS on a Mac, else CPU."""

from __future__ import annotations

import contextlib

import torch

_CHOICES = ("auto", "cpu", "cuda", "mps")


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def choose_device(pref: str | torch.device | None = "auto") -> torch.device:
    """Resolve a device preference.

    Parameters
    ----------
    pref : str or torch.device or None
        ``"auto"`` (or None): CUDA when available, else MPS, else CPU.
        ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"`` are honoured as given.

    Returns
    -------
    torch.device

    Raises
    ------
    ValueError
        An unknown name, or a device this machine does not have.
    """
    if pref is None:
        pref = "auto"
    if isinstance(pref, torch.device):
        pref = str(pref)
    name = str(pref).strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    base, _, index = name.partition(":")
    if base not in _CHOICES or (index and (base != "cuda" or not index.isdigit())):
        raise ValueError(f"unknown device {pref!r}; choose one of auto, cpu, cuda, cuda:N, mps")
    if base == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                "device 'cuda' requested but no CUDA GPU is available; use 'cpu' or 'auto'"
            )
        if index and int(index) >= torch.cuda.device_count():
            raise ValueError(
                f"device {name!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist"
            )
    if base == "mps" and not _mps_available():
        raise ValueError(
            "device 'mps' requested but Apple MPS is not available; use 'cpu' or 'auto'"
        )
    return torch.device(name)


@contextlib.contextmanager
def torch_threads(n: int):
    """Run the block with ``n`` torch intra-op threads, then restore the previous count.

    The count is process-wide: hold the engine's lock around the block so no other
    model call runs meanwhile.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)
