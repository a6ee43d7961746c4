"""IoU / Dice, the NoC arithmetic (failures count as the cap) and the summaries."""

import numpy as np
import pytest

from napari_medsam.evaluation.metrics import CaseResult, carried, dice, iou, noc, summarize


def test_iou_and_dice_on_known_masks():
    a = np.zeros((4, 4), bool)
    b = np.zeros((4, 4), bool)
    a[:2, :2] = True  # 4 px
    b[:2, :] = True  # 8 px, overlap 4
    assert iou(a, b) == pytest.approx(0.5)
    assert dice(a, b) == pytest.approx(2 * 4 / 12)
    assert iou(a, a) == 1.0 and dice(a, ~a) == 0.0
    empty = np.zeros((4, 4), bool)
    assert iou(empty, empty) == 1.0 and dice(empty, empty) == 1.0


def test_noc_first_interaction_reaching_threshold():
    assert noc([0.5, 0.86, 0.91], 0.85, 20) == 2
    assert noc([0.5, 0.86, 0.91], 0.90, 20) == 3
    assert noc([0.95], 0.90, 20) == 1
    assert noc([0.90], 0.90, 20) == 1  # reaching the threshold counts


def test_noc_failure_counts_as_cap():
    assert noc([0.1] * 20, 0.90, 20) == 20
    assert noc([0.1, 0.2], 0.90, 20) == 20  # stopped early without success: still the cap
    assert noc([0.1] * 19 + [0.95], 0.90, 20) == 20  # success exactly at the cap
    assert noc([0.1] * 20 + [0.95], 0.90, 20) == 20  # beyond the cap does not count


def test_carried_forward():
    assert carried([0.2, 0.5], 1) == 0.2
    assert carried([0.2, 0.5], 5) == 0.5
    with pytest.raises(ValueError):
        carried([], 1)


def case(label, ious, seconds=0.01, area=10):
    dices = [2 * v / (1 + v) for v in ious]
    return CaseResult(
        label=label,
        z=0,
        area=area,
        ious=list(ious),
        dices=dices,
        click_seconds=[seconds] * len(ious),
    )


def test_summarize_clicks():
    cases = [
        case(1, [0.95]),  # NoC 1 at both thresholds
        case(1, [0.5, 0.87, 0.92]),  # NoC85 2, NoC90 3
        case(1, [0.1, 0.2, 0.3]),  # stopped early (no error left to click) without success
    ]
    s = summarize(cases, max_clicks=4, prompt="clicks")
    assert s["n_cases"] == 3
    assert s["noc85"] == pytest.approx((1 + 2 + 4) / 3)
    assert s["noc90"] == pytest.approx((1 + 3 + 4) / 3)
    assert s["n_fail90"] == 1
    # curve carries the last value forward up to the cap
    assert s["miou_curve"] == pytest.approx(
        [
            (0.95 + 0.5 + 0.1) / 3,
            (0.95 + 0.87 + 0.2) / 3,
            (0.95 + 0.92 + 0.3) / 3,
            (0.95 + 0.92 + 0.3) / 3,
        ]
    )
    d = lambda v: 2 * v / (1 + v)  # noqa: E731
    assert s["dice_at"]["1"] == pytest.approx((d(0.95) + d(0.5) + d(0.1)) / 3)
    assert s["dice_at"]["5"] == pytest.approx((d(0.95) + d(0.92) + d(0.3)) / 3)
    assert s["box_dice"] is None
    assert s["s_per_click"] == pytest.approx(0.01)


def test_summarize_box_has_box_dice_and_no_noc():
    a = case(2, [0.8], area=100)
    a.first_intersection, a.first_pred_area = 80, 80
    b = case(2, [0.5], area=300)
    b.first_intersection, b.first_pred_area = 200, 300
    s = summarize([a, b], max_clicks=20, prompt="box")
    assert s["noc90"] is None and s["n_fail90"] is None and s["dice_at"]["1"] is None
    assert s["box_dice"] == pytest.approx((a.dices[0] + b.dices[0]) / 2)
    assert s["box_dice_volume"] == pytest.approx(2 * 280 / (80 + 100 + 300 + 300))
    assert len(s["miou_curve"]) == 1


def test_summarize_no_cases():
    s = summarize([], max_clicks=5, prompt="clicks")
    assert s["n_cases"] == 0 and s["noc90"] is None and s["miou_curve"] == []
