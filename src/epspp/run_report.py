"""The report of ``epspp run``: ``OUT/report.md`` (the run, its stages, its files) and ``OUT/report.png`` (per row
a photo | its saliency map | its pseudo-mask | stage 3's mask, captioned with its id and labels, with a legend).

Both are written only when a stage ran or one of them is missing, so a rerun that skips every stage rewrites
nothing.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from PIL.PngImagePlugin import PngInfo

from epspp.chain import RunLayout, Stage, format_duration, last_checkpoint
from epspp.data.classes import read_classes, voc_palette
from epspp.data.io import image_files, read_image, read_mask, read_saliency, read_split
from epspp.data.labels import JSON_LABELS
from epspp.visualize import annotate, colorize, fit_panel, heatmap, overlay

if TYPE_CHECKING:
    from epspp.run import RunOptions

TITLES = ["photo", "saliency", "pseudo-mask (stage 2)", "mask (stage 3)"]
CELL, GAP, CAPTION = 160, 2, 14
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
    return (f"the val split holds {val} of {total} photos: stage 1's val/mAP on so few is a rough signal, not a "
            "score (more photos give a better one)")


def _blend(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return np.where((mask > 0)[..., None], overlay(image, colorize(mask), 0.55), image)


def _rows(layout: RunLayout, root: Path, predict: Path | None) -> list[tuple[str, list[np.ndarray | None], np.ndarray]]:
    """(caption, [photo, saliency, pseudo-mask overlay, mask overlay] with None for a missing panel, the class ids
    drawn) per row: photos of the dataset evenly spread over its ids, then those of ``predict``."""
    from epspp.run import masks_folder

    names = read_classes(root)
    labels = json.loads((root / JSON_LABELS).read_text(encoding="utf-8"))
    images = image_files(root / "JPEGImages")
    ids = sorted(images)
    chosen = [ids[i] for i in np.unique(np.linspace(0, len(ids) - 1, min(DATASET_ROWS, len(ids))).round().astype(int))]
    rows = []
    for image_id in chosen:
        image = read_image(images[image_id])
        saliency = heatmap(read_saliency(root / "saliency" / f"{image_id}.png"))
        masks = [read_mask(folder / f"{image_id}.png", len(names)) for folder in (layout.pseudo_masks,
                                                                                   masks_folder(layout))]
        caption = f"{image_id}: {', '.join(labels.get(image_id) or ['no label'])}"
        rows.append((caption, [image, saliency, *(_blend(image, m) for m in masks)], np.concatenate(
            [np.unique(m) for m in masks])))
    new = image_files(predict) if predict is not None else {}
    for image_id in sorted(new)[:PREDICT_ROWS]:
        image = read_image(new[image_id])
        mask = read_mask(layout.predictions / f"{image_id}.png", len(names))
        rows.append((f"{image_id}: new photo (--predict)", [image, None, None, _blend(image, mask)], np.unique(mask)))
    return rows


def draw_picture(rows: Sequence[tuple[str, list[np.ndarray | None], np.ndarray]], names: list[str]) -> np.ndarray:
    """The report picture: a caption above each row of panels, column titles on top, a legend of the classes
    drawn below."""
    font = ImageFont.load_default()
    width, row_height = len(TITLES) * (CELL + GAP) - GAP, CAPTION + CELL + GAP
    canvas = Image.new("RGB", (width, len(rows) * row_height - GAP), "white")
    draw = ImageDraw.Draw(canvas)
    present: set[int] = set()
    for index, (caption, panels, classes) in enumerate(rows):
        top = index * row_height
        draw.text((2, top + 1), caption, fill="black", font=font)
        for column, panel in enumerate(panels):
            picture = fit_panel(panel, CELL) if panel is not None else np.full((CELL, CELL, 3), 235, np.uint8)
            canvas.paste(Image.fromarray(picture), (column * (CELL + GAP), top + CAPTION))
        present.update(int(c) for c in classes)
    palette = voc_palette()
    legend = {names[c]: tuple(palette[c]) for c in sorted(present) if c < len(names)}
    if 255 in present:
        legend["ignore"] = tuple(palette[255])
    return annotate(np.asarray(canvas), TITLES, CELL, legend, GAP)


def stage1_map(folder: Path) -> float | None:
    """The last ``val/mAP`` of stage 1's CSV log (None without one)."""
    value = None
    for path in sorted(folder.glob("csv/version_*/metrics.csv")):
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


