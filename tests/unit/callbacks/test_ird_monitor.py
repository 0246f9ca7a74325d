"""IRD telemetry against a hand-built batch, and the collapse warning on scripted runs."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from epspp.callbacks.ird_monitor import TELEMETRY_FILE, WARNINGS_FILE, CollapseMonitor, TelemetryRecord, record_warning
from epspp.losses import ird_saliency_loss, ird_telemetry


def test_telemetry_of_a_hand_built_batch() -> None:
    # one image, C = 2 (label: class 0 only), 2x2 maps; saliency 4x4 -> nearest 2x2 = [[1, 0], [1, 0.2]]
    saliency = torch.tensor([[1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0], [0.9, 0.9, 0.2, 0.2], [0.9, 0.9, 0.2, 0.2]])[
        None, None
    ]
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


def test_telemetry_counts_a_saliency_of_exactly_half_as_background() -> None:
    # a 1x3 map (not square) with saliency 0.5, 0.75, 0.5: only the middle pixel is salient (S = M_s > 0.5);
    # the region drops the first pixel, so 0 of the 1 salient and 1 of the 2 others are dropped
    saliency = torch.tensor([[[[0.5, 0.75, 0.5]]]])
    inconsistent = torch.tensor([[[[True, False, False]]]])
    values = ird_telemetry(torch.zeros(1, 3, 1, 3), saliency, torch.tensor([[1.0, 0.0]]), inconsistent)
    assert values["inconsistent_salient"].item() == 0.0
    assert values["inconsistent_background"].item() == pytest.approx(0.5)


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


def test_n_against_the_injected_errors_pooled_over_the_batch() -> None:
    """error_precision |N&E|/|N|, error_recall |N&E|/|E|, correct_dropped |N&C|/|C| with C = S&~E&~H on 2x3 maps
    (the saliency and the flags at 4x6, resized like the saliency), pooled over the batch; the halo bit 8 is not
    in E, and a salient halo pixel is not correct supervision either."""
    inconsistent = torch.tensor([[[1, 1, 0], [0, 1, 0]], [[0, 0, 0], [1, 0, 0]]], dtype=torch.bool)[:, None]
    flags = torch.tensor([[[1, 0, 8], [2, 4, 0]], [[8, 0, 0], [0, 0, 0]]], dtype=torch.uint8)  # E: 3 and 0 pixels
    salient = torch.tensor([[[1, 1, 1], [0, 0, 0]], [[0, 1, 1], [1, 1, 1]]], dtype=torch.float32)[:, None]
    saliency = salient.repeat_interleave(2, dim=-1).repeat_interleave(2, dim=-2)  # (2, 1, 4, 6)
    errors = flags.repeat_interleave(2, dim=-1).repeat_interleave(2, dim=-2)  # (2, 4, 6)
    cam, labels = torch.zeros(2, 3, 2, 3), torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    values = ird_telemetry(cam, saliency, labels, inconsistent, saliency_error=errors)
    # image 0: |N| 3, |E| 3, |N&E| 2 ((0,0), (1,1)); S&~E = (0,1), (0,2), but (0,2) is the halo's: C = (0,1), in N
    # image 1: |N| 1, |E| 0; C = its 5 salient pixels (its halo pixel is not salient), N holds (1,0). Pooled:
    assert values["error_precision"].item() == pytest.approx(2 / 4)  # (2/3 + 0/1) / 2 would be 1/3
    assert values["error_recall"].item() == pytest.approx(2 / 3)  # image 1 has no E: nothing to add
    assert values["correct_dropped"].item() == pytest.approx(2 / 6)  # (1 + 1/5) / 2 would be 0.6; with H, 2/7
    # image 1 alone: E is empty (its one flag is the halo's): recall is NaN, not 0
    alone = ird_telemetry(cam[1:], saliency[1:], labels[1:], inconsistent[1:], saliency_error=errors[1:])
    assert math.isnan(alone["error_recall"].item())
    assert alone["error_precision"].item() == 0.0 and alone["correct_dropped"].item() == pytest.approx(1 / 5)
    # nothing dropped: precision is NaN; no salient pixel outside E: correct_dropped is NaN
    none = ird_telemetry(cam, torch.zeros_like(saliency), labels, torch.zeros_like(inconsistent), None, errors)
    assert math.isnan(none["error_precision"].item()) and math.isnan(none["correct_dropped"].item())
    assert none["error_recall"].item() == 0.0
    # without the flags, no such key (today's telemetry)
    assert "error_precision" not in ird_telemetry(cam, saliency, labels, inconsistent)


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


def test_collapse_fires_at_a_mean_exactly_at_the_threshold_and_not_just_below() -> None:
    for window in (50, 20):  # a plain float sum of twenty 0.95 over 20 is 0.9499999999999996: the monitor sums exactly
        at = CollapseMonitor(window=window, threshold=0.95)
        messages = [at.update(step, 0.95) for step in range(window)]  # float 0.95 each step: the mean is 0.95
        assert messages[-1] is not None and all(m is None for m in messages[:-1])
    below = CollapseMonitor(window=50, threshold=0.95)
    assert all(below.update(step, 0.95 - 1e-9) is None for step in range(200))


def test_collapse_warning_names_every_reading_of_b() -> None:
    for reading, others in (
        ("normalized", "softmax or floored"),
        ("softmax", "normalized or floored"),
        ("floored", "normalized or softmax"),
    ):
        message = CollapseMonitor(window=1, reading=reading).update(7, 1.0)
        assert f"ird_threshold_maps: {reading};" in message and f"ird_threshold_maps: {others}," in message
        assert "How we read IRD's B()" in message and "\n" not in message


def test_telemetry_record_keeps_every_step_replaces_a_resumed_tail_and_writes_a_csv(tmp_path: Path) -> None:
    record = TelemetryRecord()
    assert record.write(tmp_path) is None and not (tmp_path / TELEMETRY_FILE).exists()
    for step in range(5):
        record.update(step, {"inconsistent_salient": step / 8, "fg_salient": 0.5})
    again = TelemetryRecord()
    again.load_state_dict(record.state_dict())  # a checkpoint taken at step 4
    assert again.rows == record.rows
    for step in (3, 4, 5):  # resumed from an earlier checkpoint: steps 3 and 4 are logged again
        again.update(step, {"inconsistent_salient": 1.0, "fg_salient": 0.25})
    assert [row["step"] for row in again.rows] == [0, 1, 2, 3, 4, 5]
    assert [row["inconsistent_salient"] for row in again.rows] == [0.0, 0.125, 0.25, 1.0, 1.0, 1.0]
    path = again.write(tmp_path)
    assert path == tmp_path / TELEMETRY_FILE
    lines = path.read_text().splitlines()
    assert lines[0] == "step,inconsistent_salient,fg_salient" and lines[2] == "1,0.125,0.5" and len(lines) == 7


def test_telemetry_csv_has_the_error_columns_only_when_recorded_and_nan_as_an_empty_cell(tmp_path: Path) -> None:
    record = TelemetryRecord()
    record.update(0, {"inconsistent_salient": 0.5, "error_precision": math.nan, "error_recall": 0.25})
    record.update(1, {"inconsistent_salient": 0.75, "error_precision": 1.0, "error_recall": math.nan})
    lines = record.write(tmp_path).read_text().splitlines()
    assert lines == ["step,inconsistent_salient,error_precision,error_recall", "0,0.5,,0.25", "1,0.75,1,"]
    plain = TelemetryRecord()
    plain.update(0, {"inconsistent_salient": 0.5})
    assert plain.write(tmp_path).read_text().splitlines() == ["step,inconsistent_salient", "0,0.5"]


def test_watch_ird_records_every_step_but_feeds_the_monitor_only_after_the_warm_up(monkeypatch, tmp_path) -> None:
    """Every step is recorded with the numbers of a per-step transfer (the old way: reduce, then ``tolist``), but
    the values move to the host only at the logging steps (every 4th here) and at the epoch's end."""
    from types import SimpleNamespace

    from epspp.tasks import LocalizationModule

    torch.manual_seed(0)
    module = LocalizationModule(
        num_classes=3,
        backbone="resnet10t",
        output_stride=8,
        pamr_iter=2,
        pamr_dilations=(1, 2),
        backbone_kwargs={"channels": [8, 8, 16, 16], "stem_width": 8},
        ird_warmup_steps=3,
    )
    transfers: list[int] = []
    connector = SimpleNamespace(should_update_logs=False)
    trainer = SimpleNamespace(
        strategy=SimpleNamespace(reduce=lambda value, reduce_op: transfers.append(len(value)) or value),
        is_global_zero=True,
        default_root_dir=str(tmp_path),
        _logger_connector=connector,
    )
    monkeypatch.setattr(type(module), "trainer", property(lambda self: trainer))
    logged: list[dict] = []
    monkeypatch.setattr(module, "log_dict", lambda values, **kwargs: logged.append(values))
    batch = {
        "image": torch.randn(2, 3, 32, 32),
        "saliency": torch.ones(2, 1, 32, 32),
        "label": torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]]),
    }
    [monitor] = module.configure_callbacks()  # the task adds IRDMonitor itself when it trains with IRD
    fed: list[int] = []
    update = monitor.collapse.update
    monkeypatch.setattr(monitor.collapse, "update", lambda step, share: fed.append(step) or update(step, share))
    expected = []
    for step in range(6):
        monkeypatch.setattr(type(module), "global_step", property(lambda self, s=step: s))
        connector.should_update_logs = step % 4 == 3
        with torch.no_grad():
            cam = module(batch["image"])
            _, ird = module.saliency_term(batch, cam)
            module.watch_ird(cam, batch, ird)
            telemetry = ird_telemetry(cam, batch["saliency"], batch["label"], ird["inconsistent"], ird["threshold_map"])
        values = torch.stack(list(telemetry.values())).tolist()
        expected.append({"step": step, **dict(zip(telemetry, values, strict=True))})
        monitor.on_train_batch_end(trainer, module, None, batch, 0)
        assert len(monitor.telemetry.rows) == (4 if step >= 3 else 0)  # on the host from the logging step on
    assert transfers == [4] and len(logged) == 1  # steps 0-3 in one transfer; only step 3 logged
    assert logged[0] == {f"train/{k}": v for k, v in expected[3].items() if k != "step"}
    monitor.on_train_epoch_end(trainer, module)
    assert transfers == [4, 2] and module.ird_pending == [] and module.ird_values == []
    assert fed == [3, 4, 5]  # steps 0-2 are the warm-up
    assert monitor.telemetry.rows == expected  # every step, the numbers of a per-step transfer
    assert set(monitor.telemetry.rows[0]) == {
        "step",
        "inconsistent",
        "inconsistent_salient",
        "inconsistent_background",
        "fg_salient",
        "threshold_map_salient",
        "threshold_map_background",
    }
    assert len((tmp_path / TELEMETRY_FILE).read_text().splitlines()) == 7


