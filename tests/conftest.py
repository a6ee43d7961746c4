"""Shared test setup: headless Qt, and an X server for the viewer's OpenGL canvas.

napari's canvas needs an OpenGL context even with ``QT_QPA_PLATFORM=offscreen``;
Qt's offscreen platform gets one through GLX when an X display is reachable.
On a headless Linux machine without ``DISPLAY``, the test session therefore
starts one private Xvfb server (if the ``Xvfb`` binary is installed) before any
test runs, so that no QApplication is ever made without it. The kernel stops it when the
test process ends (``PR_SET_PDEATHSIG``): killing it earlier, while Qt is still
connected, would abort the process with an X I/O error.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import sys

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# The dock loads the bundled model as soon as it opens; most widget tests inject a fake
# engine instead, so the real load is off here (tests/test_first_use.py turns it on).
os.environ.setdefault("NAPARI_MEDSAM_PRELOAD", "0")
# Engines made by tests use torch unless a test asks for a backend: an "auto" engine
# would convert every tiny test model for OpenVINO. tests/test_backends*.py test the rest.
os.environ.setdefault("NAPARI_MEDSAM_BACKEND", "torch")

_XVFB: subprocess.Popen | None = None


def _die_with_parent() -> None:
    pr_set_pdeathsig = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _start_xvfb() -> None:
    global _XVFB
    read_fd, write_fd = os.pipe()
    _XVFB = subprocess.Popen(
        [
            "Xvfb",
            "-displayfd",
            str(write_fd),
            "-screen",
            "0",
            "1280x1024x24",
            "-nolisten",
            "tcp",
        ],
        preexec_fn=_die_with_parent,
        pass_fds=(write_fd,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write_fd)
    with os.fdopen(read_fd) as pipe:
        display = pipe.readline().strip()  # Xvfb writes its display number when ready
    if display:
        os.environ["DISPLAY"] = f":{display}"
    else:  # pragma: no cover - Xvfb failed to start; the viewer tests will say why
        _XVFB.terminate()
        _XVFB = None


def pytest_configure(config):
    # Start the X server before anything can create the QApplication: Qt's offscreen
    # platform probes for an X display (and so for GLX) once, when the application is
    # made, and a QApplication made without one leaves every later canvas without
    # OpenGL ("glGetString returned None").
    if (
        _XVFB is None
        and sys.platform.startswith("linux")
        and not os.environ.get("DISPLAY")
        and shutil.which("Xvfb")
    ):
        _start_xvfb()
