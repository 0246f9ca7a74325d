"""Which files of a mask folder are masks: ``<id>.png`` beside it, never the overview picture (``overview.png``
drawn by ``epspp render`` or the mask writer), the overlays or score maps (``overlays/``, ``scores/``) or the
temporary files of a write in progress (``.<id>.<thread id>.tmp.png``).

Every listing of a mask folder goes through ``mask_files`` (the writer's resume count, ``epspp render``);
readers that go by a split's ids use ``refuse_overview`` for the one id that could meet the overview.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from epspp.errors import DatasetError

OVERVIEW = "overview.png"
#: the PNG ``Software`` text of an overview picture (``epspp render`` and the mask writer both draw it)
OVERVIEW_SOFTWARE = "epspp render"


def is_overview(path: str | Path) -> bool:
    """Whether ``path`` is an overview picture drawn by epspp (its PNG ``Software`` text says so)."""
    try:
        with Image.open(path) as image:
            return image.format == "PNG" and image.text.get("Software") == OVERVIEW_SOFTWARE
    except (OSError, ValueError):
        return False


def mask_files(folder: str | Path) -> dict[str, Path]:
    """The masks of ``folder`` by id (sorted): its ``<id>.png`` files, without hidden files and subfolders, and
    without ``overview.png`` when it is epspp's overview picture (a mask of an image named ``overview`` is kept)."""
    folder = Path(folder)
    if not folder.is_dir():
        return {}
    masks = {}
    for path in sorted(folder.glob("[!.]*.png")):
        if path.is_file() and not (path.name == OVERVIEW and is_overview(path)):
            masks[path.stem] = path
    return masks


def refuse_overview(path: Path, image_id: str) -> None:
    """Fail when the mask ``path`` of ``image_id`` is in fact an overview picture (an image named ``overview``)."""
    if path.name == OVERVIEW and is_overview(path):
        raise DatasetError(
            f"{path} is the overview picture drawn by `epspp render`, not the mask of image id "
            f"{image_id!r}: move it (epspp render --out FILE) and predict the masks again"
        )
