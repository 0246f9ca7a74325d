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
        ({"scales": ()}, r"--model\.init_args\.scales must be a non-empty list of positive numbers <= 8, got \[\]"),
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
        (
            {"ird_threshold_maps": "max"},
            r"--model\.init_args\.ird_threshold_maps must be normalized, softmax or floored",
        ),
        ({"ird_floor_fraction": 1.0}, r"--model\.init_args\.ird_floor_fraction must be in \(0, 1\), got 1\.0"),
        ({"ird_floor": 1.0}, r"--model\.init_args\.ird_floor must be in \[0, 1\), got 1\.0"),
        (
            {"num_classes": 0, "class_names": ["background"]},
            r"--model\.init_args\.num_classes must be in \[1, 254\], got 0",
        ),
        # 8-bit masks: ids 1..254 hold object classes, 255 is the ignore label (class 291 would be written as 35)
        ({"num_classes": 255}, r"--model\.init_args\.num_classes must be in \[1, 254\], got 255: masks are 8-bit"),
        ({"scales": (1.0, 8.5)}, r"--model\.init_args\.scales must be a non-empty list of positive numbers <= 8"),
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
            r"--data\.resize_long must be \[low, high\] with 0 < low <= high <= 4096, got \[512, 256\]",
        ),
        ({"resize_long": (0, 256)}, r"--data\.resize_long must be"),
        ({"resize_long": (256, 4097)}, r"--data\.resize_long must be .* <= 4096, got \[256, 4097\]"),
        ({"crop_size": 4097}, r"--data\.crop_size must be an integer in \[1, 4096\], got 4097"),
        ({"eval_size": 100_000}, r"--data\.eval_size must be an integer in \[1, 4096\], got 100000"),
        ({"num_workers": 1025}, r"--data\.num_workers must be an integer in \[0, 1024\], got 1025"),
        ({"num_workers": -1}, r"--data\.num_workers must be an integer in \[0, 1024\], got -1"),
        ({"seed": -1}, r"--data\.seed must be an integer in \[0, 4294967295\], got -1"),
        ({"seed": 2**32}, r"--data\.seed must be an integer in \[0, 4294967295\], got 4294967296"),
        ({"eval_scale": 8.5}, r"--data\.eval_scale must be in \[0, 8\], got 8\.5"),
        ({"train_scales": ()}, r"--data\.train_scales must be a non-empty list of positive numbers"),
        ({"train_scales": (0.5, -1.0)}, r"--data\.train_scales must be"),
        ({"jitter_p": 1.5}, r"--data\.jitter_p must be in \[0, 1\]"),
        ({"std": (0.2, 0.0, 0.2)}, r"--data\.std must be positive"),
        (
            {"saliency_errors": True, "with_saliency": False},
            r"--data\.saliency_errors true .* needs --data\.task localization and --data\.with_saliency true, "
            r"got localization and False",
        ),
        ({"saliency_errors": True, "task": "segmentation"}, r"--data\.saliency_errors true .* got segmentation"),
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
    # and names the floored reading's defaults as the signature has them, with their source
    floor = {
        name: inspect.signature(LocalizationModule).parameters[name].default
        for name in ("ird_floor_fraction", "ird_floor")
    }
    assert f"(defaults {floor['ird_floor_fraction']} and {floor['ird_floor']}: 1-stage-wseg's" in text
    assert "models/stage_net.py line 28" in text


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


def test_each_range_keeps_its_exact_limits() -> None:
    from epspp.config_checks import check_class_count, check_data_options, check_devices, check_trainer_options

    limits = {
        "resize_long": (4096, 4096),
        "crop_size": 4096,
        "eval_size": 4096,
        "num_workers": 1024,
        "seed": 2**32 - 1,
        "train_scales": (8.0,),
        "eval_scale": 8.0,
        "color_jitter": 0.0,
        "jitter_hue": 0.0,
        "jitter_p": 0.0,
        "std": (1.0, 1.0, 1.0),
    }
    check_data_options(limits)
    check_data_options(limits | {"crop_size": 1, "eval_size": 1, "num_workers": 0, "seed": 0})
    check_devices(1024)
    check_trainer_options({"num_nodes": 1024})
    check_class_count("--model.init_args.num_classes", 254)
    with pytest.raises(ConfigError, match=r"--trainer\.devices .*, got 1025 \(a count is at most 1024\)"):
        check_devices(1025)
    with pytest.raises(ConfigError, match=r"--trainer\.num_nodes must be an integer in \[1, 1024\], got 0"):
        check_trainer_options({"num_nodes": 0})
    with pytest.raises(ConfigError, match=r"--data\.num_workers must be an integer in \[0, 1024\], got 2\.5"):
        check_data_options(limits | {"num_workers": 2.5})  # not an integer


