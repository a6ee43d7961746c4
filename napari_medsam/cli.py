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
    "train_auto",
    "auto",
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


# options whose value may start with "-" (a negative coordinate): argparse would take
# "--box -10,5,20,30,2" for two options and answer "expected one argument"
_NEGATIVE_VALUE_OPTIONS = ("--box", "--point", "--neg-point", "--window")


def _join_negative_values(argv: list[str]) -> list[str]:
    """``["--box", "-10,..."]`` -> ``["--box=-10,..."]`` (values that start with a minus)."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        nxt = argv[i + 1] if i + 1 < len(argv) else ""
        negative = len(nxt) > 1 and nxt[0] == "-" and nxt[1] in "0123456789."
        if arg in _NEGATIVE_VALUE_OPTIONS and negative:
            out.append(f"{arg}={nxt}")
            i += 2
            continue
        out.append(arg)
        i += 1
    return out


def error_line(err: BaseException) -> str:
    """One line for an expected error: the message, without a traceback."""
    if isinstance(err, OSError) and err.strerror:
        where = f": {err.filename}" if err.filename else ""
        return f"{err.strerror}{where}"
    if isinstance(err, MemoryError):
        return "not enough memory for this input"
    return " ".join(str(err).split()) or type(err).__name__


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code.

    Every expected error (bad input, bad path, unreadable or unusable file, a
    full disk, too little memory) is one line on stderr and exit code 2.
    """
    parser = build_parser()
    argv = _join_negative_values(list(sys.argv[1:] if argv is None else argv))
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
    except (OSError, ValueError, MemoryError) as err:
        # user errors (bad path, bad file, bad option value, full disk) get one clear line
        logging.getLogger(__name__).debug("error details", exc_info=err)
        print(f"napari-medsam {args.command}: error: {error_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"napari-medsam {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
