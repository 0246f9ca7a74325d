"""A run folder's files set aside under free ``*.previous`` names, and the folders a failed command created
removed only when they hold no file."""

from __future__ import annotations

from pathlib import Path

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
