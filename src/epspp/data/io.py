"""Reading and writing of the VOC-layout files, with errors that name the file at fault."""

from __future__ import annotations

import functools
import io
import os
import sys
from pathlib import Path
from typing import cast

import numpy as np
from PIL import Image

from epspp.data.classes import voc_palette
from epspp.data.png import decode_unfiltered, plain_index_png
from epspp.errors import DatasetError
from epspp.files import write_atomic

__all__ = [
    "IMAGE_EXTENSIONS",
    "DatasetError",
    "check_id",
    "exif_orientation",
    "image_files",
    "read_image",
    "read_mask",
    "read_saliency",
    "read_split",
    "write_grey_png",
    "write_jpeg",
    "write_mask_png",
]

#: image file types the dataset reads as they are (``JPEGImages/<id><ext>``)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
EXIF_ORIENTATION = 0x0112  # the EXIF tag: 1 = upright, 2-8 = mirrored and/or rotated for display


#: the longest id (UTF-8 bytes): a mask's temporary ``.<id>.<thread id>.tmp.png`` (``epspp.files``) must fit the
#: filesystems' 255-byte NAME_MAX
MAX_ID_BYTES = 255 - 32


def check_id(image_id: str, where: str) -> str:
    """Return ``image_id`` if it is a plain file name (no folder, no ``..``), else raise naming ``where``.

    Ids are joined to folders (``JPEGImages/<id>.jpg``, ``OUT/<id>.png``): a separator, ``..``, an
    absolute path or a control character would read or write outside them.
    """
    bad = (
        "/" in image_id
        or "\\" in image_id
        or image_id in (".", "..")
        or os.path.isabs(image_id)
        or any(ord(c) < 32 for c in image_id)
        or image_id != image_id.strip()
    )
    if bad:
        raise DatasetError(
            f"{where}: id {image_id!r} is not a plain file name: ids are names, not paths "
            "(no '/', '\\', '.' or '..', no control characters or spaces at either end)"
        )
    if len(image_id.encode("utf-8")) > MAX_ID_BYTES:
        raise DatasetError(
            f"{where}: id {image_id[:40]!r}... is {len(image_id.encode('utf-8'))} bytes long: its "
            f"files' temporary names would pass the filesystem's 255-byte limit; rename it to at most "
            f"{MAX_ID_BYTES} bytes"
        )
    return image_id


