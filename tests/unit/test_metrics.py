"""SegmentationMetrics / scores_from_confusion / iou_table against hand computations."""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from epspp.metrics import SegmentationMetrics, confusion_from_joint, iou_table, scores_from_confusion

# 4 classes (0..3); class 3 occurs neither in the ground truth nor in the prediction.
TARGET = torch.tensor([[0, 0, 1, 1], [2, 2, 255, 0]])
PRED = torch.tensor([[0, 1, 1, 1], [2, 0, 2, 0]])
# Counted pixels: the 7 whose target is not 255 (the prediction 2 under the 255 is not scored).
#   class 0: target at (0,0) (0,1) (1,3) -> 3; predicted at (0,0) (1,1) (1,3) -> 3; hits (0,0) (1,3) -> 2
#            IoU = 2 / (3 + 3 - 2) = 1/2
#   class 1: target at (0,2) (0,3) -> 2; predicted at (0,1) (0,2) (0,3) -> 3; hits 2 -> IoU = 2 / (2 + 3 - 2) = 2/3
#   class 2: target at (1,0) (1,1) -> 2; predicted at (1,0) -> 1 (the (1,2) one is ignored); hits 1
#            IoU = 1 / (2 + 1 - 1) = 1/2
#   class 3: absent from both -> NaN, left out of the mean
EXPECTED_IOU = [1 / 2, 2 / 3, 1 / 2, math.nan]
EXPECTED_MIOU = (1 / 2 + 2 / 3 + 1 / 2) / 3
EXPECTED_ACCURACY = (2 + 2 + 1) / 7


def _check(scores: dict, iou: list[float], miou: float, accuracy: float) -> None:
    got = scores["iou"].tolist()
    assert len(got) == len(iou)
    for value, expected in zip(got, iou, strict=True):
        if math.isnan(expected):
            assert math.isnan(value)
        else:
            assert value == pytest.approx(expected, abs=1e-6)
    assert float(scores["miou"]) == pytest.approx(miou, abs=1e-6)
    assert float(scores["pixel_accuracy"]) == pytest.approx(accuracy, abs=1e-6)


def test_metric_matches_hand_computation() -> None:
    metric = SegmentationMetrics(4)
    metric.update(PRED, TARGET)
    _check(metric.compute(), EXPECTED_IOU, EXPECTED_MIOU, EXPECTED_ACCURACY)


def test_metric_accumulates_over_updates_and_resets() -> None:
    metric = SegmentationMetrics(4)
    metric.update(PRED[:1], TARGET[:1])
    metric.update(PRED[1:], TARGET[1:])
    _check(metric.compute(), EXPECTED_IOU, EXPECTED_MIOU, EXPECTED_ACCURACY)
    metric.reset()
    metric.update(TARGET.clamp(max=2), TARGET.clamp(max=2))  # perfect, 255 -> 2 in both
    _check(metric.compute(), [1.0, 1.0, 1.0, math.nan], 1.0, 1.0)


def test_scores_from_hand_written_confusion() -> None:
    # rows = ground truth, columns = prediction, the confusion of TARGET / PRED above
    confusion = torch.tensor([[2, 1, 0, 0], [0, 2, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]])
    _check(scores_from_confusion(confusion), EXPECTED_IOU, EXPECTED_MIOU, EXPECTED_ACCURACY)
    metric = SegmentationMetrics(4)
    metric.update(PRED, TARGET)
    assert torch.equal(metric.confusion[:, :4], confusion)
    assert int(metric.confusion[:, 4].sum()) == 0  # no prediction outside the classes


def test_prediction_outside_the_classes_counts_as_a_miss() -> None:
    """A 255 (or any out-of-range id) in a prediction is nobody's hit and nobody's false positive."""
    target = torch.tensor([0, 1, 1, 2])
    pred = torch.tensor([0, 1, 255, 2])
    metric = SegmentationMetrics(3)
    metric.update(pred, target)
    # class 1: 2 target pixels, 1 predicted, 1 hit -> 1/2; classes 0 and 2 perfect
    _check(metric.compute(), [1.0, 1 / 2, 1.0], (1 + 1 / 2 + 1) / 3, 3 / 4)
    # the same with the extra column of scores_from_confusion written out
    confusion = torch.tensor([[1, 0, 0, 0], [0, 1, 0, 1], [0, 0, 1, 0]])
    _check(scores_from_confusion(confusion), [1.0, 1 / 2, 1.0], (1 + 1 / 2 + 1) / 3, 3 / 4)


