"""Pre-flight of a dataset: every listed file decodes, has its image's size, and masks hold valid class ids.

Run when a stage starts (``EPSDataModule.setup``), so a bad file in the validation split is found in
seconds, not after a training epoch; and alone by ``epspp check``.  Samples are checked in a pool of
threads with a progress bar; those found good are remembered in the dataset's cache folder outside the dataset
(``epspp.data.cache``: ``preflight.json``, a hash of their paths, files' sizes and mtimes), so a rerun only
reads what changed.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

from epspp.data.cache import dataset_cache
from epspp.data.io import read_image, read_mask, read_saliency
from epspp.errors import DatasetError, OutputError
from epspp.files import write_json
from epspp.runs.mask_files import refuse_overview

CACHE = "preflight.json"  # in the dataset's cache folder (epspp.data.cache)
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
                return (
                    f"{path} is {array.shape[1]}x{array.shape[0]} (WxH) but image {image_path} is "
                    f"{width}x{height}: maps must have the size of their image"
                )
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
        root: dataset root (its cache folder, ``dataset_cache(root)``, holds the good samples; the root is
            only read).
        samples: (image, saliency, mask, number of classes with background) per id.
        what: what is checked, for messages (e.g. ``split 'val' (ROOT/ImageSets/Segmentation/val.txt)``).
        workers: pool size (default: the CPU cores, at most 8; 1 = this process).
    """
    cache_path = dataset_cache(root) / CACHE
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
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, {"version": 1, "good": sorted(good)}, indent=None)
    except (OSError, OutputError):
        pass  # a read-only cache folder: checked again next time


# ---------------------------------------------------------------- epspp check
def blank_saliency(sample: Sample) -> tuple[str, str | None]:
    """(the sample's saliency map, ``all 0`` or ``all 1`` when it holds that value at every pixel, else None)."""
    saliency = cast(str, sample[1])  # only the samples with a saliency map come here
    values = read_saliency(Path(saliency))
    return saliency, "all 0" if values.max() == 0 else "all 1" if values.min() == 1 else None


def check_samples(
    samples: list[Sample], workers: int | None, desc: str, check: Callable[[Sample], Any] = check_sample
) -> list[Any]:
    """``check`` (``check_sample``) of every sample, with a progress bar.

    From ``POOL_FROM`` samples on, in a pool of threads: Pillow and numpy release the GIL while they
    decode and count, and threads need no fork of a process that may hold CUDA or OpenMP state.
    """
    from tqdm import tqdm

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    workers = workers or min(8, cores)
    bar = {
        "total": len(samples),
        "desc": desc,
        "unit": "img",
        "file": sys.stderr,
        "leave": False,
        "disable": len(samples) < POOL_FROM or None,
    }
    if len(samples) < POOL_FROM or workers == 1:
        return list(tqdm(map(check, samples), **bar))
    with ThreadPoolExecutor(workers) as pool:
        return list(tqdm(pool.map(check, samples), **bar))


def if_file(path: Path) -> str | None:
    """``path`` as a string when it is a file, else None."""
    return str(path) if path.is_file() else None
