"""``epspp prepare``'s command line (``epspp.cli.prepare``): the defaults of docs/stages.md and docs/data.md, and
which parsed option reaches which argument of the generators (all positional there, so a swap is silent)."""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import pytest

from epspp.cli import prepare as cli


def _recorder(monkeypatch: pytest.MonkeyPatch, name: str, result: Any) -> dict:
    """Replace ``cli.<name>`` with a stub that records its arguments by name (bound to the real signature)."""
    seen: dict = {}
    real = getattr(cli, name)

    def stub(*args: Any, **kwargs: Any) -> Any:
        bound = inspect.signature(real).bind(*args, **kwargs)
        bound.apply_defaults()
        seen.update(bound.arguments)
        return result

    monkeypatch.setattr(cli, name, stub)
    return seen


def _fake_root(tmp_path: Path, manifest: str, splits: dict) -> Path:
    (tmp_path / manifest).write_text(json.dumps({"splits": splits}))
    return tmp_path


TRAIN = {"images": 7, "missing_class": 1, "missing_part": 2, "false_coverage": 3, "false_coverage_context": 1}


def test_synthetic_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # docs/stages.md: --num-train 1000 --num-val 200 --num-classes 5 --seed 0; docs/data.md: --missing-class-rate
    # 0.1, --missing-part-rate 0.2, --false-coverage-rate 0.2; the labelled share 0.1, 64-px images, easy
    seen = _recorder(monkeypatch, "generate_synthetic", _fake_root(tmp_path, "synthetic.json", {"train": TRAIN}))
    assert cli.prepare_main(["synthetic", "--root", "r"]) == 0
    assert seen == {
        "root": Path("r"),
        "num_train": 1000,
        "num_val": 200,
        "image_size": 64,
        "seed": 0,
        "missing_class_rate": 0.1,
        "missing_part_rate": 0.2,
        "false_coverage_rate": 0.2,
        "labeled_fraction": 0.1,
        "num_classes": 5,
        "overwrite": False,
        "difficulty": "easy",
    }


