"""The bad-input table of issue 12: what a careless or unlucky user sees, case by case.

Runs the standing bad-input suite (``tests/test_bad_input_cli.py``, every case
and its assertions, with pytest) and prints one markdown row per case::

    | case | what the user sees | exit code | files untouched |

"What the user sees" is the last line the command wrote to stderr (progress
lines left out), with the test folder removed from paths. "Files untouched"
compares the digest of every file in the case's folder before and after the
command (``yes``, or the files that changed, and any file it left behind). The
cases are not copied here: the suite's ``run`` fixture writes each row
(``MEDSAM_BAD_INPUT_TABLE``), and a case whose command ran more than once (a
good checkpoint written first) keeps the row of its last run, the one under
test. Cases whose assertions fail are listed under the table, and the exit
status is 1.

Run from the repository root::

    python benchmarks/bad_input_table.py [-k PATTERN]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SUITE = ROOT / "tests" / "test_bad_input_cli.py"
HEADER = "| case | what the user sees | exit code | files untouched |\n|---|---|---|---|"


class _Outcomes:
    """pytest plugin: the outcome of each case (``call`` phase, or a failed setup)."""

    def __init__(self) -> None:
        self.failed: list[str] = []
        self.passed = 0

    def pytest_runtest_logreport(self, report) -> None:
        name = report.nodeid.split("::", 1)[-1]
        if report.failed:
            self.failed.append(name)
        elif report.when == "call" and report.passed:
            self.passed += 1


def last_rows(lines: list[str]) -> dict[str, str]:
    """case -> its last row, in the order the cases first ran."""
    rows: dict[str, str] = {}
    for line in lines:
        if line.startswith("| `"):
            case = line.split("`", 2)[1]
            rows[case] = line.rstrip("\n")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-k", dest="pattern", help="only the cases pytest -k selects")
    args = parser.parse_args(argv)
    import pytest

    with tempfile.TemporaryDirectory() as tmp:
        table = Path(tmp) / "rows.md"
        table.touch()
        os.environ["MEDSAM_BAD_INPUT_TABLE"] = str(table)
        outcomes = _Outcomes()
        pytest_args = [str(SUITE), "-q", "-p", "no:cacheprovider", "--rootdir", str(ROOT)]
        if args.pattern:
            pytest_args += ["-k", args.pattern]
        with contextlib.redirect_stdout(sys.stderr):  # pytest's own report: not the table
            code = pytest.main(pytest_args, plugins=[outcomes])
        rows = last_rows(table.read_text(encoding="utf-8").splitlines())
    print(HEADER)
    print("\n".join(rows.values()))
    print(f"\n{len(rows)} cases, {outcomes.passed} passed their assertions")
    if outcomes.failed:
        print("failed: " + ", ".join(outcomes.failed))
    return 0 if code == 0 and not outcomes.failed else 1


if __name__ == "__main__":
    sys.exit(main())
