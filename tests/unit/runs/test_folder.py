"""A run folder's files set aside under free ``*.previous`` names, and the folders a failed command created
removed only when they hold no file."""

from __future__ import annotations

from pathlib import Path

import pytest

from epspp.runs import folder as run_folder
from epspp.runs.folder import discard_empty_new_folders, note_new_folder, previous_name


@pytest.fixture
def rank_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    """No launcher's rank variables: the test runs as the first process of all."""
    for name in ("LOCAL_RANK", "NODE_RANK"):
        monkeypatch.delenv(name, raising=False)


def test_previous_names_are_free_and_keep_the_suffix(tmp_path: Path) -> None:
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "backbone.pth").write_text("w")
    assert previous_name(tmp_path / "checkpoints") == tmp_path / "checkpoints.previous"
    assert previous_name(tmp_path / "backbone.pth") == tmp_path / "backbone.previous.pth"
    (tmp_path / "checkpoints.previous").mkdir()
    (tmp_path / "checkpoints.previous-2").mkdir()
    assert previous_name(tmp_path / "checkpoints") == tmp_path / "checkpoints.previous-3"


def test_only_new_folders_without_files_are_removed(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setattr(run_folder, "_new_folders", [])
    (tmp_path / "kept").mkdir()
    note_new_folder(tmp_path / "runs" / "demo" / "pretrain")  # the outermost new folder: runs
    note_new_folder(tmp_path / "kept" / "a" / "b")
    note_new_folder(tmp_path / "other")
    (tmp_path / "runs" / "demo" / "pretrain" / "wandb").mkdir(parents=True)
    (tmp_path / "kept" / "a" / "b").mkdir(parents=True)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    discard_empty_new_folders()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept", "other"]
    assert not (tmp_path / "kept" / "a").exists()  # "kept" existed before: only "a" (new, empty) went
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine"


def test_every_folder_a_config_writes_in_is_named_by_its_key(tmp_path: Path) -> None:
    """written_folders: checkpoint folders, a backbone export's folder (relative to the run folder, or absolute), a
    single logger and a list of loggers, each under the key a message names; a folder inside the dataset is refused
    by check_run_folder in one line naming that key."""
    from jsonargparse import Namespace

    from epspp.errors import OutputError
    from epspp.runs.folder import check_run_folder, written_folders

    data, run = tmp_path / "data", tmp_path / "run"

    def callback(name: str, **args: str) -> Namespace:
        return Namespace(class_path=f"some.module.{name}", init_args=Namespace(**args))

    callbacks = [
        callback("ModelCheckpoint"),  # no dirpath: the run folder's checkpoints/, nothing to name
        callback("ModelCheckpoint", dirpath=str(tmp_path / "ckpts")),
        callback("BackboneExport", filename="export/backbone.pth"),
        callback("BackboneExport", filename=str(data / "b.pth")),
    ]
    loggers = [callback("CSVLogger", save_dir=str(tmp_path / "logs")), callback("WandbLogger", dir=str(data))]
    config = Namespace(
        trainer=Namespace(default_root_dir=str(run), callbacks=callbacks, logger=loggers),
        data=Namespace(root=str(data)),
    )
    assert written_folders(config) == {
        tmp_path / "ckpts": "trainer.callbacks[1].init_args.dirpath",
        run / "export": "trainer.callbacks[2].init_args.filename",
        data: "trainer.callbacks[3].init_args.filename",
        tmp_path / "logs": "trainer.logger[0].init_args.save_dir",
    }
    with pytest.raises(
        OutputError, match=rf"^trainer\.callbacks\[3\]\.init_args\.filename {data} is inside the dataset"
    ):
        check_run_folder(config, "fit")
    config.trainer.logger = callback("TensorBoardLogger", save_dir=str(data / "tb"))
    config.trainer.callbacks = callbacks[:3]
    assert written_folders(config)[data / "tb"] == "trainer.logger.init_args.save_dir"
    with pytest.raises(OutputError, match=rf"^trainer\.logger\.init_args\.save_dir {data / 'tb'} is inside the data"):
        check_run_folder(config, "fit")


@pytest.mark.parametrize(
    ("first_line", "subcommand"),
    [
        ("# epspp\n", None),  # two words: not a dump of epspp's (the subcommand is the third word)
        ("# epspp fit\n", None),  # three words, not the whole mark
        (run_folder.dump_mark("predict"), "predict"),
        (run_folder.LEGACY_DUMP_MARK, "fit"),
    ],
)
def test_a_dump_is_known_by_its_whole_first_line(tmp_path: Path, first_line: str, subcommand: str | None) -> None:
    """None when epspp did not write it, whatever its first line holds (boundary sweep: a line of two words)."""
    (tmp_path / "config.yaml").write_text(first_line + "trainer: {}\n")
    assert run_folder.dump_subcommand(tmp_path / "config.yaml") == subcommand


# The write rule of a stage's run folder (check_run_folder, config_dump_path) and the paths prepare_run rewrites.


def _ns(**kwargs: object):  # noqa: ANN202
    from jsonargparse import Namespace

    return Namespace(**kwargs)


def _callback(class_name: str, **args: object):  # noqa: ANN202
    return _ns(class_path=f"lightning.pytorch.callbacks.{class_name}", init_args=_ns(**args))


def _fit_config(root: Path, callbacks: list | None = None, ckpt_path: str | None = None, logger: object = None):  # noqa: ANN202
    if callbacks is None:
        callbacks = [_callback("ModelCheckpoint", save_last=True, filename="best", monitor="val/mIoU")]
    return _ns(
        trainer=_ns(default_root_dir=str(root), callbacks=callbacks, logger=logger),
        data=_ns(root=str(root.parent / "data")),
        ckpt_path=ckpt_path,
    )


FIT_MARK = "# epspp fit: this run's configuration as Lightning dumps it (each fit in this folder rewrites it)\n"
LEGACY = "# epspp: this run's configuration as Lightning dumps it (each run in this folder rewrites it)\n"


def test_a_dump_is_known_by_its_first_line_only(tmp_path: Path) -> None:
    from epspp.runs.folder import dump_mark, dump_subcommand

    assert dump_mark("fit") == FIT_MARK
    cases = {
        "fit.yaml": FIT_MARK + "seed: 1\n",
        "legacy.yaml": LEGACY + "seed: 1\n",
        "test.yaml": FIT_MARK.replace("fit", "test"),
        "mine.yaml": "seed: 1\n",
        "second.yaml": "seed: 1\n" + FIT_MARK,
        "mixed.yaml": FIT_MARK.replace("each fit", "each test"),
    }
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
    (tmp_path / "binary.yaml").write_bytes(b"\xff\xfe\x00")
    found = {name: dump_subcommand(tmp_path / name) for name in [*cases, "binary.yaml", "absent.yaml"]}
    assert found == {
        "fit.yaml": "fit",
        "legacy.yaml": "fit",
        "test.yaml": "test",
        "mine.yaml": None,
        "second.yaml": None,
        "mixed.yaml": None,
        "binary.yaml": None,
        "absent.yaml": None,
    }


def test_a_dump_replaces_only_its_own_subcommands(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from epspp.errors import ConfigError
    from epspp.runs.folder import config_dump_path

    assert config_dump_path(tmp_path, "fit") == tmp_path / "config.yaml"  # free
    (tmp_path / "config.yaml").write_text(FIT_MARK)
    assert config_dump_path(tmp_path, "fit") == tmp_path / "config.yaml"  # an earlier fit's
    assert config_dump_path(tmp_path, "test") == tmp_path / "config.test.yaml"  # a fit's: kept, no note
    assert capsys.readouterr().err == ""
    (tmp_path / "config.yaml").write_text("mine: 1\n")
    assert config_dump_path(tmp_path, "fit") == tmp_path / "config.fit.yaml"
    assert capsys.readouterr().err == (
        f"[epspp] {tmp_path / 'config.yaml'} is not a configuration dump of epspp (a file of yours?): kept; this "
        f"run's configuration goes to {tmp_path / 'config.fit.yaml'}\n"
    )
    assert config_dump_path(tmp_path, "fit", "cfg") == tmp_path / "cfg"  # no suffix: .yaml on the second name
    (tmp_path / "cfg").write_text("mine\n")
    assert config_dump_path(tmp_path, "fit", "cfg") == tmp_path / "cfg.fit.yaml"
    (tmp_path / "config.fit.yaml").write_text(FIT_MARK.replace("fit", "validate"))
    with pytest.raises(ConfigError) as error:
        config_dump_path(tmp_path, "fit")
    assert str(error.value) == (
        f"{tmp_path} holds a config.yaml and a config.fit.yaml that epspp fit did not write: move them, or "
        "choose another --trainer.default_root_dir"
    )


def test_a_fit_never_replaces_an_earlier_fits_last_checkpoint_silently(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from epspp.errors import ConfigError
    from epspp.runs.folder import check_run_folder

    root = tmp_path / "run"
    config = _fit_config(root)
    check_run_folder(config, "fit")  # a new folder
    (root / "checkpoints").mkdir(parents=True)
    check_run_folder(config, "fit")  # an empty one
    (root / "checkpoints" / "last.ckpt").write_text("a user's")
    with pytest.raises(ConfigError) as error:  # no fit's dump: the file is not a fit's
        check_run_folder(config, "fit")
    assert str(error.value) == (
        f"--trainer.default_root_dir {root} holds {root / 'checkpoints' / 'last.ckpt'}, which no `epspp fit` wrote "
        "there (the folder holds no configuration dump of a fit): choose another --trainer.default_root_dir, or "
        "move the file (to continue a fit from it: --ckpt_path)"
    )
    (root / "lightning_logs" / "version_0").mkdir(parents=True)
    (root / "lightning_logs" / "version_0" / "config.yaml").write_text(FIT_MARK)  # */*/config*.yaml
    with pytest.raises(ConfigError) as error:
        check_run_folder(config, "fit")
    assert str(error.value) == (
        f"--trainer.default_root_dir {root} holds an earlier fit ({root / 'checkpoints' / 'last.ckpt'}): continue "
        "it with --ckpt_path last, or start over with --start_over (its files are kept as *.previous)"
    )
    for subcommand in ("validate", "test", "predict"):  # only a fit writes checkpoints
        check_run_folder(config, subcommand)
    check_run_folder(_fit_config(root, ckpt_path="last"), "fit")  # continued
    with pytest.raises(ConfigError) as error:
        check_run_folder(_fit_config(root, ckpt_path="last"), "fit", start_over=True)
    assert str(error.value) == ("--ckpt_path last continues a fit and --start_over starts one over: give one of them")
    assert (root / "checkpoints" / "last.ckpt").read_text() == "a user's"  # nothing moved by a refusal
    assert capsys.readouterr().err == ""


@pytest.mark.usefixtures("rank_zero")
def test_start_over_renames_the_earlier_fits_files_and_deletes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from epspp.runs.folder import check_run_folder

    root = tmp_path / "run"
    callbacks = [
        _callback("ModelCheckpoint", save_last=True, filename="best"),
        _callback("BackboneExport", filename="backbone.pth"),
    ]
    config = _fit_config(root, callbacks)
    (root / "checkpoints").mkdir(parents=True)
    (root / "checkpoints" / "last.ckpt").write_text("last")
    (root / "checkpoints" / "epoch=3.ckpt").write_text("e3")  # goes with its folder
    (root / "backbone.pth").write_text("b")
    (root / "progress.json").write_text("{}")
    (root / "config.yaml").write_text(FIT_MARK)
    (root / "config.test.yaml").write_text(FIT_MARK.replace("fit", "test"))  # a test's: stays
    (root / "notes.txt").write_text("mine")
    check_run_folder(config, "fit", start_over=True)
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*")) == [
        "backbone.previous.pth",
        "checkpoints.previous",
        "checkpoints.previous/epoch=3.ckpt",
        "checkpoints.previous/last.ckpt",
        "config.previous.yaml",
        "config.test.yaml",
        "notes.txt",
        "progress.previous.json",
    ]
    assert capsys.readouterr().err == (
        "[epspp] --start_over: the earlier fit's files are kept as checkpoints.previous, progress.previous.json, "
        f"backbone.previous.pth, config.previous.yaml in {root}\n"
    )
    monkeypatch.setenv("LOCAL_RANK", "1")  # another rank of the same run: the first process moves the files
    (root / "checkpoints").mkdir()
    (root / "checkpoints" / "last.ckpt").write_text("last 2")
    (root / "config.yaml").write_text(FIT_MARK)
    check_run_folder(config, "fit", start_over=True)
    assert (root / "checkpoints" / "last.ckpt").read_text() == "last 2"
    assert not (root / "checkpoints.previous-2").exists()


def test_a_checkpoint_folder_outside_the_run_folder_is_never_overwritten(tmp_path: Path) -> None:
    from epspp.errors import ConfigError
    from epspp.runs.folder import check_run_folder

    outside = tmp_path / "elsewhere"
    outside.mkdir()
    callbacks = [_callback("ModelCheckpoint", dirpath=str(outside), filename="best-{epoch}", save_last=False)]
    config = _fit_config(tmp_path / "run", callbacks)
    (outside / "last.ckpt").write_text("x")  # save_last off: not written, not refused
    (outside / "best-{epoch}.ckpt").write_text("x")  # a templated name: not a fixed output
    check_run_folder(config, "fit")
    root = tmp_path / "run"
    (root / "ckpts").mkdir(parents=True)  # an absolute dirpath inside the run folder: the run folder's rule
    (root / "ckpts" / "best.ckpt").write_text("x")
    (root / "config.yaml").write_text(FIT_MARK)
    inner = _callback("ModelCheckpoint", dirpath=str(root / "ckpts"), filename="best", save_last=False)
    check_run_folder(_fit_config(root, [inner]), "fit")
    config.trainer.callbacks[0].init_args.filename = "best"
    (outside / "best.ckpt").write_text("x")
    with pytest.raises(ConfigError) as error:
        check_run_folder(config, "fit")
    assert str(error.value) == (
        f"trainer.callbacks[0].init_args.dirpath {outside} holds {outside / 'best.ckpt'}, which this fit would "
        f"replace (the folder is outside --trainer.default_root_dir {tmp_path / 'run'}): choose another folder, or "
        "move the file (to continue a fit from it: --ckpt_path)"
    )


def test_a_fits_outputs_are_its_fixed_names(tmp_path: Path) -> None:
    from epspp.runs.folder import fit_outputs_by_key

    callbacks = [
        _callback("ModelCheckpoint", save_last=True),  # no filename: last.ckpt only
        _callback("ModelCheckpoint", dirpath=str(tmp_path / "c"), filename="best"),  # no save_last
        _callback("BackboneExport"),
        _callback("EarlyStopping", filename="x"),
    ]
    assert fit_outputs_by_key(_fit_config(tmp_path, callbacks), tmp_path) == {
        tmp_path / "ird_telemetry.csv": "",  # docs/monitoring_ird.md
        tmp_path / "warnings.txt": "",
        tmp_path / "progress.json": "",
        tmp_path / "checkpoints" / "last.ckpt": "",
        tmp_path / "c" / "best.ckpt": "trainer.callbacks[1].init_args.dirpath",
        tmp_path / "backbone.pth": "",
    }


def test_the_first_process_of_all_is_rank_0_where_a_launcher_says(monkeypatch: pytest.MonkeyPatch) -> None:
    from epspp.runs.folder import first_of_all_processes, first_process

    for name in ("LOCAL_RANK", "NODE_RANK", "RANK", "SLURM_PROCID"):
        monkeypatch.delenv(name, raising=False)
    assert first_process() and first_of_all_processes()
    cases = [
        ({"LOCAL_RANK": "0", "NODE_RANK": "0", "RANK": "0"}, True, True),
        ({"NODE_RANK": "1"}, False, False),
        ({"LOCAL_RANK": "1"}, False, False),
        ({"RANK": "4"}, True, False),  # a second node's first process
        ({"SLURM_PROCID": "0"}, True, True),
        ({"SLURM_PROCID": "2"}, True, False),
        ({"RANK": "0", "SLURM_PROCID": "3"}, True, True),  # RANK first
    ]
    for env, first, first_of_all in cases:
        for name in ("LOCAL_RANK", "NODE_RANK", "RANK", "SLURM_PROCID"):
            monkeypatch.delenv(name, raising=False)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        assert (first_process(), first_of_all_processes()) == (first, first_of_all), env


def _split(root: Path, ids: list[str], masks: list[str] = ()) -> None:  # type: ignore[assignment]
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    (root / "ImageSets" / "Segmentation" / "val.txt").write_text("".join(f"{i}\n" for i in ids))
    (root / "SegmentationClassAug").mkdir()
    for i in masks:
        (root / "SegmentationClassAug" / f"{i}.png").write_bytes(b"png")


@pytest.mark.usefixtures("rank_zero")
def test_without_ground_truth_best_is_selected_on_what_exists(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from epspp.runs.folder import has_ground_truth, monitor_what_exists

    data = tmp_path / "data"
    _split(data, ["a", "b"], masks=[])
    assert has_ground_truth(data, "val", None) is False
    assert has_ground_truth(data, "nope", None) is None
    (tmp_path / "masks").mkdir()
    (tmp_path / "masks" / "b.png").write_bytes(b"png")
    assert has_ground_truth(data, "val", str(tmp_path / "masks")) is True

    def config(task: str, mask_dir: str | None = None):  # noqa: ANN202
        callbacks = [
            _callback("ModelCheckpoint", monitor="val/mIoU", mode="max"),
            _callback("ModelCheckpoint", monitor="val/loss", mode="min"),
        ]
        return _ns(
            trainer=_ns(callbacks=callbacks), data=_ns(root=str(data), val_split="val", task=task, mask_dir=mask_dir)
        )

    loc = config("localization")
    monitor_what_exists(loc)
    assert (loc.trainer.callbacks[0].init_args.monitor, loc.trainer.callbacks[0].init_args.mode) == ("val/mAP", "max")
    assert "save_on_train_epoch_end" not in loc.trainer.callbacks[0].init_args
    assert loc.trainer.callbacks[1].init_args.monitor == "val/loss"  # another monitor: kept
    assert loc.data.val_split == "val"
    assert capsys.readouterr().err == (
        "[epspp] split 'val' has no ground-truth mask: validation on the image labels only; best.ckpt is selected on "
        "val/mAP (max)\n"
    )
    seg = config("segmentation")
    monitor_what_exists(seg)
    first = seg.trainer.callbacks[0].init_args
    assert (first.monitor, first.mode, first.save_on_train_epoch_end) == ("train/loss", "min", True)
    assert seg.data.val_split is None
    assert capsys.readouterr().err == (
        "[epspp] split 'val' has no ground-truth mask: no validation; best.ckpt is selected on train/loss (min)\n"
    )
    kept = config("segmentation", mask_dir=str(tmp_path / "masks"))  # b has a mask: nothing changes
    monitor_what_exists(kept)
    assert kept.trainer.callbacks[0].init_args.monitor == "val/mIoU" and kept.data.val_split == "val"
    assert capsys.readouterr().err == ""


def test_relative_run_paths_go_inside_the_run_folder(tmp_path: Path) -> None:
    from epspp.runs.folder import inside, resolve_run_paths, run_name

    callbacks = [
        _callback("ModelCheckpoint"),
        _callback("ModelCheckpoint", dirpath="ckpt/../best"),
        _callback("ModelCheckpoint", dirpath="/abs/ckpt"),
    ]
    loggers = [
        _callback("WandbLogger", save_dir=None, name=None),
        _callback("CSVLogger", save_dir="logs"),
        _callback("WandbLogger", save_dir="/abs/w", name="mine"),
    ]
    config = _ns(trainer=_ns(callbacks=callbacks, logger=loggers))
    resolve_run_paths(config, "runs/demo/eps++/localization")
    assert [c.init_args.dirpath for c in callbacks] == [
        "runs/demo/eps++/localization/checkpoints",
        "runs/demo/eps++/localization/best",
        "/abs/ckpt",
    ]
    assert [(lg.init_args.save_dir, lg.init_args.get("name")) for lg in loggers] == [
        ("runs/demo/eps++/localization", "demo/eps++/localization"),
        ("runs/demo/eps++/localization/logs", None),
        ("/abs/w", "mine"),
    ]
    assert run_name("/x/y/z/w") == "y/z/w"  # no runs/: the last three parts
    assert run_name("/data/runs/a/") == "a"
    assert inside("r", "/abs") == "/abs" and inside("r/", "./x") == "r/x"


@pytest.mark.usefixtures("rank_zero")
def test_a_predict_writes_in_its_output_dir_without_wandb(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from epspp.runs.folder import drop_wandb, predict_in_output_dir

    config = _ns(trainer=_ns(default_root_dir="runs/train/"))
    predict_in_output_dir(config, "runs/train")  # the same folder: no note
    assert capsys.readouterr().err == ""
    predict_in_output_dir(config, "masks")
    assert config.trainer.default_root_dir == "masks"
    assert capsys.readouterr().err == (
        "[epspp] predict writes its configuration and logs in --pseudo_masks.output_dir masks, not in "
        "--trainer.default_root_dir runs/train\n"
    )
    csv, wandb = _callback("CSVLogger"), _callback("WandbLogger")
    for loggers, kept in [([csv, wandb], [csv]), ([wandb], False), (wandb, False), (csv, csv), (True, True)]:
        config = _ns(trainer=_ns(logger=loggers))
        drop_wandb(config)
        assert config.trainer.logger == kept


def test_last_and_best_stand_for_the_files_lightning_would_pick(tmp_path: Path) -> None:
    import os

    from epspp.runs.folder import checkpoint_folders, keyword_checkpoint

    callbacks = [
        _callback("ModelCheckpoint", dirpath="a"),
        _callback("ModelCheckpoint", monitor="val/mIoU", filename="top"),
    ]
    config = _ns(trainer=_ns(default_root_dir=str(tmp_path), callbacks=callbacks))
    assert checkpoint_folders(config) == [tmp_path / "a", tmp_path / "checkpoints"]
    assert checkpoint_folders(_ns(trainer=_ns(default_root_dir=None, callbacks=None))) == [Path("checkpoints")]
    assert keyword_checkpoint(config, "last") is None and keyword_checkpoint(config, "best") is None
    (tmp_path / "a").mkdir()
    (tmp_path / "checkpoints").mkdir()
    for n, name in enumerate(["a/last.ckpt", "checkpoints/last-2.ckpt", "a/last-x.ckpt", "a/lastly.ckpt"]):
        (tmp_path / name).write_text("c")
        os.utime(tmp_path / name, (1000 + n, 1000 + n))
    assert keyword_checkpoint(config, "last") == tmp_path / "checkpoints" / "last-2.ckpt"
    os.utime(tmp_path / "a" / "last.ckpt", (2000, 2000))
    assert keyword_checkpoint(config, "last") == tmp_path / "a" / "last.ckpt"
    (tmp_path / "checkpoints" / "top.ckpt").write_text("c")
    assert keyword_checkpoint(config, "best") == tmp_path / "checkpoints" / "top.ckpt"
    callbacks[1].init_args.filename = None
    assert keyword_checkpoint(config, "best") is None  # best.ckpt: none yet
    (tmp_path / "checkpoints" / "best.ckpt").write_text("c")
    assert keyword_checkpoint(config, "best") == tmp_path / "checkpoints" / "best.ckpt"
    callbacks[1].init_args.monitor = None
    assert keyword_checkpoint(config, "best") is None


@pytest.mark.usefixtures("rank_zero")
def test_start_over_in_a_folder_whose_checkpoints_lie_in_it_directly(tmp_path: Path) -> None:
    """Checkpoints written into the run folder itself are renamed one by one (the run folder is never renamed); a
    test's dump in config.yaml stays when the fit's is config.fit.yaml."""
    from epspp.runs.folder import check_run_folder

    root = tmp_path / "run"
    root.mkdir()
    config = _fit_config(root, [_callback("ModelCheckpoint", dirpath=str(root), save_last=True, filename="best")])
    (root / "last.ckpt").write_text("last")
    (root / "best.ckpt").write_text("best")
    (root / "config.yaml").write_text(FIT_MARK.replace("fit", "test"))
    (root / "config.fit.yaml").write_text(FIT_MARK)
    check_run_folder(config, "fit", start_over=True)
    assert sorted(p.name for p in tmp_path.rglob("*")) == [
        "best.previous.ckpt",
        "config.fit.previous.yaml",
        "config.yaml",
        "last.previous.ckpt",
        "run",
    ]
    assert (root / "config.yaml").read_text() == FIT_MARK.replace("fit", "test")


# ------------------------------------------------------------ variation pass (issue 34 item 6)
@pytest.mark.parametrize(
    ("key", "what"),
    [
        ("mask_dir", "the dataset's mask folder"),
        ("saliency_dir", "the dataset's saliency folder"),
        ("pseudo_mask_dir", "the pseudo-mask folder"),
        ("predict_image_dir", "the image folder"),
        ("root", "the dataset's root folder"),
    ],
)
@pytest.mark.parametrize(
    ("subcommand", "option"), [("fit", "--trainer.default_root_dir"), ("predict", "--pseudo_masks.output_dir")]
)
def test_a_run_folder_inside_each_input_is_refused_by_its_name(
    tmp_path: Path, key: str, what: str, subcommand: str, option: str
) -> None:
    """Each data key the data module reads (its literal name) is an input; the message names the stage's option."""
    from epspp.errors import OutputError
    from epspp.runs.folder import check_run_folder

    inputs, run = tmp_path / "in", tmp_path / "in" / "run"
    config = _ns(trainer=_ns(default_root_dir=str(run), callbacks=None, logger=None), data=_ns(**{key: str(inputs)}))
    with pytest.raises(OutputError) as error:
        check_run_folder(config, subcommand)
    assert str(error.value).startswith(f"{option} {run} is inside {what} {inputs}: ")


def test_a_loggers_log_dir_is_a_folder_it_writes_in(tmp_path: Path) -> None:
    from epspp.runs.folder import written_folders

    config = _ns(trainer=_ns(callbacks=None, logger=_callback("TensorBoardLogger", log_dir=str(tmp_path / "tb"))))
    assert written_folders(config) == {tmp_path / "tb": "trainer.logger.init_args.log_dir"}


@pytest.mark.parametrize(
    ("dump", "fit"),
    [
        ("config.yaml", True),
        ("config.fit.yaml", True),
        ("logs/config.yaml", True),  # a logger's folder
        ("lightning_logs/version_0/config.yaml", True),
        ("a/b/c/config.yaml", False),  # deeper than any logger writes
        ("other.yaml", False),
    ],
)
def test_an_earlier_fit_is_known_by_its_dump_at_each_depth(tmp_path: Path, dump: str, fit: bool) -> None:
    from epspp.runs.folder import is_fit_folder

    (tmp_path / dump).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / dump).write_text(FIT_MARK)
    assert is_fit_folder(tmp_path) is fit
    (tmp_path / dump).write_text(FIT_MARK.replace("fit", "test"))  # a test's dump: no fit ran there
    assert is_fit_folder(tmp_path) is False


@pytest.mark.usefixtures("rank_zero")
def test_ground_truth_in_the_default_mask_folder_and_an_unreadable_split(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """The default mask folder is SegmentationClassAug; a split that cannot be read, or no split or root, changes
    nothing (the data module says why); a config without ``task`` is a localization."""
    from epspp.runs.folder import has_ground_truth, monitor_what_exists

    data = tmp_path / "data"
    _split(data, ["a", "b"], masks=["b"])
    assert has_ground_truth(data, "val", None) is True

    def config(**values: object):  # noqa: ANN202
        return _ns(trainer=_ns(callbacks=[_callback("ModelCheckpoint", monitor="val/mIoU")]), data=_ns(**values))

    for values in (
        {"root": str(data), "val_split": "nope", "task": "segmentation"},
        {"val_split": "val", "task": "segmentation", "mask_dir": str(tmp_path / "none")},
        {"root": str(data), "task": "segmentation", "mask_dir": str(tmp_path / "none")},
    ):
        unchanged = config(**values)
        monitor_what_exists(unchanged)
        assert unchanged.trainer.callbacks[0].init_args.monitor == "val/mIoU", values
    assert capsys.readouterr().err == ""
    untold = config(root=str(data), val_split="val", mask_dir=str(tmp_path / "none"))  # no task: localization
    monitor_what_exists(untold)
    assert (untold.trainer.callbacks[0].init_args.monitor, untold.data.val_split) == ("val/mAP", "val")


@pytest.mark.parametrize("subcommand", ["predict", "fit"])
def test_prepare_run_moves_only_a_prediction_into_its_output_dir_and_drops_only_its_wandb(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, subcommand: str
) -> None:
    """A DDP child (LOCAL_RANK 1: no lock, no message) of each subcommand, with ``pseudo_masks.output_dir`` set."""
    from epspp.runs.folder import prepare_run

    monkeypatch.setattr(run_folder, "_new_folders", [])
    monkeypatch.setenv("LOCAL_RANK", "1")
    train, masks = tmp_path / "train", tmp_path / "masks"
    loggers = [_callback("CSVLogger", save_dir="logs"), _callback("WandbLogger", save_dir=None, name=None)]
    config = _ns(
        trainer=_ns(default_root_dir=str(train), callbacks=[_callback("ModelCheckpoint")], logger=loggers),
        data=_ns(root=str(tmp_path / "data")),
        pseudo_masks=_ns(output_dir=str(masks)),
        ckpt_path=None,
    )
    prepare_run(config, subcommand)
    root = masks if subcommand == "predict" else train
    assert config.trainer.default_root_dir == str(root)
    assert config.trainer.callbacks[0].init_args.dirpath == str(root / "checkpoints")
    assert [logger.class_path.rsplit(".", 1)[1] for logger in config.trainer.logger] == (
        ["CSVLogger"] if subcommand == "predict" else ["CSVLogger", "WandbLogger"]
    )
    assert config.trainer.logger[0].init_args.save_dir == str(root / "logs")
