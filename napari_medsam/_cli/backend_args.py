"""The ``--backend`` and ``--precision`` options shared by segment, eval, bench and finetune."""

from __future__ import annotations

import argparse

# napari_medsam.model.backends.select's names (a test keeps them equal); not imported
# from there, which would import torch for every ``--help``
BACKENDS = ("auto", "torch", "openvino")
PRECISIONS = ("auto", "fp32", "bf16")

BACKEND_HELP = (
    "image encoder and click decoder backend: auto (OpenVINO on a CPU when installed, "
    "else torch), torch, openvino"
)
PRECISION_HELP = "encoder precision on OpenVINO: auto (bf16 where the CPU has it), bf16, fp32"


def _choice(allowed: tuple[str, ...], what: str):
    def parse(text: str) -> str:
        value = text.strip().lower()
        if value not in allowed:
            raise argparse.ArgumentTypeError(
                f"{what} must be one of {', '.join(allowed)}, got {text!r}"
            )
        return value

    return parse


def _backend_list(text: str) -> tuple[str, ...]:
    parse = _choice(BACKENDS, "--backend")
    values = tuple(parse(part) for part in text.split(",") if part.strip())
    if not values:
        raise argparse.ArgumentTypeError("--backend needs at least one name")
    return values


def add_backend_args(parser: argparse.ArgumentParser, several: bool = False) -> None:
    """Add ``--backend`` (a comma list when ``several``) and ``--precision``."""
    if several:
        parser.add_argument("--backend", type=_backend_list, default=("auto",),
                            metavar="B[,B...]", help=BACKEND_HELP + "; a comma list "
                            "measures each, side by side")  # fmt: skip
    else:
        parser.add_argument("--backend", type=_choice(BACKENDS, "--backend"), default="auto",
                            help=BACKEND_HELP)  # fmt: skip
    parser.add_argument("--precision", type=_choice(PRECISIONS, "--precision"), default="auto",
                        help=PRECISION_HELP)  # fmt: skip


def engine_options(args: argparse.Namespace, backend: str | None = None) -> dict:
    """``load_engine`` keywords from the parsed options (conversion in the call, not behind it)."""
    return {
        "backend": backend or args.backend,
        "precision": args.precision,
        "background": False,
    }
