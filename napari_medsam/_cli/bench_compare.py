"""``napari-medsam bench --backend torch,openvino``: every backend measured, side by side.

Each backend runs in its own child process (``bench --backend B --json ...``):
its peak memory is its own and nothing one backend converted or cached helps
another. The figures are then printed in one table with the speed-up of each
against the first backend (``torch`` when listed): ``reference / value``, so
> 1 means faster (or, for memory, smaller).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

SCHEMA = "napari-medsam-bench-compare/1"


def _child_argv(args, backend: str, json_path: Path) -> list[str]:
    """One backend's ``bench`` command line: every option of this run but ``--backend``.

    ``--quick`` travels as itself (its 8-slice volume is the child's choice, not
    only its repeats), and so do ``--threads``, ``--no-gui`` and ``--no-propagation``.
    """
    argv = [sys.executable, "-m", "napari_medsam.cli", "bench", "--backend", backend]
    argv += ["--json", str(json_path), "--device", args.device, "--precision", args.precision]
    argv += ["--repeats", str(args.repeats), "--batch", str(args.batch)]
    argv += ["--stall-runs", str(args.stall_runs), "--many-clicks", str(args.many_clicks)]
    if args.checkpoint:
        argv += ["--checkpoint", str(args.checkpoint)]
    if args.threads is not None:
        argv += ["--threads", str(args.threads)]
    if args.no_gui:
        argv.append("--no-gui")
    if args.no_propagation:
        argv.append("--no-propagation")
    if getattr(args, "quick", False):
        argv.append("--quick")
    return argv


def _value(figure) -> float | None:
    if isinstance(figure, dict) and "median" in figure:
        return float(figure["median"])
    if isinstance(figure, (int, float)) and not isinstance(figure, bool):
        return float(figure)
    return None


def speedups(reports: dict[str, dict], reference: str) -> dict[str, dict[str, float | None]]:
    """``figure -> backend -> reference / value`` for every numeric figure of the reference."""
    ref = reports[reference]["figures"]
    out: dict[str, dict[str, float | None]] = {}
    for name, figure in ref.items():
        base = _value(figure)
        if base is None or name.endswith("interval_ms"):
            continue
        row = {}
        for backend, report in reports.items():
            value = _value(report["figures"].get(name))
            row[backend] = None if value in (None, 0.0) else base / value
        out[name] = row
    return out


def format_table(reports: dict[str, dict], ratios: dict, reference: str) -> str:
    """A Markdown table: one row per figure, the median of each backend, then the ratios."""
    names = list(reports)
    others = [b for b in names if b != reference]
    head = ["figure"] + [reports[b]["settings"].get("backend") or b for b in names]
    head += [f"{b} speed-up" for b in others]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for figure, row in ratios.items():
        cells = [figure]
        for b in names:
            value = _value(reports[b]["figures"].get(figure))
            cells.append("-" if value is None else f"{value:.1f}")
        cells += ["-" if row.get(b) is None else f"{row[b]:.2f}x" for b in others]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run_compare(args) -> int:
    """Run one child bench per backend, print the side-by-side table, write the JSON."""
    backends = list(dict.fromkeys(args.backend))
    reference = "torch" if "torch" in backends else backends[0]
    reports: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="medsam-bench-") as tmp:
        for backend in backends:
            path = Path(tmp) / f"{backend}.json"
            print(f"--- bench --backend {backend}", flush=True)
            done = subprocess.run(_child_argv(args, backend, path), check=False)
            if done.returncode != 0 or not path.is_file():
                print(f"napari-medsam bench: the {backend} run failed", file=sys.stderr)
                return done.returncode or 1
            reports[backend] = json.loads(path.read_text())
    ratios = speedups(reports, reference)
    print(f"\nside by side (speed-up = {reference} / backend; > 1 is better)")
    print(format_table(reports, ratios, reference))
    if args.json_path:
        report = {
            "schema": SCHEMA,
            "reference": reference,
            "backends": reports,
            "speedup_vs_reference": ratios,
        }
        from napari_medsam.io.atomic import atomic_write_text

        atomic_write_text(args.json_path, json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json_path}")
    return 0