def test_the_monitor_watches_the_salient_share_of_the_dropped_region_not_of_all_pixels(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """A run dropping 99% of its salient pixels (but 10% of all pixels) collapses; one dropping 99% of all pixels
    (but 10% of the salient ones) does not. Window 2, threshold 0.95, warm-up of 1 step."""
    from types import SimpleNamespace

    from epspp.callbacks.ird_monitor import IRDMonitor

    runs = {"collapsed": (0.10, 0.99), "healthy": (0.99, 0.10)}  # (inconsistent, inconsistent_salient)
    for name, (share_all, share_salient) in runs.items():
        run_dir = tmp_path / name
        run_dir.mkdir()
        trainer = SimpleNamespace(is_global_zero=True, default_root_dir=str(run_dir))
        monitor = IRDMonitor(warmup_steps=1, window=2, threshold=0.95)
        for step in range(3):
            monitor.record(trainer, step, {"inconsistent": share_all, "inconsistent_salient": share_salient})
        warnings = run_dir / WARNINGS_FILE
        if name == "collapsed":
            assert monitor.collapse.fired_at == 2
            assert warnings.read_text(encoding="utf-8").startswith("IRD collapse at step 2: on average 99.0% ")
        else:
            assert monitor.collapse.fired_at is None and not warnings.exists()
    assert capsys.readouterr().err.count("IRD collapse") == 1


# ------------------------------------------------------------ variation pass (issue 34 item 6)
def test_other_ranks_record_and_watch_but_write_nothing(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from types import SimpleNamespace

    from epspp.callbacks.ird_monitor import IRDMonitor

    trainer = SimpleNamespace(is_global_zero=False, default_root_dir=str(tmp_path))
    monitor = IRDMonitor(reading="softmax", window=1)
    monitor.record(trainer, 0, {"inconsistent_salient": 1.0})
    monitor.write(trainer)
    assert monitor.collapse.fired_at == 0 and len(monitor.telemetry.rows) == 1
    assert list(tmp_path.iterdir()) == [] and capsys.readouterr().err == ""
    trainer.is_global_zero = True
    monitor.write(trainer)
    assert (tmp_path / TELEMETRY_FILE).is_file()


def test_the_monitor_passes_its_options_to_the_collapse_watch(tmp_path: Path) -> None:
    """reading, window and threshold away from their defaults (0.5 over 2 steps fires; 0.95 would not)."""
    from types import SimpleNamespace

    from epspp.callbacks.ird_monitor import IRDMonitor

    monitor = IRDMonitor(reading="floored", warmup_steps=2, window=2, threshold=0.5)
    trainer = SimpleNamespace(is_global_zero=True, default_root_dir=str(tmp_path))
    for step in range(4):
        monitor.record(trainer, step, {"inconsistent_salient": 0.5})
    assert monitor.collapse.fired_at == 3  # steps 2 and 3 watched (0 and 1: the warm-up)
    text = (tmp_path / WARNINGS_FILE).read_text()
    assert "ird_threshold_maps: floored;" in text and "over the last 2 steps" in text


def test_the_checkpoint_keys_of_the_monitors_state(tmp_path: Path) -> None:
    """``ird_collapse`` and ``ird_telemetry`` (the keys of earlier checkpoints); a checkpoint without them (written
    before the monitor existed) restores an empty state."""
    from types import SimpleNamespace

    from epspp.callbacks.ird_monitor import IRDMonitor

    trainer = SimpleNamespace(is_global_zero=True, default_root_dir=str(tmp_path))
    monitor = IRDMonitor(window=2)
    for step in range(3):
        monitor.record(trainer, step, {"inconsistent_salient": 0.25})
    checkpoint: dict = {}
    monitor.on_save_checkpoint(trainer, SimpleNamespace(), checkpoint)
    assert set(checkpoint) == {"ird_collapse", "ird_telemetry"}
    assert checkpoint["ird_collapse"] == {"values": [0.25, 0.25], "fired_at": None}
    assert checkpoint["ird_telemetry"] == {"step": [0, 1, 2], "inconsistent_salient": [0.25, 0.25, 0.25]}
    again = IRDMonitor(window=2)
    again.on_load_checkpoint(trainer, SimpleNamespace(), checkpoint)
    assert again.telemetry.rows == monitor.telemetry.rows and list(again.collapse.values) == [0.25, 0.25]
    old = IRDMonitor(window=2)
    old.on_load_checkpoint(trainer, SimpleNamespace(), {"state_dict": {}})
    assert old.telemetry.rows == [] and list(old.collapse.values) == [] and old.collapse.fired_at is None
