"""``epspp saliency``: a salient-object detector's probability map for every image of a folder (rembg).

Stage 1 needs a grey saliency map per image (EPS and EPS++ use PFAN trained on DUTS).
This runs one of the detectors of `rembg <https://github.com/danielgatis/rembg>`_ (ONNX models, CPU or GPU
through onnxruntime; ``pip install 'epspp[saliency]'``) and writes what the model says, nothing more.

For each image ``<id>.<ext>`` of ``--images`` (the ids and file types of ``epspp prepare folder --images``)
it writes ``--out/<id>.png``: an 8-bit grey PNG at the image's size, made by the detector family's own
``predict`` in rembg, which

1. takes the stored pixels as RGB (epspp's reader: no EXIF rotation, 16-bit grey scaled to 8 bits), resizes
   them to the model's input size (LANCZOS; 320x320 for U²-Net, 1024x1024 for ISNet and BiRefNet), divides by
   the resized image's largest value and normalizes each channel with the family's mean and std;
2. runs the model and takes its first output's first channel (U²-Net: the fused map ``d0``, a sigmoid
   probability; BiRefNet's logits go through a sigmoid first);
3. min-max normalizes that map to [0, 1] over the image, multiplies by 255 and truncates to uint8;
4. resizes it to the image's size (LANCZOS).

No alpha matting, no thresholding, no morphology (``rembg.remove``'s post-processing is not used). A model
whose map is constant over an image has no min-max normalization (0 / 0): that image's map is all zeros and
its id is named on stderr and in the provenance file.

``--out`` follows the write rule (``epspp.runs.ownership``): not inside ``--images``, new or made by this command;
``OUT/saliency.json`` names the model, its file's path and SHA-256, rembg's and onnxruntime's versions and
the count. A rerun skips every map that exists and decodes at its image's size, and refuses a folder made by
another model, another model file or another image folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from epspp.data.io import IMAGE_EXTENSIONS, check_id, image_files, read_image
from epspp.errors import EPSError
from epspp.files import write_atomic, write_json
from epspp.runs.ownership import OutputRecord, refuse_inside
from epspp.runs.progress import format_duration

COMMAND = "epspp saliency"
PROVENANCE = "saliency.json"
DEFAULT_MODEL = "u2net"
#: rembg's local detectors of one salient-object map per image (its ``sessions``): name -> what it is
MODELS = {
    "u2net": "U²-Net trained on DUTS-TR: graded probability maps (recommended)",
    "u2netp": "U²-Net's lightweight version",
    "u2net_human_seg": "U²-Net trained on people",
    "silueta": "U²-Net reduced to 43 MB",
    "isnet-general-use": "ISNet (DIS): sharp, near-binary maps",
    "isnet-anime": "ISNet trained on anime characters",
    "birefnet-general": "BiRefNet: sharp, near-binary maps (large, slow on CPU)",
    "birefnet-general-lite": "BiRefNet, lite backbone",
    "birefnet-portrait": "BiRefNet trained on portraits",
    "birefnet-dis": "BiRefNet trained on DIS5K",
    "birefnet-hrsod": "BiRefNet trained on high-resolution salient objects",
    "birefnet-cod": "BiRefNet trained on camouflaged objects",
    "birefnet-massive": "BiRefNet trained on a massive dataset",
    "bria-rmbg": "BRIA RMBG-2.0 (about 1 GB; commercial use needs a BRIA licence)",
    "u2net_custom": "any ONNX file with U²-Net's input and output (--model-path)",
    "dis_custom": "any ONNX file with ISNet's input and output (--model-path)",
    "ben_custom": "any ONNX file with BEN's input and output (--model-path)",
}
PROGRESS_EVERY = 50  # images between progress lines (and at least one line every PROGRESS_SECONDS)
PROGRESS_SECONDS = 30.0


class SaliencyError(EPSError):
    """The detector cannot be loaded or run, or ``--out`` holds maps of another model; the message says why."""


def write_saliency_maps(
    images: str | Path,
    out: str | Path,
    model: str = DEFAULT_MODEL,
    model_path: str | Path | None = None,
    progress_every: int = PROGRESS_EVERY,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Write ``out/<id>.png``, the saliency map of each image of ``images``, and ``out/saliency.json``.

    Args:
        images: folder of images (``.jpg``, ``.png``, ...; the file name without extension is the id).
        out: output folder (new, empty, or made by this command with the same model file and images).
        model: rembg detector family (a key of ``MODELS``); it sets the preprocessing and post-processing.
        model_path: ONNX file of that family on disk; default: rembg's cached file, fetched on first use.
        progress_every: images between progress lines (a line also comes every 30 s).
        log: where progress lines go (default: stdout).

    Returns:
        The provenance record: model, model_file, sha256, versions, images, count, written, skipped, constant.

    Raises:
        SaliencyError, DatasetError, OutputError: in one line, before any map is written where possible.
    """
    images, out = Path(images), Path(out)
    log = log or (lambda line: print(line, flush=True))
    found = _list_images(images)
    refuse_inside(out, {images: "the image folder"}, "--out")
    if model not in MODELS:
        raise SaliencyError(f"--model {model!r} is not a detector epspp knows: choose one of {', '.join(MODELS)}")
    record = OutputRecord.open(out, COMMAND, "--out")
    session_class = _session_class(model)
    file = _model_file(session_class, model, model_path)
    provenance: dict[str, Any] = {
        "command": COMMAND,
        "model": model,
        "model_file": str(file.resolve()),
        "sha256": _sha256(file),
        "rembg": _version("rembg"),
        "onnxruntime": _version("onnxruntime"),
        "images": str(images.resolve()),
        "count": 0,
    }
    _check_earlier(out, provenance)
    targets = {image_id: out / f"{image_id}.png" for image_id in found}
    record.claim([*targets.values(), out / PROVENANCE])
    todo = [i for i in found if not _done(targets[i], found[i])]
    constant = [i for i in _earlier_constant(out) if i in found and i not in todo]  # maps kept from earlier runs
    provenance.update(count=len(found) - len(todo), constant=sorted(constant))
    write_json(out / PROVENANCE, provenance, indent=1)
    if todo:
        log(
            f"[{COMMAND}] {len(todo)} of {len(found)} images to do ({len(found) - len(todo)} already there), model "
            f"{model} ({file})"
        )
        session = _session(session_class, model, file)
        clock = _Progress(len(todo), len(found) - len(todo), progress_every, log)
        for image_id in todo:
            if _predict_into(session, found[image_id], targets[image_id], model):
                constant.append(image_id)
            clock.step()
    provenance.update(count=len(found), constant=sorted(constant))
    write_json(out / PROVENANCE, provenance, indent=1)
    log(
        f"[{COMMAND}] {len(found)} saliency maps in {out} ({len(todo)} written, {len(found) - len(todo)} already "
        f"there); model {model}, provenance {out / PROVENANCE}"
    )
    return {**provenance, "written": len(todo), "skipped": len(found) - len(todo)}


