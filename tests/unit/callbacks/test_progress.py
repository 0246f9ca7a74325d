"""The configs' progress callback: plain lines in a log file (content, every N steps and at least every 30 s on a
fake clock, the ETA by hand), the rich bar in a terminal (whole-fit steps), and ``progress.json``'s fields."""

from __future__ import annotations

import io
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from epspp.callbacks import StepProgressBar
from epspp.callbacks import progress as progress_module
from epspp.runs.progress import PROGRESS_FILE, read_progress


# ------------------------------------------------------------------ the callback on a scripted fit
class FakeTrainer(SimpleNamespace):
    """The parts of a Trainer the callback reads."""


def fake_trainer(root: Path, max_steps: int = 10, rank_zero: bool = True, fn: str = "fit") -> FakeTrainer:
    return FakeTrainer(
        max_steps=max_steps,
        max_epochs=-1,
        global_step=0,
        current_epoch=0,
        is_global_zero=rank_zero,
        default_root_dir=str(root),
        sanity_checking=False,
        state=SimpleNamespace(fn=fn),
        num_val_batches=[3],
        num_predict_batches=[4],
        num_test_batches=[2],
    )


def plain_bar(now: list[float], every_n_steps: int = 5) -> StepProgressBar:
    bar = StepProgressBar(every_n_steps=every_n_steps, every_s=30.0, plain=True)
    bar.time = lambda: now[0]
    bar.get_metrics = lambda trainer, module: {"train/loss": 0.5, "v_num": 0}
    return bar


def run_steps(
    bar: StepProgressBar, trainer: FakeTrainer, times: dict[int, float], now: list[float], root: Path | None = None
) -> dict[int, dict]:
    """Steps 1..N ending at ``times[step]``; progress.json after each step (when ``root``)."""
    seen = {}
    for step, t in times.items():
        now[0], trainer.global_step = t, step
        bar.on_train_batch_end(trainer, None, None, None, step - 1)
        if root is not None:
            seen[step] = read_progress(root)
    return seen


