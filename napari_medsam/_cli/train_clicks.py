"""``napari-medsam train-clicks``: build the embedded training store, train the click decoder.

::

    napari-medsam train-clicks build --data-root DATA --store STORE [--split train]
    napari-medsam train-clicks train --store STORE --heldout-store HELD --out click.pt
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
from pathlib import Path

logger = logging.getLogger(__name__)


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "train-clicks",
        help="train the click decoder on embedded slices (CPU-friendly)",
        description="Build a store of embedded training slices (fp16, memory-mapped, "
        "resumable) from labelled volumes, then train the click decoder on it with "
        "interactive click rounds. The box path stays the bundled LiteMedSAM.",
    )
    sub = parser.add_subparsers(dest="action", required=True)
    build = sub.add_parser("build", help="embed the training slices once")
    build.add_argument("--data-root", required=True, help="folder the volume paths are under")
    build.add_argument("--store", required=True, help="store folder (resumed if present)")
    build.add_argument("--split", choices=("train", "heldout"), default="train")
    build.add_argument("--capacity", type=int, default=2600)
    build.add_argument("--per-volume", type=int, nargs=2, metavar=("AXIAL", "OTHER"),
                       help="slices per volume on the slice axis and on the two others")
    build.add_argument("--seed", type=int, default=0)
    build.add_argument("--backend", choices=("auto", "torch", "openvino"), default="auto")
    train = sub.add_parser("train", help="train the click decoder")
    train.add_argument("--store", required=True, nargs="+",
                       help="one store, or several read as one (other build seeds)")
    train.add_argument("--heldout-store", help="store of held-out volumes for the quick check")
    train.add_argument("--out", required=True, help="click checkpoint to write (atomically)")
    train.add_argument("--warm-start", help="click checkpoint to start from")
    train.add_argument("--steps", type=int, default=1000)
    train.add_argument("--schedule-steps", type=int, help="length of the LR schedule (default --steps)")
    train.add_argument("--lr", type=float, default=5e-4, help="new parts' learning rate")
    train.add_argument("--lr-pretrained", type=float, default=5e-5,
                       help="learning rate of the copied LiteMedSAM decoder weights")
    train.add_argument("--superpixel-fraction", type=float, default=0.3,
                       help="share of synthetic superpixel targets")
    train.add_argument("--empty-propagation-fraction", type=float, default=0.0,
                       help="share of propagation cases past an object's end (empty target)")
    train.add_argument("--batch-size", type=int, default=8)
    train.add_argument("--max-rounds", type=int, default=8,
                       help="most gradient-free corrective rounds before the trained one")
    train.add_argument("--round-decay", type=float, default=0.75,
                       help="P(n rounds) ~ decay**n: nearer 1 trains many-click states more")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--no-hyp-adapter", action="store_true", help="ablation: plain adapter")
    train.add_argument("--no-disk-maps", action="store_true", help="ablation: no disk maps")
    train.add_argument("--fp32", action="store_true", help="no bf16 autocast")
    train.add_argument("--first-click-fraction", type=float, default=0.0,
                       help="share of click starts trained with no corrective round")
    train.add_argument("--first-click-multimask", action="store_true",
                       help="a single click gets SAM's 3 outputs, the best by the IoU head "
                            "(switches it on for a --warm-start that lacks it)")
    train.add_argument("--threads", type=int, help="torch CPU threads")
    train.add_argument("--keep-snapshots", action="store_true",
                       help="also keep every saved step as OUT_stepNNNNN.pt (for `average`)")
    average = sub.add_parser("average", help="average the snapshots of one run (SWA-style)")
    average.add_argument("checkpoints", nargs="+", help="click checkpoints of one run")
    average.add_argument("--out", required=True, help="click checkpoint to write (atomically)")
    average.add_argument("--first-click-multimask", choices=("on", "off"),
                         help="set the single-click rule of the result (default: as trained)")
    parser.set_defaults(func=run)
    return parser


def _build(args) -> int:
    import napari_medsam.training.clicks.build as builder
    from napari_medsam.model.engine import load_engine
    from napari_medsam.training.clicks import sources
    from napari_medsam.training.clicks.encode import training_encoder

    if args.per_volume:
        builder.SLICES_AXIAL, builder.SLICES_OTHER = args.per_volume
    root = Path(args.data_root)
    if not root.is_dir():
        raise FileNotFoundError(f"data root not found: {root}")
    engine = load_engine("litemedsam", device="cpu")
    store = builder.build_store(
        sources.volumes(args.split), root, args.store, training_encoder(engine, args.backend),
        capacity=args.capacity, seed=args.seed,
    )
    print(f"{store.count} records in {args.store}")
    return 0


def _train(args) -> int:
    import torch

    from napari_medsam.model.click.decoder import ClickConfig
    from napari_medsam.model.engine import load_engine
    from napari_medsam.training.clicks import sources, validate
    from napari_medsam.training.clicks.store import SliceStore, open_stores
    from napari_medsam.training.clicks.trainer import Trainer, TrainSettings, new_or_warm_decoder

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    store = open_stores(args.store)
    engine = load_engine("litemedsam", device="cpu")
    config = ClickConfig(hyp_adapter=not args.no_hyp_adapter, disk_maps=not args.no_disk_maps,
                         first_click_multimask=args.first_click_multimask)
    decoder = new_or_warm_decoder(engine.model, config, args.warm_start)
    if args.first_click_multimask and not decoder.config.first_click_multimask:
        # the outputs exist in every SAM decoder: switching the choice on loses nothing
        decoder.config = dataclasses.replace(decoder.config, first_click_multimask=True)
    if decoder.config != config:
        raise ValueError(f"--warm-start has config {decoder.config}, asked for {config}")
    train_records = [i for i, m in enumerate(store.meta) if m["split"] == "train"]
    if not train_records:
        raise ValueError(f"{args.store} holds no training records")
    settings = TrainSettings(steps=args.steps, batch_size=args.batch_size,
                             max_rounds=args.max_rounds, round_decay=args.round_decay,
                             bf16=not args.fp32, seed=args.seed,
                             schedule_steps=args.schedule_steps, lr_new=args.lr,
                             lr_pretrained=args.lr_pretrained,
                             first_click_fraction=args.first_click_fraction,
                             keep_snapshots=args.keep_snapshots)
    trainer = Trainer(engine.model, decoder, store, train_records, settings)
    trainer.sampler.superpixel_fraction = args.superpixel_fraction
    trainer.sampler.empty_propagation_fraction = args.empty_propagation_fraction
    evaluate = None
    if args.heldout_store:
        held = SliceStore(args.heldout_store)
        cases = validate.heldout_cases(held)

        def evaluate(tr):
            return validate.click_curve(tr, held, cases)

    card = {
        "data": sources.SOURCES_CARD,
        "train_volumes": sorted({m["volume"] for m in store.meta}),
        "heldout_volumes": [v.name for v in sources.volumes("heldout")],
        "records": len(train_records),
        "warm_start": args.warm_start,
        "command": "napari-medsam train-clicks train " + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()
            if k not in ("func", "command", "action") and v not in (None, False)
        ),
    }
    out = Path(args.out)
    trainer.fit(out, out.with_suffix(".log.jsonl"), card, evaluate)
    print(json.dumps({"out": str(out), "steps": trainer.step}))
    return 0


def _average(args) -> int:
    from napari_medsam.io.atomic import check_output_path
    from napari_medsam.model.click.checkpoint import save_click_decoder
    from napari_medsam.model.engine import load_engine
    from napari_medsam.training.clicks.average import average_click_decoders

    out = Path(args.out)
    check_output_path(out, "--out", args.checkpoints, suffixes=(".pt", ".pth"))
    engine = load_engine("litemedsam", device="cpu")
    rule = None if args.first_click_multimask is None else args.first_click_multimask == "on"
    decoder, cards = average_click_decoders(args.checkpoints, engine.model, rule)
    card = dict(cards[-1], averaged=[
        {"path": str(p), "steps_done": c.get("steps_done")} for p, c in zip(args.checkpoints, cards, strict=True)
    ])
    save_click_decoder(decoder, engine.model, out, card)
    print(json.dumps({"out": str(out), "averaged": len(cards)}))
    return 0


def run(args: argparse.Namespace) -> int:
    actions = {"build": _build, "train": _train, "average": _average}
    return actions[args.action](args)
