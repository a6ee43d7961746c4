"""The ``segment`` subcommand's options: their parsers and their checks (argparse types).

Each type turns a bad value into argparse's one-line "argument --x: ..." error
before any file is read.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from napari_medsam.prompts.zoom import ZOOM_IN_BY_DEFAULT
from napari_medsam._cli.backend_args import add_backend_args
from napari_medsam.tasks.propagate import DEFAULT_STOP_SCORE


def _ints(text: str, n: int, what: str) -> tuple[int, ...]:
    parts = [p.strip() for p in text.split(",")]
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != n:
        raise argparse.ArgumentTypeError(f"{what} needs {n} comma-separated integers, got {text!r}")
    return values


def _box(text: str) -> tuple[int, ...]:
    return _ints(text, 5, "--box i0,j0,i1,j1,k")


def _point(text: str) -> tuple[int, ...]:
    return _ints(text, 3, "a point i,j,k")


def _box_zyx(text: str) -> tuple[int, ...]:
    return _ints(text, 5, "--box-zyx z,y0,x0,y1,x1")


def _point_zyx(text: str) -> tuple[int, ...]:
    return _ints(text, 3, "a display point z,y,x")


def plain_help(text: str) -> str:
    """Docstring markup (``code``, :func:`name`) as plain text for ``--help``."""
    text = re.sub(r":\w+:`~?([^`]+)`", r"\1", text)
    return text.replace("``", "")


def _window(text: str) -> tuple[float, float]:
    try:
        level, width = (float(p) for p in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--window needs LEVEL,WIDTH, got {text!r}") from None
    return level, width


def _score(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"--stop-score needs a number in [0, 1], got {text!r}")
    return value


def _overlap(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"--stop-overlap needs a number in [0, 1], got {text!r}")
    return value


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"--slab-depth needs an integer >= 1, got {text!r}")
    return value



def add_segment_arguments(parser: argparse.ArgumentParser) -> None:
    """Add every ``segment`` option and the ``scan`` argument to ``parser``."""
    parser.add_argument("scan", type=Path,
                        help="input scan: .nii(.gz), .nrrd, .mha/.mhd or a DICOM series folder")  # fmt: skip
    parser.add_argument("--out", type=Path, required=True,
                        help="output labels: .nii.gz, .nrrd, .mha, or a new folder (DICOM series); "
                             "its folder must exist")  # fmt: skip
    parser.add_argument("--box", type=_box, action="append", default=[], metavar="I0,J0,I1,J1,K",
                        help="box corners on slice K (repeatable)")  # fmt: skip
    parser.add_argument("--point", type=_point, action="append", default=[], metavar="I,J,K",
                        help="positive click (repeatable)")  # fmt: skip
    parser.add_argument("--neg-point", type=_point, action="append", default=[], metavar="I,J,K",
                        help="negative click (repeatable)")  # fmt: skip
    parser.add_argument("--box-zyx", type=_box_zyx, action="append", default=[],
                        metavar="Z,Y0,X0,Y1,X1",
                        help="box in display voxels (as the app's status bar shows them)")  # fmt: skip
    parser.add_argument("--point-zyx", type=_point_zyx, action="append", default=[],
                        metavar="Z,Y,X", help="positive click in display voxels")  # fmt: skip
    parser.add_argument("--neg-point-zyx", type=_point_zyx, action="append", default=[],
                        metavar="Z,Y,X", help="negative click in display voxels")  # fmt: skip
    parser.add_argument("--label", type=int, default=1, help="label value to write (default 1)")
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="model checkpoint (default: bundled LiteMedSAM)")  # fmt: skip
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    parser.add_argument(
        "--zoom",
        choices=("on", "off"),
        default="on" if ZOOM_IN_BY_DEFAULT else "off",
        help="click model: predict corrections of a small object on a crop around it "
        f"(default {'on' if ZOOM_IN_BY_DEFAULT else 'off'})",
    )
    add_backend_args(parser)
    parser.add_argument("--window", type=_window, default=None, metavar="LEVEL,WIDTH",
                        help="intensity window (default: CT 40,400 or MR percentiles)")  # fmt: skip
    parser.add_argument("--propagate", action="store_true",
                        help="propagate the object from the prompted slices through the volume")  # fmt: skip
    parser.add_argument("--stop-score", type=_score, default=None, metavar="IOU",
                        help="with --propagate: stop where the predicted IoU falls below this "
                             f"(default: the measured rule, {DEFAULT_STOP_SCORE} or relative to "
                             "the prompted slice's score)")  # fmt: skip
    parser.add_argument("--stop-overlap", type=_overlap, default=None, metavar="IOU",
                        help="with --propagate: stop where the IoU with the previous slice's mask "
                             "falls below this (default: fitted to the slice spacing and the "
                             "object's size; 0 = off)")  # fmt: skip
    parser.add_argument("--mask-prompt", choices=("none", "logits", "binary"), default=None,
                        help="with --propagate: the previous slice's mask as the model's dense "
                             "prompt besides its box (default: the model's own choice)")  # fmt: skip
    parser.add_argument("--between", choices=("fill", "propagate", "keep"), default=None,
                        help="with --propagate and boxes on several slices: fill the slices "
                             "between them (interpolation refined by the model), propagate "
                             "from both, or leave them (default: the app's policy)")  # fmt: skip
    parser.add_argument("--slab-depth", type=_positive, default=None, metavar="D",
                        help="with --propagate and an SD-Trans Med-SA model: slices per model call "
                             "(default: the model's depth; 1 = slice by slice)")  # fmt: skip
    parser.add_argument("--negatives-from", type=Path, default=None, metavar="LABELS",
                        help="label file on the scan's grid: its objects other than --label "
                             "become negative clicks inside the boxes")  # fmt: skip
