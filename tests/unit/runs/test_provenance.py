"""A mask folder's provenance: what makes its masks what they are, and the refusals to mix two runs in one folder
or to write into the dataset (``provenance.json``, by hand)."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from epspp.errors import DatasetError, OutputError
from epspp.runs.provenance import (
    PROVENANCE,
    check_resume,
    check_source,
    dataset_identity,
    provenance,
    refuse_dataset_folder,
    refuse_escaping_folders,
    sha256,
    write_provenance,
)

RECORD = {
    "dataset": {"root": "/data", "ids_sha256": "ab"},
    "checkpoint_sha256": "c1",
    "model": "m.Net",
    "inference": {"scales": [1.0, 0.5], "refine": "none"},
    "normalization": {"mean": None, "std": None},
}


def test_sha256_of_a_file(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"abc")
    assert sha256(tmp_path / "f") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_dataset_identity_of_a_split_and_of_a_plain_folder(tmp_path: Path) -> None:
    split = dataset_identity(SimpleNamespace(root=tmp_path / "." / "data", ids=["a", "b"]))
    assert split == {"root": str((tmp_path / "data").resolve()), "ids_sha256": hashlib.sha256(b"a\nb").hexdigest()}
    # the ids in the split's order: the same ids listed otherwise are another split of the dataset
    reordered = dataset_identity(SimpleNamespace(root=tmp_path / "data", ids=["b", "a"]))
    assert reordered["ids_sha256"] == hashlib.sha256(b"b\na").hexdigest() != split["ids_sha256"]
    folder = dataset_identity(SimpleNamespace(root=None, image_dir=tmp_path / "photos"))
    assert folder == {"root": str((tmp_path / "photos").resolve()), "ids_sha256": None}


def test_provenance_names_the_class_its_inference_options_and_the_normalization(tmp_path: Path) -> None:
    class Net:
        inference_options = ("scales", "refine")

        def __init__(self) -> None:
            self.hparams = {"scales": (1.0, 0.5), "refine": Path("pamr"), "lr": 0.1}

    (tmp_path / "ckpt").write_bytes(b"abc")
    record = provenance(Net(), {"mean": (0.5, 0.5, 0.5), "std": None}, str(tmp_path / "ckpt"), {"root": "/data"})
    assert record == {
        "dataset": {"root": "/data"},
        "checkpoint_sha256": sha256(tmp_path / "ckpt"),
        "model": f"{__name__}.test_provenance_names_the_class_its_inference_options_and_the_normalization.<locals>.Net",
        "inference": {"scales": [1.0, 0.5], "refine": "pamr"},  # plain values only (not lr)
        "normalization": {"mean": [0.5, 0.5, 0.5], "std": None},
    }
    assert provenance(Net(), {}, None, {})["checkpoint_sha256"] is None


def test_resume_only_into_a_folder_made_the_same_way(tmp_path: Path) -> None:
    write_provenance(tmp_path, RECORD)
    assert json.loads((tmp_path / PROVENANCE).read_text()) == RECORD and [p.name for p in tmp_path.iterdir()] == [
        PROVENANCE
    ]
    check_resume(tmp_path, RECORD, done=3, overwrite=False)
    changed = json.loads(json.dumps(RECORD))
    changed["inference"]["refine"] = "pamr"
    with pytest.raises(
        DatasetError,
        match=r"the 3 masks in .* were made differently \(inference\.refine: 'none' -> "
        r"'pamr'\): resuming would mix two runs",
    ):
        check_resume(tmp_path, changed, done=3, overwrite=False)
    check_resume(tmp_path, changed, done=0, overwrite=False)  # no mask yet: nothing to mix
    check_resume(tmp_path, changed, done=3, overwrite=True)


def test_a_folder_without_a_record_is_completed_only_when_it_holds_nothing_of_a_writer(tmp_path: Path) -> None:
    check_resume(tmp_path, RECORD, done=0, overwrite=False)
    with pytest.raises(DatasetError, match=r"already holds 2 masks of unknown provenance \(no provenance\.json\)"):
        check_resume(tmp_path, RECORD, done=2, overwrite=False)
    (tmp_path / "manifest.json").write_text("{}")
    with pytest.raises(DatasetError, match=r"manifest\.json was not written by the mask writer"):
        check_resume(tmp_path, RECORD, done=0, overwrite=False)
    (tmp_path / PROVENANCE).write_text('{"mine": 1}')
    with pytest.raises(DatasetError, match=r"provenance\.json is not the mask writer's record of its folder"):
        check_resume(tmp_path, RECORD, done=0, overwrite=False)
    (tmp_path / PROVENANCE).write_text("{not json")
    with pytest.raises(DatasetError, match=r"cannot read .*provenance\.json"):
        check_resume(tmp_path, RECORD, done=0, overwrite=False)


def test_a_record_of_exactly_the_three_writer_keys_is_the_writers_and_two_of_them_are_not(tmp_path: Path) -> None:
    """checkpoint_sha256, model and inference make a record the writer's, with no other key needed (boundary
    sweep: the key set equal to the three, not a strict superset)."""
    three = {key: RECORD[key] for key in ("checkpoint_sha256", "model", "inference")}
    write_provenance(tmp_path, three)
    check_resume(tmp_path, RECORD, done=0, overwrite=False)  # nothing made yet: completed
    write_provenance(tmp_path, {key: RECORD[key] for key in ("checkpoint_sha256", "model")})
    with pytest.raises(DatasetError, match=r"provenance\.json is not the mask writer's record of its folder"):
        check_resume(tmp_path, RECORD, done=0, overwrite=False)


def test_derived_folders_stay_inside_the_output_and_out_of_the_dataset(tmp_path: Path) -> None:
    out, images = tmp_path / "out", tmp_path / "data" / "JPEGImages"
    folders = {"images": images}
    refuse_escaping_folders(out, {"--pseudo_masks.mask_subdir": out / "masks"}, folders)
    with pytest.raises(
        DatasetError,
        match=r"--pseudo_masks.mask_subdir makes the writer write in .*, outside "
        r"--pseudo_masks.output_dir",
    ):
        refuse_escaping_folders(out, {"--pseudo_masks.mask_subdir": out / ".." / "elsewhere"}, folders)
    with pytest.raises(OutputError, match=r"--pseudo_masks.output_dir .*masks is inside the dataset's images folder"):
        refuse_dataset_folder(images / "masks", folders)


def test_a_record_without_a_dataset_root_is_read_and_only_its_classes_are_checked(tmp_path: Path) -> None:
    """An older writer's provenance.json names no dataset root: nothing to compare, the folder is read (its
    manifest's classes still checked); a record naming another root is refused."""
    root, masks = tmp_path / "data", tmp_path / "masks"
    root.mkdir()
    masks.mkdir()
    classes = ["background", "a", "b"]
    (masks / "manifest.json").write_text(json.dumps({"class_names": classes}))
    for record in ({"model": "m.Net"}, {"dataset": {"ids_sha256": "ab"}}):
        (masks / PROVENANCE).write_text(json.dumps(record))
        check_source(masks, root, classes, "--data.pseudo_mask_dir", note=False)  # read: no error
        with pytest.raises(DatasetError, match=r"classes \['background', 'a', 'b'\] .* lists \['background', 'a'\]"):
            check_source(masks, root, ["background", "a"], "--data.pseudo_mask_dir", note=False)
    (masks / PROVENANCE).write_text(json.dumps({"dataset": {"root": str(tmp_path / "other")}}))
    with pytest.raises(DatasetError, match=re.escape(f"holds masks of the dataset {tmp_path / 'other'} ")):
        check_source(masks, root, classes, "--data.pseudo_mask_dir", note=False)


