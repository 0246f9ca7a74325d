"""The report of ``epspp run``: ``OUT/report.md`` (the run, its stages, its files) and ``OUT/report.png`` (per row
a photo | its saliency map | its pseudo-mask | stage 3's mask, captioned with its id and labels, with a legend).

Both are written only when a stage ran or one of them is missing, so a rerun that skips every stage rewrites
nothing.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from epspp.chain import RunLayout, Stage, last_checkpoint
from epspp.data.classes import read_classes
from epspp.data.io import image_files, read_image, read_mask, read_saliency, read_split
from epspp.data.labels import JSON_LABELS
from epspp.files import write_atomic
from epspp.panels import Row, blend, caption_for, legend_of, overview_picture
from epspp.runs.logs import metrics_files
from epspp.runs.progress import format_duration
from epspp.visualize import heatmap

if TYPE_CHECKING:
    from epspp.run import RunOptions

TITLES = ["photo", "saliency", "pseudo-mask (stage 2)", "mask (stage 3)"]
PANEL = 192  # px per panel: four columns, 780 px wide
#: photos of the dataset and of --predict drawn in the picture, at most
DATASET_ROWS, PREDICT_ROWS = 8, 4


def val_note(root: Path, small: int) -> str | None:
    """A note when the val split of the prepared dataset ``root`` holds fewer than ``small`` photos."""
    try:
        val, total = len(read_split(root, "val")), len(read_split(root, "all"))
    except (OSError, ValueError):
        return None
    if val >= small:
        return None
    return (
        f"the val split holds {val} of {total} photos: stage 1's val/mAP on so few is a rough signal, not a "
        "score (more photos give a better one)"
    )


def _rows(layout: RunLayout, root: Path, predict: Path | None) -> tuple[list[Row], list[np.ndarray]]:
    """The picture's rows (photo | saliency | pseudo-mask overlay | mask overlay, a grey panel where there is none)
    and the masks drawn: photos of the dataset evenly spread over its ids, then those of ``predict``."""
    from epspp.run import masks_folder

    names = read_classes(root)
    labels = json.loads((root / JSON_LABELS).read_text(encoding="utf-8"))
    images = image_files(root / "JPEGImages")
    ids = sorted(images)
    chosen = [ids[i] for i in np.unique(np.linspace(0, len(ids) - 1, min(DATASET_ROWS, len(ids))).round().astype(int))]
    rows, drawn = [], []
    for image_id in chosen:
        image = read_image(images[image_id])
        saliency = heatmap(read_saliency(root / "saliency" / f"{image_id}.png"))
        masks = [
            read_mask(folder / f"{image_id}.png", len(names)) for folder in (layout.pseudo_masks, masks_folder(layout))
        ]
        rows.append(
            Row(
                image_id,
                caption_for(labels.get(image_id, []), masks[0], names),
                [image, saliency, *(blend(image, mask) for mask in masks)],
            )
        )
        drawn += masks
    new = image_files(predict) if predict is not None else {}
    for image_id in sorted(new)[:PREDICT_ROWS]:
        image = read_image(new[image_id])
        mask = read_mask(layout.predictions / f"{image_id}.png", len(names))
        empty = np.full_like(image, 235)
        rows.append(
            Row(
                image_id,
                "new photo (--predict), " + caption_for(None, mask, names),
                [image, empty, empty, blend(image, mask)],
            )
        )
        drawn.append(mask)
    return rows, drawn


def stage1_map(folder: Path) -> float | None:
    """The last ``val/mAP`` of stage 1's CSV log (None without one)."""
    value = None
    for path in metrics_files(folder):
        with open(path, newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                if row.get("val/mAP"):
                    value = float(row["val/mAP"])
    return value


def class_shares(root: Path, pseudo_masks: Path) -> list[tuple[str, int, float]]:
    """Per class: the photos labelled with it and the mean share of their pixels its pseudo-masks give it."""
    names = read_classes(root)
    labels = json.loads((root / JSON_LABELS).read_text(encoding="utf-8"))
    shares: dict[str, list[float]] = {name: [] for name in names[1:]}
    for image_id, present in labels.items():
        path = pseudo_masks / f"{image_id}.png"
        if not path.is_file():
            continue
        mask = read_mask(path, len(names))
        for name in present:
            shares[name].append(float(np.mean(mask == names.index(name))))
    return [(name, len(values), float(np.mean(values)) if values else 0.0) for name, values in shares.items()]


def markdown(
    options: RunOptions, stages: Sequence[Stage], records: Mapping[str, dict], note: str | None, picture: str
) -> str:
    """The text of ``report.md``."""
    from epspp.run import dataset_root, masks_folder

    layout = RunLayout(options.out)
    root = dataset_root(layout)
    train, val = read_split(root, "train"), read_split(root, "val")
    names = read_classes(root)[1:]
    weights = "ImageNet-pretrained" if options.pretrained else "random weights (--no-pretrained)"
    steps = f"{options.max_steps} steps per fit (--max-steps)" if options.max_steps else "the preset's step budgets"
    lines = [
        f"# epspp run: {options.out}",
        "",
        f"{len(train) + len(val)} photos of `{options.images}` (train {len(train)}, val {len(val)}), classes "
        f"{', '.join(names)}; preset `{options.preset}`, method `{options.method}`, backbones {weights}, "
        f"{steps}; saliency maps "
        + (f"of `{options.saliency}`" if options.saliency else f"by `epspp saliency` ({layout.saliency})")
        + ".",
        "",
        f"![photo, saliency, pseudo-mask, mask]({picture})",
        "",
        "| stage | time | files | this run |",
        "|---|---|---|---|",
    ]
    for stage in stages:
        record = records.get(stage.name, {})
        seconds = record.get("wall_time_s")
        lines.append(
            f"| {stage.name} | {format_duration(seconds) if seconds is not None else '-'} | "
            f"`{stage.folder}` | {'ran' if record.get('ran') else 'done before'} |"
        )
    score = stage1_map(layout.localization)
    lines += ["", "## What came out", ""]
    if score is not None:
        lines.append(f"- stage 1's last val/mAP on the {len(val)} val photos: {100 * score:.1f}")
    lines += [
        "- pseudo-masks, share of a labelled photo's pixels: "
        + ", ".join(
            f"{name} {100 * share:.0f}% ({count} photo{'s' if count != 1 else ''})"
            for name, count, share in class_shares(root, layout.pseudo_masks)
        )
    ]
    lines += [
        "",
        "## Files",
        "",
        f"- pseudo-masks (`<id>.png`, class ids, palette PNG; `overlays/`): `{layout.pseudo_masks}`",
        f"- segmentation network: `{last_checkpoint(layout.segmentation('wsss'))}`",
        f"- its masks of every photo (`overlays/`): `{masks_folder(layout)}`",
    ]
    if options.predict is not None:
        lines.append(f"- its masks of `{options.predict}` (`overlays/`): `{layout.predictions}`")
    lines.append(f"- the dataset (links to your files, `classes.json`, splits): `{root}`")
    if note:
        lines += ["", "## Notes", "", f"- {note}"]
    return "\n".join(lines) + "\n"


def write_run_report(
    options: RunOptions, stages: Sequence[Stage], records: Mapping[str, dict], note: str | None
) -> dict:
    """``OUT/report.md`` and ``OUT/report.png`` (unless no stage ran and both exist); their paths and whether they
    were written now."""
    from epspp.run import dataset_root

    report, picture = options.out / "report.md", options.out / "report.png"
    fresh = any(record.get("ran") for record in records.values()) or not (report.is_file() and picture.is_file())
    if fresh:
        layout = RunLayout(options.out)
        root = dataset_root(layout)
        rows, drawn = _rows(layout, root, options.predict)
        image = overview_picture(rows, TITLES, legend_of(drawn, read_classes(root)), PANEL)
        tag = PngInfo()
        tag.add_text("Software", "epspp run")
        write_atomic(picture, lambda tmp: Image.fromarray(image).save(tmp, pnginfo=tag))
        text = markdown(options, stages, records, note, picture.name)
        write_atomic(report, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return {"report": report, "picture": picture, "written": fresh}
