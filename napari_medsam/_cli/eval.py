"""``napari-medsam eval SCAN LABELS``: simulated-click evaluation (NoC@85/90, Dice@k, box Dice)."""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path


from napari_medsam.prompts.zoom import ZOOM_IN_BY_DEFAULT
from napari_medsam._cli import _common
from napari_medsam._cli._common import (  # noqa: F401 - set_threads: also for bench
    check_outputs,
    choose_window,
    label_names,
    load_scan_and_labels,
    set_threads,
)
from napari_medsam._cli.backend_args import add_backend_args, engine_options


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "eval",
        help="simulated-click evaluation of a model on a labelled scan",
        description="Evaluate the engine on every object slice of a labelled NIfTI scan with the "
        "RITM/SimpleClick click simulator (NoC@85/90, Dice after 1/3/5 clicks, box Dice).",
    )
    parser.add_argument("scan", help="the image (NIfTI, NRRD, MetaImage or DICOM folder)")
    parser.add_argument(
        "labels_path", metavar="LABELS", help="the truth label volume (same grid; any format the scan may have)"
    )
    parser.add_argument(
        "--labels", default=None, help="comma-separated label ids (default: all present)"
    )
    parser.add_argument("--prompt", choices=("clicks", "box", "box+clicks"), default="clicks")
    parser.add_argument(
        "--max-clicks",
        type=int,
        default=None,
        help="interaction cap (default 20; 5 with --protocol 3d)",
    )
    parser.add_argument(
        "--protocol",
        choices=("2d", "3d"),
        default="2d",
        help="2d: clicks per object slice (default); 3d: the CVPR 2025 interactive 3D protocol "
        "(box on the largest slice, propagation, then clicks on 3D error components)",
    )
    parser.add_argument(
        "--min-area",
        type=int,
        default=100,
        help="skip object slices with fewer pixels (default 100)",
    )
    parser.add_argument(
        "--window", default=None, metavar="L,W", help="intensity window level,width (default: auto)"
    )
    parser.add_argument(
        "--checkpoint", default=None, help="model checkpoint (default: bundled LiteMedSAM)"
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:0, mps")
    add_backend_args(parser)
    parser.add_argument(
        "--zoom",
        choices=("on", "off"),
        default="on" if ZOOM_IN_BY_DEFAULT else "off",
        help="click model: predict corrections of a small object on a crop around it "
        f"(default {'on' if ZOOM_IN_BY_DEFAULT else 'off'})",
    )
    parser.add_argument(
        "--slices",
        default=None,
        metavar="START:STOP",
        help="only slices START <= z < STOP along the reader's slice axis (default: all)",
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)"
    )
    parser.add_argument("--json", dest="json_path", default=None, metavar="OUT.json")
    parser.add_argument("--plot", dest="plot_path", default=None, metavar="OUT.png")
    from napari_medsam._cli.eval3d import add_3d_arguments

    add_3d_arguments(parser)
    parser.set_defaults(func=run)
    return parser


def _parse_slices(text: str | None, n_z: int) -> range:
    """``--slices START:STOP`` (either side may be empty) as a range of slice indices."""
    if not text:
        return range(n_z)
    try:
        start_text, stop_text = text.split(":")
        start = int(start_text) if start_text.strip() else 0
        stop = int(stop_text) if stop_text.strip() else n_z
    except ValueError as err:
        raise ValueError(f"--slices must be START:STOP, got {text!r}") from err
    return range(n_z)[start:stop]


class _StderrProgress:
    """A progress line on stderr, refreshed at most every ``interval`` seconds."""

    def __init__(self, interval: float = 2.0) -> None:
        self.interval = interval
        self.start = time.perf_counter()
        self.last = -float("inf")

    def __call__(self, done: int, total: int, case) -> None:
        now = time.perf_counter()
        if done != total and now - self.last < self.interval:
            return
        self.last = now
        elapsed = now - self.start
        eta = elapsed / done * (total - done) if done else 0.0
        print(
            f"[eval] {done}/{total} cases (label {case.label}, z {case.z}) "
            f"{elapsed:.0f}s elapsed, ~{eta:.0f}s left",
            file=sys.stderr,
            flush=True,
        )


