"""A stage's progress arithmetic and formats (``epspp.runs.progress``): rate and ETA from the first step's end, the
plain progress line and ``progress.json``'s record, each against values worked out by hand."""

from __future__ import annotations

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
