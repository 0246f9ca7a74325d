"""``evaluate_folder``'s share of a split under DDP (``ids[rank::world_size]``), exercised without processes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fixtures.helpers import write_counting_split

from epspp import scoring
from epspp.data.io import DatasetError, write_mask_png
from epspp.metrics import SegmentationMetrics
from epspp.scoring import evaluate_folder

PIXELS = 4 * 7  # not square: a (w, h) mix-up in reading the files would show


@pytest.mark.parametrize(
    ("rank", "world_size", "ks"),
    [(0, 1, [0, 1, 2, 3, 4]), (0, 2, [0, 2, 4]), (1, 2, [1, 3]), (1, 3, [1, 4]), (2, 3, [2])],
)
def test_each_rank_scores_its_stride_of_the_split(tmp_path: Path, rank: int, world_size: int, ks: list[int]) -> None:
    root, out = write_counting_split(tmp_path)
    result = evaluate_folder(out, root, "val", rank=rank, world_size=world_size)
    assert result["evaluated"] == len(ks) and result["no_ground_truth"] == 0
    confusion = result["metric"].confusion
    # background pixels predicted as a: K*K of each of this rank's images imgK; the rest stay background
    assert int(confusion[0, 1]) == sum(k * k for k in ks)
    assert int(confusion[0, 0]) == len(ks) * PIXELS - sum(k * k for k in ks)


def test_the_ranks_shares_add_up_to_the_whole_split(tmp_path: Path) -> None:
    root, out = write_counting_split(tmp_path)
    whole = evaluate_folder(out, root, "val")["metric"].confusion
    shared = SegmentationMetrics(2)
    counts = [evaluate_folder(out, root, "val", metric=shared, rank=r, world_size=2)["evaluated"] for r in (0, 1)]
    assert counts == [3, 2]
    assert shared.confusion.tolist() == whole.tolist()


def test_a_transposed_prediction_of_the_same_pixel_count_is_refused(tmp_path: Path) -> None:
    root, out = write_counting_split(tmp_path)
    write_mask_png(out / "img3.png", np.zeros((7, 4), np.uint8))  # 7 high, 4 wide: the ground truth is 4 x 7
    with pytest.raises(DatasetError, match=r"img3.png is 4x7 but the ground truth .* is 7x4 \(WxH\)"):
        evaluate_folder(out, root, "val")


@pytest.mark.parametrize("exact", [1 << 24, 10, 3])  # one block; blocks of 1 row of 7; blocks of 3 columns
def test_pair_counts_are_the_bincount_of_the_byte_pairs(monkeypatch: pytest.MonkeyPatch, exact: int) -> None:
    monkeypatch.setattr(scoring, "EXACT_COUNTS", exact)
    rng = np.random.default_rng(0)
    target = rng.choice(np.array([0, 1, 5, 255], np.uint8), (4, 7))
    pred = rng.integers(0, 256, (4, 7), dtype=np.uint8)
    pred[0, 0], target[0, 0] = 255, 255
    expected = np.zeros((256, 256), np.int64)
    for t, p in zip(target.ravel().tolist(), pred.ravel().tolist(), strict=True):  # written out pixel by pixel
        expected[t, p] += 1
    counts = scoring.pair_counts(target, pred[:, :])
    assert counts.dtype == np.int64 and counts.tolist() == expected.tolist()
    # a non-contiguous view, as the PNG reader returns, counts the same
    wide = np.zeros((4, 8), np.uint8)
    wide[:, 1:] = pred
    assert scoring.pair_counts(target, wide[:, 1:]).tolist() == expected.tolist()


# ------------------------------------------- variation pass (issue 34 item 6)
def test_ids_without_ground_truth_are_counted_and_skipped(tmp_path: Path) -> None:
    root, out = write_counting_split(tmp_path)
    (root / "SegmentationClassAug" / "img2.png").unlink()
    result = evaluate_folder(out, root, "val")
    assert (result["evaluated"], result["no_ground_truth"]) == (4, 1)
    assert int(result["metric"].confusion[0, 1]) == 0 + 1 + 9 + 16  # img2's 4 pixels of a are not counted


def test_another_mask_folder_is_the_ground_truth_read(tmp_path: Path) -> None:
    """``mask_dir`` away from its default: img0's ground truth there is all class a (the default folder's: all
    background), so img0's 28 background predictions are misses of a."""
    root, out = write_counting_split(tmp_path)
    other = tmp_path / "gt"
    other.mkdir()
    for k in range(5):
        write_mask_png(other / f"img{k}.png", np.full((4, 7), 1 if k == 0 else 0, np.uint8))
    confusion = evaluate_folder(out, root, "val", mask_dir=other)["metric"].confusion
    assert int(confusion[1, 0]) == PIXELS and int(confusion[0, 1]) == 1 + 4 + 9 + 16
    assert int(evaluate_folder(out, root, "val")["metric"].confusion[1].sum()) == 0


def test_a_missing_prediction_is_refused_naming_the_id_and_split(tmp_path: Path) -> None:
    root, out = write_counting_split(tmp_path)
    (out / "img1.png").unlink()
    with pytest.raises(DatasetError, match=r"prediction .*img1\.png is missing \(id img1 of split 'val'\)"):
        evaluate_folder(out, root, "val")


def test_an_image_named_overview_is_scored_unless_its_prediction_is_renders_picture(tmp_path: Path) -> None:
    """The one id that can meet ``epspp render``'s ``overview.png``: a plain mask of that name is scored, the picture
    (a PNG whose Software text is ``epspp render``) is refused in one line."""
    from fixtures.helpers import SPLITS
    from PIL import Image, PngImagePlugin

    root, out = write_counting_split(tmp_path, count=1)
    with (root / SPLITS / "val.txt").open("a") as split:
        split.write("overview\n")
    write_mask_png(root / "SegmentationClassAug" / "overview.png", np.zeros((4, 7), np.uint8))
    write_mask_png(out / "overview.png", np.ones((4, 7), np.uint8))
    assert int(evaluate_folder(out, root, "val")["metric"].confusion[0, 1]) == PIXELS
    info = PngImagePlugin.PngInfo()
    info.add_text("Software", "epspp render")
    Image.new("RGB", (7, 4)).save(out / "overview.png", pnginfo=info)
    with pytest.raises(DatasetError, match=r"overview\.png is the overview picture drawn by `epspp render`"):
        evaluate_folder(out, root, "val")
