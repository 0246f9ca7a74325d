"""A run folder's files set aside under free ``*.previous`` names, and the folders a failed command created
removed only when they hold no file."""

from __future__ import annotations

from pathlib import Path

import pytest

from epspp.runs import folder as run_folder
from epspp.runs.folder import discard_empty_new_folders, note_new_folder, previous_name


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
