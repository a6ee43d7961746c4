"""The ``napari-medsam`` command line.

Each subcommand lives in its own module under ``napari_medsam._cli`` and
exposes ``add_parser(subparsers)`` (which sets ``func`` on its parser) so that
this dispatcher stays small and imports nothing heavy until a command runs.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# module name under napari_medsam._cli -> subcommand names it registers
_SUBCOMMAND_MODULES = (
    "app",  # (no subcommand) and `open`
    "segment",
    "eval",
    "bench",
    "convert",
    "model_info",
    "finetune",
    "train_clicks",
)


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with every available subcommand."""
    from napari_medsam import __version__

    parser = argparse.ArgumentParser(
        prog="napari-medsam",
        description="Interactive CT/MRI segmentation with LiteMedSAM / Med-SA. "
        "With no subcommand, opens napari with the widget and the sample scan.",
    )
    parser.add_argument("--version", action="version", version=f"napari-medsam {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(f"napari_medsam._cli.{name}")
        except ModuleNotFoundError as err:
            if err.name == f"napari_medsam._cli.{name}":
                continue  # subcommand not part of this build
            raise
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if args.command is None:
        from napari_medsam._cli.app import run_app

        return run_app(path=None)
    try:
        return int(args.func(args) or 0)
    except (FileNotFoundError, ValueError) as err:
        # user errors (bad path, bad option value) get one clear line, no traceback
        print(f"napari-medsam {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
