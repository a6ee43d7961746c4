"""``napari-medsam segment``: box / click segmentation of a scan (NIfTI, NRRD, MetaImage, DICOM) without the GUI.

Coordinates are voxel indices of the file's own array, as ``nibabel``'s
``img.dataobj[i, j, k]``: what ITK-SNAP or 3D Slicer show as voxel indices of
the file (0-based). A box lies on one slice of the axis the viewer slides along
(the file axis closest to superior-inferior); its four numbers index the two
other file axes, in file order, and its fifth the slice.

Or give them as the app shows them: ``--box-zyx``, ``--point-zyx`` and
``--neg-point-zyx`` take display voxels (z, y, x), the "voxel zyx" of the
status bar under the cursor (which also shows the file's i, j, k).

With ``--propagate`` the object is then followed up and down through the volume
from the prompted slices (kept as segmented): the app's Re-propagate from all of
them, run on the same annotation session object (its policy and measured stop
rules), so the app, this command and ``eval --protocol 3d`` share one policy.

With ``--negatives-from LABELS`` (a label file on the scan's grid, e.g. an
earlier ``--out``) the objects already there, other than ``--label``, become
negative clicks inside each box and each propagated slice's box, so the new
object stays out of them. Meant for click-trained models (SAM, Med-SA): the
box-trained LiteMedSAM does worse with any click (see
``napari_medsam/prompts/negatives.py``).
"""

from __future__ import annotations

import argparse
import logging
import sys

import numpy as np

from napari_medsam._cli.backend_args import engine_options
from napari_medsam._cli.segment_args import add_segment_arguments, plain_help
from napari_medsam._cli.segment_prompts import load_negative_labels, slice_prompts