@pytest.mark.parametrize(
    ("seed", "refused"), [(True, False), (0, False), (2**32 - 1, False), (-1, True), (2**32, True)]
)
def test_seed_everything_is_a_seed_numpy_accepts(seed: object, refused: bool) -> None:
    from types import SimpleNamespace

    from epspp.config_checks import check_config

    config = SimpleNamespace(trainer={"devices": 1}, get={"seed_everything": seed}.get)
    if refused:
        message = rf"--seed_everything must be an integer in \[0, 4294967295\], got {seed}"
        with pytest.raises(ConfigError, match=message):
            check_config(config)
    else:
        check_config(config)


def _model_defaults(module: type) -> dict:
    import inspect

    return {
        name: p.default
        for name, p in inspect.signature(module).parameters.items()
        if p.default is not inspect.Parameter.empty
    }


def test_the_closed_ends_of_the_model_ranges_are_accepted_and_one_step_beyond_refused() -> None:
    """Issue 34 item 6 (exact boundaries): momentum and ird_floor in [0, 1), a class count from 1."""
    from epspp.config_checks import check_class_count, check_localization_options

    hp = _model_defaults(LocalizationModule)
    check_localization_options(hp | {"momentum": 0.0})  # plain SGD
    with pytest.raises(ConfigError, match=r"momentum must be in \[0, 1\), got -0\.01"):
        check_localization_options(hp | {"momentum": -0.01})
    check_localization_options(hp | {"ird_threshold_maps": "floored", "ird_floor": 0.0})  # no absolute floor
    with pytest.raises(ConfigError, match=r"ird_floor must be in \[0, 1\), got -0\.01"):
        check_localization_options(hp | {"ird_floor": -0.01})
    check_class_count("--model.init_args.num_classes", 1)  # one object class and the background
    with pytest.raises(ConfigError, match=r"num_classes must be in \[1, 254\], got 0"):
        check_class_count("--model.init_args.num_classes", 0)


@pytest.mark.parametrize("name", ["accumulate_grad_batches", "check_val_every_n_epoch"])
def test_trainer_counts_start_at_one(name: str) -> None:
    from epspp.config_checks import check_trainer_options

    check_trainer_options({name: 1})
    with pytest.raises(ConfigError, match=rf"--trainer\.{name} must be an integer >= 1, got 0"):
        check_trainer_options({name: 0})


def test_no_warmup_note_without_a_step_budget_of_at_least_one() -> None:
    from jsonargparse import Namespace

    from epspp.config_checks import warmup_note

    def config(max_steps: int) -> Namespace:
        return Namespace(
            trainer=Namespace(max_steps=max_steps),
            model=Namespace(init_args=Namespace(saliency_loss="ird", ird_warmup_steps=5)),
        )

    assert warmup_note(config(0)) is None  # max_steps 0: no budget to compare (as -1, Lightning's default)
    assert warmup_note(config(1)).startswith("--model.init_args.ird_warmup_steps 5 >= --trainer.max_steps 1")


