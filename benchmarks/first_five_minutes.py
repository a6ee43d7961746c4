"""The first five minutes, measured and photographed: the app as a new user meets it.

Opens the app exactly as ``napari-medsam`` does (window sized to the screen, the
phantom sample, the dock, the bundled LiteMedSAM loading as the dock opens), then:

1. waits for the dock's "ready" status and records the load time;
2. clicks inside the liver: the default click model segments it, and the first
   prompt's latency is recorded against the usual per-slice time;
3. draws a box around the liver on another slice (the usual per-slice time);
4. opens the dock's folds;
5. loads the plain, box-only LiteMedSAM (``Load checkpoint…`` with
   ``litemedsam``) and clicks on a fresh slice: the dock must say what to do.

Each step saves a full-window screenshot. It prints the window and canvas
geometry (canvas width as a share of the window) and the timings as one JSON.

Run on a machine without a display under a 1920 x 1080 virtual screen::

    xvfb-run -a -s "-screen 0 1920x1080x24" python benchmarks/first_five_minutes.py --out shots/
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def _wait(app, until, timeout_s: float) -> float:
    start = time.perf_counter()
    while not until():
        app.processEvents()
        time.sleep(0.01)
        if time.perf_counter() - start > timeout_s:
            raise TimeoutError(f"waited {timeout_s} s")
    return time.perf_counter() - start


def _settle(app, seconds: float = 0.5) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        app.processEvents()
        time.sleep(0.01)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("shots"))
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    import torch

    torch.set_num_threads(args.threads)
    from qtpy.QtWidgets import QApplication

    from napari_medsam._cli.app import build_viewer
    from napari_medsam.io.phantom import make_phantom

    opened = time.perf_counter()
    viewer, widget = build_viewer(None)
    app = QApplication.instance()
    window = viewer.window._qt_window  # geometry only: where the pixels went
    window.show()
    _settle(app, 1.0)
    status_at_open = widget.controls.status_label.text()
    viewer.screenshot(path=str(args.out / "1_opened.png"), canvas_only=False)
    load_s = _wait(app, lambda: widget.engine is not None and not widget.model_runner.busy, 180)
    default_engine = widget.engine
    _settle(app)
    status_ready = widget.controls.status_label.text()
    viewer.screenshot(path=str(args.out / "2_ready.png"), canvas_only=False)

    canvas = viewer.window._qt_viewer.canvas.native
    geometry = {
        "screen": list(app.primaryScreen().geometry().getRect()),
        "window": list(window.geometry().getRect()),
        "canvas_wh": [canvas.width(), canvas.height()],
        "dock_width": widget.width(),
        "dock_height_needed": widget.sizeHint().height(),
    }
    geometry["canvas_share_of_window_width"] = round(canvas.width() / window.width(), 3)

    phantom = make_phantom()  # the sample's own volume and truth
    liver = phantom.labels_zyx == 1
    z = int(np.argmax(liver.sum(axis=(1, 2))))
    viewer.dims.set_point(0, z * phantom.spacing_zyx_mm[0])
    ys, xs = np.nonzero(liver[z])
    image = widget.image
    clicks, boxes = viewer.layers["clicks"], viewer.layers["boxes"]
    active_before = viewer.layers.selection.active.name
    centre = (z, int(np.median(ys)), int(np.median(xs)))
    before = widget.last_latency_ms
    clicks.add(clicks.world_to_data(image.data_to_world(centre)))
    _wait(app, lambda: widget.last_latency_ms != before, 60)
    first_click_ms = widget.last_latency_ms
    clicked = widget.labels.data[z] == 1
    click_dice = 2 * (clicked & liver[z]).sum() / max(clicked.sum() + liver[z].sum(), 1)
    _settle(app)
    click_message = widget.controls.message_label.text()
    viewer.screenshot(path=str(args.out / "3_click_first.png"), canvas_only=False)

    z = z + 2  # a slice not embedded yet: the usual per-slice time
    ys, xs = np.nonzero(liver[z])
    corners = [(z, ys.min() - 3, xs.min() - 3), (z, ys.max() + 3, xs.max() + 3)]
    (z0, y0, x0), (_, y1, x1) = (boxes.world_to_data(image.data_to_world(c)) for c in corners)
    before = widget.last_latency_ms
    boxes.add_rectangles(np.array([[z0, y0, x0], [z0, y0, x1], [z0, y1, x1], [z0, y1, x0]]))
    _wait(app, lambda: widget.last_latency_ms != before, 60)
    first_ms = widget.last_latency_ms
    painted = widget.labels.data[z] == 1
    dice = 2 * (painted & liver[z]).sum() / max(painted.sum() + liver[z].sum(), 1)
    _settle(app)
    viewer.screenshot(path=str(args.out / "4_first_box.png"), canvas_only=False)

    # a second box on another slice: the usual per-slice time, for comparison
    z2 = z - 2
    ys2, xs2 = np.nonzero(liver[z2])
    corners = [(z2, ys2.min() - 3, xs2.min() - 3), (z2, ys2.max() + 3, xs2.max() + 3)]
    (z0, y0, x0), (_, y1, x1) = (boxes.world_to_data(image.data_to_world(c)) for c in corners)
    before = widget.last_latency_ms
    boxes.add_rectangles(np.array([[z0, y0, x0], [z0, y0, x1], [z0, y1, x1], [z0, y1, x0]]))
    _wait(app, lambda: widget.last_latency_ms != before, 60)
    usual_ms = widget.last_latency_ms

    widget.controls.advanced_fold.set_expanded(True)
    widget.fold_3d.set_expanded(True)
    _settle(app)
    viewer.screenshot(path=str(args.out / "5_folds_open.png"), canvas_only=False)
    widget.controls.advanced_fold.set_expanded(False)
    widget.fold_3d.set_expanded(False)

    # a box-only checkpoint: a click on a fresh slice must say what to do
    job = widget.load_checkpoint("litemedsam")
    _wait(app, lambda: widget.engine is not None and widget.engine is not default_engine
          and not widget.model_runner.busy, 120)
    del job
    _settle(app)
    z3 = z2 - 3
    ys3, xs3 = np.nonzero(liver[z3])
    viewer.dims.set_point(0, z3 * phantom.spacing_zyx_mm[0])
    clicks.add(clicks.world_to_data(image.data_to_world((z3, int(np.median(ys3)), int(np.median(xs3))))))
    _settle(app, 2.0)
    box_only_message = widget.controls.message_label.text()
    box_only_active = viewer.layers.selection.active.name
    box_only_painted = int((widget.labels.data[z3] > 0).sum())
    viewer.screenshot(path=str(args.out / "6_box_only_click.png"), canvas_only=False)

    report = {
        "seconds_to_window": round(time.perf_counter() - opened - load_s, 2),
        "status_at_open": status_at_open,
        "model_load_s_after_open": round(load_s, 2),
        "status_ready": status_ready,
        "active_layer_at_start": active_before,
        "message_after_click_first": click_message,
        "first_click_ms_after_ready": round(first_click_ms, 1),
        "first_click_dice": round(float(click_dice), 3),
        "box_ms_fresh_slice": round(first_ms, 1),
        "second_box_ms_fresh_slice": round(usual_ms, 1),
        "box_dice": round(float(dice), 3),
        "box_only_model": widget.engine.name,
        "box_only_click_message": box_only_message,
        "box_only_active_layer": box_only_active,
        "box_only_click_painted_px": box_only_painted,
        **geometry,
        "torch_threads": torch.get_num_threads(),
    }
    print(json.dumps(report, indent=2))
    from napari_medsam.io.atomic import atomic_write_text

    atomic_write_text(args.out / "report.json", json.dumps(report, indent=2) + "\n")
    viewer.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
