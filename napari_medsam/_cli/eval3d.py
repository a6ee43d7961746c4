"""``napari-medsam eval SCAN LABELS --protocol 3d``: the interactive 3D protocol (CVPR 2025).

Not a subcommand of its own: ``_cli/eval.py`` hands ``--protocol 3d`` runs to
:func:`run_3d`, which reuses that module's engine loader, window choice and label
names (looked up at call time, so tests that replace them apply here too).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

#: Clicks after the box in the CVPR 2025 protocol.
CLICKS_3D = 5


def _unit(flag: str):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = -1.0
        if not 0.0 <= value <= 1.0:
            raise argparse.ArgumentTypeError(f"{flag} needs a number in [0, 1], got {text!r}")
        return value

    return parse


def add_3d_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``eval`` options that only ``--protocol 3d`` reads."""
    group = parser.add_argument_group("--protocol 3d")
    group.add_argument("--box", dest="box_kind", choices=("loose", "tight"), default="loose",
                       help="first prompt: a loose box as users draw it (2-10 screen px out, "
                            "shifted up to 2 px; seeded) or the truth's tight box")  # fmt: skip
    group.add_argument("--box-seed", type=int, default=0, help="seed of the loose boxes")
    group.add_argument("--stop-score", type=_unit("--stop-score"), default=None, metavar="IOU",
                       help="propagation stops below this predicted IoU (default: the rule)")  # fmt: skip
    group.add_argument("--stop-overlap", type=_unit("--stop-overlap"), default=None,
                       metavar="IOU", help="... or below this IoU with the previous slice "
                       "(default: fitted to spacing and object size)")  # fmt: skip
    group.add_argument("--mask-prompt", choices=("none", "logits", "binary"), default=None,
                       help="the previous slice's mask as the model's dense prompt during "
                            "propagation (default: the model's own choice)")  # fmt: skip
    group.add_argument("--between", choices=("fill", "propagate", "keep"), default=None,
                       help="after a click, the slices between corrected slices are filled, "
                            "propagated or kept (default: the app's policy)")  # fmt: skip
    group.add_argument("--window-rule", choices=("display", "preset", "percentile"),
                       default=None, help="CT without --window: the model's window per object "
                       "from its box: the display's soft-tissue window, the CT preset that fits "
                       "the box and its surroundings (lung, bone, soft tissue) or their "
                       "percentiles (default: the measured one); --window is always kept")  # fmt: skip
    group.add_argument("--spacing-report", nargs="*", default=None, metavar="REPORT.json",
                       help="also print figures grouped by slice thickness, over this run and "
                            "the given earlier --json reports")  # fmt: skip


def _model_window(args: argparse.Namespace, window, window_text: str):
    """(window or ObjectWindowRule, text): the user's ``--window`` as given, else the rule
    on the auto window (CT: the soft-tissue window the display starts with)."""
    from napari_medsam.prompts.object_window import DEFAULT_WINDOW_RULE, ObjectWindowRule

    if args.window:
        return window, window_text
    rule = getattr(args, "window_rule", None) or DEFAULT_WINDOW_RULE
    is_ct = window.kind == "ct"  # auto_window's HU test
    if rule != "display" and is_ct:
        window_text += f"; per object: the {rule} rule on its first box (prompts.object_window)"
    return ObjectWindowRule(rule, window, is_ct), window_text