def test_plain_lines_every_n_steps_and_at_least_every_30_s(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    now = [0.0]
    bar, trainer = plain_bar(now), fake_trainer(tmp_path)
    bar.setup(trainer, None, "fit")
    assert bar.plain and bar.is_disabled  # the rich bar draws nothing
    bar.on_train_start(trainer, None)
    # step 1 ends at t=5, then a step every 10 s: lines at step 1 (the first), 4 (30 s after step 1), 5 and 10
    # (every 5 steps), 8 (30 s after step 5)
    run_steps(bar, trainer, {step: 5.0 + 10 * (step - 1) for step in range(1, 11)}, now)
    lines = capsys.readouterr().out.splitlines()
    assert [int(line.split()[2].split("/")[0]) for line in lines] == [1, 4, 5, 8, 10]
    assert lines[0] == "[fit] step 1/10 (10%)  loss 0.500"
    # at step 4 (t=35): 3 steps in 30 s since step 1 = 0.1 it/s = 10.0 s/it; 6 steps left = 60 s
    assert lines[1] == "[fit] step 4/10 (40%)  loss 0.500  10.0 s/it  ETA 1 min 00 s"
    assert lines[4] == "[fit] step 10/10 (100%)  loss 0.500  10.0 s/it"  # nothing left: no ETA
    now[0] = 100.0
    bar.on_train_end(trainer, None)
    assert capsys.readouterr().out == "[fit] done: step 10/10 in 1 min 40 s (10.0 s/it)\n"


def test_fast_steps_print_every_n_steps_only(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    now = [0.0]
    bar, trainer = plain_bar(now, every_n_steps=4), fake_trainer(tmp_path, max_steps=12)
    bar.setup(trainer, None, "fit")
    bar.on_train_start(trainer, None)
    run_steps(bar, trainer, {step: 2.0 + 0.5 * step for step in range(1, 13)}, now)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[2] for line in lines] == ["1/12", "4/12", "8/12", "12/12"]
    assert lines[2] == "[fit] step 8/12 (66%)  loss 0.500  2.0 it/s  ETA 2 s"  # 7 steps in 3.5 s; 4 left


def test_accumulated_batches_count_optimizer_steps_once(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    now = [0.0]
    bar, trainer = plain_bar(now, every_n_steps=1), fake_trainer(tmp_path, max_steps=2)
    bar.setup(trainer, None, "fit")
    bar.on_train_start(trainer, None)
    for batch, step in enumerate((0, 1, 1, 2)):  # two batches per step
        now[0], trainer.global_step = float(batch), step
        bar.on_train_batch_end(trainer, None, None, None, batch)
    assert [line.split()[2] for line in capsys.readouterr().out.splitlines()] == ["1/2", "2/2"]


def test_progress_json_during_and_after_the_fit(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    now = [100.0]
    bar, trainer = plain_bar(now), fake_trainer(tmp_path)
    bar.setup(trainer, None, "fit")
    bar.on_train_start(trainer, None)
    assert read_progress(tmp_path) == {
        "stage": "fit",
        "step": 0,
        "max_steps": 10,
        "elapsed_s": 0.0,
        "steps_per_s": 0.0,
        "eta_s": None,
        "done": False,
    }
    # steps every 3 s from t=103: a printed line (steps 1, 5, 10) or 10 s since the last write updates the file
    seen = run_steps(bar, trainer, {step: 100.0 + 3 * step for step in range(1, 11)}, now, tmp_path)
    assert seen[1]["step"] == 1 and seen[2]["step"] == 1 and seen[4]["step"] == 1  # 9 s since step 1's write
    assert seen[5] == {
        "stage": "fit",
        "step": 5,
        "max_steps": 10,
        "elapsed_s": 15.0,
        "steps_per_s": 0.3333,
        "eta_s": 15.0,
        "done": False,
    }  # 4 steps in 12 s; 5 steps left at 1/3 it/s
    now[0] = 131.0
    bar.on_train_end(trainer, None)
    assert json.loads((tmp_path / PROGRESS_FILE).read_text()) == {
        "stage": "fit",
        "step": 10,
        "max_steps": 10,
        "elapsed_s": 31.0,
        "steps_per_s": 0.3333,
        "eta_s": 0.0,
        "done": True,
    }
    assert not list(tmp_path.glob(".*.tmp"))  # written under a temporary name, then renamed


def test_other_ranks_print_and_write_nothing(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    now = [0.0]
    bar, trainer = plain_bar(now), fake_trainer(tmp_path, rank_zero=False)
    bar.setup(trainer, None, "fit")
    bar.on_fit_start(trainer, torch.nn.Linear(2, 2))
    bar.on_train_start(trainer, None)
    run_steps(bar, trainer, {1: 1.0, 5: 2.0}, now)
    bar.on_train_end(trainer, None)
    assert capsys.readouterr().out == "" and not (tmp_path / PROGRESS_FILE).exists()


def test_the_parameter_count_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bar, trainer = plain_bar([0.0]), fake_trainer(tmp_path)
    model = torch.nn.Sequential(torch.nn.Linear(1000, 1000), torch.nn.Linear(1000, 10))  # 1,001,000 + 10,010
    model[1].weight.requires_grad_(False)  # 10,000 frozen
    bar.on_fit_start(trainer, model)
    assert capsys.readouterr().out == "[fit] Sequential: 1.01 M parameters (1.00 M trainable)\n"


def test_prediction_lines_per_batch(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    now = [0.0]
    bar, trainer = plain_bar(now, every_n_steps=2), fake_trainer(tmp_path, fn="predict")
    bar.setup(trainer, None, "predict")
    bar.on_predict_start(trainer, None)
    for batch in range(4):
        now[0] = 1.0 + batch
        bar.on_predict_batch_end(trainer, None, None, None, batch)
    now[0] = 6.0
    bar.on_predict_end(trainer, None)
    assert capsys.readouterr().out.splitlines() == [
        "[predict] batch 1/4 (25%)",
        "[predict] batch 2/4 (50%)  1.0 it/s  ETA 2 s",
        "[predict] batch 4/4 (100%)  1.0 it/s",
        "[predict] done: 4 batches in 6 s (1.0 it/s)",
    ]
    assert not (tmp_path / PROGRESS_FILE).exists()  # only a fit writes progress.json


# ------------------------------------------------------------------ terminal or not
@pytest.mark.parametrize(("tty", "plain"), [(True, False), (False, True)])
def test_the_display_follows_stdout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tty: bool, plain: bool) -> None:
    class Stream(io.StringIO):
        def isatty(self) -> bool:
            return tty

    monkeypatch.setattr(progress_module.sys, "stdout", Stream())
    bar = StepProgressBar()
    bar.setup(fake_trainer(tmp_path), None, "fit")
    assert bar.plain is plain and bar.is_enabled is not plain
    forced = StepProgressBar(plain=True)
    forced.setup(fake_trainer(tmp_path), None, "fit")
    assert forced.plain


def test_the_terminal_bar_of_a_step_limited_fit_counts_the_whole_fits_steps(tmp_path: Path) -> None:
    from pytorch_lightning.callbacks.progress.rich_progress import CustomProgress

    bar = StepProgressBar(plain=False)
    trainer = fake_trainer(tmp_path, max_steps=500)
    trainer.global_step, trainer.current_epoch = 120, 20  # resumed in epoch 20
    bar.setup(trainer, None, "fit")
    bar.progress = CustomProgress(disable=True)
    bar.on_train_epoch_start(trainer, None)
    task = bar.progress.tasks[bar.train_progress_bar_id]
    assert (task.total, task.completed) == (500, 120) and task.description.strip() == "Epoch 20"
    trainer.current_epoch = 21
    bar.on_train_epoch_start(trainer, None)  # a new epoch: the same task, not reset to one epoch's batches
    assert bar.progress.tasks[bar.train_progress_bar_id] is task and (task.total, task.completed) == (500, 120)
    bar._update_metrics = lambda trainer, module: None
    trainer.global_step = 121
    bar.on_train_batch_end(trainer, None, None, None, 0)
    assert task.completed == 121 and task.description.strip() == "Epoch 21"


def test_an_epoch_limited_fit_keeps_lightnings_description(tmp_path: Path) -> None:
    bar = StepProgressBar()
    bar._trainer = SimpleNamespace(max_steps=-1, max_epochs=10, global_step=120)
    assert bar._get_train_description(3).strip() == "Epoch 3/9"


# ------------------------------------------------------------------ validate / test, the fit's edges, the helpers
def test_validate_and_test_lines_per_batch(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    now = [0.0]
    bar, trainer = plain_bar(now, every_n_steps=2), fake_trainer(tmp_path, fn="validate")
    trainer.num_val_batches = [2, 1]  # two loaders: 3 batches
    bar.setup(trainer, None, "validate")
    bar.on_validation_start(trainer, None)
    for batch in range(3):
        now[0] = 1.0 + batch
        bar.on_validation_batch_end(trainer, None, None, None, batch)
    now[0] = 5.0
    bar.on_validation_end(trainer, None)
    # batch 3: not a multiple of 2, 1 s after the last line: no line
    assert capsys.readouterr().out.splitlines() == [
        "[validate] batch 1/3 (33%)",
        "[validate] batch 2/3 (66%)  1.0 it/s  ETA 1 s",
        "[validate] done: 3 batches in 5 s (1.0 it/s)",
    ]
    trainer.state.fn, trainer.num_test_batches, bar.every_n_steps = "test", [3], 5
    now[0] = 10.0
    bar.on_test_start(trainer, None)
    for batch, t in enumerate([11.0, 40.9, 41.0]):  # batch 2: 29.9 s after the first line; batch 3: 30 s
        now[0] = t
        bar.on_test_batch_end(trainer, None, None, None, batch)
    bar.on_test_end(trainer, None)
    assert capsys.readouterr().out.splitlines() == [
        "[test] batch 1/3 (33%)",
        "[test] batch 3/3 (100%)  15.0 s/it",  # 2 batches in 30 s
        "[test] done: 3 batches in 31 s (15.0 s/it)",
    ]
    trainer.num_test_batches = [float("inf")]  # an iterable of unknown length: no total
    bar.on_test_start(trainer, None)
    bar.on_test_batch_end(trainer, None, None, None, 0)
    trainer.is_global_zero = False  # another rank says nothing
    bar.on_test_batch_end(trainer, None, None, None, 1)
    bar.on_test_end(trainer, None)
    assert capsys.readouterr().out.splitlines() == ["[test] batch 1"]


def test_validation_inside_a_fit_speaks_only_when_the_fit_has_been_quiet(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    now = [0.0]
    bar, trainer = plain_bar(now), fake_trainer(tmp_path)
    bar.setup(trainer, None, "fit")
    bar.on_train_start(trainer, None)
    run_steps(bar, trainer, {1: 1.0, 2: 2.0, 3: 3.0, 4: 4.0}, now)
    capsys.readouterr()
    bar.on_validation_start(trainer, None)  # inside the fit: the fit's clock goes on
    trainer.sanity_checking = True
    now[0] = 100.0
    bar.on_validation_batch_end(trainer, None, None, None, 0)  # the sanity check: nothing
    trainer.sanity_checking = False
    now[0] = 30.9  # 29.9 s after the fit's line of step 1... the last line: step 1 at t=1
    bar.on_validation_batch_end(trainer, None, None, None, 0)
    now[0] = 31.0  # 30 s after it
    bar.on_validation_batch_end(trainer, None, None, None, 1)
    now[0] = 32.0
    bar.on_validation_batch_end(trainer, None, None, None, 2)  # 1 s after the line above
    bar.on_validation_end(trainer, None)  # no "done" line inside a fit
    assert capsys.readouterr().out == "[fit] validating: batch 2/3 (step 4/10)\n"
    trainer.global_step = 10  # the last steps ended without a batch hook (e.g. accumulated)
    now[0] = 50.0
    bar.on_train_end(trainer, None)
    assert capsys.readouterr().out == "[fit] done: step 10/10 in 50 s (5.4 s/it)\n"  # 9 steps in 49 s
    assert read_progress(tmp_path)["step"] == 10


def test_a_progress_file_that_cannot_be_written_is_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk must not stop the fit (write_atomic raises OutputError, whose reason is the system's words)."""
    import errno
    import os

    def full(self: Path, *args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Path, "write_text", full)
    now = [0.0]
    bar, trainer = plain_bar(now), fake_trainer(tmp_path)
    bar.setup(trainer, None, "fit")
    bar.on_train_start(trainer, None)
    assert (
        capsys.readouterr().err == f"[epspp] warning: cannot write {tmp_path}/progress.json: No space left on device\n"
    )
    run_steps(bar, trainer, {1: 1.0}, now)  # the fit goes on
    assert "[fit] step 1/10" in capsys.readouterr().out
    assert list(tmp_path.iterdir()) == []  # no temporary left


def test_the_fits_total_steps_and_its_loss(monkeypatch: pytest.MonkeyPatch) -> None:
    from epspp.callbacks.progress import fit_total_steps, loss_of, stdout_is_terminal, step_limited

    class Trainer(SimpleNamespace):
        @property
        def estimated_stepping_batches(self) -> float:
            if self.batches is None:
                raise RuntimeError("no training loader yet")
            return self.batches

    assert fit_total_steps(Trainer(max_steps=50, batches=7.0)) == 50
    assert fit_total_steps(Trainer(max_steps=-1, batches=120.0)) == 120
    assert fit_total_steps(Trainer(max_steps=0, batches=float("inf"))) == -1
    assert fit_total_steps(Trainer(max_steps=-1, batches=None)) == -1
    assert step_limited(SimpleNamespace(max_steps=5, max_epochs=None))
    assert step_limited(SimpleNamespace(max_steps=5, max_epochs=-1))
    assert not step_limited(SimpleNamespace(max_steps=5, max_epochs=3))
    assert not step_limited(SimpleNamespace(max_steps=0, max_epochs=-1))
    assert loss_of({"train/loss": 0.25, "loss": 2}) == 0.25
    assert loss_of({"train/loss": "n/a", "loss": 2}) == 2.0  # not a number: the next key
    assert loss_of({"train_loss": 3}) == 3.0
    assert loss_of({"v_num": 1}) is None
    monkeypatch.setattr(progress_module.sys, "stdout", object())  # replaced by something without isatty
    assert stdout_is_terminal() is False
    closed = io.StringIO()
    closed.close()
    monkeypatch.setattr(progress_module.sys, "stdout", closed)
    assert stdout_is_terminal() is False


# ------------------------------------------------------------ variation pass (issue 34 item 6)
def test_a_forced_rich_bar_stays_rich_when_stdout_is_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``plain: false`` is a choice, not "unset": the rich bar also in a log file."""
    monkeypatch.setattr(progress_module.sys, "stdout", io.StringIO())  # not a terminal
    bar = StepProgressBar(plain=False)
    bar.setup(fake_trainer(tmp_path), None, "fit")
    assert bar.plain is False and bar.is_enabled


def test_every_s_and_every_n_steps_away_from_their_defaults(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """``every_s`` 5: a line once 5 s passed since the last (steps every 2 s, every_n_steps 100 never reached);
    ``every_n_steps`` 0 is read as 1."""
    assert StepProgressBar(every_n_steps=0).every_n_steps == 1
    now = [0.0]
    bar = StepProgressBar(every_n_steps=100, every_s=5.0, plain=True)
    bar.time = lambda: now[0]
    bar.get_metrics = lambda trainer, module: {}
    trainer = fake_trainer(tmp_path, max_steps=8)
    bar.setup(trainer, None, "fit")
    bar.on_train_start(trainer, None)
    run_steps(bar, trainer, {step: 2.0 * step for step in range(1, 9)}, now)
    # lines at step 1 (t=2, the first), 4 (t=8: 6 s after), 7 (t=14: 6 s after); 4 s after a line is not enough
    assert [line.split()[2] for line in capsys.readouterr().out.splitlines()] == ["1/8", "4/8", "7/8"]


def test_a_resumed_fit_counts_from_its_step(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Resumed at step 4 of 10: progress.json says step 4 at the start, and step 5 is the first line."""
    now = [0.0]
    bar, trainer = plain_bar(now), fake_trainer(tmp_path)
    trainer.global_step = 4
    bar.setup(trainer, None, "fit")
    bar.on_train_start(trainer, None)
    assert read_progress(tmp_path)["step"] == 4
    run_steps(bar, trainer, {5: 1.0, 6: 2.0}, now)
    assert capsys.readouterr().out.splitlines() == ["[fit] step 5/10 (50%)  loss 0.500"]  # 6: not a 5th step, 1 s