def _list_images(images: Path) -> dict[str, Path]:
    """The images of the folder by id, as ``epspp prepare folder`` lists them."""
    if not images.is_dir():
        raise SaliencyError(f"--images {images}: no such folder")
    found = image_files(images)
    if not found:
        raise SaliencyError(f"--images {images} holds no image (looked for {', '.join(IMAGE_EXTENSIONS)})")
    for image_id, path in found.items():
        check_id(image_id, f"image {path}")
    return found


def _session_class(model: str) -> Any:
    """rembg's session class of ``model`` (rembg and onnxruntime are the ``saliency`` extra)."""
    # rembg imports pymatting, whose numba kernels compile at import (1-2 min in a fresh environment) for alpha
    # matting, which epspp never calls: skip the compilation unless numba is already in use in this process
    if "numba" not in sys.modules:
        os.environ.setdefault("NUMBA_DISABLE_JIT", "1")
    try:
        from rembg.sessions import sessions_class
    except ImportError as error:
        raise SaliencyError(
            f"epspp saliency needs rembg and onnxruntime ({error}): pip install 'epspp[saliency]'"
        ) from None
    sessions = {session.name(): session for session in sessions_class}  # as rembg.new_session looks them up
    if model not in sessions:
        raise SaliencyError(
            f"--model {model}: rembg {_version('rembg')} has no such session; upgrade rembg "
            "(pip install -U rembg) or choose another --model"
        )
    return sessions[model]


def _model_file(session_class: Any, model: str, model_path: str | Path | None) -> Path:
    """The ONNX file to load: ``model_path``, or rembg's cached file of ``model`` (fetched by rembg if absent)."""
    if model_path is None and model.endswith("_custom"):
        raise SaliencyError(f"--model {model} runs a model file of your own: give it with --model-path FILE")
    if model_path is not None:
        path = Path(model_path)
        if not path.is_file():
            raise SaliencyError(f"--model-path {path}: no such file (give the ONNX file of a {model} model)")
        return path
    try:
        return Path(session_class.download_models())
    except Exception as error:  # pooch / requests raise many types offline (ConnectionError, HTTPError, ...)
        where = session_class.model_dir() if hasattr(session_class, "model_dir") else session_class.u2net_home()
        detail = " ".join(f"{type(error).__name__}: {error}".split())[:200]
        raise SaliencyError(
            f"cannot fetch the model file of --model {model} into {where} ({detail}): offline, "
            f"give the ONNX file with --model-path FILE (or put it in {where})"
        ) from None


