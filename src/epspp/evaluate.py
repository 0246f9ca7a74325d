"""mIoU of a folder of PNG masks against a dataset's ground truth (``epspp evaluate``), and of saved
score maps over a range of background thresholds (``--bg-thresholds``)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from epspp.data.classes import read_classes
from epspp.data.io import DatasetError, read_mask, read_split
from epspp.data.labels import image_labels
from epspp.errors import reading
from epspp.metrics import SegmentationMetrics
from epspp.scoring import evaluate_folder, scores_to_json  # noqa: F401 (re-exported: their old path)

EVALUATE = "epspp evaluate"


def object_scores(
    pred_dir: str | Path,
    root: str | Path,
    split: str,
    class_names: list[str],
    mask_dir: str | Path | None = None,
) -> Iterator[tuple[str, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Per image of a split with ground truth, from ``PRED_DIR/scores/<id>.npy``: its id, the best object score
    at each pixel, that object's class id and the ground truth; ``threshold_mask`` makes a mask of them.

    The score files are those of ``MaskWriter(save_scores=True)``: the background score, then
    the maps of the image's labelled classes in label order.  Taking the objects' argmax once, a mask at
    background threshold t is that argmax with the background channel set to t, as ``bg_threshold`` does at
    prediction time, so the scores must have been written without refinement (PAMR refines the background
    channel too).
    """
    pred_dir, root = Path(pred_dir), Path(root)
    scores_dir = pred_dir / "scores"
    if not scores_dir.is_dir():
        raise DatasetError(
            f"{scores_dir} does not exist: predict with --pseudo_masks.save_scores true to sweep "
            "the background threshold"
        )
    manifest = pred_dir / "manifest.json"
    if manifest.is_file():
        advice = "predict again into an empty --pseudo_masks.output_dir, or remove the file"
        with reading(manifest, "manifest", advice):
            record = json.loads(manifest.read_text(encoding="utf-8"))
        model = record.get("config", {}).get("model", {}) if isinstance(record, dict) else None
        if not isinstance(model, dict):
            raise DatasetError(f"{manifest} is not a manifest of the mask writer (no config.model): {advice}")
        refine = model.get("refine")
        if refine not in (None, "none"):
            raise DatasetError(
                f"the scores in {scores_dir} were refined with {refine} (see {manifest}), which also "
                "changes the background channel: predict with --model.init_args.refine none to sweep"
            )
    masks = Path(mask_dir) if mask_dir else root / "SegmentationClassAug"
    ids = [i for i in read_split(root, split) if (masks / f"{i}.png").is_file()]
    labels = image_labels(root, ids, len(class_names) - 1, masks)
    for image_id in ids:
        path = scores_dir / f"{image_id}.npy"
        if not path.is_file():
            raise DatasetError(f"score map {path} is missing (id {image_id} of split '{split}')")
        with reading(path, "score map", "predict again with --pseudo_masks.save_scores true"):
            scores = torch.from_numpy(np.load(path).astype(np.float32))
        classes = torch.tensor([0] + [c + 1 for c in np.flatnonzero(labels[image_id]).tolist()])
        target = torch.from_numpy(read_mask(masks / f"{image_id}.png", len(class_names)).astype(np.int64))
        if scores.ndim != 3 or scores.shape[0] != len(classes) or scores.shape[1:] != target.shape:
            raise DatasetError(
                f"score map {path} has shape {tuple(scores.shape)}, expected "
                f"({len(classes)}, {target.shape[0]}, {target.shape[1]}): background + the "
                f"{len(classes) - 1} labelled classes of {image_id} at the image's size"
            )
        if len(classes) > 1:
            best, index = scores[1:].max(dim=0)
            yield image_id, best, classes[1:][index], target
        else:
            yield image_id, torch.zeros(target.shape), torch.zeros(target.shape, dtype=torch.int64), target


def threshold_mask(best: torch.Tensor, objects: torch.Tensor, threshold: float) -> torch.Tensor:
    """The mask at background threshold ``threshold`` of ``object_scores``: an object wins only where its score
    exceeds it (ties go to the background, the first channel)."""
    return torch.where(best > threshold, objects, 0)


def sweep_bg_threshold(
    pred_dir: str | Path,
    root: str | Path,
    split: str,
    thresholds: list[float],
    mask_dir: str | Path | None = None,
    class_names: list[str] | None = None,
) -> dict:
    """mIoU of the masks that ``PRED_DIR/scores/<id>.npy`` give at each background threshold (``object_scores``).

    ``class_names``: the root's classes when the caller has read them already (else read here).

    Returns:
        ``metrics`` (one ``SegmentationMetrics`` per threshold), ``evaluated`` and ``class_names``.
    """
    names = class_names if class_names is not None else read_classes(root)
    metrics = [SegmentationMetrics(len(names)) for _ in thresholds]
    evaluated = 0
    for _, best, objects, target in object_scores(pred_dir, root, split, names, mask_dir):
        for threshold, metric in zip(thresholds, metrics, strict=True):
            metric.update(threshold_mask(best, objects, threshold), target)
        evaluated += 1
    return {"metrics": metrics, "evaluated": evaluated, "class_names": names}


def sweep_to_json(thresholds: list[float], metrics: list[SegmentationMetrics]) -> dict[str, float]:
    """``{threshold: mIoU %}`` of a sweep, thresholds written as ``f"{t:g}"``."""
    return {f"{t:g}": round(100 * float(m.compute()["miou"]), 3) for t, m in zip(thresholds, metrics, strict=True)}


def threshold_choice(
    thresholds: list[float],
    chooser: list[SegmentationMetrics],
    scored: list[SegmentationMetrics],
    chosen_on: str,
    scored_split: str,
    class_names: list[str],
) -> dict:
    """The background threshold that maximizes the mIoU of ``chooser`` (a sweep of one split; the lowest
    threshold on a tie), and the ``scored`` sweep's mIoU and per-class IoU at it.

    ``oracle`` is true when the threshold was chosen on the split it is scored on (``chosen_on ==
    scored_split``): such a number is an upper bound, not a result.

    Returns:
        ``bg_threshold_sweep`` (scored split), ``choice_sweep`` (the split it was chosen on), ``chosen_on``,
        ``chosen_bg_threshold``, ``chosen_bg_threshold_miou``, ``chosen_per_class_iou`` and ``oracle``.
    """
    choice_sweep, scored_sweep = sweep_to_json(thresholds, chooser), sweep_to_json(thresholds, scored)
    best = max(choice_sweep, key=choice_sweep.__getitem__)  # the first (lowest) threshold among equals
    index = list(choice_sweep).index(best)
    per_class = scores_to_json(scored[index].compute(), class_names)["per_class_iou"]
    return {
        "bg_threshold_sweep": scored_sweep,
        "choice_sweep": choice_sweep,
        "chosen_on": chosen_on,
        "chosen_bg_threshold": float(best),
        "chosen_bg_threshold_miou": scored_sweep[best],
        "chosen_per_class_iou": per_class,
        "oracle": chosen_on == scored_split,
    }


def written_by_evaluate(path: Path) -> bool:
    """Whether ``path`` is a ``--json`` report of ``epspp evaluate`` (its ``written_by`` key says so)."""
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("written_by") == EVALUATE
    except (OSError, ValueError, AttributeError):
        return False
