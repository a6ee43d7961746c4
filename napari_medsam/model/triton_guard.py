"""A process guard to run before torch is imported (so this module never imports torch).

With software OpenGL the napari canvas and triton each bring an LLVM, and the
process crashes; :func:`keep_triton_away_from_mesa_llvm` hides triton first.
"""

from __future__ import annotations

import logging
import sys

logger = logging.getLogger(__name__)


def _process_maps_llvm() -> bool:
    """Whether a system libLLVM is mapped into this process (Linux; False elsewhere)."""
    try:
        with open("/proc/self/maps") as maps:
            return any("libLLVM" in line for line in maps)
    except OSError:
        return False


def keep_triton_away_from_mesa_llvm() -> bool:
    """Stop torch from importing triton when Mesa's LLVM is already loaded.

    With software OpenGL (Mesa llvmpipe: VMs, remote desktops, Xvfb) the
    napari canvas maps the system libLLVM; importing triton afterwards loads
    triton's own LLVM and the process segfaults (torch imports triton from
    ``torch._dynamo``, which torchvision imports). Triton only serves
    ``torch.compile`` GPU kernels, which the engines never use, so in that
    situation it is hidden from torch (``import triton`` raises ImportError).

    Returns
    -------
    bool
        True if triton was hidden by this call.
    """
    if "triton" in sys.modules or not _process_maps_llvm():
        return False
    logger.info("system libLLVM loaded (software OpenGL): hiding triton from torch")
    sys.modules["triton"] = None  # type: ignore[assignment]
    return True
