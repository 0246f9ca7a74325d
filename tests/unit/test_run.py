"""`epspp run`'s stages, budgets and refusals (issue 32 items 2 and 3), without running any stage."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from jsonargparse import Namespace

from epspp.cli.run import run_main
from epspp.config_checks import warmup_note
from epspp.errors import EPSError
from epspp.run import RunOptions, fingerprint, preset_folder, run_stages, step_overrides

REPO = Path(__file__).resolve().parents[2]
PHOTOS = REPO / "configs" / "photos"


def _options(tmp_path: Path, **changes: object) -> RunOptions:
    for folder in ("photos", "saliency", "new"):
        (tmp_path / folder).mkdir(exist_ok=True)
    (tmp_path / "labels.csv").write_text("id,classes\na,cat\n")
    return RunOptions(
        tmp_path / "photos",
        tmp_path / "labels.csv",
        tmp_path / "out",
        **({"saliency": tmp_path / "saliency"} | changes),
    )


def test_step_overrides_scale_the_preset_budget(tmp_path: Path) -> None:
    # configs/photos/localization_eps++.yaml: 100 steps, IRD warm-up 10, validation every 25, logs every 2
    assert step_overrides(PHOTOS / "localization_eps++.yaml", 40) == [
        "--trainer.max_steps",
        "40",
        "--model.init_args.ird_warmup_steps",
        "4",
        "--trainer.val_check_interval",
        "10",
        "--trainer.log_every_n_steps",
        "1",
    ]
    assert step_overrides(PHOTOS / "localization_eps++.yaml", 1000)[-2:] == ["--trainer.log_every_n_steps", "20"]
    assert step_overrides(PHOTOS / "localization_eps.yaml", 300)[2:4] == ["--model.init_args.eps_warmup_steps", "30"]
    # segmentation.yaml: 100 steps, no warm-up, no step-counted validation; intervals never below 1
    assert step_overrides(PHOTOS / "segmentation.yaml", 3) == [
        "--trainer.max_steps",
        "3",
        "--trainer.log_every_n_steps",
        "1",
    ]
    assert step_overrides(PHOTOS / "segmentation.yaml", None) == []
    config = tmp_path / "unlimited.yaml"
    config.write_text("trainer: {max_steps: -1, log_every_n_steps: 50}\n")
    assert step_overrides(config, 7) == ["--trainer.max_steps", "7"]  # no budget to scale from
    config.write_text("trainer: {max_steps: 0, log_every_n_steps: 50}\nmodel: {init_args: {ird_warmup_steps: 10}}\n")
    assert step_overrides(config, 7) == ["--trainer.max_steps", "7"]  # a budget of 0 steps: none to scale from either


def test_photos_preset_budgets_and_warmups_agree() -> None:
    """Each warm-up is 10% of its fit's budget, crops keep a photo's detail, and the backbones are pretrained."""
    for method in ("cam", "eps", "eps++"):
        config = yaml.safe_load((PHOTOS / f"localization_{method}.yaml").read_text())
        init = config["model"]["init_args"]
        for key in ("ird_warmup_steps", "eps_warmup_steps"):
            if key in init:
                assert init[key] * 10 == config["trainer"]["max_steps"]
        assert init["pretrained"] is True and init["pretrained_path"] is None
        assert config["data"]["crop_size"] >= 224
    segmentation = yaml.safe_load((PHOTOS / "segmentation.yaml").read_text())
    assert segmentation["data"]["crop_size"] >= 224 and segmentation["model"]["init_args"]["pretrained"] is True


def test_stages_in_order_with_their_inputs(tmp_path: Path) -> None:
    options = _options(tmp_path, predict=tmp_path / "new", max_steps=5, pretrained=False)
    stages = run_stages(options)
    assert [s.name for s in stages] == ["dataset", "stage 1", "pseudo-masks", "stage 3", "masks", "predictions"]
    out = tmp_path / "out"
    assert [s.folder for s in stages] == [
        out / "dataset",
        out / "localization",
        out / "pseudo_masks",
        out / "segmentation_wsss",
        out / "masks",
        out / "predictions",
    ]
    assert [s.inputs for s in stages] == [
        (),
        (out / "dataset",),
        (out / "localization",),
        (out / "pseudo_masks",),
        (out / "segmentation_wsss",),
        (out / "segmentation_wsss",),
    ]
    dataset = stages[0].args
    assert dataset[dataset.index("--saliency") + 1] == str(tmp_path / "saliency")
    assert dataset[dataset.index("--val-fraction") + 1] == "0.2"
    for fit in (stages[1], stages[3]):
        assert fit.step_budget() == 5
        assert fit.overrides[-4:] == ("--model.init_args.pretrained", "false", "--model.init_args.freeze_bn", "false")
    assert stages[1].configs == [preset_folder("photos") / "localization_eps++.yaml"]
    # without --saliency: the saliency stage first, and the dataset depends on it
    made = run_stages(_options(tmp_path, saliency=None, method="cam"))
    assert [s.name for s in made[:2]] == ["saliency", "dataset"] and made[1].inputs == (out / "saliency",)
    assert made[2].configs[0].name == "localization_cam.yaml" and len(made) == 6  # no predictions stage


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"method": "sam"}, "--method sam: expected one of cam, eps, eps++"),
        ({"max_steps": 0}, "--max-steps must be >= 1, got 0"),
        ({"predict": Path("/no/such/folder")}, "--predict /no/such/folder is not a folder"),
        ({"saliency_model": "u2net"}, "--saliency-model and --saliency-model-path make saliency maps: leave them out"),
    ],
)
def test_bad_options_refused_in_one_line(tmp_path: Path, changes: dict, message: str) -> None:
    from epspp.run import check_options

    with pytest.raises(EPSError, match="^" + message.replace("+", r"\+")):
        check_options(_options(tmp_path, **changes))


def test_a_budget_of_one_step_is_accepted(tmp_path: Path) -> None:
    """--max-steps >= 1: 1 is the least (boundary sweep; 0 is refused above)."""
    from epspp.run import check_options

    check_options(_options(tmp_path, max_steps=1))


def test_run_main_errors_are_one_line_and_write_nothing(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    _options(tmp_path)
    args = [
        "--images",
        str(tmp_path / "photos"),
        "--labels",
        str(tmp_path / "labels.csv"),
        "--saliency",
        str(tmp_path / "saliency"),
    ]
    assert run_main([*args, "--out", str(tmp_path / "photos" / "run")]) == 2
    assert capsys.readouterr().err == (
        f"epspp run: error: --out {tmp_path / 'photos' / 'run'} is inside the image "
        f"folder {tmp_path / 'photos'}: writing there would add to or replace files "
        "that are not this command's; choose a folder of its own\n"
    )
    assert run_main([*args, "--out", str(tmp_path / "out"), "--preset", "nope"]) == 2
    assert capsys.readouterr().err.startswith("epspp run: error: --preset nope: no such preset (known: photos;")
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "mine.txt").write_text("a user's file")
    assert run_main([*args, "--out", str(tmp_path / "taken")]) == 2
    assert "holds files that `epspp run` did not write" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.csv", "new", "photos", "saliency", "taken"]


def test_warmup_note_when_a_fit_ends_within_its_warmup() -> None:
    def config(loss: str, warmup: int, max_steps: int) -> Namespace:
        key = "ird_warmup_steps" if loss == "ird" else "eps_warmup_steps"
        return Namespace(
            trainer=Namespace(max_steps=max_steps),
            model=Namespace(init_args=Namespace(saliency_loss=loss, **{key: warmup})),
        )

    assert warmup_note(config("ird", 150, 30)) == (
        "--model.init_args.ird_warmup_steps 150 >= --trainer.max_steps 30: IRD never drops a pixel (EPS++ without "
        "its inconsistent-region drop) in this run; lower --model.init_args.ird_warmup_steps (e.g. 6) to train the "
        "full loss"
    )
    assert warmup_note(config("eps", 30, 30)).startswith(
        "--model.init_args.eps_warmup_steps 30 >= --trainer.max_steps 30: EPS's overlap test never runs"
    )
    assert warmup_note(config("ird", 29, 30)) is None
    assert warmup_note(config("ird", 150, -1)) is None  # no step budget
    assert warmup_note(config("none", 0, 5)) is None


def test_changed_input_files_rerun_their_stages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """Photos added or labels edited (the same command): the dataset runs again in place and everything after it;
    new photos in --predict: only the predictions, their old folder kept. The stages are faked."""
    from epspp import chain, run, run_report

    options = _options(tmp_path)
    (tmp_path / "photos" / "a.jpg").write_bytes(b"1")
    (tmp_path / "new" / "b.jpg").write_bytes(b"2")
    ran: list[str] = []
    monkeypatch.setattr(chain, "run_command", lambda argv, *rest: ran.append(argv[3]) or 0)
    monkeypatch.setattr(run_report, "write_run_report", lambda *args: {"report": None, "picture": None})

    def again() -> list[str]:
        ran.clear()
        run.run_own_data(
            options.images, options.labels, options.out, saliency=options.saliency, predict=tmp_path / "new"
        )
        return list(ran)

    assert again() == ["prepare", "fit", "predict", "fit", "predict", "predict"]
    recorded = (options.out / "inputs.json").read_text()
    assert again() == []  # nothing changed: nothing runs, inputs.json is not rewritten
    assert (options.out / "inputs.json").read_text() == recorded
    (tmp_path / "new" / "c.jpg").write_bytes(b"3")
    capsys.readouterr()
    assert again() == ["predict"]
    assert (
        "[run] predictions: its input files changed since the last run; running it again (the old outputs are in "
        f"{options.out / 'predictions.previous'})" in capsys.readouterr().out
    )
    (tmp_path / "other").mkdir()  # another --predict folder: a changed command, the chain's own rerun
    ran.clear()
    run.run_own_data(options.images, options.labels, options.out, saliency=options.saliency, predict=tmp_path / "other")
    printed = capsys.readouterr().out
    assert ran == ["predict"] and "[run] predictions: its command changed; running it again" in printed
    assert "input files changed" not in printed
    (tmp_path / "labels.csv").write_text("id,classes\na,cat dog\n")
    assert again() == ["prepare", "fit", "predict", "fit", "predict", "predict"]
    assert not (options.out / "dataset.previous").exists()  # in place: prepare folder keeps the earlier splits
    assert (options.out / "localization.previous").is_dir()


def test_an_input_edited_in_place_at_the_same_size_changes_the_fingerprint(tmp_path: Path) -> None:
    """A relabelled CSV line or a replaced photo of equal size: only the modification time tells it changed."""
    photos, labels = tmp_path / "photos", tmp_path / "labels.csv"
    photos.mkdir()
    (photos / "a.jpg").write_bytes(b"12")
    labels.write_text("id,classes\na,cat\n")
    for path in (photos / "a.jpg", labels):
        os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    before = fingerprint(photos, labels)
    assert fingerprint(photos, None, labels) == before  # unchanged files: the same digest
    labels.write_text("id,classes\na,dog\n")  # same size
    os.utime(labels, ns=(2_000_000_000, 2_000_000_000))
    assert fingerprint(photos, labels) != before
    labels.write_text("id,classes\na,cat\n")
    os.utime(labels, ns=(1_000_000_000, 1_000_000_000))
    assert fingerprint(photos, labels) == before
    os.utime(photos / "a.jpg", ns=(1_000_000_000, 1_000_000_001))  # a photo rewritten 1 ns later
    assert fingerprint(photos, labels) != before


# ------------------------------------------------------------ variation pass (issue 34 item 6)
def test_every_option_of_run_own_data_reaches_its_stage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each argument set away from its default, against the stages of the same options given by keyword."""
    from epspp import run, run_report

    model = tmp_path / "u2net.onnx"
    model.write_bytes(b"onnx")
    expected = _options(
        tmp_path,
        saliency=None,
        method="cam",
        predict=tmp_path / "new",
        max_steps=5,
        pretrained=False,
        saliency_model="u2netp",
        saliency_model_path=model,
        overrides=("--x", "1"),
    )
    seen: list[list] = []

    class Recording:
        def run(self, stages: list) -> dict:
            seen.append(list(stages))
            return {}

    monkeypatch.setattr(run_report, "write_run_report", lambda *args: {})
    run.run_own_data(
        str(tmp_path / "photos"),
        str(tmp_path / "labels.csv"),
        str(tmp_path / "out"),
        preset="photos",
        method="cam",
        predict=str(tmp_path / "new"),
        max_steps=5,
        pretrained=False,
        saliency_model="u2netp",
        saliency_model_path=str(model),
        overrides=["--x", "1"],
        runner=Recording(),  # type: ignore[arg-type]
    )
    assert seen == [run_stages(expected)]
    saliency = seen[0][0].args
    assert saliency[-4:] == ("--model", "u2netp", "--model-path", str(model))
    assert seen[0][2].overrides[-6:] == (
        "--model.init_args.pretrained",
        "false",
        "--model.init_args.freeze_bn",
        "false",
        "--x",
        "1",
    )