logger = logging.getLogger(__name__)


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``segment`` subcommand."""
    parser = subparsers.add_parser(
        "segment",
        help="segment a scan from boxes / clicks given as file voxel indices",
        description=plain_help(__doc__),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_segment_arguments(parser)
    parser.set_defaults(func=run)
    return parser


def check_slice_content(raw_yx: np.ndarray, image_yx: np.ndarray, z: int, window) -> None:
    """Refuse a prompted slice with nothing to segment (all NaN, or blank in the window).

    A model still draws a plausible-looking mask on a blank slice; this says why not.

    Raises
    ------
    ValueError
        The slice holds no finite intensity, or is one flat value inside the window.
    """
    finite = np.isfinite(raw_yx)
    if not finite.any():
        raise ValueError(f"slice {z} holds no finite intensity (all NaN or infinite): "
                         "nothing to segment there")  # fmt: skip
    if float(np.ptp(image_yx)) < 1e-6:
        value = float(np.asarray(raw_yx)[finite].flat[0])
        raise ValueError(
            f"slice {z} is blank in the intensity window [{window.lo:g}, {window.hi:g}] "
            f"(every voxel shows the same, e.g. {value:g}): nothing to segment there; "
            "check the slice index or give --window"
        )
    if not finite.all():
        print(f"warning: slice {z}: {int((~finite).sum())} voxels are NaN or infinite "
              "(shown as the window's low end)", file=sys.stderr)  # fmt: skip


def propagate_seeds(
    session,
    engine,
    volume_zyx,
    window,
    seeds: dict[int, tuple[np.ndarray, float]],
    label: int,
) -> tuple[set[int], list]:
    """Paint the prompted slices into ``session`` and re-propagate from them, headless.

    The app's Re-propagate from every prompted slice at once, on the same
    :class:`~napari_medsam.session.annotation.AnnotationSession` verbs and policy
    (:mod:`napari_medsam.tasks.policy`, the session's ``policy`` and ``options``):
    beyond the outermost prompted slices the object is propagated outwards; between
    neighbouring ones the gap is filled, propagated or kept (``policy.gaps``). The
    prompted slices are corrected slices: never re-segmented.

    Parameters
    ----------
    session : AnnotationSession
        On the (Z, Y, X) label volume the CLI writes.
    engine : Engine
    volume_zyx : np.ndarray
        (Z, Y, X) scan in display order.
    window : IntensityWindow
    seeds : dict
        z -> ((Y, X) bool mask of the object on a prompted slice, the model's score).
    label : int

    Returns
    -------
    propagated : set of int
        The slices the propagation painted (prompted slices excluded).
    ends : list of DirectionEnd
        Where each direction stopped, and why.
    """
    from napari_medsam.session.requests import run_request
    from napari_medsam.tasks.propagate import DEFAULT_MIN_AREA
    from napari_medsam.types import DirectionEnd, SliceMask

    for z, (mask_yx, score) in sorted(seeds.items()):
        if np.count_nonzero(mask_yx) < DEFAULT_MIN_AREA:  # nothing to spread from there
            print(f"warning: slice {z}: under {DEFAULT_MIN_AREA} px, not propagated from",
                  file=sys.stderr)  # fmt: skip
            continue
        session.apply_result(SliceMask(z, label, mask_yx, score, None), by_user=True)
    if not session.state.corrected_zs(label):
        return set(), []
    propagated: set[int] = set()
    ends: list = []
    request = session.propagate_request(label, again=True)  # before the run: it takes the
    with session.run(label, "propagate"):  # corrected slices' "changed" marks
        for item in run_request(engine, volume_zyx, window, request, "segment-cli"):
            if isinstance(item, DirectionEnd):
                ends.append(item)
            elif isinstance(item, SliceMask) and session.apply_result(item, by_user=False):
                propagated.add(int(item.z))
    return propagated, ends


def _session(args, labels_zyx, negatives_from_zyx, spacing_zyx_mm):
    """The annotation session of ``--propagate``: the app's policy, the flags' options."""
    from napari_medsam.session.annotation import AnnotationSession
    from napari_medsam.tasks.policy import DEFAULT_POLICY, RepropagationPolicy
    from napari_medsam.tasks.propagate_options import PropagationOptions

    gaps = getattr(args, "between", None) or DEFAULT_POLICY.gaps
    policy = RepropagationPolicy(gaps, DEFAULT_POLICY.clear_past_end, DEFAULT_POLICY.fill_refine)
    options = PropagationOptions(
        stop_score=args.stop_score, stop_overlap=getattr(args, "stop_overlap", None),
        slab_depth=getattr(args, "slab_depth", None), negatives_from_zyx=negatives_from_zyx,
        mask_prompt=getattr(args, "mask_prompt", None),
        spacing_zyx_mm=tuple(float(v) for v in spacing_zyx_mm),
    )  # fmt: skip
    return AnnotationSession(labels_zyx, policy=policy, options=options)


def run(args: argparse.Namespace) -> int:
    """Segment the prompted slices and write the label volume; returns the exit code."""
    from napari_medsam.io.atomic import check_output_path
    from napari_medsam.io.volumes import labels_format, load_volume, save_labels
    from napari_medsam.model.engine import load_engine
    from napari_medsam.prompts.intensity import IntensityWindow, auto_window
    from napari_medsam.tasks.segment import embed_slice, predict_slice
    from napari_medsam.types import SlicePrompt

    if not (args.box or args.point or args.box_zyx or args.point_zyx):
        raise ValueError("give at least one --box, --point, --box-zyx or --point-zyx")
    if not 0 < args.label < 65536:
        raise ValueError(f"--label must be in 1..65535, got {args.label}")
    negatives_from = getattr(args, "negatives_from", None)
    # before any work: never write over an input, and fail now rather than after inference
    kind = labels_format(args.out)
    inputs = [args.scan, negatives_from, args.checkpoint]
    check_output_path(args.out, "--out", inputs, allow_dir=kind == "dicom")
    volume = load_volume(args.scan)
    metadata = volume.layer_metadata()
    prompts = slice_prompts(args, metadata)
    others_zyx = None if negatives_from is None else load_negative_labels(negatives_from, volume)
    window = (
        IntensityWindow.from_level_width(*args.window, kind="manual")
        if args.window is not None
        else auto_window(volume.data_zyx)
    )
    engine = load_engine(args.checkpoint, device=args.device, **engine_options(args))
    if hasattr(engine, "zoom_in"):
        engine.zoom_in = args.zoom == "on"
    dtype = np.uint8 if args.label < 256 else np.uint16
    labels_zyx = np.zeros(volume.data_zyx.shape, dtype=dtype)
    seeds: dict[int, np.ndarray] = {}
    scores: dict[int, float] = {}
    for z in sorted(prompts):
        p = prompts[z]
        points = np.array(p["points_yx"], np.float32).reshape(-1, 2)
        point_labels = np.array(p["labels"], np.int64)
        image_yx = window.apply(volume.data_zyx[z])
        if not p["boxes_yxyx"] and not (point_labels == 1).any():
            raise ValueError(f"slice {z} has only negative clicks: add a --point or --box there")
        check_slice_content(volume.data_zyx[z], image_yx, z, window)
        embedded = embed_slice(engine, volume.data_zyx, window, z, "segment-cli")
        others_yx = None if others_zyx is None else others_zyx[z]
        # one prediction per box (SAM takes one box), clicks shared; the union is kept
        boxes = p["boxes_yxyx"] or [None]
        for box in boxes:
            prompt = SlicePrompt(
                points_yx=points,
                point_labels=point_labels,
                box_yxyx=None if box is None else np.array(box, np.float32),
            )
            pred = predict_slice(engine, embedded, prompt, args.label, others_yx)
            if not np.isfinite(pred.score):
                raise ValueError(f"slice {z}: the model gave a non-finite score ({pred.score})")
            if not np.asarray(pred.mask_yx).any():
                print(f"warning: slice {z}: the model found nothing for this prompt",
                      file=sys.stderr)  # fmt: skip
            labels_zyx[z][pred.mask_yx] = args.label
            seeds[z] = seeds.get(z, np.zeros(image_yx.shape, bool)) | np.asarray(pred.mask_yx, bool)
            scores[z] = min(scores.get(z, 1.0), float(pred.score))
            print(f"slice {z}: {int(pred.mask_yx.sum())} voxels, predicted IoU {pred.score:.3f}")
    if getattr(args, "propagate", False):
        session = _session(args, labels_zyx, others_zyx, volume.spacing_zyx_mm)
        seeded = {z: (mask, scores[z]) for z, mask in seeds.items()}
        propagated, ends = propagate_seeds(session, engine, volume.data_zyx, window, seeded,
                                           args.label)  # fmt: skip
        zs = sorted(z for z in range(labels_zyx.shape[0]) if (labels_zyx[z] == args.label).any())
        span = f"slices {zs[0]}..{zs[-1]}" if zs else "no slice"
        print(f"propagated to {len(propagated)} more slices: label {args.label} on {span}")
        for end in ends:
            print(f"  {end.describe()}")
    out = save_labels(labels_zyx, args.out, metadata)
    print(f"wrote {out} ({int((labels_zyx > 0).sum())} voxels labelled {args.label})")
    return 0
