"""Reading a run folder's logs: the IRD telemetry and the collapse warning in the demo report."""

from __future__ import annotations

from pathlib import Path

import pytest

from epspp.models.ird_health import record_warning
from epspp.report import ird_health, ird_markdown
from epspp.run_logs import last_logged, mean_over_last_steps


def write_metrics(run: Path, rows: list[dict[str, object]]) -> None:
    folder = run / "csv" / "version_0"
    folder.mkdir(parents=True)
    columns = sorted({key for row in rows for key in row})
    lines = [",".join(columns)] + [",".join(str(row.get(c, "")) for c in columns) for row in rows]
    (folder / "metrics.csv").write_text("\n".join(lines) + "\n")


def test_means_over_the_last_steps_and_the_recorded_collapse(tmp_path: Path) -> None:
    run = tmp_path / "run"
    # logged every 10 steps: 9, 19, ..., 199; a validation row between them has no training values
    rows: list[dict[str, object]] = [{"step": s, "train/inconsistent_salient": s / 200, "train/fg_salient": 0.5,
                                      "train/inconsistent": 0.1, "train/inconsistent_background": 0.0}
                                     for s in range(9, 200, 10)]
    rows.insert(5, {"step": 55, "val/mIoU": 0.4})
    write_metrics(run, rows)
    assert last_logged(run, "val/mIoU") == pytest.approx(0.4)
    # the last 50 steps of a run logged up to step 199: 159, 169, ..., 199
    expected = sum(s / 200 for s in (159, 169, 179, 189, 199)) / 5
    assert mean_over_last_steps(run, "train/inconsistent_salient", 50) == pytest.approx(expected)
    assert mean_over_last_steps(run, "train/missing", 50) is None

    healthy = ird_health(run)
    assert healthy["inconsistent_salient"] == pytest.approx(100 * expected, abs=0.01)
    assert healthy["collapse_warnings"] == []
    record_warning(run, "IRD collapse at step 205: on average 95.3% of the salient pixels ...")
    collapsed = ird_health(run)
    assert collapsed["collapse_warnings"] == ["IRD collapse at step 205: on average 95.3% of the salient pixels ..."]

    report = {"localization": {"cam": {}, "eps": {}, "eps++": {"ird": collapsed}}}
    text = "\n".join(ird_markdown(report))
    assert "| eps++ | " in text and "| fired |" in text and "eps++: IRD collapse at step 205" in text
    report["localization"]["eps++"]["ird"] = healthy
    assert "| none |" in "\n".join(ird_markdown(report))
