"""IRD telemetry against a hand-built batch, and the collapse warning on scripted runs."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from epspp.losses import ird_saliency_loss, ird_telemetry
from epspp.models.ird_health import WARNINGS_FILE, CollapseMonitor, record_warning


def test_telemetry_of_a_hand_built_batch() -> None:
    # one image, C = 2 (label: class 0 only), 2x2 maps; saliency 4x4 -> nearest 2x2 = [[1, 0], [1, 0.2]]
    saliency = torch.tensor([[1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0],
                             [0.9, 0.9, 0.2, 0.2], [0.9, 0.9, 0.2, 0.2]])[None, None]
    labels = torch.tensor([[1.0, 0.0]])
    # logits (class 0, class 1, background) per pixel; softmax class 0 = 1/(1+e^-x+...) chosen by hand
    cam = torch.zeros(1, 3, 2, 2)
    cam[0, 0] = torch.tensor([[math.log(3.0), 0.0], [0.0, 0.0]])  # pixel (0,0): e.g. 3/(3+1+1) = 0.6
    inconsistent = torch.tensor([[[[False, True], [True, False]]]])
    values = ird_telemetry(cam, saliency, labels, inconsistent)
    # salient pixels (> 0.5): (0,0) and (1,0); non-salient: (0,1) and (1,1)
    assert values["inconsistent"].item() == pytest.approx(0.5)
    assert values["inconsistent_salient"].item() == pytest.approx(0.5)  # (1,0) of {(0,0), (1,0)}
    assert values["inconsistent_background"].item() == pytest.approx(0.5)  # (0,1) of {(0,1), (1,1)}
    assert values["fg_salient"].item() == pytest.approx((0.6 + 1 / 3) / 2)


def test_telemetry_uses_the_losses_inconsistent_region_and_is_zero_without_salient_pixels() -> None:
    torch.manual_seed(0)
    cam, labels = torch.randn(2, 4, 6, 6), torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    saliency = (torch.rand(2, 1, 12, 12) > 0.5).float()
    refined = torch.rand(2, 4, 6, 6)
    _, region = ird_saliency_loss(cam, saliency, labels, refined, return_inconsistent=True)
    values = ird_telemetry(cam, saliency, labels, region)
    small = torch.nn.functional.interpolate(saliency, (6, 6), mode="nearest") > 0.5
    assert values["inconsistent_salient"].item() == pytest.approx(region[small].float().mean().item())
    assert values["inconsistent_background"].item() == pytest.approx(region[~small].float().mean().item())
    assert all(0.0 <= v.item() <= 1.0 for v in values.values())
    empty = ird_telemetry(cam, torch.zeros(2, 1, 12, 12), labels, region)
    assert empty["inconsistent_salient"].item() == 0.0 and empty["fg_salient"].item() == 0.0


def test_collapse_fires_once_after_a_full_window_and_never_on_a_healthy_run() -> None:
    collapsed = CollapseMonitor(window=50, threshold=0.95)
    messages = [collapsed.update(step, 0.97) for step in range(100, 180)]
    fired = [m for m in messages if m is not None]
    assert len(fired) == 1 and messages.index(fired[0]) == 49  # the 50th step after the warm-up
    assert "step 149" in fired[0] and "pretrained" in fired[0] and "ird_warmup_steps" in fired[0]
    assert "\n" not in fired[0]

    healthy = CollapseMonitor(window=50, threshold=0.95)
    assert all(healthy.update(step, 0.85 if step % 2 else 1.0) is None for step in range(300))  # mean 0.925

    # one dip below the threshold in the window keeps the mean under it: no warning yet
    dipped = CollapseMonitor(window=4, threshold=0.95)
    assert [dipped.update(s, v) for s, v in enumerate([1.0, 1.0, 0.5, 1.0])] == [None] * 4
    assert dipped.update(4, 1.0) is None and dipped.update(5, 1.0) is None and dipped.update(6, 1.0) is not None


def test_collapse_state_survives_a_checkpoint() -> None:
    monitor = CollapseMonitor(window=3)
    for step in range(3):
        monitor.update(step, 1.0)
    again = CollapseMonitor(window=3)
    again.load_state_dict(monitor.state_dict())
    assert again.fired_at == 2 and again.update(3, 1.0) is None  # fired before the resume: not twice


def test_record_warning_appends_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    record_warning(tmp_path, "first")
    record_warning(tmp_path, "second")
    assert (tmp_path / WARNINGS_FILE).read_text().splitlines() == ["first", "second"]
    assert capsys.readouterr().err.count("[epspp] warning:") == 2
