"""A generated dataset root's record of the files it wrote: ``--overwrite`` replaces only those, keeps the user's
files and refuses a user's file in the way (through `epspp prepare synthetic`)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fixtures.helpers import snapshot, split_ids

from epspp.cli.prepare import prepare_main
from epspp.data.generated import MANIFEST
from epspp.data.synthetic import generate_synthetic


def test_overwrite_keeps_the_users_files_and_folders(tmp_path: Path) -> None:
    root = tmp_path / "data"
    args = ["synthetic", "--root", str(root), "--num-train", "6", "--num-val", "2", "--image-size", "32"]
    assert prepare_main(args) == 0
    listed = set((root / MANIFEST).read_text().split())
    assert listed == set(snapshot(root))  # every file written, and only those
    (root / "notes.txt").write_text("my notes")
    (root / "checkpoints").mkdir()
    (root / "checkpoints" / "last.ckpt").write_bytes(b"weights")
    (root / "JPEGImages" / "mine.jpg").write_bytes(b"my photo")
    assert (
        prepare_main(
            args[:3] + ["--num-train", "3", "--num-val", "1", "--image-size", "32", "--seed", "1", "--overwrite"]
        )
        == 0
    )
    assert (root / "notes.txt").read_text() == "my notes"
    assert (root / "checkpoints" / "last.ckpt").read_bytes() == b"weights"
    assert (root / "JPEGImages" / "mine.jpg").read_bytes() == b"my photo"
    assert split_ids(root, "train") == ["train_000000", "train_000001", "train_000002"]
    assert not (root / "JPEGImages" / "train_000005.jpg").exists()  # the old dataset's own files are gone
    user = {"notes.txt", "checkpoints/last.ckpt", "JPEGImages/mine.jpg"}
    assert set(snapshot(root)) == set((root / MANIFEST).read_text().split()) | user
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]  # no temporary folder left


def test_overwrite_refuses_a_user_file_where_the_new_dataset_writes(tmp_path: Path) -> None:
    root = generate_synthetic(tmp_path / "data", num_train=2, num_val=1, image_size=32)
    (root / "JPEGImages" / "train_000003.jpg").write_bytes(b"mine")
    with pytest.raises(FileExistsError, match="train_000003.jpg was not written by the generator"):
        generate_synthetic(root, num_train=4, num_val=1, image_size=32, overwrite=True)
    assert (root / "JPEGImages" / "train_000003.jpg").read_bytes() == b"mine"
    assert split_ids(root, "train") == ["train_000000", "train_000001"]


def test_overwrite_needs_the_record_of_written_files(tmp_path: Path) -> None:
    root = generate_synthetic(tmp_path / "data", num_train=2, num_val=1, image_size=32)
    (root / MANIFEST).unlink()  # a dataset of an older epspp
    with pytest.raises(FileExistsError, match="did not record its files"):
        generate_synthetic(root, num_train=2, num_val=1, image_size=32, overwrite=True)
    (root / MANIFEST).write_text("classes.json\n../outside.txt\n")
    (tmp_path / "outside.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="outside"):
        generate_synthetic(root, num_train=2, num_val=1, image_size=32, overwrite=True)
    assert (tmp_path / "outside.txt").read_text() == "keep" and (root / "classes.json").is_file()


def test_a_manifest_line_with_an_absolute_path_is_refused(tmp_path: Path) -> None:
    from epspp.data.generated import read_manifest

    root = tmp_path / "root"
    root.mkdir()
    outside = tmp_path / "outside.txt"
    (root / MANIFEST).write_text(f"classes.json\n{outside}\n")
    with pytest.raises(FileExistsError, match=re.escape(f"lists '{outside}', a path outside {root}")):
        read_manifest(root)


def test_regenerating_a_link_to_a_generated_root_replaces_the_link_and_leaves_its_target(tmp_path: Path) -> None:
    from epspp.data.generated import write_generated_root

    def writer(text: str):
        def write(folder: Path) -> None:
            for name in ("marker.json", "data.txt"):
                (folder / name).write_text(text)

        return write

    real = write_generated_root(tmp_path / "real", "marker.json", "test root", writer("old"))
    link = tmp_path / "link"
    link.symlink_to(real)
    write_generated_root(link, "marker.json", "test root", writer("new"), overwrite=True)
    assert not link.is_symlink() and (link / "data.txt").read_text() == "new"
    assert sorted(p.name for p in real.iterdir()) == ["data.txt", MANIFEST, "marker.json"]
    assert (real / "data.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "real"]
