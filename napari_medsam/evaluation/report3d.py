"""Plain-text report of the interactive 3D protocol (:mod:`.protocol3d`)."""

from __future__ import annotations


def format_table3d(report: dict) -> str:
    """Plain-text table of a :func:`run_protocol3d` report (one row per label)."""
    k = report["max_clicks"]
    head = (
        ["label", "name", "Dice@box"]
        + [f"Dice@{i}" for i in range(1, k + 1)]
        + ["final", "AUC", "prop s"]
    )
    rows = [head]
    for label, r in report["labels"].items():
        d = r["dice_per_interaction"]
        rows.append(
            [label, r["name"]] + [f"{v:.3f}" for v in d]
            + [f"{r['final_dice']:.3f}", f"{r['dsc_auc']:.3f}", f"{r['propagation_seconds']:.1f}"]
        )  # fmt: skip
    if report.get("mean"):
        m = report["mean"]
        rows.append(
            ["mean", ""] + [f"{v:.3f}" for v in m["dice_per_interaction"]]
            + [f"{m['final_dice']:.3f}", f"{m['dsc_auc']:.3f}", f"{m['propagation_seconds']:.1f}"]
        )  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows
    )


def format_stops3d(report: dict) -> str:
    """Where the first propagation stopped per object, and the slices it reached."""
    lines = []
    for label, r in report["labels"].items():
        if "stops" not in r:
            continue
        stops = "; ".join(s["text"] for s in r["stops"]) or "no propagation"
        lines.append(
            f"label {label} ({r['name']}): {r['slices_reached']} of {r['truth_slices']} "
            f"slices after box + propagation; {stops}"
        )
    return "\n".join(lines)


#: Slice thickness groups of ``--spacing-report`` (mm): [low, high).
THICKNESS_GROUPS = ((0.0, 2.5), (2.5, 5.0), (5.0, float("inf")))


def _group_name(lo: float, hi: float) -> str:
    return f">= {lo:g} mm" if hi == float("inf") else f"{lo:g}-{hi:g} mm"


def format_spacing_report(reports: list[dict]) -> str:
    """Figures of several 3D reports grouped by slice thickness (objects weigh equally).

    Each report needs ``settings.spacing_zyx_mm`` (``eval --protocol 3d --json`` writes it).
    """
    groups: dict[tuple[float, float], list[tuple[str, dict]]] = {g: [] for g in THICKNESS_GROUPS}
    for report in reports:
        dz = float(report["settings"]["spacing_zyx_mm"][0])
        group = next(g for g in THICKNESS_GROUPS if g[0] <= dz < g[1])
        scan = str(report["settings"].get("scan", "?")).rsplit("/", 2)[-2:]
        groups[group] += [("/".join(scan), r) for r in report["labels"].values()]
    head = ["slices", "objects", "scans", "Dice@box", "final", "AUC", "reached/truth"]
    rows = [head]
    for (lo, hi), items in groups.items():
        if not items:
            continue
        recs = [r for _, r in items]
        reached = sum(r.get("slices_reached", 0) for r in recs)
        truth = sum(r.get("truth_slices", 0) for r in recs)
        rows.append([
            _group_name(lo, hi), str(len(recs)), str(len({n for n, _ in items})),
            f"{sum(r['dice_per_interaction'][0] for r in recs) / len(recs):.3f}",
            f"{sum(r['final_dice'] for r in recs) / len(recs):.3f}",
            f"{sum(r['dsc_auc'] for r in recs) / len(recs):.3f}", f"{reached}/{truth}",
        ])  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows
    )
