"""``napari-medsam convert``: write a fresh Med-SA checkpoint for a backbone.

All Med-SA parts are present and zero-initialised, so the converted model
computes exactly what the backbone computes until it is fine-tuned.
"""

from __future__ import annotations

import argparse
import json
import sys

PUBLIC_BACKBONES = ("litemedsam", "sam_vit_b", "sam_vit_l", "sam_vit_h")
TEST_BACKBONES = ("tiny_sam", "tiny_tinyvit")


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "convert",
        help="write a fresh Med-SA checkpoint (adapters at zero) for a backbone",
        description="Wrap a LiteMedSAM or SAM ViT-B/L/H backbone into Med-SA (adapters, "
        "HyP-Adpt, SD-Trans, click embedding; all zero-initialised) and save it.",
    )
    parser.add_argument(
        "--backbone",
        required=True,
        choices=PUBLIC_BACKBONES + TEST_BACKBONES,
        help="backbone (tiny_* are random test models)",
    )
    parser.add_argument(
        "--backbone-checkpoint",
        default=None,
        metavar="PATH",
        help="the backbone's weights (default: bundled LiteMedSAM; random for SAM)",
    )
    parser.add_argument("--out", required=True, metavar="MEDSA.pt", help="output file")
    parser.add_argument(
        "--parts-only",
        action="store_true",
        help="store only the Med-SA parts and the backbone's identity (small file); "
        "default: a self-contained file with the backbone weights",
    )
    parser.add_argument("--depth", type=int, default=8, help="slab depth D for SD-Trans (8)")
    parser.add_argument("--adapter-ratio", type=float, default=0.25)
    parser.add_argument("--no-sd-trans", action="store_true", help="leave out the depth branch")
    parser.add_argument("--no-hyp-adapter", action="store_true", help="plain decoder adapter")
    parser.add_argument("--no-click-embed", action="store_true", help="leave out click maps")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from napari_medsam.model.medsa.build import backbone_state_dict_from, build_medsa
    from napari_medsam.model.medsa.checkpoint import save_medsa
    from napari_medsam.io.atomic import check_output_path
    from napari_medsam.model.medsa.config import MedSAConfig

    check_output_path(args.out, "--out", [args.backbone_checkpoint])  # before the minutes of work

    config = MedSAConfig(
        backbone=args.backbone,
        adapter_ratio=args.adapter_ratio,
        sd_trans=not args.no_sd_trans,
        hyp_adapter=not args.no_hyp_adapter,
        click_embed=not args.no_click_embed,
        depth=args.depth,
    )
    weights = backbone_state_dict_from(args.backbone, args.backbone_checkpoint)
    if weights is None:
        print(
            f"napari-medsam convert: no --backbone-checkpoint, {args.backbone} keeps random weights",
            file=sys.stderr,
        )
        if args.parts_only:
            raise ValueError("--parts-only needs backbone weights that can be found again")
    model = build_medsa(args.backbone, weights, config)
    path = save_medsa(model, args.out, full=not args.parts_only)
    print(json.dumps({"out": str(path), "backbone": args.backbone, "full": not args.parts_only}))
    return 0
