"""Reading and writing of the VOC-layout files, with errors that name the file at fault."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from epspp.data.classes import voc_palette
from epspp.errors import DatasetError

__all__ = ["IMAGE_EXTENSIONS", "DatasetError", "check_id", "image_files", "read_image", "read_mask", "read_saliency",
           "read_split", "write_grey_png", "write_jpeg", "write_mask_png"]

#: image file types the dataset reads as they are (``JPEGImages/<id><ext>``), in order of preference
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


#: the longest id (UTF-8 bytes): ``.<id>.<pid>.tmp.png`` must fit the filesystems' 255-byte NAME_MAX
MAX_ID_BYTES = 255 - 32


def check_id(image_id: str, where: str) -> str:
    """Return ``image_id`` if it is a plain file name (no folder, no ``..``), else raise naming ``where``.

    Ids are joined to folders (``JPEGImages/<id>.jpg``, ``OUT/<id>.png``): a separator, ``..``, an
    absolute path or a control character would read or write outside them.
    """
    bad = ("/" in image_id or "\\" in image_id or image_id in (".", "..") or os.path.isabs(image_id)
           or any(ord(c) < 32 for c in image_id) or image_id != image_id.strip())
    if bad:
        raise DatasetError(f"{where}: id {image_id!r} is not a plain file name: ids are names, not paths "
                           "(no '/', '\\', '.' or '..', no control characters or spaces at either end)")
    if len(image_id.encode("utf-8")) > MAX_ID_BYTES:
        raise DatasetError(f"{where}: id {image_id[:40]!r}... is {len(image_id.encode('utf-8'))} bytes long: its "
                           f"files' temporary names would pass the filesystem's 255-byte limit; rename it to at most "
                           f"{MAX_ID_BYTES} bytes")
    return image_id


def read_split(root: str | Path, split: str) -> list[str]:
    """Image ids listed in ``ROOT/ImageSets/Segmentation/<split>.txt``, one per line (spaces kept)."""
    path = Path(root) / "ImageSets" / "Segmentation" / f"{split}.txt"
    if not Path(root).is_dir():
        raise DatasetError(f"dataset root {root} does not exist (create it with `epspp prepare ...`)")
    if not path.is_file():
        available = sorted(p.stem for p in path.parent.glob("*.txt")) if path.parent.is_dir() else []
        raise DatasetError(f"split file {path} not found; available splits: {available or 'none'}")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise DatasetError(f"cannot read split file {path}: {error}") from error
    ids = [check_id(line.strip(), f"{path} line {number}") for number, line in enumerate(lines, 1) if line.strip()]
    if not ids:
        raise DatasetError(f"split file {path} is empty: list one image id per line")
    return ids


def image_files(folder: Path) -> dict[str, Path]:
    """Image files of ``folder`` by id (file name without extension), any of ``IMAGE_EXTENSIONS``.

    Where one id has files of several types, the earliest in ``IMAGE_EXTENSIONS`` wins (VOC's ``.jpg``).
    """
    rank = {ext: i for i, ext in enumerate(IMAGE_EXTENSIONS)}
    found: dict[str, Path] = {}
    if not folder.is_dir():
        return found
    for entry in os.scandir(folder):
        stem, ext = os.path.splitext(entry.name)
        ext = ext.lower()
        if ext in rank and not entry.name.startswith("."):
            if stem not in found or rank[ext] < rank[found[stem].suffix.lower()]:
                found[stem] = Path(entry.path)
    return found


#: images with more pixels are refused before they are decoded (``EPSPP_MAX_PIXELS``, ``epspp check --max-pixels``)
DEFAULT_MAX_PIXELS = 1 << 27  # 134 M pixels (11,585 px square): larger than any dataset photo


def max_pixels() -> int:
    """The pixel limit of the image reader: ``EPSPP_MAX_PIXELS`` if set, else ``DEFAULT_MAX_PIXELS``."""
    value = os.environ.get("EPSPP_MAX_PIXELS", "")
    if not value.strip():
        return DEFAULT_MAX_PIXELS
    if not value.strip().isdigit() or int(value) < 1:
        raise DatasetError(f"EPSPP_MAX_PIXELS={value!r}: expected a positive number of pixels")
    return int(value)


def _open(path: Path, what: str, split_file: str | None) -> Image.Image:
    if not path.is_file():
        where = f" (listed in {split_file})" if split_file else ""
        raise DatasetError(f"{what} {path} not found{where}")
    limit = max_pixels()
    too_large = (f"{what} {path} has more than {limit} pixels (EPSPP_MAX_PIXELS): resize it, or raise "
                 "EPSPP_MAX_PIXELS (epspp check --max-pixels) if it is real")
    try:
        Image.MAX_IMAGE_PIXELS = limit  # PIL's decompression-bomb check (it fails at twice this) follows ours
        image = Image.open(path)
        if image.width * image.height > limit:
            raise DatasetError(f"{too_large} ({image.width}x{image.height})")
        image.load()
    except Image.DecompressionBombError:
        raise DatasetError(too_large) from None
    except DatasetError:
        raise
    except Exception as error:  # PIL raises several types for corrupt files
        raise DatasetError(f"cannot read {what} {path}: {error}") from error
    return image


def read_image(path: Path, split_file: str | None = None) -> np.ndarray:
    """RGB image as (H, W, 3) uint8."""
    return np.asarray(_open(path, "image", split_file).convert("RGB"))


def read_saliency(path: Path, split_file: str | None = None) -> np.ndarray:
    """Grey saliency map as (H, W) float32 in [0, 1], scaled by its bit depth (8- or 16-bit PNGs)."""
    image = _open(path, "saliency map", split_file)
    if image.mode.startswith("I"):  # 16-bit grey PNGs open as I;16 (or I with older Pillow)
        values = np.asarray(image, dtype=np.float32)
        if values.max(initial=0) > 65535 or values.min(initial=0) < 0:
            raise DatasetError(f"saliency map {path} ({image.mode}) has values outside 0..65535: expected an "
                               "8- or 16-bit grey PNG")
        return values / 65535.0
    if image.mode == "F":
        raise DatasetError(f"saliency map {path} holds floating-point values (mode F): save it as an 8- or 16-bit "
                           "grey PNG (0 = background, max = salient)")
    return np.asarray(image.convert("L"), dtype=np.float32) / 255.0


def read_mask(path: Path, num_classes: int, split_file: str | None = None) -> np.ndarray:
    """Class-index mask as (H, W) uint8; values must be 0..num_classes-1 or 255.

    Args:
        path: PNG file (palette or grey).
        num_classes: number of classes including background.
        split_file: the split file that listed the id, for error messages.
    """
    image = _open(path, "mask", split_file)
    if image.mode not in ("P", "L"):
        raise DatasetError(f"mask {path} has mode {image.mode}: expected a palette or grey PNG of class ids")
    mask = np.asarray(image, dtype=np.uint8)
    values = np.unique(mask)
    bad = values[(values >= num_classes) & (values != 255)]
    if bad.size:
        raise DatasetError(
            f"mask {path} has values {bad.tolist()} outside 0..{num_classes - 1} (255 = ignore)"
        )
    return mask


def write_mask_png(path: str | Path, mask: np.ndarray, palette: np.ndarray | None = None) -> None:
    """Write a (H, W) uint8 class mask as a palette PNG, atomically (temporary name, then rename)."""
    path = Path(path)
    image = Image.fromarray(np.asarray(mask, dtype=np.uint8), mode="P")
    image.putpalette((voc_palette() if palette is None else palette).astype(np.uint8).ravel().tolist())
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.png")
    image.save(tmp)
    os.replace(tmp, path)


def write_grey_png(path: str | Path, array: np.ndarray) -> None:
    """Write a (H, W) uint8 array as a grey PNG, atomically."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.png")
    Image.fromarray(np.asarray(array, dtype=np.uint8), mode="L").save(tmp)
    os.replace(tmp, path)


def write_jpeg(path: str | Path, image: np.ndarray, quality: int = 95) -> None:
    """Write a (H, W, 3) uint8 RGB array as JPEG, atomically."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.jpg")
    Image.fromarray(np.asarray(image, dtype=np.uint8), mode="RGB").save(tmp, quality=quality)
    os.replace(tmp, path)
