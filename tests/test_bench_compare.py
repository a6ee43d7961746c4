"""``bench --backend a,b``: the side-by-side table and the speed-up ratios (no timing)."""

from __future__ import annotations

import argparse
import json

import pytest

from napari_medsam import cli
from napari_medsam._cli import backend_args, bench_compare
from napari_medsam.model.backends import select


def _report(backend, embed, rss):
    stat = {"median": embed, "min": embed, "max": embed, "runs": 1}
    return {
        "settings": {"backend": backend},
        "figures": {"embed_ms_per_slice_batch1": stat, "peak_rss_mib": rss,
                    "timer_interval_ms": 5, "click_to_paint_ms_new_slice": None},
    }  # fmt: skip


def test_speedups_are_reference_over_backend():
    reports = {"torch": _report("torch fp32", 1000.0, 900.0), "openvino": _report("openvino bf16", 250.0, 600.0)}
    ratios = bench_compare.speedups(reports, "torch")
    assert ratios["embed_ms_per_slice_batch1"] == {"torch": 1.0, "openvino": 4.0}
    assert ratios["peak_rss_mib"]["openvino"] == pytest.approx(1.5)
    assert "timer_interval_ms" not in ratios and "click_to_paint_ms_new_slice" not in ratios
    table = bench_compare.format_table(reports, ratios, "torch")
    assert "| embed_ms_per_slice_batch1 | 1000.0 | 250.0 | 4.00x |" in table
    assert "openvino bf16" in table.splitlines()[0]


def test_compare_runs_one_child_per_backend_and_merges(monkeypatch, tmp_path, capsys):
    seen = []

    def fake_run(argv, check):
        backend = argv[argv.index("--backend") + 1]
        out = argv[argv.index("--json") + 1]
        seen.append(backend)
        embed = {"torch": 1000.0, "openvino": 300.0}[backend]
        with open(out, "w") as f:
            json.dump(_report(backend, embed, 800.0), f)
        return argparse.Namespace(returncode=0)

    monkeypatch.setattr(bench_compare.subprocess, "run", fake_run)
    out = tmp_path / "both.json"
    argv = ["bench", "--backend", "torch,openvino", "--no-gui", "--json", str(out)]
    assert cli.main(argv) == 0
    assert seen == ["torch", "openvino"]
    report = json.loads(out.read_text())
    assert report["schema"] == bench_compare.SCHEMA and set(report["backends"]) == {"torch", "openvino"}
    assert report["speedup_vs_reference"]["embed_ms_per_slice_batch1"]["openvino"] == pytest.approx(1000 / 300)
    assert "3.33x" in capsys.readouterr().out


def test_backend_names_match_and_bad_names_are_one_clear_error(capsys):
    assert backend_args.BACKENDS == select.BACKENDS
    assert backend_args.PRECISIONS == select.PRECISIONS
    with pytest.raises(SystemExit):
        cli.main(["bench", "--backend", "torch,tensorrt"])
    assert "--backend must be one of" in capsys.readouterr().err


@pytest.mark.parametrize("quick", [True, False])
def test_each_child_gets_every_option_of_the_run_but_the_backend(monkeypatch, tmp_path, quick):
    seen = []

    def fake_run(argv, check):
        seen.append(argv)
        with open(argv[argv.index("--json") + 1], "w") as f:
            json.dump(_report("x", 1.0, 1.0), f)
        return argparse.Namespace(returncode=0)

    monkeypatch.setattr(bench_compare.subprocess, "run", fake_run)
    options = ["--no-propagation", "--threads", "2", "--no-gui", "--many-clicks", "7",
               "--batch", "3", "--precision", "fp32", "--stall-runs", "2", "--repeats", "4",
               "--device", "cpu"] + (["--quick"] if quick else [])  # fmt: skip
    assert cli.main(["bench", "--backend", "torch,openvino", *options]) == 0
    parser = cli.build_parser()
    want = vars(parser.parse_args(["bench", "--backend", "torch", *options]))
    want = {k: v for k, v in want.items() if k not in ("backend", "json_path", "func")}
    for argv, backend in zip(seen, ("torch", "openvino"), strict=True):
        assert argv[1:4] == ["-m", "napari_medsam.cli", "bench"]
        got = vars(parser.parse_args(argv[3:]))
        assert got.pop("backend") == (backend,) and got.pop("json_path").endswith(f"{backend}.json")
        got.pop("func")
        if quick:  # the parent applied --quick to repeats and stall runs; the child again
            assert (got["repeats"], got["stall_runs"]) == (1, 1)
            got["repeats"], got["stall_runs"] = 4, 2
        assert got == want
