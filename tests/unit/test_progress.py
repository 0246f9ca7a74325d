"""The configs' progress bar: a step-limited fit shows the steps done of max_steps, not Lightning's ``Epoch 20/-2``."""

from __future__ import annotations

from types import SimpleNamespace

from epspp.callbacks import StepProgressBar


def test_a_step_limited_fit_shows_steps_done_of_max_steps() -> None:
    bar = StepProgressBar()
    bar._trainer = SimpleNamespace(max_steps=500, max_epochs=-1, global_step=120)  # Lightning's max_epochs for it
    assert bar._get_train_description(20) == "step 120/500 (epoch 20)"
    bar._trainer = SimpleNamespace(max_steps=-1, max_epochs=10, global_step=120)  # limited by epochs: Lightning's
    assert bar._get_train_description(3).strip() == "Epoch 3/9"
