"""Issue 21 item 11: values that cannot work are refused when the config is read, before data or networks."""

from __future__ import annotations

from pathlib import Path

import pytest

from epspp.cli import main
from epspp.data.datamodule import EPSDataModule
from epspp.errors import ConfigError
from epspp.tasks.localization import LocalizationModule
from epspp.tasks.segmentation import SegmentationModule

NO_SUCH_NETWORK = "no-such-backbone"  # building it would fail: a ConfigError proves the check came first


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"scales": ()}, r"--model\.init_args\.scales must be a non-empty list of positive numbers, got \[\]"),
        ({"scales": (1.0, 0.0)}, r"--model\.init_args\.scales must be .*, got \[1\.0, 0\.0\]"),
        ({"scales": (-0.5,)}, r"--model\.init_args\.scales must be"),
        ({"bg_threshold": 1.5}, r"--model\.init_args\.bg_threshold must be in \(0, 1\), got 1\.5"),
        ({"bg_threshold": 0.0}, r"--model\.init_args\.bg_threshold must be in \(0, 1\), got 0\.0"),
        ({"lr": 0.0}, r"--model\.init_args\.lr must be > 0, got 0\.0"),
        ({"lr": -0.01}, r"--model\.init_args\.lr must be > 0"),
        ({"lr": float("inf")}, r"--model\.init_args\.lr must be a finite number, got inf"),
        ({"scales": (1.0, float("inf"))}, r"--model\.init_args\.scales must be"),
        ({"bg_threshold": float("nan")}, r"--model\.init_args\.bg_threshold must be in \(0, 1\), got nan"),
        ({"momentum": 1.0}, r"--model\.init_args\.momentum must be in \[0, 1\)"),
        ({"tau": 2.0}, r"--model\.init_args\.tau must be in \[0, 1\]"),
        ({"pamr_dilations": (1, 0)}, r"--model\.init_args\.pamr_dilations must be"),
        ({"ird_threshold_maps": "max"}, r"--model\.init_args\.ird_threshold_maps must be normalized or softmax"),
        ({"num_classes": 0, "class_names": ["background"]}, r"--model\.init_args\.num_classes must be >= 1"),
    ],
)
def test_localization_options_refused_before_the_network_is_built(options: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        LocalizationModule(backbone=NO_SUCH_NETWORK, **({"num_classes": 2} | options))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"tta_scales": ()}, r"--model\.init_args\.tta_scales must be a non-empty list"),
        ({"msc_scales": (1.0, 0.0)}, r"--model\.init_args\.msc_scales must be a list of positive numbers"),
        ({"lr": 0.0}, r"--model\.init_args\.lr must be > 0, got 0\.0"),
        ({"weight_decay": -1e-4}, r"--model\.init_args\.weight_decay must be >= 0"),
    ],
)
def test_segmentation_options_refused_before_the_network_is_built(options: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        SegmentationModule(num_classes=2, backbone=NO_SUCH_NETWORK, **options)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"resize_long": (512, 256)},
            r"--data\.resize_long must be \[low, high\] with 0 < low <= high, got \[512, 256\]",
        ),
        ({"resize_long": (0, 256)}, r"--data\.resize_long must be"),
        ({"train_scales": ()}, r"--data\.train_scales must be a non-empty list of positive numbers"),
        ({"train_scales": (0.5, -1.0)}, r"--data\.train_scales must be"),
        ({"jitter_p": 1.5}, r"--data\.jitter_p must be in \[0, 1\]"),
        ({"std": (0.2, 0.0, 0.2)}, r"--data\.std must be positive"),
    ],
)
def test_data_options_refused_before_the_root_is_read(tmp_path: Path, options: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        EPSDataModule(root=str(tmp_path / "missing"), **options)


def test_good_defaults_pass() -> None:
    from epspp.config_checks import check_data_options, check_devices

    check_data_options(
        {
            "resize_long": (256, 256),
            "train_scales": None,
            "color_jitter": 0.0,
            "jitter_hue": 0.0,
            "jitter_p": 0.0,
            "std": (1.0, 1.0, 1.0),
        }
    )
    for devices in (1, 4, -1, "auto", "2", "0,", [0, 1], "0,1"):
        check_devices(devices)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--trainer.devices", "0"],
            "--trainer.devices must be a positive count, -1 (all), 'auto' or a list of device "
            "ids such as [0, 1], got 0",
        ),
        (["--model.init_args.bg_threshold", "1.5"], "--model.init_args.bg_threshold must be in (0, 1), got 1.5"),
        (["--model.init_args.scales", "[]"], "--model.init_args.scales must be a non-empty list of positive numbers"),
        (["--data.resize_long", "[448, 256]"], "--data.resize_long must be [low, high] with 0 < low <= high"),
    ],
)
def test_cli_refuses_in_one_line_before_touching_data(
    tmp_path: Path, capsys: pytest.CaptureFixture, args: list[str], message: str
) -> None:
    config = Path(__file__).parents[2] / "configs" / "demo" / "localization_eps++.yaml"
    root = tmp_path / "no-dataset"
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "fit",
                "--config",
                str(config),
                "--data.root",
                str(root),
                "--data.prepare_synthetic",
                "true",
                "--trainer.default_root_dir",
                str(tmp_path / "run"),
                *args,
            ]
        )
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("epspp: error: ") and message in err[-1]
    assert not root.exists(), "the synthetic dataset was generated before the value was refused"


@pytest.mark.parametrize("dataset", ["voc", "coco", "demo", "demo/scratch"])
def test_every_eps_plus_plus_config_names_its_reading_of_b_and_it_is_the_default(dataset: str) -> None:
    import inspect

    import yaml

    text = (Path(__file__).parents[2] / "configs" / dataset / "localization_eps++.yaml").read_text()
    init = yaml.safe_load(text)["model"]["init_args"]
    default = inspect.signature(LocalizationModule).parameters["ird_threshold_maps"].default
    assert init["ird_threshold_maps"] == default == "normalized"
    assert "How we read IRD's B()" in text  # the comment points at the argument


@pytest.mark.parametrize("setting", ["wsss", "ssss"])
def test_both_demo_regimes_give_stage_3_the_same_sample_budget(setting: str) -> None:
    import yaml

    configs = Path(__file__).parents[2] / "configs" / "demo"
    loaded = [
        yaml.safe_load((folder / f"segmentation_{setting}.yaml").read_text())
        for folder in (configs, configs / "scratch")
    ]
    budgets = [
        (
            c["trainer"]["max_steps"],
            c["data"]["batch_size"],
            c["data"].get("labeled_per_batch"),
            c["trainer"].get("val_check_interval"),
        )
        for c in loaded
    ]
    assert budgets[0] == budgets[1], budgets  # steps, batch, labelled images per batch, validation steps
