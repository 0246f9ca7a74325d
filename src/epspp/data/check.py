"""Pre-flight of a dataset: every listed file decodes, has its image's size, and masks hold valid class ids.

Run when a stage starts (``EPSDataModule.setup``), so a bad file in the validation split is found in
seconds, not after a training epoch; and alone by ``epspp check``.  Samples are checked in a pool of
threads with a progress bar; those found good are remembered in ``ROOT/.cache/preflight.json`` (a hash of
their paths, files' sizes and mtimes), so a rerun only reads what changed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from epspp.data.io import DEFAULT_MAX_PIXELS, read_image, read_mask, read_saliency, read_split
from epspp.errors import DatasetError
from epspp.runs.mask_files import refuse_overview

CACHE = Path(".cache") / "preflight.json"
POOL_FROM = 64  # fewer samples are checked one after the other (a pool costs more than it saves)

Sample = tuple[str, str | None, str | None, int]  # image, saliency or None, mask or None, classes incl. background


def check_sample(sample: Sample) -> str | None:
    """None when the sample's files are good, else the one-line reason (the file named)."""
    image_path, saliency_path, mask_path, num_classes = sample
    try:
        height, width = read_image(Path(image_path)).shape[:2]  # decodes the whole file: truncated JPEGs fail
        for path, read in ((saliency_path, read_saliency), (mask_path, lambda p: read_mask(p, num_classes))):
            if path is None:
                continue
            refuse_overview(Path(path), Path(image_path).stem)  # an image named overview: render's picture
            array = read(Path(path))
            if array.shape[:2] != (height, width):
                return (f"{path} is {array.shape[1]}x{array.shape[0]} (WxH) but image {image_path} is "
                        f"{width}x{height}: maps must have the size of their image")
    except DatasetError as error:
        return str(error)
    except Exception as error:  # PIL raises several types for corrupt files
        return f"cannot read {image_path}: {error}"
    return None


def _digest(sample: Sample) -> str:
    """What a sample was checked as: its paths, their sizes and mtimes, and the class count (hashed)."""
    stats = [(p, os.stat(p)) for p in sample[:3] if p is not None]
    parts = [f"{p}\0{stat.st_size}\0{stat.st_mtime_ns}" for p, stat in stats]
    return hashlib.blake2b("\0".join([*parts, str(sample[3])]).encode(), digest_size=16).hexdigest()


def preflight(root: str | Path, samples: list[Sample], what: str, workers: int | None = None) -> int:
    """Check ``samples``; raise one DatasetError naming the first bad files.  Returns how many were read.

    Args:
        root: dataset root (holds the cache of good samples).
        samples: (image, saliency, mask, number of classes with background) per id.
        what: what is checked, for messages (e.g. ``split 'val' (ROOT/ImageSets/Segmentation/val.txt)``).
        workers: pool size (default: the CPU cores, at most 8; 1 = this process).
    """
    cache_path = Path(root) / CACHE
    good = _read_cache(cache_path)
    digests = [_digest(s) for s in samples]
    todo = [s for s, d in zip(samples, digests, strict=True) if d not in good]
    if not todo:
        return 0
    results = check_samples(todo, workers, f"[epspp] checking {what}")
    bad = [r for r in results if r is not None]
    good.update(_digest(s) for s, r in zip(todo, results, strict=True) if r is None)
    _write_cache(cache_path, good)
    if bad:
        more = f" (and {len(bad) - 1} more: `epspp check --data.root {root}` lists them)" if len(bad) > 1 else ""
        raise DatasetError(f"{what}: {len(bad)} of {len(samples)} samples are bad, first: {bad[0]}{more}")
    return len(todo)


def _read_cache(path: Path) -> set[str]:
    try:
        return set(json.loads(path.read_text())["good"])
    except (OSError, ValueError, KeyError, TypeError):
        return set()  # no cache yet, or a broken one: everything is checked again


def _write_cache(path: Path, good: set[str]) -> None:
    try:
        path.parent.mkdir(exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"version": 1, "good": sorted(good)}))
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only root: checked again next time


