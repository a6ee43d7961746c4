"""The first five minutes, measured and photographed: the app as a new user meets it.

Opens the app exactly as ``napari-medsam`` does (window sized to the screen, the
phantom sample, the dock, the bundled LiteMedSAM loading as the dock opens), then:

1. waits for the dock's "ready" status and records the load time;
2. clicks inside the liver (the box-only model asks for a box at that point);
3. draws a box around the liver and records the first prompt's latency;
4. opens the dock's folds.

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
    clicks.add(clicks.world_to_data(image.data_to_world(centre)))
    _settle(app)
    click_message = widget.controls.message_label.text()
    viewer.screenshot(path=str(args.out / "3_click_first.png"), canvas_only=False)

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

    report = {
        "seconds_to_window": round(time.perf_counter() - opened - load_s, 2),
        "status_at_open": status_at_open,
        "model_load_s_after_open": round(load_s, 2),
        "status_ready": status_ready,
        "active_layer_at_start": active_before,
        "message_after_click_first": click_message,
        "first_box_ms_after_ready": round(first_ms, 1),
        "second_box_ms_fresh_slice": round(usual_ms, 1),
        "first_box_dice": round(float(dice), 3),
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
