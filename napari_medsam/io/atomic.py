"""The one way this project writes a file: atomically, and never over an input.

Every file napari-medsam writes (labels, sidecars, checkpoints, training state,
eval / bench JSON, plots, autosave snapshots and pointers) goes through
:func:`atomic_write` or :func:`atomic_path`: the bytes go to a temporary file in
the target's own folder, are flushed and fsynced, and the temporary file is
renamed over the target (``os.replace``, atomic on POSIX and Windows). A full
disk, a kill or an exception mid-write leaves the old file as it was.

:func:`check_output_path` is called by the command line before any inference:
it refuses a directory, a wrong suffix, a folder that cannot be written, and
any path that is one of the run's inputs (same resolved path or same inode).
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

__all__ = [
    "OutputPathError",
    "atomic_path",
    "atomic_write",
    "atomic_write_text",
    "check_output_path",
    "same_file",
]

TMP_MARK = ".tmp-"  # temporary files are ``.<name>.tmp-<pid>-<random><suffix>``


class OutputPathError(ValueError):
    """An output path that must not or cannot be written; the message says why."""


def _tmp_name(path: Path, keep_suffix: bool) -> Path:
    suffix = ""
    if keep_suffix:  # libraries that pick the format from the name (nibabel, matplotlib)
        name = path.name.lower()
        suffix = ".nii.gz" if name.endswith(".nii.gz") else path.suffix
    token = f"{os.getpid()}-{threading.get_ident() % 100000}-{uuid.uuid4().hex[:6]}"
    return path.with_name(f".{path.name}{TMP_MARK}{token}{suffix}")


def _fsync_dir(folder: Path) -> None:
    """Make the rename durable (POSIX); folders cannot be opened on Windows."""
    if os.name != "posix":
        return
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _replace(tmp: Path, path: Path) -> None:
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a directory", str(path))
    os.replace(tmp, path)
    _fsync_dir(path.parent)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, keep_suffix: bool = True) -> Iterator[Path]:
    """A temporary path to write; renamed over ``path`` when the block ends without error.

    For writers that take a file name (``nib.save``, ``fig.savefig``,
    ``torch.save``). The temporary file keeps ``path``'s suffix, is fsynced, and is
    removed if the block raises.

    Parameters
    ----------
    path : path
        The final file. Its folder must exist.
    keep_suffix : bool
        End the temporary name with ``path``'s suffix (``.nii.gz`` counts as one).
    """
    path = Path(path)
    tmp = _tmp_name(path, keep_suffix)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        _replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], Any]) -> Path:
    """Write a file through ``write(f)`` on a binary file object, atomically.

    Parameters
    ----------
    path : path
        The final file. Its folder must exist.
    write : callable
        Called with the open temporary file (``"wb"``).

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    OSError
        The write failed (``path`` is then unchanged).
    """
    path = Path(path)
    tmp = _tmp_name(path, keep_suffix=False)
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        _replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
    return path


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_write`)."""
    data = text.encode(encoding)
    return atomic_write(path, lambda f: f.write(data))


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two paths name one file: same resolved path, or same device and inode."""
    a, b = Path(a), Path(b)
    try:
        if a.resolve() == b.resolve():
            return True
    except OSError:
        pass
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist
        return False


def check_output_path(
    path: str | os.PathLike,
    what: str,
    inputs: Iterable[str | os.PathLike | None] = (),
    suffixes: tuple[str, ...] | None = None,
    allow_dir: bool = False,
) -> Path:
    """Refuse an output path before any work is done; return it.

    Parameters
    ----------
    path : path
        The file the run will write.
    what : str
        How the user named it (``"--out"``, ``"--json"``), for the message.
    inputs : iterable of paths
        Every file the run reads; None entries are skipped.
    suffixes : tuple of str, optional
        Allowed endings (lower case, e.g. ``(".nii", ".nii.gz")``).
    allow_dir : bool
        The output is a folder (a DICOM series): an existing folder is allowed.

    Raises
    ------
    OutputPathError
        ``path`` is an input, a directory, has the wrong suffix, or its folder is
        missing, not a folder, or not writable.
    """
    path = Path(path).expanduser()
    for source in inputs:
        if source is not None and same_file(path, source):
            raise OutputPathError(
                f"{what} {path} is also an input of this run ({source}); refusing to overwrite it"
            )
    if path.is_dir() and not allow_dir:
        raise OutputPathError(f"{what} {path} is a directory, not a file")
    if suffixes and not path.name.lower().endswith(tuple(s.lower() for s in suffixes)):
        raise OutputPathError(f"{what} {path.name} must end with {' or '.join(suffixes)}")
    folder = path.parent
    if folder.exists() and not folder.is_dir():
        raise OutputPathError(f"{what} {path}: {folder} is not a folder")
    existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if existing is None or not os.access(existing, os.W_OK | os.X_OK):
        raise OutputPathError(f"{what} {path}: the folder {existing or folder} is not writable")
    if path.exists() and not os.access(path, os.W_OK):
        raise OutputPathError(f"{what} {path} exists and is read-only")
    return path