def test_pretrained_backbones_add_no_weight_flags_and_the_last_stages_predict_every_photo(tmp_path: Path) -> None:
    stages = run_stages(_options(tmp_path, predict=tmp_path / "new", overrides=("--x", "1")))
    out = tmp_path / "out"
    for fit in (stages[1], stages[3]):
        assert fit.overrides == ("--x", "1")  # no --max-steps, pretrained: only the user's flags
    assert stages[3].args[stages[3].args.index("--data.pseudo_mask_dir") + 1] == str(out / "pseudo_masks")
    quiet = ("--trainer.logger", "false", "--pseudo_masks.save_overlays", "true")
    masks, predictions = stages[4], stages[5]
    assert masks.args[masks.args.index("--data.predict_split") + 1] == "all" and masks.overrides == quiet
    assert predictions.args[predictions.args.index("--data.predict_image_dir") + 1] == str(tmp_path / "new")
    assert predictions.overrides == quiet
    for stage in (masks, predictions):  # each writes its config and logs in its own folder
        assert stage.args[stage.args.index("--trainer.default_root_dir") + 1] == str(stage.folder)
        assert stage.args[stage.args.index("--ckpt_path") + 1] == str(out / "segmentation_wsss/checkpoints/last.ckpt")


def test_a_preset_given_as_a_folder_needs_both_stage_configs(tmp_path: Path) -> None:
    from epspp.errors import ConfigError

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "segmentation.yaml").write_text("{}\n")
    with pytest.raises(ConfigError, match=f"^--preset {mine}: no such preset"):
        preset_folder(str(mine))
    (mine / "pseudo_masks.yaml").write_text("{}\n")
    assert preset_folder(str(mine)) == mine