# ---------------------------------------------------------------- epspp check
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
    parser.add_argument("--workers", type=int, default=None, help="threads (default: the CPU cores, at most 8)")
    parser.add_argument("--max-pixels", type=int, default=None,
                        help="refuse images with more pixels (default: EPSPP_MAX_PIXELS or "
                             f"{DEFAULT_MAX_PIXELS}; the stages read it from EPSPP_MAX_PIXELS)")
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
                print(f"split '{split}': {len(missing)} ids without an image in {root / 'JPEGImages'}, e.g. "
                      f"{missing[:3]}")
                failing.add(split)
            samples = [(str(images[i]), _if_file(saliency / f"{i}.png"), _if_file(masks / f"{i}.png"), classes)
                       for i in ids if i in images]
            results = check_samples(samples, args.workers, f"[epspp] checking split '{split}'")
            bad = [r for r in results if r]
            without = {name: sum(s[k] is None for s in samples) for name, k in (("saliency map", 1), ("mask", 2))}
            print(f"split '{split}': {len(samples) - len(bad)} of {len(ids)} samples good; "
                  + ", ".join(f"{n} without a {w}" for w, n in without.items()))
            for reason in bad:
                print(f"  {reason}")
            if bad:
                failing.add(split)
            blank = check_samples([s for s, r in zip(samples, results, strict=True) if r is None and s[1]],
                                  args.workers, f"[epspp] reading the saliency maps of '{split}'", blank_saliency)
            for kind, meaning in (("all 0", "no salient pixel"), ("all 1", "every pixel salient")):
                found = [path for path, what in blank if what == kind]
                if found:
                    print(f"  note: {len(found)} of {len(samples)} saliency maps are {kind} ({meaning}), e.g. "
                          f"{found[0]}: stage 1's saliency loss learns that as the object; check the saliency "
                          "detector's output for these images")
            turned = [(i, o) for i in ids if i in images and (o := exif_orientation(images[i])) != 1]
            if turned:  # not an error: COCO holds such images, annotated on their stored pixels
                print(f"  note: {len(turned)} images carry an EXIF orientation tag, e.g. {images[turned[0][0]]} "
                      f"({turned[0][1]}): viewers show them turned, epspp reads the stored pixels (as VOC and "
                      "COCO were annotated). If masks or saliency maps were drawn on the turned view, save the "
                      "images upright without the tag (PIL: ImageOps.exif_transpose(image).save(...))")
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
        print(f"epspp check: error: {len(failing)} split(s) have bad or missing files or labels (listed above): "
              f"{sorted(failing)}", file=sys.stderr)
        return 2
    return 0


def blank_saliency(sample: Sample) -> tuple[str, str | None]:
    """(the sample's saliency map, ``all 0`` or ``all 1`` when it holds that value at every pixel, else None)."""
    values = read_saliency(Path(sample[1]))
    return sample[1], "all 0" if values.max() == 0 else "all 1" if values.min() == 1 else None


def check_samples(samples: list[Sample], workers: int | None, desc: str,
                  check: Callable[[Sample], Any] = check_sample) -> list[Any]:
    """``check`` (``check_sample``) of every sample, with a progress bar.

    From ``POOL_FROM`` samples on, in a pool of threads: Pillow and numpy release the GIL while they
    decode and count, and threads need no fork of a process that may hold CUDA or OpenMP state.
    """
    from tqdm import tqdm

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    workers = workers or min(8, cores)
    bar = {"total": len(samples), "desc": desc, "unit": "img", "file": sys.stderr, "leave": False,
           "disable": len(samples) < POOL_FROM or None}
    if len(samples) < POOL_FROM or workers == 1:
        return list(tqdm(map(check, samples), **bar))
    with ThreadPoolExecutor(workers) as pool:
        return list(tqdm(pool.map(check, samples), **bar))


def _if_file(path: Path) -> str | None:
    return str(path) if path.is_file() else None
