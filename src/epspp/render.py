"""``epspp render``: a grid PNG of image | saliency | mask overlay for a folder of predicted masks.

For eyeballing pseudo-masks (or segmentation predictions) where no ground truth exists: one row per
image, column titles, and a legend of the classes that appear.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from epspp.data.classes import read_classes, voc_palette
from epspp.data.io import image_files, read_image, read_mask, read_saliency
from epspp.errors import DatasetError, EPSError
from epspp.outputs import check_output_file, refuse_inside
from epspp.visualize import annotate, colorize, fit_panel, grid, heatmap, overlay

TITLES = ["image", "saliency", "mask overlay"]
RENDER = "epspp render"


def render(pred_dir: str | Path, root: str | Path, out: str | Path | None = None, num: int = 32,
           cell: int = 128, overwrite: bool = False) -> Path:
    """Write the overview of ``num`` masks of ``PRED_DIR`` (evenly spread over the sorted ids); return its path.

    Args:
        pred_dir: folder of ``<id>.png`` masks (stage 2 or a segmentation predict).
        root: the dataset root (images, saliency maps and ``classes.json``).
        out: the PNG to write (default ``PRED_DIR/overview.png``).
        num: rows (images) at most.
        cell: side of each panel in pixels.
        overwrite: replace ``out`` also when ``epspp render`` did not write it.
    """
    pred_dir, root = Path(pred_dir), Path(root)
    if not pred_dir.is_dir():
        raise DatasetError(f"--pred-dir {pred_dir} is not a folder")
    if num < 1:
        raise DatasetError(f"--num must be >= 1, got {num}")
    target = Path(out) if out else pred_dir / "overview.png"
    option = "--out" if out else "--out (default PRED_DIR/overview.png)"
    refuse_inside(target, {root: "the dataset root"}, option)
    check_output_file(target, RENDER, option, rendered, overwrite)
    names = read_classes(root)
    masks = sorted(p for p in pred_dir.glob("*.png") if not p.name.startswith(".") and p.name != "overview.png")
    if not masks:
        raise DatasetError(f"no <id>.png mask in {pred_dir}")
    chosen = [masks[i] for i in np.unique(np.linspace(0, len(masks) - 1, min(num, len(masks))).round().astype(int))]
    images = image_files(root / "JPEGImages")
    rows, present = [], set()
    for path in chosen:
        image_id = path.stem
        if image_id not in images:
            raise DatasetError(f"mask {path} has no image {root / 'JPEGImages'}/{image_id}.*: is --root the dataset "
                               "these masks were made from?")
        image = read_image(images[image_id])
        mask = read_mask(path, len(names))
        if mask.shape != image.shape[:2]:
            raise DatasetError(f"mask {path} is {mask.shape[1]}x{mask.shape[0]}, its image {images[image_id]} "
                               f"{image.shape[1]}x{image.shape[0]}")
        saliency_path = root / "saliency" / f"{image_id}.png"
        saliency = heatmap(read_saliency(saliency_path)) if saliency_path.is_file() else np.full_like(image, 230)
        blended = np.where((mask > 0)[..., None], overlay(image, colorize(mask), 0.55), image)
        present.update(int(v) for v in np.unique(mask))
        rows.append([fit_panel(p, cell) for p in (image, saliency, blended)])
    palette = voc_palette()
    legend = {names[c]: tuple(palette[c]) for c in sorted(present) if c < len(names)}
    if 255 in present:
        legend["ignore"] = tuple(palette[255])
    picture = annotate(grid(rows), TITLES, cell, legend)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.stem}.{os.getpid()}.tmp.png")
    tag = PngInfo()
    tag.add_text("Software", RENDER)
    Image.fromarray(picture).save(tmp, pnginfo=tag)
    os.replace(tmp, target)
    return target


def rendered(path: Path) -> bool:
    """Whether ``path`` is an overview written by ``epspp render`` (its PNG ``Software`` text says so)."""
    try:
        with Image.open(path) as image:
            return image.format == "PNG" and image.text.get("Software") == RENDER
    except (OSError, ValueError):
        return False


def render_main(argv: list[str] | None = None) -> int:
    """``epspp render --pred-dir OUT --root ROOT [--num 32] [--out FILE]``."""
    parser = argparse.ArgumentParser(prog="epspp render", description=__doc__.split("\n\n")[0])
    parser.add_argument("--pred-dir", required=True, help="folder of <id>.png masks")
    parser.add_argument("--root", required=True, help="dataset root (images, saliency, classes.json)")
    parser.add_argument("--num", type=int, default=32, help="images (rows) at most (32)")
    parser.add_argument("--out", default=None, help="PNG to write (default PRED_DIR/overview.png; never in the "
                                                    "dataset; a file that epspp render did not write is replaced "
                                                    "only with --overwrite)")
    parser.add_argument("--overwrite", action="store_true", help="replace an --out file that epspp render did not "
                                                                 "write")
    args = parser.parse_args(argv)
    try:
        path = render(args.pred_dir, args.root, args.out, args.num, overwrite=args.overwrite)
    except EPSError as error:
        print(f"epspp render: error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0
