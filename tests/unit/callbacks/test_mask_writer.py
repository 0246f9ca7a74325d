"""PseudoMaskWriter and write_mask_png: palette PNGs, atomic writes, resume, score maps."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from fixtures.helpers import write_counting_split
from PIL import Image
from pytorch_lightning.utilities.parsing import AttributeDict

from epspp.callbacks.mask_writer import PseudoMaskWriter
from epspp.data.classes import voc_palette
from epspp.data.dataset import ImageFolderDataset
from epspp.data.io import DatasetError, write_mask_png
from epspp.errors import OutputError


def _visible(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def _prediction(ids: list[str], masks: list[np.ndarray], num_classes: int = 3) -> dict:
    return {
        "id": ids,
        "mask": torch.from_numpy(np.stack(masks)).long(),
        "scores": torch.rand(len(ids), num_classes + 1, *masks[0].shape),
        "label": torch.tensor([[1.0, 0.0, 1.0]] * len(ids)),
    }


def _fake_trainer(ids: list[str], root: Path = Path("/nonexistent/dataset")) -> SimpleNamespace:
    dataset = SimpleNamespace(
        ids=list(ids),
        image_dir=root / "JPEGImages",
        mask_dir=root / "SegmentationClassAug",
        saliency_dir=root / "saliency",
    )
    return SimpleNamespace(
        datamodule=SimpleNamespace(datasets={"predict": dataset}, hparams={}),
        is_global_zero=True,
        ckpt_path=None,
        predict_loop=SimpleNamespace(return_predictions=True),
    )


# -------------------------------------------------------------- the PNG format
def test_mask_png_is_a_voc_palette_png_with_values_preserved(tmp_path: Path) -> None:
    mask = np.array([[0, 1, 2, 3], [20, 5, 255, 255], [0, 0, 7, 1]], np.uint8)
    path = tmp_path / "a.png"
    write_mask_png(path, mask, voc_palette())
    with Image.open(path) as image:
        assert image.mode == "P"
        assert image.size == (4, 3)  # (W, H)
        assert image.getpalette() == voc_palette().ravel().tolist()
        assert np.array_equal(np.array(image), mask)
    assert _visible(tmp_path) == ["a.png"]


def test_writer_writes_masks_with_their_values(tmp_path: Path) -> None:
    writer = PseudoMaskWriter(output_dir=str(tmp_path))
    masks = [np.array([[0, 1], [3, 255]], np.uint8), np.zeros((2, 2), np.uint8)]
    writer.write_on_batch_end(None, None, _prediction(["a", "b"], masks), None, None, 0)
    assert _visible(tmp_path) == ["a.png", "b.png"]
    for name, mask in zip("ab", masks, strict=True):
        with Image.open(tmp_path / f"{name}.png") as image:
            assert image.mode == "P"
            assert image.getpalette() == voc_palette().ravel().tolist()
            assert np.array_equal(np.array(image), mask)


def test_writer_saves_float16_scores_of_background_and_labelled_classes(tmp_path: Path) -> None:
    writer = PseudoMaskWriter(output_dir=str(tmp_path), save_scores=True)
    (tmp_path / "scores").mkdir()
    prediction = _prediction(["a"], [np.zeros((5, 7), np.uint8)])
    writer.write_on_batch_end(None, None, prediction, None, None, 0)
    scores = np.load(tmp_path / "scores" / "a.npy")
    assert scores.dtype == np.float16
    assert scores.shape == (3, 5, 7)  # background + the 2 labelled classes (1 and 3)
    expected = prediction["scores"][0, [0, 1, 3]].half().numpy()
    assert np.array_equal(scores, expected)
    assert _visible(tmp_path / "scores") == ["a.npy"]


# ---------------------------------------------------------------- atomicity
def _crash_while_saving(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Make PIL write half a PNG and then fail, as a full disk or a kill would."""
    targets = []

    def broken_save(self: Image.Image, fp, *args, **kwargs) -> None:  # noqa: ANN001
        targets.append(str(fp))
        with open(fp, "wb") as handle:
            handle.write(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR truncated")
        raise OSError("No space left on device")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    return targets


def test_crash_while_saving_leaves_no_partial_mask_and_keeps_existing_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = PseudoMaskWriter(output_dir=str(tmp_path), overwrite=True)
    writer.write_on_batch_end(None, None, _prediction(["old"], [np.full((3, 4), 2, np.uint8)]), None, None, 0)
    before = (tmp_path / "old.png").read_bytes()
    writer._existing = {"old"}  # a rerun with overwrite: true that dies while rewriting "old"

    targets = _crash_while_saving(monkeypatch)
    with pytest.raises(OutputError, match="cannot write the mask of new .*No space"):
        writer.write_on_batch_end(None, None, _prediction(["new"], [np.ones((3, 4), np.uint8)]), None, None, 0)
    with pytest.raises(OutputError, match="cannot write the mask of old .*No space"):
        writer.write_on_batch_end(None, None, _prediction(["old"], [np.ones((3, 4), np.uint8)]), None, None, 0)
    monkeypatch.undo()

    assert targets and all(Path(t).name not in ("new.png", "old.png") for t in targets)  # never the final name
    assert _visible(tmp_path) == ["old.png"]  # no new.png, no temporary file left behind
    assert (tmp_path / "old.png").read_bytes() == before
    with Image.open(tmp_path / "old.png") as image:
        assert np.array_equal(np.array(image), np.full((3, 4), 2, np.uint8))


def test_crash_while_saving_scores_leaves_neither_scores_nor_mask(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = PseudoMaskWriter(output_dir=str(tmp_path), save_scores=True)
    (tmp_path / "scores").mkdir()
    real_save = np.save

    def broken_save(file, array, *args, **kwargs) -> None:  # noqa: ANN001
        real_save(file, array[:1])  # a file that is not the whole array, then a failure
        raise OSError("interrupted")

    monkeypatch.setattr(np, "save", broken_save)
    with pytest.raises(OutputError, match="cannot write the mask of a .*interrupted"):
        writer.write_on_batch_end(None, None, _prediction(["a"], [np.zeros((3, 4), np.uint8)]), None, None, 0)
    assert _visible(tmp_path) == ["scores"]
    assert _visible(tmp_path / "scores") == []


# ------------------------------------------------------------------- set-up
def test_setup_resumes_skipping_existing_masks_and_clears_stale_temporaries(tmp_path: Path) -> None:
    PseudoMaskWriter(output_dir=str(tmp_path)).setup(_fake_trainer(["a"]), None, "predict")  # a first run
    assert _visible(tmp_path) == ["provenance.json"]
    write_mask_png(tmp_path / "a.png", np.zeros((2, 2), np.uint8))
    write_mask_png(tmp_path / "c.png", np.zeros((2, 2), np.uint8))
    (tmp_path / ".b.4242.tmp.png").write_bytes(b"\x89PNG half")  # left by a run that was killed
    trainer = _fake_trainer(["a", "b", "c", "d"])
    writer = PseudoMaskWriter(output_dir=str(tmp_path))
    writer.setup(trainer, None, "predict")
    assert trainer.datamodule.datasets["predict"].ids == ["b", "d"]
    assert trainer.predict_loop.return_predictions is False  # full-resolution scores must not pile up
    assert _visible(tmp_path) == ["a.png", "c.png", "provenance.json"]

    trainer = _fake_trainer(["a", "b", "c", "d"])
    PseudoMaskWriter(output_dir=str(tmp_path), overwrite=True).setup(trainer, None, "predict")
    assert trainer.datamodule.datasets["predict"].ids == ["a", "b", "c", "d"]


def test_setup_refuses_a_file_or_no_output_dir(tmp_path: Path) -> None:
    path = tmp_path / "out"
    path.write_text("not a folder")
    with pytest.raises(DatasetError, match="is a file"):
        PseudoMaskWriter(output_dir=str(path)).setup(_fake_trainer(["a"]), None, "predict")
    assert path.read_text() == "not a folder"
    with pytest.raises(DatasetError, match="output_dir"):
        PseudoMaskWriter().setup(_fake_trainer(["a"]), None, "predict")
    PseudoMaskWriter().setup(_fake_trainer(["a"]), None, "fit")  # other stages: nothing to check


def test_setup_refuses_a_read_only_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "out").mkdir()
    monkeypatch.setattr("os.access", lambda path, mode: False)  # (tests may run as root, who may write anywhere)
    with pytest.raises(DatasetError, match=r"output_dir .*out is not writable"):
        PseudoMaskWriter(output_dir=str(tmp_path / "out")).setup(_fake_trainer(["a"]), None, "predict")


def test_setup_refuses_a_folder_inside_the_dataset(tmp_path: Path) -> None:
    masks = tmp_path / "data" / "SegmentationClassAug"
    masks.mkdir(parents=True)
    for out in (masks, masks / "deeper", tmp_path / "data" / "JPEGImages"):
        with pytest.raises(OutputError, match="inside the dataset's"):
            PseudoMaskWriter(output_dir=str(out)).setup(_fake_trainer(["a"], tmp_path / "data"), None, "predict")
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["SegmentationClassAug"]


def test_setup_creates_nested_output_and_scores_folders(tmp_path: Path) -> None:
    out = tmp_path / "x" / "y"
    PseudoMaskWriter(output_dir=str(out), save_scores=True).setup(_fake_trainer(["a"]), None, "predict")
    assert (out / "scores").is_dir()


# ------------------------------------------- predictions of a photo folder: overlays, overview, resume
NAMES = ["background", "aeroplane", "bicycle", "bird"]


def _folder_trainer(photos: Path) -> SimpleNamespace:
    """A trainer predicting the plain folder ``photos`` (``--data.predict_image_dir``) with VOC's first classes."""
    dataset = ImageFolderDataset(photos, len(NAMES) - 1)
    return SimpleNamespace(
        datamodule=SimpleNamespace(datasets={"predict": dataset}, hparams={}, class_names=NAMES),
        is_global_zero=True,
        ckpt_path=None,
        predict_loop=SimpleNamespace(return_predictions=True),
    )


def _predict_folder(photos: Path, out: Path, masks: dict[str, np.ndarray], **options: object) -> PseudoMaskWriter:
    """One run of the writer over ``photos``, as ``epspp predict`` calls it (setup, one batch per mask, the end)."""
    trainer = _folder_trainer(photos)
    writer = PseudoMaskWriter(output_dir=str(out), save_overlays=True, **options)
    writer.setup(trainer, None, "predict")
    for image_id in trainer.datamodule.datasets["predict"].ids:
        writer.write_on_batch_end(
            trainer, None, {"id": [image_id], "mask": torch.from_numpy(masks[image_id])[None]}, None, None, 0
        )
    writer._finish_folder(trainer, trainer.datamodule.datasets["predict"], False, torch.device("cpu"))
    return writer


def _photo_folder(folder: Path) -> dict[str, np.ndarray]:
    """Two grey photos, 40x24 and 24x36 (W x H), and their masks: bird (3) in one, aeroplane (1) in the other."""
    folder.mkdir()
    masks = {}
    for name, (width, height), cls in (("p wide", (40, 24), 3), ("q tall", (24, 36), 1)):
        Image.fromarray(np.full((height, width, 3), 100, np.uint8)).save(folder / f"{name}.png")
        masks[name] = np.zeros((height, width), np.uint8)
        masks[name][4:12, 4:12] = cls
    return masks


def test_folder_predictions_get_overlays_with_a_legend_and_an_overview(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    masks = _photo_folder(tmp_path / "photos")
    out = tmp_path / "out"
    _predict_folder(tmp_path / "photos", out, masks)
    assert f"[epspp] overview of the masks: {out / 'overview.png'}" in capsys.readouterr().out
    assert _visible(out) == ["manifest.json", "overlays", "overview.png", "p wide.png", "provenance.json", "q tall.png"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["count"] == manifest["folder_size"] == 2 and manifest["class_names"] == NAMES
    for name, cls, absent in (("p wide", 3, 1), ("q tall", 1, 3)):
        overlay = np.array(Image.open(out / "overlays" / f"{name}.png"))
        height, width = masks[name].shape
        assert overlay.shape[0] > height and overlay.shape[1] >= width  # the photo, then the legend band
        band = overlay[height:]
        assert (band == voc_palette()[cls]).all(axis=-1).sum() == 12 * 12  # a 14-px swatch of its class
        assert (band == voc_palette()[absent]).all(axis=-1).sum() == 0  # the other photo's class: no swatch
    with Image.open(out / "overview.png") as overview:
        assert overview.text["Software"] == "epspp render" and json.loads(overview.text["epspp:rows"]) == [
            "p wide",
            "q tall",
        ]
        assert overview.width == 2 * 256 + 4  # image | mask overlay, 256 px each


def test_resume_ignores_overview_and_overlays(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    masks = _photo_folder(tmp_path / "photos")
    out = tmp_path / "out"
    _predict_folder(tmp_path / "photos", out, masks)
    capsys.readouterr()
    trainer = _folder_trainer(tmp_path / "photos")
    PseudoMaskWriter(output_dir=str(out), save_overlays=True).setup(trainer, None, "predict")
    assert trainer.datamodule.datasets["predict"].ids == []
    assert f"[epspp] 2 masks already in {out}" in capsys.readouterr().out
    # another checkpoint: the refusal counts the 2 masks, not overview.png or the overlays
    writer = PseudoMaskWriter(output_dir=str(out), save_overlays=True)
    writer.checkpoint_path = str(tmp_path / "photos" / "p wide.png")  # any file: a hash other than None's
    with pytest.raises(DatasetError, match=f"the 2 masks in {out} were made differently"):
        writer.setup(_folder_trainer(tmp_path / "photos"), None, "predict")
    # a folder that holds only an overview drawn by epspp render (no provenance.json): no mask to protect
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / "overview.png").write_bytes((out / "overview.png").read_bytes())
    _predict_folder(tmp_path / "photos", fresh, masks)
    assert json.loads((fresh / "manifest.json").read_text())["count"] == 2


def test_an_image_named_overview_keeps_its_mask(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    masks = _photo_folder(tmp_path / "photos")
    (tmp_path / "photos" / "p wide.png").rename(tmp_path / "photos" / "overview.png")
    masks["overview"] = masks.pop("p wide")
    out = tmp_path / "out"
    _predict_folder(tmp_path / "photos", out, masks)
    assert (
        f"[epspp] note: {out / 'overview.png'} is not an overview drawn by epspp (the mask of an image named "
        "'overview', or a file of yours): kept" in capsys.readouterr().out
    )
    assert np.array_equal(np.array(Image.open(out / "overview.png")), masks["overview"])  # the mask, untouched
    assert json.loads((out / "manifest.json").read_text())["count"] == 2


def test_the_writer_of_rank_1_scores_its_own_share_of_the_split(tmp_path: Path) -> None:
    # a fake trainer of rank 1 of 2: the writer's scoring reads img1 and img3 only (K*K = 1 + 9 pixels marked a)
    root, out = write_counting_split(tmp_path)
    datamodule = SimpleNamespace(num_classes=1, hparams=SimpleNamespace(root=str(root), mask_dir=None))
    strategy = SimpleNamespace(reduce=lambda tensor, reduce_op: tensor)  # one process stands for the sum
    trainer = SimpleNamespace(global_rank=1, world_size=2, strategy=strategy, datamodule=datamodule)
    writer = PseudoMaskWriter(output_dir=str(out), mask_subdir="")
    evaluated, scores = writer._score(trainer, SimpleNamespace(device=torch.device("cpu")), "val", distributed=True)
    assert evaluated == 2
    assert float(scores["iou"][0]) == pytest.approx((2 * 28 - 10) / (2 * 28))  # rank 0's: (84 - 20) / 84


def test_the_manifest_counts_the_masks_on_disk_not_the_split(tmp_path: Path) -> None:
    root, out = write_counting_split(tmp_path)
    (out / "img2.png").unlink()  # two ids of the split of 5 have no mask (a run stopped early, or skipped them)
    (out / "img4.png").unlink()
    datamodule = SimpleNamespace(
        datasets={"predict": SimpleNamespace(labels={})}, hparams=AttributeDict(root=str(root)), class_names=["bg", "a"]
    )
    trainer = SimpleNamespace(datamodule=datamodule, ckpt_path=None)
    writer = PseudoMaskWriter(output_dir=str(out))
    manifest = writer._manifest(trainer, SimpleNamespace(hparams={}), "val", evaluated=3)
    assert (manifest["count"], manifest["split_size"], manifest["evaluated"]) == (3, 5, 3)


def test_the_split_manifest_names_the_checkpoint_as_the_folder_manifest_does(tmp_path: Path) -> None:
    """``checkpoint_path`` (``--ckpt_path``, or set through the Python API) before the trainer's, as provenance.json."""
    import hashlib

    root, out = write_counting_split(tmp_path)
    given = tmp_path / "given.ckpt"
    given.write_bytes(b"given")
    datamodule = SimpleNamespace(
        datasets={"predict": SimpleNamespace(labels={})}, hparams=AttributeDict(root=str(root)), class_names=["bg", "a"]
    )
    writer = PseudoMaskWriter(output_dir=str(out))
    writer.checkpoint_path = str(given)
    for trainer_ckpt in (None, str(tmp_path / "other.ckpt")):
        trainer = SimpleNamespace(datamodule=datamodule, ckpt_path=trainer_ckpt)
        manifest = writer._manifest(trainer, SimpleNamespace(hparams={}), "val", evaluated=3)
        assert manifest["checkpoint"] == str(given.resolve())
        assert manifest["checkpoint_sha256"] == hashlib.sha256(b"given").hexdigest()


# ------------------------------------------------- the split's manifest (_finish), scoring failures, report split
class _Logger:
    def __init__(self) -> None:
        self.logged: list[dict] = []

    def log_metrics(self, metrics: dict) -> None:
        self.logged.append(metrics)


def _split_trainer(root: Path, labels: dict, ids: list[str], global_zero: bool = True) -> SimpleNamespace:
    """A one-process trainer predicting split ``val`` of ``root`` (classes background, a)."""
    dataset = SimpleNamespace(
        ids=list(ids),
        labels=labels,
        image_dir=root / "JPEGImages",
        mask_dir=root / "SegmentationClassAug",
        saliency_dir=None,
        root=root,
    )
    datamodule = SimpleNamespace(
        datasets={"predict": dataset},
        hparams=AttributeDict(root=str(root), mask_dir=None, predict_split="val"),
        class_names=["background", "a"],
        num_classes=1,
    )
    return SimpleNamespace(
        datamodule=datamodule,
        is_global_zero=global_zero,
        ckpt_path=None,
        loggers=[_Logger()],
        predict_loop=SimpleNamespace(return_predictions=True),
    )


def test_the_manifest_of_a_split_scores_its_masks_and_the_report_split(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Split val: 5 masks of 4x7 pixels, all-background ground truth, imgK predicts K*K pixels as a (0+1+4+9+16 = 30
    of 140): background IoU 110/140 = 78.571%, a's 0/30 = 0, mIoU 39.286%, pixel accuracy 78.571%. The report
    split (img0, img1): 1 of 56 pixels wrong: background 55/56 = 98.214%, mIoU 49.107%."""
    root, out = write_counting_split(tmp_path)
    (root / "ImageSets" / "Segmentation" / "sub.txt").write_text("img0\nimg1\n")
    labels = {"img0": np.zeros(1), "img1": np.zeros(1), "img2": np.ones(1)}  # img0, img1 have no labelled class
    trainer = _split_trainer(root, labels, [f"img{k}" for k in range(5)])
    writer = PseudoMaskWriter(output_dir=str(out), report_split="sub")
    writer._written = 3
    cpu = torch.device("cpu")
    writer.teardown(
        trainer, SimpleNamespace(hparams={"size": (2, 3), "roots": (tmp_path,), "flag": None}, device=cpu), "predict"
    )
    manifest = json.loads((out / "manifest.json").read_text())
    assert (manifest["split"], manifest["count"], manifest["split_size"], manifest["evaluated"]) == ("val", 5, 5, 5)
    assert (manifest["written_this_run"], manifest["no_label_all_background"]) == (3, 2)
    assert (manifest["miou"], manifest["pixel_accuracy"]) == (39.286, 78.571)
    assert manifest["per_class_iou"] == {"background": 78.571, "a": 0.0}
    assert manifest["report"] == {
        "split": "sub",
        "evaluated": 2,
        "miou": 49.107,
        "pixel_accuracy": 98.214,
        "per_class_iou": {"background": 98.214, "a": 0.0},
    }
    assert manifest["config"]["model"] == {"size": [2, 3], "roots": [str(tmp_path)], "flag": None}  # JSON-plain
    assert manifest["config"]["writer"]["report_split"] == "sub"
    assert trainer.loggers[0].logged == [{"pseudo_masks/mIoU": pytest.approx(100 * 110 / 280)}]
    printed = capsys.readouterr().out
    assert f"[epspp] wrote 3 masks to {out} (" in printed
    assert "[epspp] 2 images of 'val' have no labelled class: their masks are all background" in printed
    assert "pseudo-masks of 'val' vs ground truth (5 images):" in printed
    assert "pseudo-masks of 'sub' (the report split) vs ground truth (2 images):" in printed
    assert not (out / "overview.png").exists() and "overview" not in printed  # no save_overlays: no overview
    writer.teardown(trainer, None, "predict")  # finished: the manifest is not redone
    (out / "manifest.json").unlink()
    writer = PseudoMaskWriter(output_dir=str(out))
    writer.teardown(_split_trainer(root, labels, [], global_zero=False), None, "predict")  # not rank 0: no manifest
    PseudoMaskWriter(output_dir=str(out)).teardown(trainer, None, "fit")  # not a prediction
    assert not (out / "manifest.json").exists()


def test_a_report_split_outside_the_predicted_split_is_refused(tmp_path: Path) -> None:
    root, out = write_counting_split(tmp_path)
    (root / "ImageSets" / "Segmentation" / "train.txt").write_text("img0\nimg9\nimg7\nimg8\nimg6\n")
    trainer = _split_trainer(root, {}, [f"img{k}" for k in range(5)])
    with pytest.raises(DatasetError) as error:
        PseudoMaskWriter(output_dir=str(tmp_path / "new"), report_split="train").setup(trainer, None, "predict")
    assert str(error.value) == (
        "4 ids of report_split 'train' are not in predict_split 'val', e.g. ['img6', 'img7', 'img8']: set "
        "--pseudo_masks.report_split null or a subset"
    )


def test_a_mask_another_rank_wrote_in_this_run_is_not_written_again(tmp_path: Path) -> None:
    """DDP pads a rank's share with ids of another rank: the first write stands, counted once."""
    writer = PseudoMaskWriter(output_dir=str(tmp_path))
    writer.setup(_fake_trainer(["a"]), None, "predict")
    first, second = np.array([[1, 2, 3]], np.uint8), np.array([[3, 3, 3]], np.uint8)  # 1x3: non-square
    writer.write_on_batch_end(None, None, {"id": ["a"], "mask": torch.from_numpy(first)[None]}, None, None, 0)
    writer.write_on_batch_end(None, None, {"id": ["a"], "mask": torch.from_numpy(second)[None]}, None, None, 0)
    assert np.array_equal(np.array(Image.open(tmp_path / "a.png")), first) and writer._written == 1
    writer = PseudoMaskWriter(output_dir=str(tmp_path), overwrite=True)  # a mask of an earlier run: redone
    writer.setup(_fake_trainer(["a"]), None, "predict")
    writer.write_on_batch_end(None, None, {"id": ["a"], "mask": torch.from_numpy(second)[None]}, None, None, 0)
    assert np.array_equal(np.array(Image.open(tmp_path / "a.png")), second) and writer._written == 1


def test_scoring_stops_every_rank_when_one_fails(tmp_path: Path) -> None:
    root, out = write_counting_split(tmp_path)
    write_mask_png(out / "img3.png", np.zeros((7, 4), np.uint8))  # transposed: 7x4, the truth is 4x7
    trainer = _split_trainer(root, {}, [])
    writer = PseudoMaskWriter(output_dir=str(out))
    with pytest.raises(DatasetError, match="img3"):
        writer._score(trainer, SimpleNamespace(device=torch.device("cpu")), "val", distributed=False)
    write_mask_png(out / "img3.png", np.zeros((4, 7), np.uint8))
    calls: list[float] = []

    def reduce(tensor: torch.Tensor, reduce_op: str) -> torch.Tensor:  # another rank failed: the sums say 1
        calls.append(float(tensor[0]))
        return tensor + 1 if len(calls) == 1 else tensor

    trainer.strategy = SimpleNamespace(reduce=reduce)
    trainer.global_rank, trainer.world_size = 0, 2
    with pytest.raises(DatasetError) as error:
        writer._score(trainer, SimpleNamespace(device=torch.device("cpu")), "val", distributed=True)
    assert str(error.value) == f"scoring the masks in {out} failed on another process"
    assert calls == [0.0, 3.0]  # no failure here; rank 0 of 2 scored img0, img2, img4


def test_an_overview_that_cannot_be_drawn_is_a_note(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import epspp.render

    def full_disk(*args: object, **kwargs: object) -> None:
        raise OSError("No space left on device")

    monkeypatch.setattr(epspp.render, "render", full_disk)
    masks = _photo_folder(tmp_path / "photos")
    out = tmp_path / "out"
    _predict_folder(tmp_path / "photos", out, masks)
    assert f"[epspp] note: {out / 'overview.png'} not drawn: No space left on device" in capsys.readouterr().out
    assert (out / "p wide.png").is_file() and not (out / "overview.png").exists()


# ------------------------------------------------------------ variation pass (issue 34 item 6)
def test_a_mask_subdir_holds_the_masks_and_only_them(tmp_path: Path) -> None:
    """``mask_subdir``: PNGs in OUT/<subdir>, score maps and provenance in OUT; a rerun finds the masks there."""
    out = tmp_path / "out"
    writer = PseudoMaskWriter(output_dir=str(out), save_scores=True, mask_subdir="comp6/cls")
    writer.setup(_fake_trainer(["a", "b"]), None, "predict")
    writer.write_on_batch_end(None, None, _prediction(["a"], [np.ones((2, 3), np.uint8)]), None, None, 0)
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        "comp6/cls/a.png",
        "provenance.json",
        "scores/a.npy",
    ]
    trainer = _fake_trainer(["a", "b"])
    PseudoMaskWriter(output_dir=str(out), save_scores=True, mask_subdir="comp6/cls").setup(trainer, None, "predict")
    assert trainer.datamodule.datasets["predict"].ids == ["b"]


def test_a_mask_without_its_score_map_is_predicted_again_when_scores_are_saved(tmp_path: Path) -> None:
    PseudoMaskWriter(output_dir=str(tmp_path), save_scores=True).setup(_fake_trainer(["a"]), None, "predict")
    write_mask_png(tmp_path / "a.png", np.zeros((2, 2), np.uint8))  # a killed run: the mask, not its scores
    write_mask_png(tmp_path / "b.png", np.zeros((2, 2), np.uint8))
    np.save(tmp_path / "scores" / "b.npy", np.zeros((1, 2, 2), np.float16))
    trainer = _fake_trainer(["a", "b"])
    PseudoMaskWriter(output_dir=str(tmp_path), save_scores=True).setup(trainer, None, "predict")
    assert trainer.datamodule.datasets["predict"].ids == ["a"]
    trainer = _fake_trainer(["a", "b"])  # without save_scores the mask alone is done
    PseudoMaskWriter(output_dir=str(tmp_path)).setup(trainer, None, "predict")
    assert trainer.datamodule.datasets["predict"].ids == []


def test_every_kind_of_stale_temporary_goes_and_only_rank_0_removes_them(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "out"
    stale = [
        "sub/.a.7.tmp.png",  # a mask in the mask_subdir
        ".a.7.tmp.png",
        ".a.7.tmp.npy",
        "scores/.a.7.tmp.npy",
        "overlays/.a.7.tmp.png",
        ".manifest.7.tmp.json",
        ".manifest.json.tmp",
    ]
    for name in [*stale, "keep.tmp", "sub/keep.txt"]:
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_bytes(b"x")
    trainer = _fake_trainer(["a"])
    trainer.is_global_zero = False
    PseudoMaskWriter(output_dir=str(out), mask_subdir="sub").setup(trainer, None, "predict")
    assert not (out / "provenance.json").exists() and all((out / name).exists() for name in stale)
    PseudoMaskWriter(output_dir=str(out), mask_subdir="sub").setup(_fake_trainer(["a"]), None, "predict")
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        "keep.tmp",
        "provenance.json",
        "sub/keep.txt",
    ]
    write_mask_png(out / "sub" / "a.png", np.zeros((2, 2), np.uint8))
    capsys.readouterr()
    trainer = _fake_trainer(["a", "b"])
    trainer.is_global_zero = False  # every rank predicts only the missing ids; rank 0 alone says so
    PseudoMaskWriter(output_dir=str(out), mask_subdir="sub").setup(trainer, None, "predict")
    assert trainer.datamodule.datasets["predict"].ids == ["b"] and capsys.readouterr().out == ""


def test_the_manifest_names_the_checkpoint_epspp_predict_gave(tmp_path: Path) -> None:
    """``checkpoint_path`` (from ``--ckpt_path``) before the trainer's; its resolved path and SHA-256."""
    import hashlib

    masks = _photo_folder(tmp_path / "photos")
    given, other = tmp_path / "given.ckpt", tmp_path / "other.ckpt"
    given.write_bytes(b"given")
    other.write_bytes(b"other")
    trainer = _folder_trainer(tmp_path / "photos")
    trainer.ckpt_path = str(other)
    writer = PseudoMaskWriter(output_dir=str(tmp_path / "out"))
    writer.checkpoint_path = str(tmp_path / "." / "given.ckpt")
    writer.setup(trainer, None, "predict")
    for image_id in trainer.datamodule.datasets["predict"].ids:
        prediction = {"id": [image_id], "mask": torch.from_numpy(masks[image_id])[None]}
        writer.write_on_batch_end(trainer, None, prediction, None, None, 0)
    writer._finish_folder(trainer, trainer.datamodule.datasets["predict"], False, torch.device("cpu"))
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    digest = hashlib.sha256(b"given").hexdigest()
    assert (manifest["checkpoint"], manifest["checkpoint_sha256"]) == (str(given.resolve()), digest)
    assert json.loads((tmp_path / "out" / "provenance.json").read_text())["checkpoint_sha256"] == digest
    assert (manifest["images"], manifest["written_this_run"]) == (str(tmp_path / "photos"), 2)


def test_the_dataset_folders_an_output_stays_out_of_are_named(tmp_path: Path) -> None:
    from epspp.callbacks.mask_writer import dataset_folders

    dataset = SimpleNamespace(image_dir="i", mask_dir=None, saliency_dir="s", root="r")
    assert dataset_folders(dataset) == {"image": Path("i"), "saliency": Path("s"), "root": Path("r")}
    with pytest.raises(OutputError, match="is inside the dataset's saliency folder"):
        PseudoMaskWriter(output_dir=str(tmp_path / "s" / "x")).setup(
            SimpleNamespace(
                datamodule=SimpleNamespace(
                    datasets={
                        "predict": SimpleNamespace(ids=["a"], image_dir=tmp_path / "i", saliency_dir=tmp_path / "s")
                    },
                    hparams={},
                )
            ),
            None,
            "predict",
        )