def read_split(root: str | Path, split: str) -> list[str]:
    """Image ids listed in ``ROOT/ImageSets/Segmentation/<split>.txt``, one per line (spaces kept).

    A UTF-8 byte-order mark and an image extension on an id (``x.jpg`` for ``x``) are dropped, with a note
    on stderr; an id listed twice (also as ``x`` and ``x.jpg``) is refused, naming both lines.
    """
    path = Path(root) / "ImageSets" / "Segmentation" / f"{split}.txt"
    if not Path(root).is_dir():
        raise DatasetError(f"dataset root {root} does not exist (create it with `epspp prepare ...`)")
    if not path.is_file():
        available = sorted(p.stem for p in path.parent.glob("*.txt")) if path.parent.is_dir() else []
        raise DatasetError(f"split file {path} not found; available splits: {available or 'none'}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise DatasetError(f"cannot read split file {path}: {error}") from error
    notes = ["a UTF-8 byte-order mark"] if text.startswith("\ufeff") else []
    first_line: dict[str, int] = {}
    stripped = 0
    for number, line in enumerate(text.removeprefix("\ufeff").splitlines(), 1):
        given = line.strip()
        if not given:
            continue
        stem, ext = os.path.splitext(given)
        image_id = check_id(stem if ext.lower() in IMAGE_EXTENSIONS and stem else given, f"{path} line {number}")
        stripped += image_id != given
        if image_id in first_line:
            raise DatasetError(
                f"{path} line {number}: id {image_id!r} is listed twice (first on line "
                f"{first_line[image_id]}): list each image once"
            )
        first_line[image_id] = number
    if not first_line:
        raise DatasetError(f"split file {path} is empty: list one image id per line")
    if stripped:
        notes.append(f"the image extension of {stripped} id(s) (ids are file names without extension)")
    if notes:
        _note_once(f"[epspp] {path}: ignored {' and '.join(notes)}")
    return list(first_line)


@functools.lru_cache(maxsize=64)
def _note_once(message: str) -> None:
    """Print ``message`` to stderr once per process (split files are read by several stages of one run)."""
    print(message, file=sys.stderr)


def image_files(folder: Path) -> dict[str, Path]:
    """Image files of ``folder`` by id (file name without extension), any of ``IMAGE_EXTENSIONS``.

    An id with files of several types (``x.jpg`` and ``x.png``) is refused: which one is meant cannot be known.
    """
    found: dict[str, Path] = {}
    if not folder.is_dir():
        return found
    for entry in sorted(os.scandir(folder), key=lambda entry: entry.name):
        stem, ext = os.path.splitext(entry.name)
        if ext.lower() in IMAGE_EXTENSIONS and not entry.name.startswith("."):
            if stem in found:
                raise DatasetError(
                    f"image id {stem!r} has two files in {folder}: {found[stem].name} and "
                    f"{entry.name}: keep one (an id is the file name without its extension)"
                )
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


def _missing(path: Path, what: str, split_file: str | None) -> DatasetError | None:
    """The error for a ``what`` file that is not there (None when it is a file)."""
    if path.is_file():
        return None
    where = f" (listed in {split_file})" if split_file else ""
    return DatasetError(f"{what} {path} not found{where}")


def _too_large(path: Path, what: str, limit: int) -> str:
    return (
        f"{what} {path} has more than {limit} pixels (EPSPP_MAX_PIXELS): resize it, or raise "
        "EPSPP_MAX_PIXELS (epspp check --max-pixels) if it is real"
    )


def _open(path: Path, what: str, split_file: str | None, data: bytes | None = None) -> Image.Image:
    """``path`` opened and loaded by PIL (from ``data``, its bytes, when the caller has read them)."""
    if data is None and (missing := _missing(path, what, split_file)):
        raise missing
    limit = max_pixels()
    pil_limit = Image.MAX_IMAGE_PIXELS
    try:
        Image.MAX_IMAGE_PIXELS = limit  # PIL's decompression-bomb check (it fails at twice this) follows ours
        image = Image.open(path if data is None else io.BytesIO(data))
        if image.width * image.height > limit:
            raise DatasetError(f"{_too_large(path, what, limit)} ({image.width}x{image.height})")
        image.load()
    except Image.DecompressionBombError:
        raise DatasetError(_too_large(path, what, limit)) from None
    except DatasetError:
        raise
    except Exception as error:  # PIL raises several types for corrupt files
        raise DatasetError(f"cannot read {what} {path}: {error}") from error
    finally:
        Image.MAX_IMAGE_PIXELS = pil_limit  # only our reads follow our limit; other PIL users keep theirs
    return image


def read_image(path: Path, split_file: str | None = None) -> np.ndarray:
    """RGB image as (H, W, 3) uint8: 16-bit grey scaled to 8 bits; float images refused.

    The stored pixels, as EPS reads them: an EXIF orientation tag is not applied (VOC and COCO were
    annotated on the stored pixels; ``epspp prepare folder`` refuses own images that carry a rotation).
    """
    image = _open(path, "image", split_file)
    if image.mode.startswith("I"):  # 16-bit grey (I;16, or I with older Pillow): convert("RGB") would clip at 255
        values = np.asarray(image, dtype=np.float64)
        if values.max(initial=0) > 65535 or values.min(initial=0) < 0:
            raise DatasetError(
                f"image {path} ({image.mode}) has values outside 0..65535: save it as an 8- or 16-bit image"
            )
        grey = np.round(values * (255 / 65535)).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    if image.mode == "F":
        raise DatasetError(
            f"image {path} holds floating-point values (mode F), whose range epspp cannot know: "
            "save it as an 8- or 16-bit image"
        )
    return np.asarray(image.convert("RGB"))


def exif_orientation(path: Path) -> int:
    """The EXIF orientation tag of an image file (1 = stored upright, also when there is none)."""
    try:
        with Image.open(path) as image:
            return int(image.getexif().get(EXIF_ORIENTATION, 1))
    except Exception as error:  # PIL raises several types for corrupt files
        raise DatasetError(f"cannot read image {path}: {error}") from error


def read_saliency(path: Path, split_file: str | None = None) -> np.ndarray:
    """Grey saliency map as (H, W) float32 in [0, 1], scaled by its bit depth (8- or 16-bit PNGs)."""
    image = _open(path, "saliency map", split_file)
    if image.mode.startswith("I"):  # 16-bit grey PNGs open as I;16 (or I with older Pillow)
        values = np.asarray(image, dtype=np.float32)
        if values.max(initial=0) > 65535 or values.min(initial=0) < 0:
            raise DatasetError(
                f"saliency map {path} ({image.mode}) has values outside 0..65535: expected an 8- or 16-bit grey PNG"
            )
        return values / 65535.0
    if image.mode == "F":
        raise DatasetError(
            f"saliency map {path} holds floating-point values (mode F): save it as an 8- or 16-bit "
            "grey PNG (0 = background, max = salient)"
        )
    # a one-band image's extrema are (min, max); Pillow's stubs also allow the per-band tuple of a multi-band one
    if "A" in image.getbands() and cast("tuple[int, int]", image.getchannel("A").getextrema())[0] < 255:
        raise DatasetError(
            f"saliency map {path} ({image.mode}) has a transparent alpha channel, which grey "
            "conversion drops: save the map as a grey PNG (for a cutout, its alpha channel)"
        )
    return np.asarray(image.convert("L"), dtype=np.float32) / 255.0


def read_mask(path: Path, num_classes: int, split_file: str | None = None) -> np.ndarray:
    """Class-index mask as (H, W) uint8; values must be 0..num_classes-1 or 255.

    Args:
        path: PNG file (palette or grey).
        num_classes: number of classes including background.
        split_file: the split file that listed the id, for error messages.
    """
    mask = read_mask_pixels(path, split_file)
    check_mask_values(path, np.bincount(mask.ravel(), minlength=256), num_classes)
    return mask


def read_mask_pixels(path: Path, split_file: str | None = None) -> np.ndarray:
    """A palette or grey PNG as (H, W) uint8, its values not checked (``check_mask_values`` does).

    The file is read once; an 8-bit PNG with unfiltered rows (as PIL writes palette masks) is decoded by
    ``epspp.data.png``, any other by PIL, with the same checks (pixel limit, mode, damaged data) and errors.
    """
    if missing := _missing(path, "mask", split_file):
        raise missing
    try:
        data = path.read_bytes()
    except OSError as error:
        raise DatasetError(f"cannot read mask {path}: {error}") from error
    if size := plain_index_png(data):
        if size[0] * size[1] > max_pixels():
            raise DatasetError(f"{_too_large(path, 'mask', max_pixels())} ({size[0]}x{size[1]})")
        try:
            pixels = decode_unfiltered(data, *size)
        except ValueError as error:
            raise DatasetError(f"cannot read mask {path}: {error}") from None
        if pixels is not None:
            return pixels
    image = _open(path, "mask", split_file, data)
    if image.mode not in ("P", "L"):
        raise DatasetError(f"mask {path} has mode {image.mode}: expected a palette or grey PNG of class ids")
    return np.asarray(image, dtype=np.uint8)


def check_mask_values(path: Path, counts: np.ndarray, num_classes: int) -> None:
    """Refuse a mask whose 256 value counts (``counts[v]`` pixels of value v) hold a value outside
    0..num_classes-1 other than 255."""
    bad = np.flatnonzero(counts)
    bad = bad[(bad >= num_classes) & (bad != 255)]
    if bad.size:
        raise DatasetError(f"mask {path} has values {bad.tolist()} outside 0..{num_classes - 1} (255 = ignore)")


def write_mask_png(path: str | Path, mask: np.ndarray, palette: np.ndarray | None = None) -> None:
    """Write a (H, W) uint8 class mask as a palette PNG, atomically (temporary name, then rename)."""
    path = Path(path)
    image = Image.fromarray(np.asarray(mask, dtype=np.uint8), mode="P")
    image.putpalette((voc_palette() if palette is None else palette).astype(np.uint8).ravel().tolist())
    write_atomic(path, image.save)


def write_grey_png(path: str | Path, array: np.ndarray) -> None:
    """Write a (H, W) uint8 array as a grey PNG, atomically."""
    write_atomic(path, Image.fromarray(np.asarray(array, dtype=np.uint8), mode="L").save)


def write_jpeg(path: str | Path, image: np.ndarray, quality: int = 95) -> None:
    """Write a (H, W, 3) uint8 RGB array as JPEG, atomically."""
    picture = Image.fromarray(np.asarray(image, dtype=np.uint8), mode="RGB")
    write_atomic(path, lambda tmp: picture.save(tmp, quality=quality))
