"""The on-disk cache of converted encoder models, so conversion happens once per machine.

An entry is a folder ``<root>/<key>/`` holding the runtime's model files and a
``manifest.json`` written last, that lists every file with its size and
SHA-256. An entry whose manifest is missing, unreadable, or does not match its
files (a crash mid-write, a truncated copy, a flipped bit) is removed and
rebuilt, never used. Entries are written to a temporary folder and renamed
into place, so a reader never sees half an entry.

The key is a SHA-256 of the weights' hash, the runtime and its version, the
precision, the input signature and :data:`FORMAT`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from torch import nn

from napari_medsam.io.atomic import atomic_write_text

logger = logging.getLogger(__name__)

ENV_CACHE_DIR = "NAPARI_MEDSAM_CACHE_DIR"
FORMAT = 1  # bump when what is stored, or how it is made, changes
MANIFEST = "manifest.json"


def cache_root() -> Path:
    """``$NAPARI_MEDSAM_CACHE_DIR`` or the user cache dir's ``napari-medsam/models``."""
    env = os.environ.get(ENV_CACHE_DIR)
    if env:
        return Path(env).expanduser()
    try:
        from platformdirs import user_cache_dir

        base = Path(user_cache_dir("napari-medsam", appauthor=False))
    except ImportError:  # pragma: no cover - platformdirs comes with napari
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "napari-medsam"
    return base / "models"


def weights_digest(module: nn.Module) -> str:
    """SHA-256 over the names, shapes, dtypes and bytes of a module's parameters and buffers."""
    h = hashlib.sha256()
    tensors = list(module.named_parameters()) + list(module.named_buffers())
    for name, tensor in sorted(tensors, key=lambda item: item[0]):
        t = tensor.detach().to("cpu").contiguous()
        h.update(f"{name}|{tuple(t.shape)}|{t.dtype}|".encode())
        if t.dtype == torch.bfloat16:  # numpy has no bfloat16
            t = t.view(torch.int16)
        h.update(memoryview(t.numpy()).cast("B"))
    return h.hexdigest()


def entry_key(parts: Mapping[str, object]) -> str:
    """Cache key (hex) of a mapping of everything the stored model depends on."""
    text = json.dumps({**parts, "format": FORMAT}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def valid_entry(folder: Path) -> bool:
    """True when ``folder`` has a manifest and every file it lists matches it."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        files = manifest["files"]
        if not files:
            return False
        for name, meta in files.items():
            path = folder / name
            if path.stat().st_size != meta["size"] or _file_digest(path) != meta["sha256"]:
                return False
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return True


def _write_manifest(folder: Path, info: Mapping[str, object]) -> None:
    files = {
        p.name: {"size": p.stat().st_size, "sha256": _file_digest(p)}
        for p in sorted(folder.iterdir())
        if p.is_file() and p.name != MANIFEST
    }
    atomic_write_text(folder / MANIFEST, json.dumps({"info": dict(info), "files": files}, indent=1))


def cached_entry(
    key: str,
    build: Callable[[Path], None],
    info: Mapping[str, object] | None = None,
    root: Path | None = None,
) -> Path:
    """The folder of a valid cache entry for ``key``, built with ``build(folder)`` if needed.

    Parameters
    ----------
    key : str
        From :func:`entry_key`.
    build : callable
        Writes the entry's files into the (empty, temporary) folder it is given.
    info : mapping, optional
        Stored in the manifest for people reading the cache.
    root : Path, optional
        Defaults to :func:`cache_root`.

    Returns
    -------
    Path
        The entry's folder. When the cache folder cannot be written, the entry is
        built in a temporary folder that lives for this process.
    """
    root = Path(root) if root is not None else cache_root()
    folder = root / key
    if folder.is_dir():
        if valid_entry(folder):
            return folder
        logger.warning("napari-medsam: model cache entry %s is corrupt; rebuilding it", folder)
        shutil.rmtree(folder, ignore_errors=True)
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=root))
    except OSError as err:
        logger.warning("napari-medsam: cannot write the model cache %s (%s)", root, err)
        tmp = Path(tempfile.mkdtemp(prefix="napari-medsam-model-"))
        build(tmp)
        _write_manifest(tmp, info or {})
        return tmp
    try:
        build(tmp)
        _write_manifest(tmp, info or {})
        try:
            os.replace(tmp, folder)
        except OSError:  # another process won the race: use its entry if it is sound
            if not valid_entry(folder):
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder
