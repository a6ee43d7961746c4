"""The model layer's error, apart so that reading and checking checkpoints share it
without importing each other."""

from __future__ import annotations


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read or does not hold a known model."""
