"""``napari-medsam train-auto``: train an automatic-segmentation model on ``../shared/data``.

::

    napari-medsam train-auto --task mip-unet --data-root ../shared/data --out mip.pt
    napari-medsam train-auto --task slice-unet --data-root ../shared/data --out slice.pt
    napari-medsam train-auto --evaluate mip.pt --data-root ../shared/data
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

TASKS = ("mip-unet", "slice-unet")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "train-auto",
        help="train the projection 2.5D U-Net (or its per-slice baseline) for bone in CT",
        description="Train an automatic bone segmentation model on the labelled CT volumes "
        "of the data root (split by patient), score it on the held-out patient beside a HU "
        "threshold, and write a checkpoint, its log, figures and model card.",
    )
    parser.add_argument("--task", choices=TASKS, help="model to train")
    parser.add_argument(
        "--evaluate", metavar="CKPT", help="score this checkpoint instead of training"
    )
    parser.add_argument("--data-root", required=True, help="the shared data folder")
    parser.add_argument("--out", help="checkpoint to write (atomically; .pt)")
    parser.add_argument("--steps", type=_positive_int, default=1000)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument(
        "--frozen-fraction",
        type=float,
        default=0.25,
        help="mip-unet: share of steps with U frozen and all views",
    )
    parser.add_argument("--slices-per-step", type=_positive_int, default=8, help="slice-unet batch")
    parser.add_argument("--checkpoint-every", type=_positive_int, default=100)
    parser.add_argument("--max-minutes", type=float, help="stop (and save) after this wall time")
    parser.add_argument(
        "--crop",
        type=_positive_int,
        nargs=3,
        default=(32, 96, 96),
        metavar=("D", "H", "W"),
        help="largest training crop, network cells",
    )
    parser.add_argument("--base", type=_positive_int, help="U-Net width (default 16)")
    parser.add_argument("--levels", type=_positive_int, help="U-Net depth (default 3)")
    parser.add_argument("--views", type=_positive_int, help="mip-unet: projection directions")
    parser.add_argument("--spacing", type=float, help="network grid, mm (default 2)")
    parser.add_argument(
        "--no-intensity-gate",
        action="store_true",
        help="mip-unet ablation: T sees only the back-projection (the paper's T)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=_positive_int, help="torch CPU threads")
    parser.set_defaults(func=run)
    return parser


def _options(args) -> dict:
    options = {"base": args.base, "levels": args.levels, "spacing_mm": args.spacing}
    if args.task == "mip-unet":
        options["n_views"] = args.views
        if args.no_intensity_gate:
            options["intensity_gate"] = False
    elif args.views is not None or args.no_intensity_gate:
        raise ValueError("--views and --no-intensity-gate are mip-unet options")
    return options


def run(args: argparse.Namespace) -> int:
    import torch

    from napari_medsam.io.atomic import check_output_path
    from napari_medsam.training.mipunet.run import evaluate_checkpoint, train_task
    from napari_medsam.training.mipunet.trainer import TrainSettings

    if args.threads:
        torch.set_num_threads(args.threads)
    root = Path(args.data_root)
    if not root.is_dir():
        raise FileNotFoundError(f"data root not found: {root}")
    if args.evaluate:
        figures = evaluate_checkpoint(args.evaluate, root, threads=args.threads)
        print(json.dumps(figures, indent=2))
        return 0
    if args.task is None or args.out is None:
        raise ValueError("give --task and --out to train (or --evaluate CKPT)")
    check_output_path(args.out, "--out", suffixes=(".pt", ".pth"))
    settings = TrainSettings(steps=args.steps, lr=args.lr, frozen_fraction=args.frozen_fraction,
                             slices_per_step=args.slices_per_step, checkpoint_every=args.checkpoint_every,
                             max_minutes=args.max_minutes, seed=args.seed)  # fmt: skip
    command = "napari-medsam " + " ".join(sys.argv[1:])
    figures = train_task(
        args.task, root, args.out, settings, _options(args), tuple(args.crop), command
    )
    print(json.dumps(figures, indent=2))
    return 0
