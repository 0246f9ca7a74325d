"""The demo report's numbers and tables (epspp.report) from a hand-made checkpoint and report dict."""

from __future__ import annotations

from pathlib import Path

import torch

from epspp.report import markdown, regime_markdown, stage1_setting


def _checkpoint(out: Path, model: dict, data: dict | None) -> None:
    folder = out / "eps++" / "localization" / "checkpoints"
    folder.mkdir(parents=True)
    payload: dict = {"state_dict": {}, "hyper_parameters": model}
    if data is not None:
        payload["datamodule_hyper_parameters"] = data
    torch.save(payload, folder / "last.ckpt")


def test_stage_1s_setting_from_its_checkpoint(tmp_path: Path) -> None:
    """Training maps: ceil(321 / 8) = 41 px; 320 / 8 = 40 exactly."""
    _checkpoint(
        tmp_path / "a",
        {"output_stride": 8, "pretrained_path": "runs/demo/pretrain/backbone.pth", "ird_threshold_maps": "raw"},
        {"crop_size": 321, "eval_scale": 2.0},
    )
    assert stage1_setting(tmp_path / "a") == {
        "pretrained_path": "runs/demo/pretrain/backbone.pth",
        "output_stride": 8,
        "crop_size": 321,
        "eval_scale": 2.0,
        "map_size": 41,
        "ird_threshold_maps": "raw",
    }
    _checkpoint(tmp_path / "b", {"output_stride": 8}, {"crop_size": 320})
    setting = stage1_setting(tmp_path / "b")
    assert (setting["map_size"], setting["eval_scale"], setting["ird_threshold_maps"]) == (40, 1.0, "normalized")
    _checkpoint(tmp_path / "c", {"output_stride": 16, "pretrained_path": None}, None)  # an older checkpoint
    setting = stage1_setting(tmp_path / "c")
    assert (setting["crop_size"], setting["map_size"], setting["pretrained_path"]) == (None, None, None)


def _report(chosen: bool) -> dict:
    masks = {
        method: {"miou": miou, "count": 20, "per_class_iou": None, "bg_threshold": 0.2}
        for method, miou in (("cam", 30.5), ("eps", 40.25), ("eps++", 45.0))
    }
    if chosen:
        for method, data in masks.items():
            data |= {
                "chosen_bg_threshold": 0.3,
                "choice_sweep": {"0.1": 10.0, "0.3": 50.5},
                "chosen_bg_threshold_miou": {"cam": 31.0, "eps": 41.0, "eps++": 47.5}[method],
                "bg_threshold_sweep": {"0.1": 11.0, "0.3": 12.0},
            }
    return {
        "regime": {
            "name": "pretrained",
            "pretrained_path": "runs/demo/pretrain/backbone.pth",
            "pretrain_val_map": 81.5,
            "output_stride": 8,
            "crop_size": 128,
            "eval_scale": 1.5,
            "map_size": 16,
            "ird_threshold_maps": "normalized",
        },
        "localization": {"cam": {"val_cam_miou": 20.0}, "eps": {"val_cam_miou": 25.0}, "eps++": {"val_cam_miou": 28.0}},
        "pseudo_masks": masks,
        "segmentation": {"wsss": {"miou": 50.0}, "ssss": {"miou": 55.0}, "labeled_only": {"miou": None}},
        "wall_time_s": {"pretrain": 12.5, "localization/cam": 3.0},
    }


def test_the_reports_tables_hold_each_number_in_its_row() -> None:
    text = markdown(_report(chosen=True), "stages.png")
    lines = text.splitlines()
    assert "| eps++ | 45.0 | 0.3 (50.5) | 47.5 | 28.0 |" in lines
    assert "| cam | 30.5 | 0.3 (50.5) | 31.0 | 20.0 |" in lines
    assert "| method | 0.1 | 0.3 |" in lines and "| eps | 11.0 | 12.0 |" in lines
    assert "| labeled_only | None |" in lines and "| ssss | 55.0 |" in lines
    assert "| pretrain | 12.5 |" in lines and "| localization/cam | 3.0 |" in lines
    assert lines[-1] == "![stages](stages.png)"
    assert "(of 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)" in text  # the thresholds swept, as published
    plain = markdown(_report(chosen=False)).splitlines()
    assert "| eps | 40.25 | n/a | n/a | 25.0 |" in plain
    assert not any(line.startswith("| method | 0.1") for line in plain) and "![stages]" not in "\n".join(plain)
    partial = _report(chosen=True)
    del partial["pseudo_masks"]["cam"]["chosen_bg_threshold"]  # one method without saved scores: no choice shown
    assert "| eps++ | 45.0 | n/a | n/a | 28.0 |" in markdown(partial).splitlines()


def test_the_regime_says_where_stage_1_started_and_its_maps() -> None:
    regime = _report(chosen=False)["regime"]
    assert regime_markdown(regime)[2] == (
        "`pretrained`: stages 1 and 3 start from the stage-0 backbone `runs/demo/pretrain/backbone.pth` (pretraining "
        "val mAP 81.5); stage 1 trains on 128-px crops at output stride 8 (16x16 maps), the images at 1.5x their "
        "size. EPS++'s IRD thresholds the **normalized** refined maps in B() (`ird_threshold_maps: normalized`; "
        'docs/architecture.md, "How we read IRD\'s B()").'
    )
    unset = regime_markdown(regime | {"pretrained_path": None})[2]  # no stage-0 file given: random weights
    assert unset.startswith("`pretrained`: stages 1 and 3 start from random weights; ")
    scratch = regime | {"name": "scratch", "pretrained_path": None, "map_size": None, "ird_threshold_maps": "raw"}
    line = regime_markdown(scratch)[2]
    assert line.startswith("`scratch`: stages 1 and 3 start from random weights; ")
    assert "(n/a maps)" in line and "the **raw** refined maps" in line
