"""Checks of the pseudo-mask writer's output folder: never a dataset folder, never two runs mixed, never read
for another dataset.

``OUT/provenance.json`` records how the masks of a folder are made (the dataset's root and split, the
checkpoint's SHA-256, the model class and its inference options, the normalization); a rerun resumes only
into a folder made the same way, unless ``overwrite`` is set. A stage that reads the folder (stage 3's
``--data.pseudo_mask_dir``, ``epspp evaluate --pred-dir``) checks its dataset and classes (``check_source``).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from epspp.errors import DatasetError, reading
from epspp.files import write_json
from epspp.runs.ownership import refuse_inside

PROVENANCE = "provenance.json"


def refuse_dataset_folder(
    output_dir: Path, folders: dict[str, Path], option: str = "--pseudo_masks.output_dir"
) -> None:
    """Fail when ``output_dir`` is, or is inside, one of the dataset's ``folders`` (name -> folder).

    Writing masks there would replace ground truth, images or saliency maps.
    """
    refuse_inside(output_dir, {folder: f"the dataset's {name} folder" for name, folder in folders.items()}, option)


def refuse_escaping_folders(output_dir: Path, derived: dict[str, Path], folders: dict[str, Path]) -> None:
    """Fail when a folder derived from the writer's options (option -> folder) leaves ``output_dir`` or enters one
    of the dataset's ``folders``, once symlinks, ``..`` and absolute paths are resolved."""
    out = output_dir.resolve()
    for option, path in derived.items():
        resolved = path.resolve()
        if resolved != out and out not in resolved.parents:
            raise DatasetError(
                f"{option} makes the writer write in {resolved}, outside --pseudo_masks.output_dir "
                f"{out} (through '..', an absolute path or a symlink): give a plain sub-folder name"
            )
        refuse_dataset_folder(path, folders, option)


def check_writable(output_dir: Path) -> None:
    """Create ``output_dir`` (and parents) and fail in one line when it cannot be written."""
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DatasetError(f"cannot create --pseudo_masks.output_dir {output_dir}: {error.strerror}") from None
    if not os.access(output_dir, os.W_OK | os.X_OK):
        raise DatasetError(
            f"--pseudo_masks.output_dir {output_dir} is not writable: choose another folder or fix its permissions"
        )