def run(args: argparse.Namespace) -> int:
    if getattr(args, "protocol", "2d") == "3d":
        from napari_medsam._cli.eval3d import run_3d

        return run_3d(args)
    if args.max_clicks is None:
        args.max_clicks = 20
    from napari_medsam import __version__
    from napari_medsam.evaluation.cases import iter_cases, parse_labels
    from napari_medsam.evaluation.report import (
        build_report,
        format_table,
        plot_curves,
        summarize_by_label,
        write_json,
    )
    from napari_medsam.evaluation.runner import TARGET_IOU, evaluate_volume

    if args.max_clicks < 1:
        raise ValueError("--max-clicks must be at least 1")
    check_outputs(args)
    if args.plot_path and importlib.util.find_spec("matplotlib") is None:
        print(
            "napari-medsam eval: --plot needs matplotlib: pip install 'napari-medsam[plot]'",
            file=sys.stderr,
        )
        return 1
    scan, image_zyx, labels_zyx = load_scan_and_labels(args.scan, args.labels_path)
    labels = parse_labels(args.labels, labels_zyx)
    window, window_text = choose_window(args.window, image_zyx)
    z_range = _parse_slices(args.slices, labels_zyx.shape[0])
    cases = [c for c in iter_cases(labels_zyx, labels, args.min_area) if c.z in z_range]
    if not cases:
        raise ValueError(f"no object slice of labels {labels} has at least {args.min_area} pixels")
    names = label_names(args.labels_path)
    set_threads(args.threads)
    engine = _common.load_engine(args.checkpoint, args.device, **engine_options(args))
    if hasattr(engine, "zoom_in"):
        engine.zoom_in = args.zoom == "on"
    limit = (
        "1 interaction (the box)" if args.prompt == "box" else f"max {args.max_clicks} interactions"
    )
    print(
        f"napari-medsam {__version__} eval: {engine.name} on {_common.device_of(engine, args)} "
        f"(encoder {getattr(engine, 'backend', 'torch')}), prompt {args.prompt}, "
        f"{len(cases)} cases (slices along axis 0 of shape {image_zyx.shape}), "
        f"{limit}, min area {args.min_area}",
    )
    print(window_text)
    results = evaluate_volume(
        engine,
        image_zyx,
        labels_zyx,
        window,
        cases,
        prompt=args.prompt,
        max_clicks=args.max_clicks,
        volume_key=("eval", str(Path(args.scan).resolve())),
        progress=_StderrProgress(),
    )
    per_label, overall = summarize_by_label(results, labels, args.max_clicks, args.prompt)
    print(format_table(per_label, overall, args.prompt, names))
    if args.json_path:
        settings = {
            "scan": str(Path(args.scan).resolve()),
            "labels_file": str(Path(args.labels_path).resolve()),
            "labels": labels,
            "prompt": args.prompt,
            "max_clicks": args.max_clicks,
            "min_area": args.min_area,
            "slices": args.slices,
            "target_iou": TARGET_IOU,
            "noc_thresholds": [0.85, 0.90],
            "window": {
                "lo": float(window.lo),
                "hi": float(window.hi),
                "kind": str(window.kind),
                "source": "user" if args.window else "auto",
                "description": window_text,
            },
            "checkpoint": args.checkpoint,
            "device": _common.device_of(engine, args),
            "threads": args.threads,
            "engine": engine.name,
            "image_size": int(engine.image_size),
            "slice_axis": "axis 0 of load_nifti(...).data_zyx",
            "shape_zyx": list(image_zyx.shape),
            "spacing_zyx_mm": [float(v) for v in scan.spacing_zyx_mm],
        }
        write_json(build_report(settings, per_label, overall, results, names), args.json_path)
        print(f"wrote {args.json_path}")
    if args.plot_path:
        try:
            plot_curves(
                per_label, args.plot_path, names, title=f"{engine.name}, prompt {args.prompt}"
            )
        except ImportError as err:
            print(f"napari-medsam eval: {err}", file=sys.stderr)
            return 1
        print(f"wrote {args.plot_path}")
    return 0
