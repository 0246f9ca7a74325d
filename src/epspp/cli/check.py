"""The command line of ``epspp check`` (argparse); the work is ``epspp.data.check``'s."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from epspp.cli.argtypes import count, processes
from epspp.data.check import blank_saliency, check_samples, if_file
from epspp.data.io import DEFAULT_MAX_PIXELS, read_split
from epspp.errors import DatasetError


def check_main(argv: list[str] | None = None) -> int:
    """``epspp check --data.root ROOT [--splits ...]``: the pre-flight of every split, alone (and its labels)."""
    from epspp.data.classes import read_classes
    from epspp.data.io import exif_orientation, image_files
    from epspp.data.labels import image_labels

    parser = argparse.ArgumentParser(prog="epspp check", description=check_main.__doc__)
    parser.add_argument("--data.root", dest="root", required=True, help="dataset root (VOC layout)")
    parser.add_argument("--data.saliency_dir", dest="saliency_dir", help="saliency maps (default ROOT/saliency)")
    parser.add_argument("--data.mask_dir", dest="mask_dir", help="ground truth (default ROOT/SegmentationClassAug)")
    parser.add_argument("--splits", nargs="+", help="split names (default: every ImageSets/Segmentation/*.txt)")
    parser.add_argument("--workers", type=processes, default=None, help="threads (default: the CPU cores, at most 8)")
    parser.add_argument(
        "--max-pixels",
        type=count,
        default=None,
        help="refuse images with more pixels (default: EPSPP_MAX_PIXELS or "
        f"{DEFAULT_MAX_PIXELS}; the stages read it from EPSPP_MAX_PIXELS)",
    )
    args = parser.parse_args(argv)
    if args.max_pixels is not None:
        if args.max_pixels < 1:
            parser.error(f"--max-pixels {args.max_pixels}: expected a positive number of pixels")
        os.environ["EPSPP_MAX_PIXELS"] = str(args.max_pixels)
    root = Path(args.root)
    try:
        classes = len(read_classes(root))
        splits = args.splits or sorted(p.stem for p in (root / "ImageSets" / "Segmentation").glob("*.txt"))
        if not splits:
            raise DatasetError(f"no split file in {root / 'ImageSets' / 'Segmentation'}")
        images = image_files(root / "JPEGImages")
        saliency = Path(args.saliency_dir) if args.saliency_dir else root / "saliency"
        masks = Path(args.mask_dir) if args.mask_dir else root / "SegmentationClassAug"
        failing: set[str] = set()
        for split in splits:
            ids = read_split(root, split)
            missing = [i for i in ids if i not in images]
            if missing:
                print(
                    f"split '{split}': {len(missing)} ids without an image in {root / 'JPEGImages'}, e.g. {missing[:3]}"
                )
                failing.add(split)
            samples = [
                (str(images[i]), if_file(saliency / f"{i}.png"), if_file(masks / f"{i}.png"), classes)
                for i in ids
                if i in images
            ]
            results = check_samples(samples, args.workers, f"[epspp] checking split '{split}'")
            bad = [r for r in results if r]
            without = {name: sum(s[k] is None for s in samples) for name, k in (("saliency map", 1), ("mask", 2))}
            print(
                f"split '{split}': {len(samples) - len(bad)} of {len(ids)} samples good; "
                + ", ".join(f"{n} without a {w}" for w, n in without.items())
            )
            for reason in bad:
                print(f"  {reason}")
            if bad:
                failing.add(split)
            blank = check_samples(
                [s for s, r in zip(samples, results, strict=True) if r is None and s[1]],
                args.workers,
                f"[epspp] reading the saliency maps of '{split}'",
                blank_saliency,
            )
            for kind, meaning in (("all 0", "no salient pixel"), ("all 1", "every pixel salient")):
                found = [path for path, what in blank if what == kind]
                if found:
                    print(
                        f"  note: {len(found)} of {len(samples)} saliency maps are {kind} ({meaning}), e.g. "
                        f"{found[0]}: stage 1's saliency loss learns that as the object; check the saliency "
                        "detector's output for these images"
                    )
            turned = [(i, o) for i in ids if i in images and (o := exif_orientation(images[i])) != 1]
            if turned:  # not an error: COCO holds such images, annotated on their stored pixels
                print(
                    f"  note: {len(turned)} images carry an EXIF orientation tag, e.g. {images[turned[0][0]]} "
                    f"({turned[0][1]}): viewers show them turned, epspp reads the stored pixels (as VOC and "
                    "COCO were annotated). If masks or saliency maps were drawn on the turned view, save the "
                    "images upright without the tag (PIL: ImageOps.exif_transpose(image).save(...))"
                )
            try:  # stages 1 and 2 need every id's image-level labels (bad masks are reported above)
                if not bad:
                    image_labels(root, ids, classes - 1, masks)
            except DatasetError as error:
                print(f"  labels: {error}")
                failing.add(split)
    except DatasetError as error:
        print(f"epspp check: error: {error}", file=sys.stderr)
        return 2
    if failing:
        print(
            f"epspp check: error: {len(failing)} split(s) have bad or missing files or labels (listed above): "
            f"{sorted(failing)}",
            file=sys.stderr,
        )
        return 2
    return 0
