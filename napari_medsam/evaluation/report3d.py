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