def run_3d(args: argparse.Namespace) -> int:
    """Run :func:`napari_medsam.evaluation.protocol3d.run_protocol3d` from parsed ``eval`` arguments.

    Uses ``scan``, ``labels_path``, ``labels``, ``max_clicks`` (None: 5),
    ``window``, ``checkpoint``, ``device`` and ``json_path``; prints a table per label.
    """
    from napari_medsam import __version__
    from napari_medsam._cli import _common
    from napari_medsam._cli.backend_args import engine_options
    from napari_medsam.evaluation.cases import parse_labels
    from napari_medsam.evaluation.protocol3d import Protocol3DSettings, run_protocol3d
    from napari_medsam.evaluation.report import write_json
    from napari_medsam.evaluation.report3d import (
        format_spacing_report,
        format_stops3d,
        format_table3d,
    )
    from napari_medsam.tasks.policy import DEFAULT_POLICY, RepropagationPolicy
    from napari_medsam.tasks.propagate import default_settings

    max_clicks = CLICKS_3D if args.max_clicks is None else int(args.max_clicks)
    if max_clicks < 0:
        raise ValueError("--max-clicks must not be negative")
    _common.check_outputs(args)
    scan, image_zyx, labels_zyx = _common.load_scan_and_labels(args.scan, args.labels_path)
    labels = parse_labels(args.labels, labels_zyx)
    window, window_text = _common.choose_window(args.window, image_zyx)
    model_window, window_text = _model_window(args, window, window_text)
    names = _common.label_names(args.labels_path)
    engine = _common.load_engine(args.checkpoint, args.device, **engine_options(args))
    if hasattr(engine, "zoom_in"):
        engine.zoom_in = args.zoom == "on"
    print(
        f"napari-medsam {__version__} eval --protocol 3d: {engine.name} on {_common.device_of(engine, args)}, "
        f"{len(labels)} objects, box on the largest slice + propagation, then up to "
        f"{max_clicks} clicks (shape {image_zyx.shape}, slices along axis 0)"
    )
    print(window_text)
    start = time.perf_counter()

    def progress(done: int, total: int, label: int) -> None:
        print(
            f"[eval 3d] {done}/{total} objects (label {label}) "
            f"{time.perf_counter() - start:.0f}s elapsed",
            file=sys.stderr,
            flush=True,
        )

    between = getattr(args, "between", None)
    policy = RepropagationPolicy(
        between or DEFAULT_POLICY.gaps, DEFAULT_POLICY.clear_past_end, DEFAULT_POLICY.fill_refine
    )
    overrides = {
        k: getattr(args, k, None) for k in ("stop_score", "stop_overlap", "mask_prompt")
        if getattr(args, k, None) is not None
    }  # fmt: skip
    box_kind, box_seed = getattr(args, "box_kind", "loose"), int(getattr(args, "box_seed", 0))
    settings = Protocol3DSettings(
        max_clicks=max_clicks,
        spacing_zyx_mm=tuple(float(v) for v in scan.spacing_zyx_mm),
        cache_key_prefix=("eval3d", str(Path(args.scan).resolve())),
        propagate_kwargs=overrides,
        policy=policy,
        box=box_kind,
        box_seed=box_seed,
    )
    report = run_protocol3d(
        engine, image_zyx, labels_zyx, labels, model_window, settings, names, progress
    )
    print(format_table3d(report))
    print(format_stops3d(report))
    report["settings"] = {
        "scan": str(Path(args.scan).resolve()),
        "labels_file": str(Path(args.labels_path).resolve()),
        "labels": labels,
        "max_clicks": max_clicks,
        "window": {"lo": float(window.lo), "hi": float(window.hi), "kind": str(window.kind),
                   "rule": getattr(model_window, "rule", "user")},
        "checkpoint": args.checkpoint,
        "device": _common.device_of(engine, args),
        "engine": engine.name,
        "shape_zyx": list(image_zyx.shape),
        "spacing_zyx_mm": [float(v) for v in scan.spacing_zyx_mm],
        "propagation": {**default_settings(), **overrides},
    }
    earlier = getattr(args, "spacing_report", None)
    if earlier is not None:
        reports = [report] + [json.loads(Path(p).read_text()) for p in earlier]
        print("\nby slice thickness (objects weigh equally)")
        print(format_spacing_report(reports))
    if args.json_path:
        write_json(report, args.json_path)
        print(f"wrote {args.json_path}")
    return 0