def test_all_ignored_gives_nan_iou_and_zero_mean() -> None:
    metric = SegmentationMetrics(3)
    metric.update(torch.zeros(2, 2, dtype=torch.long), torch.full((2, 2), 255))
    scores = metric.compute()
    assert all(math.isnan(v) for v in scores["iou"].tolist())
    assert float(scores["miou"]) == 0.0


def test_bad_inputs_raise() -> None:
    metric = SegmentationMetrics(3)
    with pytest.raises(ValueError, match="shape"):
        metric.update(torch.zeros(2, 3), torch.zeros(3, 2))
    with pytest.raises(ValueError, match="outside"):
        metric.update(torch.zeros(4), torch.tensor([0, 1, 3, 255]))


def test_iou_table_lists_classes_na_and_mean() -> None:
    table = iou_table(torch.tensor(EXPECTED_IOU), ["background", "cat", "dog", "cow"])
    lines = table.splitlines()
    assert lines[0].split() == ["class", "IoU(%)"]
    assert lines[1].split() == ["background", "50.00"]
    assert lines[2].split() == ["cat", "66.67"]
    assert lines[4].split() == ["cow", "n/a"]
    assert lines[5].split() == ["mIoU", f"{100 * EXPECTED_MIOU:.2f}"]


def _old_confusion(preds: torch.Tensor, target: torch.Tensor, k: int) -> torch.Tensor:
    """The (K, K+1) counts as the metric counted them before (masking, then a count per pixel)."""
    confusion = torch.zeros(k, k + 1, dtype=torch.long)
    for p, t in zip(preds.flatten().tolist(), target.flatten().tolist(), strict=True):
        if t != 255:
            confusion[t, p if 0 <= p < k else k] += 1
    return confusion


def test_confusion_of_a_non_square_mask_by_hand() -> None:
    # K = 3; 255 in the target (ignored, whatever the prediction), 7 and 255 in the prediction (column K)
    target = torch.tensor([[0, 1, 255], [2, 1, 0]])
    pred = torch.tensor([[0, 7, 1], [2, 255, 1]])
    metric = SegmentationMetrics(3)
    metric.update(pred, target)
    expected = torch.tensor([[1, 1, 0, 0], [0, 0, 0, 2], [0, 0, 1, 0]])
    assert torch.equal(metric.confusion, expected)


@pytest.mark.parametrize("k", [5, 81])
def test_confusion_matches_the_old_formulation(k: int) -> None:
    generator = torch.Generator().manual_seed(k)
    target = torch.randint(0, k, (37, 53), generator=generator)
    target[torch.rand(37, 53, generator=generator) < 0.1] = 255
    pred = torch.randint(-2, k + 3, (37, 53), generator=generator)
    pred[torch.rand(37, 53, generator=generator) < 0.1] = 255
    metric = SegmentationMetrics(k)
    metric.update(pred.clamp_min(0).to(torch.uint8), target)  # masks as read from PNGs (uint8)
    metric.update(pred, target.to(torch.uint8))  # negative predictions too
    expected = _old_confusion(pred.clamp_min(0), target, k) + _old_confusion(pred, target, k)
    assert torch.equal(metric.confusion, expected)


@pytest.mark.parametrize("k", [3, 255])
def test_confusion_from_joint_counts_as_the_metric_does(k: int) -> None:
    """``epspp score``'s path (a (256, 256) count of byte pairs) against ``update`` on the same pixels: predictions
    equal to K (the first id past the classes) and 255 are misses in column K; K = 255 (254 object classes, the
    most 8-bit masks hold) is the case where a prediction of 255 is also the value K."""
    generator = torch.Generator().manual_seed(k)
    target = torch.randint(0, k, (29, 41), generator=generator)
    target[torch.rand(29, 41, generator=generator) < 0.1] = 255
    pred = torch.randint(0, k, (29, 41), generator=generator)
    pred[:, :3] = k % 256  # the value K itself (255 when K = 255)
    pred[:2] = 255
    joint = torch.bincount((target * 256 + pred).flatten(), minlength=256 * 256).reshape(256, 256)
    metric = SegmentationMetrics(k)
    metric.update(pred, target)
    assert int(metric.confusion[:, k].sum()) > 0
    assert torch.equal(confusion_from_joint(joint, k), metric.confusion)
    assert torch.equal(confusion_from_joint(joint.numpy(), k), _old_confusion(pred, target, k))


