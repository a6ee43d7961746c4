"""Turn case results into the eval report: a text table, a JSON document, a plot."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from napari_medsam.evaluation.metrics import CaseResult, summarize
from napari_medsam.io.atomic import atomic_path, atomic_write_text

SCHEMA = "napari-medsam-eval/1"


def summarize_by_label(
    results: Sequence[CaseResult], labels: Sequence[int], max_clicks: int, prompt: str
) -> tuple[dict[int, dict], dict]:
    """Per-label summaries (in ``labels`` order) and the overall summary (cases pooled)."""
    per_label = {
        label: summarize([r for r in results if r.label == label], max_clicks, prompt)
        for label in labels
    }
    return per_label, summarize(results, max_clicks, prompt)


def _fmt(value, spec: str = ".3f") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return format(value, spec)


def format_table(
    per_label: Mapping[int, dict],
    overall: dict,
    prompt: str,
    names: Mapping[int, str] | None = None,
) -> str:
    """A fixed-width table: one row per label and an ``overall`` row."""
    names = names or {}
    box = prompt.startswith("box")
    header = [
        "label",
        "name",
        "cases",
        "NoC@85",
        "NoC@90",
        "#fail@90",
        "Dice@1",
        "Dice@3",
        "Dice@5",
    ]
    if box:
        header += ["boxDice", "boxDice(vol)"]
    header += ["s/click"]

    def row(key: str, name: str, s: dict) -> list[str]:
        cells = [
            key,
            name,
            str(s["n_cases"]),
            _fmt(s["noc85"], ".2f"),
            _fmt(s["noc90"], ".2f"),
            _fmt(s["n_fail90"], "d"),
            _fmt(s["dice_at"]["1"]),
            _fmt(s["dice_at"]["3"]),
            _fmt(s["dice_at"]["5"]),
        ]
        if box:
            cells += [_fmt(s["box_dice"]), _fmt(s["box_dice_volume"])]
        cells += [_fmt(s["s_per_click"], ".4f")]
        return cells

    rows = [header]
    rows += [row(str(label), names.get(label, ""), s) for label, s in per_label.items()]
    rows.append(row("all", "overall", overall))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = [
        "  ".join(
            cell.rjust(w) if i != 1 else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in rows
    ]
    lines.insert(1, "-" * len(lines[0]))
    lines.insert(len(lines) - 1, "-" * len(lines[0]))
    return "\n".join(lines)


def build_report(
    settings: dict,
    per_label: Mapping[int, dict],
    overall: dict,
    results: Sequence[CaseResult],
    names: Mapping[int, str] | None = None,
) -> dict:
    """The JSON document: schema, package version, settings, summaries, every case."""
    from napari_medsam import __version__

    names = names or {}
    return {
        "schema": SCHEMA,
        "napari_medsam_version": __version__,
        "settings": dict(settings),
        "per_label": {
            str(label): {"name": names.get(label, ""), **s} for label, s in per_label.items()
        },
        "overall": overall,
        "cases": [r.to_dict() for r in results],
    }


def write_json(report: dict, path: str | Path) -> None:
    """Write the report as indented JSON (atomically)."""
    atomic_write_text(path, json.dumps(report, indent=2) + "\n")


def plot_curves(
    per_label: Mapping[int, dict],
    path: str | Path,
    names: Mapping[int, str] | None = None,
    title: str = "",
) -> None:
    """Plot mean IoU against the number of interactions, one line per label.

    Raises
    ------
    ImportError
        With an install hint when matplotlib is missing.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import MaxNLocator
    except ImportError as err:
        raise ImportError(
            "--plot needs matplotlib: pip install 'napari-medsam[plot]' (or pip install matplotlib)"
        ) from err
    names = names or {}
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for label, s in per_label.items():
        curve = s["miou_curve"]
        if not curve:
            continue
        xs = list(range(1, len(curve) + 1))
        name = names.get(label, "")
        ax.plot(xs, curve, marker="o", markersize=3, label=f"{label} {name}".strip())
    for thr in (0.85, 0.90):
        ax.axhline(thr, color="grey", linewidth=0.6, linestyle="--")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("number of interactions")
    ax.set_ylabel("mean IoU")
    ax.set_ylim(0.0, 1.0)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=Path(path).suffix.lstrip(".") or "png")
    finally:
        plt.close(fig)
