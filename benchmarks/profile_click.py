"""Where the milliseconds of click -> painted go, in the real dock with the real engine.

Runs ``napari-medsam bench``'s click path (a headless viewer, the dock added through
the manifest, the default click engine) on the bench's 512 x 512 phantom, and
profiles the GUI thread and the worker thread separately with cProfile (the
worker's profile covers each job's generator). Prints the median click -> painted
ms, each thread's busy ms per click, and the top functions of both.

    QT_QPA_PLATFORM=offscreen python benchmarks/profile_click.py [--clicks 30]
        [--backend openvino] [--top 25] [--pile 0]

``--pile N`` first clicks N times on the slice (the figure for "the 400th click").
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import statistics
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clicks", type=int, default=30)
    ap.add_argument("--backend", default="openvino")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--pile", type=int, default=0, help="clicks made before the profiled ones")
    ap.add_argument("--sort", default="tottime")
    ap.add_argument("--dump", default=None, help="write PREFIX_gui.prof and PREFIX_worker.prof")
    args = ap.parse_args()

    import napari
    import torch
    from qtpy.QtWidgets import QApplication

    import napari_medsam._qt.workers as workers
    from napari_medsam._cli.bench import WIDGET, _process_until, _test_volume
    from napari_medsam.model.engine import load_engine

    torch.set_num_threads(2)
    worker_prof = cProfile.Profile(time.thread_time)  # CPU time: load-proof
    worker_busy: list[float] = []  # wall ms of each job
    original = workers._drive

    def profiled_drive(task):
        prof = worker_prof
        t0 = time.perf_counter()
        prof.enable()
        try:
            yield from original(task)
        finally:
            prof.disable()
            worker_busy.append(time.perf_counter() - t0)

    workers._drive = profiled_drive
    engine = load_engine(None, device="cpu", backend=args.backend, precision=args.precision,
                         background=False)  # fmt: skip
    phantom, window = _test_volume(24)
    viewer = napari.Viewer(show=False)
    app = QApplication.instance()
    image = viewer.add_image(phantom.image_zyx, name="CT", scale=phantom.spacing_zyx_mm)
    image.contrast_limits = (window.lo, window.hi)
    _, widget = viewer.window.add_plugin_dock_widget(*WIDGET)
    widget.engine = engine
    clicks = viewer.layers["clicks"]
    painted: list[float] = []
    widget.segment_runner.result.connect(lambda _r: painted.append(time.perf_counter()))
    z = phantom.image_zyx.shape[0] // 2
    ys, xs = np.nonzero(phantom.labels_zyx[z] > 0)
    rng = np.random.default_rng(0)

    def click(i: int) -> float:
        before = len(painted)
        k = int(rng.integers(0, len(ys)))
        t0 = time.perf_counter()
        clicks.add(clicks.world_to_data(image.data_to_world((z, ys[k], xs[k]))))
        _process_until(app, lambda: len(painted) > before, 600)
        return (painted[-1] - t0) * 1000.0

    widget.prefetch._timer.setInterval(10**7)  # no prefetch: only the clicks' own work
    click(0)  # embeds the slice
    for i in range(args.pile):
        click(i)
    print("READY: profiling", flush=True)  # a wrapper may quieten the machine from here
    worker_busy.clear()
    worker_prof.disable()
    worker_prof = cProfile.Profile(time.thread_time)  # the profiled clicks only
    gui_prof = cProfile.Profile(time.thread_time)
    times = []
    for i in range(args.clicks):
        gui_prof.enable()
        times.append(click(i))
        gui_prof.disable()
    n = len(times)
    print(f"click -> painted ms: median {statistics.median(times):.1f}, "
          f"min {min(times):.1f}, max {max(times):.1f}, n={n} "
          f"(after {args.pile} clicks)")  # fmt: skip
    print(f"worker busy ms per click: {1000 * sum(worker_busy) / max(1, len(worker_busy)):.1f}")
    for name, prof in (("GUI thread", gui_prof), ("worker", worker_prof)):
        out = io.StringIO()
        stats = pstats.Stats(prof, stream=out)
        if args.dump:
            stats.dump_stats(f"{args.dump}_{name.split()[0].lower()}.prof")
        print(f"\n==== {name}: total {1000 * stats.total_tt / n:.1f} ms per click ====")
        stats.sort_stats(args.sort).print_stats(args.top)
        print(out.getvalue()[-12000:])
    viewer.close()


if __name__ == "__main__":
    main()