def _session(session_class: Any, model: str, file: Path) -> Any:
    """A rembg session of ``model``'s family that loads ``file``.

    rembg's ``*_custom`` sessions take a ``model_path`` but accept only files inside rembg's model folder
    (``BaseSession.validate_model_path``), and BiRefNet has none; the family's own class with its file
    location replaced runs the same preprocessing and ``predict`` on any file.
    """
    import onnxruntime as ort

    local = type(
        f"Local{session_class.__name__}",
        (session_class,),
        {"download_models": classmethod(lambda cls, *args, **kwargs: str(file))},
    )
    options = ort.SessionOptions()
    if os.environ.get("OMP_NUM_THREADS", "").isdigit():  # as rembg.new_session does
        options.inter_op_num_threads = options.intra_op_num_threads = int(os.environ["OMP_NUM_THREADS"])
    try:
        return local(model, options, model_path=str(file))  # the *_custom sessions ask for it
    except Exception as error:  # onnxruntime's errors (InvalidProtobuf, Fail, ...) are not one type
        detail = " ".join(str(error).split())[:200]
        raise SaliencyError(
            f"onnxruntime cannot load the model file {file} ({detail}): give an ONNX file of a "
            f"{model} model (--model-path)"
        ) from None


def _predict_into(session: Any, image_path: Path, target: Path, model: str) -> bool:
    """Write the map of one image to ``target`` atomically; True when the model's map was constant (all zeros)."""
    pixels = read_image(image_path)
    image = Image.fromarray(pixels)
    constant = False
    try:
        with np.errstate(invalid="raise"):  # rembg's min-max normalization of a constant map: 0 / 0
            mask = session.predict(image)[0]
    except FloatingPointError:
        constant = True
        mask = Image.new("L", image.size, 0)
        print(
            f"[{COMMAND}] note: the {model} map of {image_path} is constant (no min-max normalization): "
            "written as all zeros",
            file=sys.stderr,
        )
    except Exception as error:  # a model of another signature fails inside onnxruntime
        detail = " ".join(str(error).split())[:200]
        raise SaliencyError(
            f"the {model} model failed on image {image_path} ({type(error).__name__}: {detail}): "
            f"is the model file a {model} model?"
        ) from None
    if mask.mode != "L" or mask.size != image.size:
        raise SaliencyError(
            f"the {model} session returned a {mask.mode} map of {mask.size} for image {image_path} "
            f"of {image.size}: not a grey map at the image's size"
        )
    write_atomic(target, mask.save)
    return constant


def _done(target: Path, image_path: Path) -> bool:
    """Whether ``target`` is a map that decodes, grey, at the size of its image (a rerun keeps it)."""
    if not target.is_file():
        return False
    try:
        with Image.open(target) as mask:
            mask.load()
            mode, size = mask.mode, mask.size
        with Image.open(image_path) as image:
            return mode == "L" and size == image.size
    except Exception:  # PIL raises several types for truncated or corrupt files
        return False


def _check_earlier(out: Path, provenance: dict[str, Any]) -> None:
    """Refuse to resume into a folder whose maps were made by another model, model file or image folder."""
    path = out / PROVENANCE
    if not path.is_file():
        return
    try:
        earlier = json.loads(path.read_text(encoding="utf-8"))
        changed = [key for key in ("model", "sha256", "images") if earlier[key] != provenance[key]]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise SaliencyError(f"cannot read {path} ({error}): choose another --out") from None
    if changed:
        detail = ", ".join(f"{key} {earlier[key]} -> {provenance[key]}" for key in changed)
        raise SaliencyError(
            f"--out {out} holds saliency maps made otherwise ({detail}): resuming would mix two "
            "detectors' maps; choose another --out"
        )


def _earlier_constant(out: Path) -> list[str]:
    try:
        return list(json.loads((out / PROVENANCE).read_text(encoding="utf-8")).get("constant", []))
    except (OSError, ValueError, AttributeError):
        return []


class _Progress:
    """A line every ``every`` images or ``PROGRESS_SECONDS`` seconds: count, images/s, ETA."""

    def __init__(self, total: int, before: int, every: int, log: Callable[[str], None]) -> None:
        self.total, self.before, self.every, self.log = total, before, max(1, every), log
        self.done, self.start = 0, time.monotonic()
        self.last = self.start

    def step(self) -> None:
        self.done += 1
        now = time.monotonic()
        if self.done % self.every and now - self.last < PROGRESS_SECONDS and self.done < self.total:
            return
        self.last = now
        rate = self.done / max(now - self.start, 1e-9)
        eta = (self.total - self.done) / rate
        self.log(
            f"[{COMMAND}] {self.before + self.done}/{self.before + self.total} images, {rate:.2f} images/s, "
            f"ETA {format_duration(eta)}"
        )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None
