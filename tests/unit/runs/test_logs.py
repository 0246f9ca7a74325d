"""Reading a run folder's logs: the IRD telemetry and the collapse warning in the demo report."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest

from epspp.callbacks.ird_monitor import TelemetryRecord, record_warning
from epspp.report import ird_markdown
from epspp.runs.logs import collapse_step, ird_summary, last_logged, mean_over_last_steps, metrics_files, window_means


def write_metrics(run: Path, rows: list[dict[str, object]]) -> None:
    folder = run / "csv" / "version_0"
    folder.mkdir(parents=True)
    columns = sorted({key for row in rows for key in row})
    lines = [",".join(columns)] + [",".join(str(row.get(c, "")) for c in columns) for row in rows]
    (folder / "metrics.csv").write_text("\n".join(lines) + "\n")


def test_means_over_the_last_steps_and_the_recorded_collapse(tmp_path: Path) -> None:
    run = tmp_path / "run"
    write_metrics(run, [{"step": 9, "train/loss": 1.0}, {"step": 55, "val/mIoU": 0.4}])
    assert last_logged(run, "val/mIoU") == pytest.approx(0.4)
    # IRD's record of every step 0..199 (not the logged steps only)
    record = TelemetryRecord()
    for step in range(200):
        record.update(
            step,
            {
                "inconsistent_salient": step / 200,
                "fg_salient": 0.5,
                "inconsistent": 0.1,
                "inconsistent_background": 0.0,
                "threshold_map_salient": 0.75,
                "threshold_map_background": 0.25,
            },
        )
    record.write(run)
    expected = sum(s / 200 for s in range(150, 200)) / 50  # steps 150-199
    assert mean_over_last_steps(run, "inconsistent_salient", 50) == pytest.approx(expected)
    assert mean_over_last_steps(run, "missing", 50) is None
    assert mean_over_last_steps(tmp_path / "no-run", "inconsistent_salient") is None
    assert window_means(run, "inconsistent_salient", 50) == pytest.approx(
        [sum(s / 200 for s in range(a, a + 50)) / 50 for a in (0, 50, 100, 150)]
    )
    assert window_means(run, "fg_salient", 150) == pytest.approx([0.5, 0.5])  # 0-149, then 150-199

    healthy = ird_summary(run, 50)
    assert healthy["last_steps"]["inconsistent_salient"] == pytest.approx(expected, abs=1e-4)
    assert healthy["windows"]["inconsistent_salient"] == pytest.approx([0.1225, 0.3725, 0.6225, 0.8725], abs=1e-4)
    assert healthy["collapse_step"] is None and healthy["warnings"] == [] and collapse_step(run) is None
    record_warning(run, "IRD collapse at step 205: on average 95.3% of the salient pixels ...")
    assert collapse_step(run) == 205
    collapsed = ird_summary(run, 50)
    assert collapsed["collapse_step"] == 205
    assert collapsed["warnings"] == ["IRD collapse at step 205: on average 95.3% of the salient pixels ..."]
    assert ird_summary(tmp_path / "no-run") is None
    assert "error_precision" not in collapsed["last_steps"]  # a run without data.saliency_errors: today's keys

    report = {"localization": {"cam": {}, "eps": {}, "eps++": {"ird": collapsed}}}
    text = "\n".join(ird_markdown(report))
    assert "| eps++ | 0.87 | 0.00 | 0.50 | 0.75 | 0.25 | 0.12, 0.37, 0.62, 0.87 | fired at step 205 |" in text
    assert "eps++: IRD collapse at step 205" in text
    report["localization"]["eps++"]["ird"] = healthy
    assert "| none |" in "\n".join(ird_markdown(report))


def test_error_ratios_average_over_the_last_steps_ignoring_the_steps_without_a_value(tmp_path: Path) -> None:
    record = TelemetryRecord()
    for step in range(6):  # precision NaN at steps 3 and 5 (nothing dropped), recall never defined
        precision = math.nan if step in (3, 5) else step / 10
        values = {"inconsistent_salient": 0.5, "error_precision": precision, "error_recall": math.nan}
        record.update(step, values | {"correct_dropped": 0.25})
    record.write(tmp_path)
    # the last 3 steps are 3, 4, 5: only step 4 has a value (not the last 3 values 0.1, 0.2, 0.4)
    assert mean_over_last_steps(tmp_path, "error_precision", 3) == pytest.approx(0.4)
    assert mean_over_last_steps(tmp_path, "error_precision", 6) == pytest.approx((0.0 + 0.1 + 0.2 + 0.4) / 4)
    assert mean_over_last_steps(tmp_path, "error_recall", 6) is None
    last = ird_summary(tmp_path, 3)["last_steps"]
    assert last["error_precision"] == pytest.approx(0.4) and last["error_recall"] is None
    assert last["correct_dropped"] == pytest.approx(0.25) and last["inconsistent_salient"] == pytest.approx(0.5)


def test_a_resumed_fit_reads_its_newest_csv_log(tmp_path: Path) -> None:
    """csv/version_* folders of a fit and its resumes: the values come from the highest version number (Lightning
    numbers each resume's log), version_10 after version_9 though it sorts first as a string, whatever the files'
    modification times (a copied run folder loses them)."""
    run = tmp_path / "run"
    for version, miou in ((0, 0.125), (9, 0.25), (10, 0.5)):
        folder = run / "csv" / f"version_{version}"
        folder.mkdir(parents=True)
        (folder / "metrics.csv").write_text(f"step,val/mIoU\n10,{miou}\n")
    assert last_logged(run, "val/mIoU") == 0.5
    os.utime(run / "csv" / "version_9" / "metrics.csv", (3_000_000_000, 3_000_000_000))  # touched last
    assert last_logged(run, "val/mIoU") == 0.5
    assert [p.parent.name for p in metrics_files(run)] == ["version_0", "version_9", "version_10"]


# ------------------------------------------------------------ variation pass (issue 34 item 6)
def test_the_collapse_step_is_read_from_the_monitors_own_warning(tmp_path: Path) -> None:
    """The warning as CollapseMonitor words it (not a hand-written copy) gives its step back."""
    from epspp.callbacks.ird_monitor import CollapseMonitor

    message = CollapseMonitor(window=1).update(37, 1.0)
    assert message is not None
    record_warning(tmp_path, "an earlier warning of another kind")
    record_warning(tmp_path, message)
    assert collapse_step(tmp_path) == 37


def test_the_summary_counts_the_recorded_steps_and_windows_both_shares(tmp_path: Path) -> None:
    record = TelemetryRecord()
    for step in range(5):  # 5 steps, windows of 2: 0-1, 2-3, 4
        record.update(step, {"inconsistent_salient": step / 4, "fg_salient": 1.0 - step / 4})
    record.write(tmp_path)
    summary = ird_summary(tmp_path, 2)
    assert (summary["recorded_steps"], summary["window"]) == (5, 2)
    assert summary["windows"] == {"inconsistent_salient": [0.125, 0.625, 1.0], "fg_salient": [0.875, 0.375, 0.0]}
    assert summary["last_steps"]["fg_salient"] == pytest.approx(0.125)  # steps 3 and 4: (0.25 + 0) / 2
