"""A stage's progress arithmetic and formats (``epspp.runs.progress``): rate and ETA from the first step's end, the
plain progress line and ``progress.json``'s record, each against values worked out by hand."""

from __future__ import annotations

from pathlib import Path

from epspp.runs.progress import StageClock, format_duration, format_rate, progress_line, progress_record


def test_rate_and_eta_are_measured_from_the_first_steps_end() -> None:
    clock = StageClock(total=500, started=0.0)
    assert clock.rate is None and clock.eta is None and clock.done == 0
    clock.update(20, 10.0)  # start-up until t=10 is not a step's time
    assert clock.rate is None
    clock.update(120, 60.0)
    assert clock.rate == 2.0  # (120 - 20) steps / (60 - 10) s
    assert clock.eta == 190.0  # (500 - 120) / 2
    assert clock.elapsed(60.0) == 60.0
    clock.update(500, 250.0)
    assert clock.eta == 0.0


def test_a_resumed_stage_counts_from_its_step() -> None:
    clock = StageClock(total=10, started=5.0, offset=6)
    assert clock.done == 6 and clock.eta is None
    clock.update(7, 6.0)
    clock.update(8, 10.0)
    assert clock.rate == 0.25 and clock.eta == 8.0  # 1 step / 4 s; 2 steps left


def test_durations_and_rates_read_as_a_person_writes_them() -> None:
    assert [format_duration(s) for s in (0, 45, 59.6, 200, 3599, 7500)] == [
        "0 s",
        "45 s",
        "1 min 00 s",
        "3 min 20 s",
        "59 min 59 s",
        "2 h 05 min",
    ]
    assert format_rate(1.9) == "1.9 it/s" and format_rate(0.08) == "12.5 s/it"


def test_the_plain_line_of_a_fit_and_of_a_prediction() -> None:
    clock = StageClock(total=500, started=0.0)
    clock.update(20, 10.0)
    assert progress_line("fit", "step", clock, 0.5123) == "[fit] step 20/500 (4%)  loss 0.512"  # no rate yet
    clock.update(120, 60.0)
    assert progress_line("fit", "step", clock, 0.5123) == (
        "[fit] step 120/500 (24%)  loss 0.512  2.0 it/s  ETA 3 min 10 s"
    )
    batches = StageClock(total=-1, started=0.0)
    batches.update(1, 1.0)
    batches.update(9, 5.0)
    assert progress_line("predict", "batch", batches) == "[predict] batch 9  2.0 it/s"  # unknown total: no ETA


def test_progress_record_has_exactly_the_documented_fields() -> None:
    clock = StageClock(total=500, started=0.0)
    clock.update(20, 10.0)
    record = progress_record(clock, 12.5, done=False)
    assert record == {
        "stage": "fit",
        "step": 20,
        "max_steps": 500,
        "elapsed_s": 12.5,
        "steps_per_s": 0.0,
        "eta_s": None,
        "done": False,
    }
    clock.update(120, 60.0)
    assert progress_record(clock, 61.0, done=False) == {
        "stage": "fit",
        "step": 120,
        "max_steps": 500,
        "elapsed_s": 61.0,
        "steps_per_s": 2.0,
        "eta_s": 190.0,
        "done": False,
    }
    assert progress_record(clock, 61.0, done=True)["eta_s"] == 0.0


# ------------------------------------------------------------ variation pass (issue 34 item 6)
def test_no_rate_without_both_a_step_and_a_second_between_updates() -> None:
    clock = StageClock(total=10, started=0.0)
    clock.update(2, 1.0)
    clock.update(2, 5.0)  # seconds passed, no step: no rate (not 0 it/s)
    assert clock.rate is None and clock.eta is None
    same = StageClock(total=10, started=0.0)
    same.update(2, 1.0)
    same.update(4, 1.0)  # steps at the same instant: no rate (not a division by zero)
    assert same.rate is None


def test_a_stage_of_unknown_length_has_no_eta_and_a_prediction_says_so() -> None:
    clock = StageClock(total=-1, started=0.0)
    clock.update(1, 1.0)
    clock.update(5, 3.0)
    assert clock.eta is None  # not 0.0 (step 5 >= total -1)
    record = progress_record(clock, 2.0, done=False, stage="predict")
    assert (record["stage"], record["max_steps"], record["eta_s"], record["steps_per_s"]) == ("predict", -1, None, 2.0)
    assert StageClock(total=5, started=10.0).elapsed(4.0) == 0.0  # a clock read before its start: no negative time


def test_progress_json_round_trip_and_unreadable_files(tmp_path: Path) -> None:
    from epspp.runs.progress import PROGRESS_FILE, read_progress, write_progress

    assert PROGRESS_FILE == "progress.json"  # the name epspp run, demo and the callback share
    assert read_progress(tmp_path / "absent") is None
    path = write_progress(tmp_path / "fit", {"step": 3})
    assert path == tmp_path / "fit" / "progress.json" and read_progress(tmp_path / "fit") == {"step": 3}
    for text in ("[1]", "{not json"):
        path.write_text(text)
        assert read_progress(tmp_path / "fit") is None