# ------------------------------------------------------------ variation pass (issue 34 item 6)
@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("head_lr_mult", 0.0, "must be > 0, got 0.0"),
        ("bias_lr_mult", -1.0, "must be > 0, got -1.0"),
        ("weight_decay", -1e-4, "must be >= 0, got -0.0001"),
        ("poly_power", -0.5, "must be >= 0, got -0.5"),
        ("lam", 1.5, "must be in [0, 1], got 1.5"),
        ("saliency_weight", -1.0, "must be >= 0, got -1.0"),
        ("pamr_iter", -1, "must be >= 0, got -1"),
        ("ird_warmup_steps", -1, "must be >= 0, got -1"),
        ("eps_warmup_steps", -1, "must be >= 0, got -1"),
        ("ird_refine", "crf", "must be pamr (the paper) or none, got 'crf'"),
        ("pamr_dilations", [], "must be a non-empty list of integers >= 1, got []"),
    ],
)
def test_each_localization_option_is_refused_under_its_own_name(name: str, value: object, message: str) -> None:
    from epspp.config_checks import check_localization_options

    hp = _model_defaults(LocalizationModule) | {"num_classes": 2}
    with pytest.raises(ConfigError) as error:
        check_localization_options(hp | {name: value})
    assert str(error.value) == f"--model.init_args.{name} {message}"


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("head_lr_mult", 0.0, "must be > 0, got 0.0"),
        ("poly_power", -1.0, "must be >= 0, got -1.0"),
        ("momentum", 1.0, "must be in [0, 1), got 1.0"),
        ("pseudo_weight", -0.5, "must be >= 0, got -0.5"),
        ("crf_workers", -1, "must be >= 0, got -1"),
        ("num_classes", 255, "must be in [1, 254], got 255"),
    ],
)
def test_each_segmentation_option_is_refused_under_its_own_name(name: str, value: object, message: str) -> None:
    from epspp.config_checks import check_segmentation_options

    hp = _model_defaults(SegmentationModule) | {"num_classes": 2}
    with pytest.raises(ConfigError) as error:
        check_segmentation_options(hp | {name: value})
    assert str(error.value).startswith(f"--model.init_args.{name} {message}")
    check_segmentation_options(hp | {"msc_scales": ()})  # no multi-scale training: allowed (tta_scales are not)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("color_jitter", -0.1, "--data.color_jitter must be >= 0, got -0.1"),
        ("jitter_hue", 0.6, "--data.jitter_hue must be in [0, 0.5], got 0.6"),
        ("eval_scale", 0.0, "--data.eval_scale must be > 0, got 0.0"),
        ("std", (1.0, -1.0, 1.0), "--data.std must be positive in every channel, got [1.0, -1.0, 1.0]"),
    ],
)
def test_each_data_option_is_refused_under_its_own_name(name: str, value: object, message: str) -> None:
    from epspp.config_checks import check_data_options

    hp = {
        "resize_long": (256, 256),
        "train_scales": None,
        "color_jitter": 0.0,
        "jitter_hue": 0.5,  # its closed end
        "jitter_p": 1.0,
        "std": (1.0, 1.0, 1.0),
    }
    check_data_options(hp)
    with pytest.raises(ConfigError) as error:
        check_data_options(hp | {name: value})
    assert str(error.value) == message


@pytest.mark.parametrize("devices", [-2, "-2", [], 0, "0"])
def test_no_device_at_all_is_refused(devices: object) -> None:
    from epspp.config_checks import check_devices

    with pytest.raises(ConfigError, match=r"^--trainer\.devices must be a positive count"):
        check_devices(devices)


def test_check_config_checks_the_model_its_class_names_and_the_data_when_there_is_one() -> None:
    from jsonargparse import Namespace

    from epspp.config_checks import check_config

    def config(class_path: str, **init_args: object) -> Namespace:
        return Namespace(trainer=Namespace(devices=1), model=Namespace(class_path=class_path, init_args=init_args))

    seg = _model_defaults(SegmentationModule) | {"num_classes": 2, "tta_scales": []}
    loc = _model_defaults(LocalizationModule) | {"num_classes": 2, "bg_threshold": 1.5}
    with pytest.raises(ConfigError, match=r"^--model\.init_args\.tta_scales must be a non-empty list"):
        check_config(config("epspp.tasks.SegmentationModule", **seg))
    with pytest.raises(ConfigError, match=r"^--model\.init_args\.bg_threshold must be in \(0, 1\)"):
        check_config(config("epspp.tasks.localization.LocalizationModule", **loc))
    check_config(config("mine.OtherModule", **loc))  # a class of the user's: its own checks
    data = config("mine.OtherModule")
    data.data = Namespace(resize_long=(512, 256))
    with pytest.raises(ConfigError, match=r"^--data\.resize_long must be"):
        check_config(data)
    with pytest.raises(ConfigError, match=r"^--trainer\.num_nodes must be an integer in \[1, 1024\], got 0"):
        check_config(Namespace(trainer=Namespace(devices=1, num_nodes=0)))