def test_synthetic_every_option_reaches_its_argument(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    splits = {"train": {**TRAIN, "systematic": {"missing_class": 4, "missing_part": 5, "false_coverage": 6}}}
    seen = _recorder(monkeypatch, "generate_synthetic", _fake_root(tmp_path, "synthetic.json", splits))
    args = ["--root", "r", "--num-train", "7", "--num-val", "3", "--image-size", "40", "--num-classes", "6"]
    args += ["--seed", "9", "--missing-class-rate", "0.11", "--missing-part-rate", "0.22"]
    args += ["--false-coverage-rate", "0.33", "--labeled-fraction", "0.44", "--difficulty", "hard", "--overwrite"]
    assert cli.prepare_main(["synthetic", *args]) == 0
    assert seen == {
        "root": Path("r"),
        "num_train": 7,
        "num_val": 3,
        "image_size": 40,
        "seed": 9,
        "missing_class_rate": 0.11,
        "missing_part_rate": 0.22,
        "false_coverage_rate": 0.33,
        "labeled_fraction": 0.44,
        "num_classes": 6,
        "overwrite": True,
        "difficulty": "hard",
    }
    out = capsys.readouterr().out.splitlines()
    assert out == [
        f"wrote synthetic dataset {tmp_path}: train 7",
        "saliency errors in train: missing class 1, missing part 2, false coverage 3 (1 on context); the hard "
        "difficulty's systematic errors: missing class 4, missing part 5, false coverage 6 images",
    ]


def test_pretrain_corpus_defaults_and_mapping(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    root = _fake_root(tmp_path, "pretrain_corpus.json", {"train": {"images": 11}, "val": {"images": 2}})
    seen = _recorder(monkeypatch, "generate_pretrain_corpus", root)
    assert cli.prepare_main(["pretrain-corpus", "--root", "r"]) == 0
    # docs/stages.md: --num-images 4000 --num-classes 28 --seed 0; 200 val images of 64 px (CorpusConfig)
    assert seen == {
        "root": Path("r"),
        "num_images": 4000,
        "num_val": 200,
        "num_classes": 28,
        "image_size": 64,
        "seed": 0,
        "overwrite": False,
    }
    args = ["--root", "r", "--num-images", "11", "--num-val", "2", "--num-classes", "3", "--image-size", "48"]
    assert cli.prepare_main(["pretrain-corpus", *args, "--seed", "4", "--overwrite"]) == 0
    assert seen == {
        "root": Path("r"),
        "num_images": 11,
        "num_val": 2,
        "num_classes": 3,
        "image_size": 48,
        "seed": 4,
        "overwrite": True,
    }
    said = capsys.readouterr().out.splitlines()[-1]
    assert said == (
        f"wrote pretraining corpus {root}: train 11, val 2, 3 classes; pretrain with `epspp fit --config "
        f"configs/demo/pretrain.yaml --data.root {root}`"
    )


def test_folder_mapping(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    counts = {"images": 5, "train": 4, "val": 1, "classes": ["background", "cat", "dog"]}
    seen = _recorder(monkeypatch, "prepare_folder", counts)
    base = ["folder", "--images", "i", "--labels", "l.csv", "--out", "o"]
    assert cli.prepare_main(base) == 0
    assert seen == {
        "images": Path("i"),
        "labels": Path("l.csv"),
        "out": Path("o"),
        "saliency": None,
        "val_fraction": 0.1,
        "classes": None,
        "seed": 0,
        "copy": False,
    }
    assert capsys.readouterr().out.splitlines() == [
        "wrote o: 5 images (train 4, val 1, all), 2 classes ['cat', 'dog']; check it with `epspp check --data.root o`",
        "note: no --saliency: stage 1 needs o/saliency/<id>.png (or --data.saliency_dir DIR)",
    ]
    more = ["--saliency", "s", "--val-fraction", "0.3", "--classes", "dog", "cat", "--seed", "2", "--copy"]
    assert cli.prepare_main(base + more) == 0
    assert seen == {
        "images": Path("i"),
        "labels": Path("l.csv"),
        "out": Path("o"),
        "saliency": Path("s"),
        "val_fraction": 0.3,
        "classes": ["dog", "cat"],
        "seed": 2,
        "copy": True,
    }
    assert "note: no --saliency" not in capsys.readouterr().out


def test_voc_and_coco_mapping(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    voc = {"train_aug": 9, "train": 3, "val": 2, "masks_from_voc": 4, "masks_from_sbd": 5, "masks_skipped": 1}
    seen = _recorder(monkeypatch, "prepare_voc", voc)
    assert cli.prepare_main(["voc", "--voc-root", "v", "--sbd-root", "b", "--out", "o", "--saliency-dir", "s"]) == 0
    assert seen == {"voc_root": Path("v"), "sbd_root": Path("b"), "out": Path("o"), "saliency_dir": Path("s")}
    assert capsys.readouterr().out == (
        "wrote VOC layout o: train_aug 9, train 3, val 2; masks from VOC 4, from SBD 5, already there 1\n"
    )
    coco = {"images": 6, "train": 4, "val": 2, "checked": 3, "missing_mask": ["a", "b", "c", "d"]}
    coco["missing_saliency"] = []
    seen = _recorder(monkeypatch, "prepare_coco", coco)
    assert cli.prepare_main(["coco", "--image-dir", "t", "u", "--mask-dir", "m", "--out", "o"]) == 0
    assert seen == {"image_dirs": [Path("t"), Path("u")], "mask_dir": Path("m"), "out": Path("o")} | {
        "saliency_dir": None,
        "check": 50,  # --check's default, as its help says
    }
    assert capsys.readouterr().out.splitlines() == [
        "wrote COCO layout o: 6 images, train 4, val 2, 3 masks checked",
        "warning: 4 images missing mask, e.g. ['a', 'b', 'c']",
    ]
    assert cli.prepare_main(["coco", "--image-dir", "t", "--mask-dir", "m", "--out", "o", "--check", "7"]) == 0
    assert seen["check"] == 7


def test_range_errors_name_the_flags(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    """A ValueError of the Python API is said with the flags typed; a name inside a path or a longer name is kept."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise ValueError("num_train must be >= 1 and missing_part_rate in [0, 1] (see /data/num_train, xnum_val)")

    monkeypatch.setattr(cli, "generate_synthetic", refuse)
    assert cli.prepare_main(["synthetic", "--root", "r"]) == 2
    assert capsys.readouterr().err == (
        "epspp prepare synthetic: error: --num-train must be >= 1 and --missing-part-rate in [0, 1] "
        "(see /data/num_train, xnum_val)\n"
    )


def test_os_errors_kept_verbatim(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise FileExistsError("root/num_val exists")

    monkeypatch.setattr(cli, "prepare_folder", refuse)
    assert cli.prepare_main(["folder", "--images", "i", "--labels", "l", "--out", "o"]) == 2
    assert capsys.readouterr().err == "epspp prepare folder: error: root/num_val exists\n"