def sha256(path: str | Path) -> str:
    """SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def dataset_identity(dataset: Any) -> dict:
    """Which images a folder's masks are of: the dataset root (resolved) and a SHA-256 of its split's ids in
    order; for a plain image folder the folder alone (images added to it are predicted on a rerun)."""
    if getattr(dataset, "root", None) is None:
        return {"root": str(Path(dataset.image_dir).resolve()), "ids_sha256": None}
    return {
        "root": str(Path(dataset.root).resolve()),
        "ids_sha256": hashlib.sha256("\n".join(dataset.ids).encode("utf-8")).hexdigest(),
    }


def provenance(module: Any, data_hparams: dict, checkpoint: str | Path | None, dataset: dict) -> dict:
    """What makes a folder's masks what they are: checkpoint hash, model class, inference options, normalization,
    and the dataset (``dataset_identity``)."""
    options = getattr(type(module), "inference_options", ())
    return {
        "dataset": dataset,
        "checkpoint_sha256": sha256(checkpoint) if checkpoint else None,
        "model": f"{type(module).__module__}.{type(module).__qualname__}",
        "inference": {key: _plain(module.hparams.get(key)) for key in options},
        "normalization": {"mean": _plain(data_hparams.get("mean")), "std": _plain(data_hparams.get("std"))},
    }


def check_resume(output_dir: Path, record: dict, done: int, overwrite: bool) -> None:
    """Refuse to complete a folder whose ``done`` masks were made differently (or by an unknown run), and to replace
    the files of a folder that no mask writer made (a manifest, score maps or overlays without ``provenance.json``,
    or a ``provenance.json`` that is not the writer's)."""
    if overwrite:
        return
    path = output_dir / PROVENANCE
    if not path.is_file():
        if done:
            raise DatasetError(
                f"{output_dir} already holds {done} masks of unknown provenance (no {PROVENANCE}): "
                "choose an empty folder, or set --pseudo_masks.overwrite true to rewrite them"
            )
        others = (
            [output_dir / "manifest.json"]
            + sorted(output_dir.glob("scores/[!.]*.npy"))[:1]
            + sorted(output_dir.glob("overlays/[!.]*.png"))[:1]
        )
        for other in others:
            if other.is_file():
                raise DatasetError(
                    f"{other} was not written by the mask writer (no {PROVENANCE} in {output_dir}): "
                    "choose an empty folder, or set --pseudo_masks.overwrite true to replace it"
                )
        return
    try:
        earlier = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise DatasetError(
            f"cannot read {path} ({error}): set --pseudo_masks.overwrite true to rewrite the folder"
        ) from None
    if not isinstance(earlier, dict) or not {"checkpoint_sha256", "model", "inference"} <= set(earlier):
        raise DatasetError(
            f"{path} is not the mask writer's record of its folder: choose another "
            "--pseudo_masks.output_dir, or set --pseudo_masks.overwrite true to replace it"
        )
    if not done:
        return
    changed = [key for key in _flat(record) if _flat(record)[key] != _flat(earlier).get(key)]
    if changed:
        detail = ", ".join(f"{key}: {_flat(earlier).get(key)!r} -> {_flat(record)[key]!r}" for key in changed[:4])
        raise DatasetError(
            f"the {done} masks in {output_dir} were made differently ({detail}): resuming would mix "
            "two runs; use another --pseudo_masks.output_dir, or --pseudo_masks.overwrite true"
        )


def write_provenance(output_dir: Path, record: dict) -> None:
    """Write ``OUT/provenance.json`` atomically."""
    write_json(output_dir / PROVENANCE, record)


#: folders without provenance already noted in this process (the note is said once per folder)
_NOTED: set[Path] = set()


def check_source(
    folder: str | Path,
    root: str | Path,
    class_names: Sequence[str],
    option: str,
    root_option: str = "--data.root",
    note: bool = True,
) -> None:
    """Refuse to read the mask writer's ``folder`` (its masks, or its ``scores/``) for a dataset other than the one
    it was made from: another root (``provenance.json``) or other classes (``manifest.json``), in one line naming
    both. ``folder`` is the writer's ``output_dir`` or its ``mask_subdir``. A folder without ``provenance.json``
    (an older epspp's, or the user's own masks) is read unchecked, with a note (once per folder and process; none
    with ``note`` false: ``epspp evaluate``, whose input is any folder of masks).
    """
    folder = Path(folder)
    home = next((f for f in (folder, folder.parent) if (f / PROVENANCE).is_file()), None)
    if home is None:
        if note and folder.resolve() not in _NOTED:
            _NOTED.add(folder.resolve())
            print(
                f"[epspp] note: {option} {folder} has no {PROVENANCE} (an older epspp's or your own masks): "
                "which dataset and classes it was made for is not checked",
                file=sys.stderr,
            )
        return
    path = home / PROVENANCE
    with reading(path, "the mask folder's record", f"predict the masks again into an empty {option}"):
        record = json.loads(path.read_text(encoding="utf-8"))
    dataset = record.get("dataset") if isinstance(record, dict) else None
    made_from = dataset.get("root") if isinstance(dataset, dict) else None
    here = str(Path(root).resolve())
    if made_from is not None and made_from != here:
        raise DatasetError(
            f"{option} {folder} holds masks of the dataset {made_from} (see {path}), not of {root_option} {here}: "
            f"predict the masks of {here}, or give the folder of its masks"
        )
    manifest = home / "manifest.json"
    if not manifest.is_file():
        return
    with reading(manifest, "manifest", f"predict the masks again into an empty {option}"):
        made_for = json.loads(manifest.read_text(encoding="utf-8"))
    names = made_for.get("class_names") if isinstance(made_for, dict) else None
    if isinstance(names, list) and names != list(class_names):
        raise DatasetError(
            f"{option} {folder} holds masks of the classes {names} (see {manifest}), but {root_option} {here} "
            f"lists {list(class_names)}: predict the masks again with this dataset's classes"
        )


def _flat(record: dict, prefix: str = "") -> dict:
    flat: dict = {}
    for key, value in record.items():
        if isinstance(value, dict):
            flat |= _flat(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _plain(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value if isinstance(value, str | int | float | bool) or value is None else str(value)
