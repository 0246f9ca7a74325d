"""Stage 0's data: a classification corpus that stands in for ImageNet (``epspp prepare pretrain-corpus``).

The images are drawn by the synthetic generator (:mod:`epspp.data.synthetic`) from a random stream of
their own, so none is an image of the WSSS dataset, over more classes than the WSSS dataset: its 20
families and the distractor families after them (:data:`epspp.data.synthetic.FAMILIES`), as ImageNet
holds VOC's classes among many others. Context is not tied to its class: a train stands on rails and a
boat floats on water in only half of their images, and rails or water also appear without them.

Layout (the VOC-layout conventions, without masks or saliency)::

    ROOT/JPEGImages/<id>.jpg  ROOT/ImageSets/Segmentation/{train,val}.txt  ROOT/classes.json
    ROOT/cls_labels.json ({id: [class names]})  ROOT/pretrain_corpus.json  ROOT/generated_files.txt
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from epspp import __version__
from epspp.config_checks import MAX_SIDE
from epspp.data.classes import write_classes
from epspp.data.generated import write_generated_root
from epspp.data.io import write_jpeg
from epspp.data.synthetic import MAX_CLASSES, NUM_FAMILIES, class_names, render_corpus_image

MARKER = "pretrain_corpus.json"
STREAM = 20190  # first entropy word of every corpus image; a WSSS image i of split s is drawn from [seed, s, i]


@dataclass(frozen=True)
class CorpusConfig:
    """Parameters of :func:`generate_pretrain_corpus` (all recorded in ``pretrain_corpus.json``)."""

    num_images: int = 4000
    num_val: int = 200
    num_classes: int = NUM_FAMILIES
    image_size: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        if self.num_images < 1 or self.num_val < 1:
            raise ValueError(f"num_images and num_val must be >= 1, got {self.num_images}, {self.num_val}")
        if not 1 <= self.num_classes <= NUM_FAMILIES:
            raise ValueError(
                f"num_classes must be within 1..{NUM_FAMILIES}, got {self.num_classes} (the WSSS "
                f"dataset has up to {MAX_CLASSES}; the corpus adds {NUM_FAMILIES - MAX_CLASSES} "
                "distractor families)"
            )
        if not 32 <= self.image_size <= MAX_SIDE:
            raise ValueError(f"image_size must be in [32, {MAX_SIDE}], got {self.image_size}")


def _write_corpus(out: Path, cfg: CorpusConfig) -> None:
    images, splits = out / "JPEGImages", out / "ImageSets" / "Segmentation"
    images.mkdir()
    splits.mkdir(parents=True)
    names = class_names(cfg.num_classes)
    labels: dict[str, list[str]] = {}
    stats: dict = {}
    for split_index, (split, count) in enumerate((("train", cfg.num_images), ("val", cfg.num_val))):
        ids = [f"{split}_{i:06d}" for i in range(count)]
        class_images = dict.fromkeys(names[1:], 0)
        for i, image_id in enumerate(ids):
            image, classes = render_corpus_image(
                np.random.default_rng([STREAM, cfg.seed, split_index, i]), cfg.image_size, cfg.num_classes
            )
            write_jpeg(images / f"{image_id}.jpg", image, quality=95)
            labels[image_id] = [names[c] for c in classes]
            for c in classes:
                class_images[names[c]] += 1
        (splits / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
        stats[split] = {"images": count, "class_images": class_images}
    write_classes(out, names)
    (out / "cls_labels.json").write_text(json.dumps(labels, indent=0) + "\n")
    meta = {
        "generator": "epspp.data.pretrain_corpus",
        "version": __version__,
        "params": asdict(cfg),
        "classes": list(names),
        "splits": stats,
    }
    (out / MARKER).write_text(json.dumps(meta, indent=1) + "\n")


def generate_pretrain_corpus(
    root: str | Path,
    num_images: int = 4000,
    num_val: int = 200,
    num_classes: int = NUM_FAMILIES,
    image_size: int = 64,
    seed: int = 0,
    overwrite: bool = False,
) -> Path:
    """Write the pretraining corpus at ``root`` (deterministic for a seed; built aside, renamed into place).

    Args:
        root: corpus root to create.
        num_images: training images (``train.txt``).
        num_val: validation images (``val.txt``).
        num_classes: classes, 1..28: the WSSS dataset's 20 (disc, square, triangle, train, boat, ...) first,
            then the distractor families.
        image_size: side length of the square images in pixels (>= 32).
        seed: random seed; the images differ from the WSSS dataset's for every pair of seeds.
        overwrite: regenerate a corpus at ``root`` (one holding ``pretrain_corpus.json``): the files listed in
            its ``generated_files.txt`` are replaced, any other file or folder in it is kept.

    Returns:
        The corpus root.
    """
    cfg = CorpusConfig(num_images, num_val, num_classes, image_size, seed)
    return write_generated_root(root, MARKER, "pretraining corpus", lambda out: _write_corpus(out, cfg), overwrite)
