"""torchrun / DistributedDataParallel plumbing.

When ``torchrun`` starts the process (``RANK`` and ``WORLD_SIZE`` in the
environment), :func:`setup` joins the process group (NCCL on CUDA, gloo on the
CPU) and picks this process's GPU from ``LOCAL_RANK``. Without them it is a
single process of rank 0.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from napari_medsam.model.device import choose_device

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands.

    Attributes
    ----------
    rank, world_size, local_rank : int
    device : torch.device
    initialized : bool
        This call created the process group (and :func:`teardown` destroys it).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    initialized: bool = False

    @property
    def distributed(self) -> bool:
        return dist.is_available() and dist.is_initialized()

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_by_torchrun() -> bool:
    """Whether RANK and WORLD_SIZE are set (torchrun, or a test that sets them)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def setup(device_pref: str = "auto") -> DistInfo:
    """Resolve the device and, under torchrun, join the process group.

    Parameters
    ----------
    device_pref : str
        ``auto``, ``cpu``, ``cuda`` ...; under torchrun a CUDA choice becomes
        ``cuda:LOCAL_RANK``.
    """
    device = choose_device(device_pref)
    if not launched_by_torchrun():
        return DistInfo(device=device)
    rank = int(os.environ["RANK"])
    world = int(os.environ["WORLD_SIZE"])
    local = int(os.environ.get("LOCAL_RANK", rank))
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    created = False
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, rank=rank, world_size=world)
        created = True
        logger.info("rank %d/%d joined the %s process group on %s", rank, world, backend, device)
    return DistInfo(rank, world, local, device, created)


def barrier(info: DistInfo) -> None:
    """Wait for every process (no-op without a process group)."""
    if info.distributed:
        dist.barrier()


def teardown(info: DistInfo) -> None:
    """Leave the process group if :func:`setup` created it."""
    if info.initialized and dist.is_initialized():
        dist.destroy_process_group()