def test_an_epoch_fraction_is_not_a_step_count(tmp_path: Path) -> None:
    """``val_check_interval: 0.5`` (half an epoch) and a bool are not scaled; an int interval is."""
    config = tmp_path / "c.yaml"
    config.write_text("trainer: {max_steps: 100, val_check_interval: 0.5, log_every_n_steps: true}\n")
    assert step_overrides(config, 50) == ["--trainer.max_steps", "50"]
    config.write_text("trainer: {max_steps: 100, val_check_interval: 30}\n")
    assert step_overrides(config, 50) == ["--trainer.max_steps", "50", "--trainer.val_check_interval", "15"]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"images": Path("/no/photos")}, "--images /no/photos is not a folder: give the folder of your photos"),
        ({"saliency": Path("/no/maps")}, "--saliency /no/maps is not a folder: give the folder of your saliency maps"),
        ({"labels": Path("/no/l.csv")}, "--labels /no/l.csv is not a file: give your label file"),
        (
            {"saliency": None, "saliency_model_path": Path("/no/m.onnx")},
            "--saliency-model-path /no/m.onnx is not a file",
        ),
    ],
)
def test_each_input_path_is_checked_under_its_own_flag(tmp_path: Path, changes: dict, message: str) -> None:
    from dataclasses import replace

    from epspp.run import check_options

    with pytest.raises(EPSError, match="^" + message):
        check_options(replace(_options(tmp_path), **changes))  # images and labels too
    check_options(_options(tmp_path, saliency=None, saliency_model="u2netp"))  # made here: the detector may be named


def test_changed_photos_rerun_the_saliency_stage_and_the_dataset_in_place(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Without --saliency both first stages read the photos: both lose their markers; later stages keep theirs (the
    chain reruns them from the ids of their inputs)."""
    from epspp.run import forget_changed_inputs

    options = _options(tmp_path, saliency=None)
    stages = run_stages(options)
    for stage in stages[:3]:
        stage.folder.mkdir(parents=True)
        (stage.folder / "stage.json").write_text("{}")
    forget_changed_inputs(options, stages)  # the first run: fingerprints recorded
    assert all((stage.folder / "stage.json").is_file() for stage in stages[:3])
    (tmp_path / "photos" / "a.jpg").write_bytes(b"1")
    capsys.readouterr()
    forget_changed_inputs(options, stages)
    assert [(stage.folder / "stage.json").is_file() for stage in stages[:3]] == [False, False, True]
    assert capsys.readouterr().out == (
        "[run] saliency: its input files changed since the last run; running it again\n"
        "[run] dataset: its input files changed since the last run; running it again\n"
    )