# ------------------------------------------------------------ variation pass (issue 34 item 6)
@pytest.mark.parametrize(
    ("name", "refused"),
    [
        ("scores/a.npy", True),
        ("overlays/a.png", True),
        ("scores/.a.12.tmp.npy", False),  # a killed writer's temporary: removed by the writer, not a file of another's
        ("overlays/.a.12.tmp.png", False),
        ("scores/a.png", False),  # not a score map
    ],
)
def test_score_maps_and_overlays_without_a_record_are_not_replaced(tmp_path: Path, name: str, refused: bool) -> None:
    (tmp_path / name).parent.mkdir()
    (tmp_path / name).write_bytes(b"x")
    if refused:
        with pytest.raises(
            DatasetError, match=f"^{re.escape(str(tmp_path / name))} was not written by the mask writer"
        ):
            check_resume(tmp_path, RECORD, done=0, overwrite=False)
    else:
        check_resume(tmp_path, RECORD, done=0, overwrite=False)
    check_resume(tmp_path, RECORD, done=0, overwrite=True)


def test_a_derived_folder_inside_the_dataset_is_refused_under_its_own_option(tmp_path: Path) -> None:
    """``OUT/<mask_subdir>`` may stay inside OUT and still be a dataset folder (OUT holds the dataset)."""
    out = tmp_path
    images = tmp_path / "JPEGImages"
    with pytest.raises(
        OutputError, match=r"^--pseudo_masks.mask_subdir 'JPEGImages' .*JPEGImages is inside the dataset"
    ):
        refuse_escaping_folders(out, {"--pseudo_masks.mask_subdir 'JPEGImages'": images}, {"image": images})
    refuse_escaping_folders(out, {"--pseudo_masks.mask_subdir ''": out}, {"image": images})  # OUT itself: allowed


def test_a_folder_without_a_record_is_noted_once_and_the_parent_of_a_mask_subdir_is_its_home(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    root, masks = tmp_path / "data", tmp_path / "masks"
    (masks / "sub").mkdir(parents=True)
    check_source(masks / "sub", root, ["background"], "--opt", note=False)
    assert capsys.readouterr().err == ""  # note false: nothing said
    check_source(masks / "sub", root, ["background"], "--opt")
    check_source(masks / "sub", root, ["background"], "--opt")
    assert capsys.readouterr().err.count(f"[epspp] note: --opt {masks / 'sub'} has no provenance.json") == 1
    (masks / PROVENANCE).write_text(json.dumps({"dataset": {"root": str(tmp_path / "other")}}))  # one folder up
    with pytest.raises(DatasetError, match=re.escape(f"--opt {masks / 'sub'} holds masks of the dataset")):
        check_source(masks / "sub", root, ["background"], "--opt", root_option="--root")
    with pytest.raises(DatasetError, match=re.escape(f"not of --root {root.resolve()}")):
        check_source(masks / "sub", root, ["background"], "--opt", root_option="--root")