def markdown(options: RunOptions, stages: Sequence[Stage], records: Mapping[str, dict], note: str | None,
             picture: str) -> str:
    """The text of ``report.md``."""
    from epspp.run import dataset_root, masks_folder

    layout = RunLayout(options.out)
    root = dataset_root(layout)
    train, val = read_split(root, "train"), read_split(root, "val")
    names = read_classes(root)[1:]
    weights = "ImageNet-pretrained" if options.pretrained else "random weights (--no-pretrained)"
    steps = f"{options.max_steps} steps per fit (--max-steps)" if options.max_steps else "the preset's step budgets"
    lines = [f"# epspp run: {options.out}", "",
             f"{len(train) + len(val)} photos of `{options.images}` (train {len(train)}, val {len(val)}), classes "
             f"{', '.join(names)}; preset `{options.preset}`, method `{options.method}`, backbones {weights}, "
             f"{steps}; saliency maps "
             + (f"of `{options.saliency}`" if options.saliency else f"by `epspp saliency` ({layout.saliency})") + ".",
             "", f"![photo, saliency, pseudo-mask, mask]({picture})", "",
             "| stage | time | files | this run |", "|---|---|---|---|"]
    for stage in stages:
        record = records.get(stage.name, {})
        seconds = record.get("wall_time_s")
        lines.append(f"| {stage.name} | {format_duration(seconds) if seconds is not None else '-'} | "
                     f"`{stage.folder}` | {'ran' if record.get('ran') else 'done before'} |")
    score = stage1_map(layout.localization)
    lines += ["", "## What came out", ""]
    if score is not None:
        lines.append(f"- stage 1's last val/mAP on the {len(val)} val photos: {100 * score:.1f}")
    lines += ["- pseudo-masks, share of a labelled photo's pixels: " + ", ".join(
        f"{name} {100 * share:.0f}% ({count} photo{'s' if count != 1 else ''})"
        for name, count, share in class_shares(root, layout.pseudo_masks))]
    lines += ["", "## Files", "",
              f"- pseudo-masks (`<id>.png`, class ids, palette PNG; `overlays/`): `{layout.pseudo_masks}`",
              f"- segmentation network: `{last_checkpoint(layout.segmentation('wsss'))}`",
              f"- its masks of every photo (`overlays/`): `{masks_folder(layout)}`"]
    if options.predict is not None:
        lines.append(f"- its masks of `{options.predict}` (`overlays/`): `{layout.predictions}`")
    lines.append(f"- the dataset (links to your files, `classes.json`, splits): `{root}`")
    if note:
        lines += ["", "## Notes", "", f"- {note}"]
    return "\n".join(lines) + "\n"


def _replace(path: Path, write) -> None:
    """Write ``path`` through a temporary name in its folder, then rename it."""
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    write(tmp)
    os.replace(tmp, path)


def write_run_report(options: RunOptions, stages: Sequence[Stage], records: Mapping[str, dict],
                     note: str | None) -> dict:
    """``OUT/report.md`` and ``OUT/report.png`` (unless no stage ran and both exist); their paths and whether they
    were written now."""
    from epspp.run import dataset_root

    report, picture = options.out / "report.md", options.out / "report.png"
    fresh = any(record.get("ran") for record in records.values()) or not (report.is_file() and picture.is_file())
    if fresh:
        layout = RunLayout(options.out)
        root = dataset_root(layout)
        image = draw_picture(_rows(layout, root, options.predict), read_classes(root))
        tag = PngInfo()
        tag.add_text("Software", "epspp run")
        _replace(picture, lambda tmp: Image.fromarray(image).save(tmp, pnginfo=tag))
        text = markdown(options, stages, records, note, picture.name)
        _replace(report, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return {"report": report, "picture": picture, "written": fresh}