def _cpu_peak_bytes(fn: Callable[[], object]) -> int:
    """Peak bytes of CPU tensor memory ``fn`` allocates: ``cpu_tensor_peak`` of benchmarks/common.py."""
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "common.py"
    spec = importlib.util.spec_from_file_location("benchmarks_common", path)
    assert spec is not None and spec.loader is not None
    common = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(common)
    return common.cpu_tensor_peak(fn)[1]


def test_deterministic_mode_counts_with_memory_bounded_by_the_pixels() -> None:
    """Under ``torch.use_deterministic_algorithms(True)`` (``--trainer.deterministic true``) the update neither
    raises nor builds a pixels x K(K+1) matrix (torchmetrics' fallback: 6,000 px x 81 x 82 x 8 B = 319 MB)."""
    k, shape = 81, (60, 100)
    generator = torch.Generator().manual_seed(0)
    target, pred = torch.randint(0, k, shape, generator=generator), torch.randint(0, k, shape, generator=generator)
    metric = SegmentationMetrics(k)
    was = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        peak = _cpu_peak_bytes(lambda: metric.update(pred, target))
    finally:
        torch.use_deterministic_algorithms(was)
    assert peak <= 64 * target.numel() + 16 * k * (k + 1)
    assert torch.equal(metric.confusion, _old_confusion(pred, target, k))


def test_iou_table_prints_the_miou_that_json_records_when_no_class_is_present() -> None:
    empty = scores_from_confusion(SegmentationMetrics(3).confusion)  # every pixel ignored: no class anywhere
    assert float(empty["miou"]) == 0.0
    assert iou_table(empty["iou"], ["background", "a", "b"]).splitlines()[1:] == [
        "background    n/a",
        "a             n/a",
        "b             n/a",
        "mIoU          0.00",
    ]


# ------------------------------------------- variation pass (issue 34 item 6)
def test_another_ignore_index_is_the_one_left_out() -> None:
    """``ignore_index`` 9 (away from 255) on a 2x3 mask: the two 9s are not scored, a 255 is an error."""
    metric = SegmentationMetrics(3, ignore_index=9)
    metric.update(torch.tensor([[0, 1, 2], [2, 2, 0]]), torch.tensor([[0, 9, 2], [1, 9, 0]]))
    assert torch.equal(metric.confusion, torch.tensor([[2, 0, 0, 0], [0, 0, 1, 0], [0, 0, 1, 0]]))
    assert int(metric.compute()["pixels"]) == 4
    with pytest.raises(ValueError, match="other than the ignore index 9"):
        metric.update(torch.zeros(1, dtype=torch.long), torch.tensor([255]))


def test_added_confusions_accumulate_and_pixels_count_the_misses_too() -> None:
    metric = SegmentationMetrics(2)
    metric.add_confusion(torch.tensor([[3.0, 1.0, 2.0], [0.0, 4.0, 0.0]]))  # a float count is added as integers
    metric.add_confusion(torch.tensor([[1, 0, 0], [0, 0, 1]]))
    assert metric.confusion.dtype == torch.long
    assert torch.equal(metric.confusion, torch.tensor([[4, 1, 2], [0, 4, 1]]))
    scores = scores_from_confusion(metric.confusion)  # what compute() returns (no update() here)
    assert int(scores["pixels"]) == 12  # the 3 predictions outside the classes included
    assert float(scores["pixel_accuracy"]) == pytest.approx(8 / 12)


def test_iou_table_without_names_numbers_the_classes() -> None:
    lines = iou_table(torch.tensor([0.5, math.nan])).splitlines()
    assert lines == ["class  IoU(%)", "0      50.00", "1       n/a", "mIoU   50.00"]
