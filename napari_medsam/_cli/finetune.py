"""``napari-medsam finetune``: train the Med-SA parts on labelled NIfTI volumes.

Runs the same under ``torchrun --nproc_per_node N napari-medsam finetune ...``
(DistributedDataParallel; rank 0 writes the outputs).
"""

from __future__ import annotations

import argparse
import json
import sys

from napari_medsam._cli.backend_args import add_backend_args

PUBLIC_BACKBONES = ("litemedsam", "sam_vit_b", "sam_vit_l", "sam_vit_h")
TEST_BACKBONES = ("tiny_sam", "tiny_tinyvit")


def _pair(text: str) -> tuple[str, str]:
    # split at the last ':' followed by a path, so Windows drive letters survive
    scan, sep, labels = text.rpartition(":")
    if not sep or not scan or not labels:
        raise argparse.ArgumentTypeError(f"expected SCAN.nii.gz:LABELS.nii.gz, got {text!r}")
    return scan, labels


def _labels(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--labels must be comma-separated ids, got {text!r}"
        ) from None
    if not values:
        raise argparse.ArgumentTypeError("--labels is empty")
    return values


def _window(text: str) -> tuple[float, float]:
    try:
        level, width = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--window must be LEVEL,WIDTH, got {text!r}") from None
    if width <= 0:
        raise argparse.ArgumentTypeError("--window width must be positive")
    return level, width


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "finetune",
        help="fine-tune the Med-SA parts (backbone frozen) with simulated clicks",
        description="Train Med-SA's adapters, HyP-Adpt and click embedding on labelled NIfTI "
        "volumes with SimpleClick/RITM iterative click simulation (NFL + Dice loss), the "
        "backbone frozen. Every label id is an object; cases are object slices along the "
        "reader's slice axis. A seeded held-out split is evaluated every epoch with the eval "
        "protocol. Writes the Med-SA checkpoint (OUT), OUT.state.pt (resume) and "
        "OUT.history.json. Under torchrun it runs DistributedDataParallel.",
    )
    parser.add_argument(
        "--data",
        required=True,
        nargs="+",
        type=_pair,
        metavar="SCAN:LABELS",
        help="image and label NIfTI files on one grid (any number of pairs)",
    )
    parser.add_argument(
        "--backbone",
        default="litemedsam",
        choices=PUBLIC_BACKBONES + TEST_BACKBONES,
        help="backbone (default: bundled LiteMedSAM; tiny_* are random test models)",
    )
    parser.add_argument("--backbone-checkpoint", default=None, metavar="PATH")
    parser.add_argument(
        "--out", required=True, metavar="CHECKPOINT", help="Med-SA checkpoint to write"
    )
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=int, default=1, help="passes over the training cases (1)")
    length.add_argument("--steps", type=int, default=None, help="total optimiser steps")
    parser.add_argument("--batch-size", type=int, default=8, help="cases per step and process (8)")
    parser.add_argument("--lr", type=float, default=2e-4, help="AdamW learning rate (2e-4)")
    parser.add_argument("--weight-decay", type=float, default=0.01)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:0, mps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resume", action="store_true", help="continue from OUT.state.pt")
    parser.add_argument(
        "--val-fraction", type=float, default=0.2, help="held-out fraction (0 disables; 0.2)"
    )
    parser.add_argument("--split", choices=("object", "volume"), default="object")
    parser.add_argument("--labels", type=_labels, default=None, help="label ids (default: all)")
    parser.add_argument("--window", type=_window, default=None, metavar="L,W")
    parser.add_argument("--min-area", type=int, default=100, help="smallest object slice (100 px)")
    parser.add_argument(
        "--other-axes", action="store_true", help="also train on slices along the other two axes"
    )
    parser.add_argument("--max-iter-clicks", type=int, default=3, help="iterative clicks (0..3)")
    parser.add_argument("--box-fraction", type=float, default=0.25, help="cases with a box (0.25)")
    parser.add_argument("--val-cases", type=int, default=16, help="held-out cases per epoch (16)")
    parser.add_argument("--val-max-clicks", type=int, default=20)
    parser.add_argument(
        "--parts-only",
        action="store_true",
        help="store only the Med-SA parts even for a backbone that is not bundled",
    )
    parser.add_argument(
        "--parts",
        choices=("all", "decoder"),
        default="all",
        help="what trains: every Med-SA part (all, default) or only the mask decoder's "
        "adapters on image embeddings computed once per slice (decoder: fast on a CPU)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_backend_args(parser)
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from napari_medsam.io.atomic import check_output_path
    from napari_medsam.training.config import FinetuneConfig, PromptSimConfig
    from napari_medsam.training.loop import finetune

    prompts = PromptSimConfig(max_iter_clicks=args.max_iter_clicks, box_fraction=args.box_fraction)
    config = FinetuneConfig(
        data=tuple(args.data),
        out=args.out,
        backbone=args.backbone,
        backbone_checkpoint=args.backbone_checkpoint,
        epochs=args.epochs,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        device=args.device,
        seed=args.seed,
        resume=args.resume,
        val_fraction=args.val_fraction,
        split=args.split,
        labels=args.labels,
        window=args.window,
        min_area=args.min_area,
        other_axes=args.other_axes,
        val_cases=args.val_cases,
        val_max_clicks=args.val_max_clicks,
        prompts=prompts,
        save_full=False if args.parts_only else None,
        parts=args.parts,
        backend=args.backend,
        precision=args.precision,
    )
    # before any training: never write over an input, and fail now rather than after hours
    inputs = [p for pair in config.data for p in pair] + [config.backbone_checkpoint]
    out = check_output_path(config.out, "--out", inputs)
    check_output_path(config.state_path, "--out (its .state.pt)", [*inputs, out])
    check_output_path(str(config.out) + ".history.json", "--out (its .history.json)", inputs)
    history = finetune(config, progress=not args.no_progress)
    if history.get("epochs"):  # rank 0 only
        last = history["epochs"][-1]
        summary = {
            "out": history["out"],
            "steps": last["step"],
            "epochs": last["epoch"],
            "train_cases": history["n_train_cases"],
            "params_trainable": history["params_trainable"],
            "parts": history["parts"],
            "loss_last_epoch": last["loss"],
            "val_before": history.get("val_before"),
            "val_last": last["val"],
        }
        print(json.dumps(summary, indent=1, default=str))
    elif history.get("world_size", 1) == 1:
        print(
            "napari-medsam finetune: nothing to do (already at the requested steps)",
            file=sys.stderr,
        )
    return 0
