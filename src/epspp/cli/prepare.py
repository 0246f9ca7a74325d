"""The command line of ``epspp prepare`` (argparse); the work is ``epspp.data.prepare``'s."""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from epspp.cli.argtypes import count, seed
from epspp.data.prepare import prepare_coco, prepare_voc
from epspp.data.prepare_folder import prepare_folder
from epspp.data.pretrain_corpus import CorpusConfig, generate_pretrain_corpus
from epspp.data.synthetic import MAX_CLASSES, NUM_FAMILIES, generate_synthetic


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="epspp prepare", description="Build a dataset root in the VOC layout.")
    sub = parser.add_subparsers(dest="dataset", required=True, metavar="{synthetic,pretrain-corpus,voc,coco,folder}")
    syn = sub.add_parser(
        "synthetic",
        help="generate the synthetic WSSS dataset (images, masks, saliency maps)",
        description="Generate the synthetic WSSS dataset in the VOC layout: images, ground-truth "
        "masks, simulated saliency maps with the papers' three error types, splits "
        "train, val and labeled_<pct>pct (docs/architecture.md, 'synthetic dataset').",
    )
    syn.add_argument("--root", required=True, type=Path, help="dataset root to create (new or empty folder)")
    syn.add_argument("--num-train", type=int, default=1000, help="training images (split train) (default %(default)s)")
    syn.add_argument("--num-val", type=int, default=200, help="validation images (split val) (default %(default)s)")
    syn.add_argument(
        "--image-size", type=int, default=64, help="side of the square images in pixels, 32..4096 (default %(default)s)"
    )
    syn.add_argument(
        "--num-classes",
        type=int,
        default=5,
        help=f"object classes, 1..{MAX_CLASSES}: disc, square, triangle, train (on rails), boat (on "
        "water), then 15 more shape/texture families (default %(default)s)",
    )
    syn.add_argument(
        "--seed", type=seed, default=0, help="random seed; the same arguments give the same files (default %(default)s)"
    )
    syn.add_argument(
        "--missing-class-rate",
        type=float,
        default=0.1,
        help="share of images whose saliency map misses one present class (default %(default)s)",
    )
    syn.add_argument(
        "--missing-part-rate",
        type=float,
        default=0.2,
        help="share of images whose saliency map misses 30-60%% of one object (default %(default)s)",
    )
    syn.add_argument(
        "--false-coverage-rate",
        type=float,
        default=0.2,
        help="share of images whose saliency map covers background (rails or water when present) (default %(default)s)",
    )
    syn.add_argument(
        "--labeled-fraction",
        type=float,
        default=0.1,
        help="share of train listed in labeled_<pct>pct.txt (the semi-supervised stage 3) (default %(default)s)",
    )
    syn.add_argument(
        "--difficulty",
        choices=("easy", "hard"),
        default="easy",
        help="easy: the three errors drawn independently per image, near-binary maps; hard: also errors "
        "systematic by class (rails salient in 80%% of train images, every triangle missing a part, the square "
        "missing in 40%% of its images), graded maps with halos, contexts in 80%% of their class's images "
        "(and 10%% of the others), a third context (a mat under the disc); the rates above add to it "
        "(docs/data.md) (default %(default)s)",
    )
    syn.add_argument(
        "--overwrite",
        action="store_true",
        help="regenerate a synthetic dataset at --root: replaces the files it lists in "
        "generated_files.txt, keeps every other file and folder (never replaces other data)",
    )
    corpus = sub.add_parser(
        "pretrain-corpus",
        help="generate the classification corpus of stage 0 (pretraining)",
        description="Generate stage 0's classification corpus, the synthetic stand-in for "
        "ImageNet: images and image-level labels (cls_labels.json), splits train "
        "and val, no masks or saliency; none of its images is one of the WSSS "
        "dataset's (docs/architecture.md, 'stage 0').",
    )
    corpus.add_argument("--root", required=True, type=Path, help="corpus root to create (new or empty folder)")
    corpus.add_argument(
        "--num-images",
        type=count,
        default=CorpusConfig.num_images,
        help="training images (split train) (default %(default)s)",
    )
    corpus.add_argument(
        "--num-val",
        type=int,
        default=CorpusConfig.num_val,
        help="validation images (split val) (default %(default)s)",
    )
    corpus.add_argument(
        "--num-classes",
        type=int,
        default=CorpusConfig.num_classes,
        help=f"classes, 1..{NUM_FAMILIES}: the WSSS dataset's {MAX_CLASSES} first, then "
        f"{NUM_FAMILIES - MAX_CLASSES} distractor families (default %(default)s)",
    )
    corpus.add_argument(
        "--image-size",
        type=int,
        default=CorpusConfig.image_size,
        help="side of the square images in pixels, 32..4096 (default %(default)s)",
    )
    corpus.add_argument(
        "--seed",
        type=seed,
        default=CorpusConfig.seed,
        help="random seed (a stream of its own: no image equals a WSSS image for any seeds) (default %(default)s)",
    )
    corpus.add_argument(
        "--overwrite",
        action="store_true",
        help="regenerate a corpus at --root: replaces the files it lists in generated_files.txt, "
        "keeps every other file and folder",
    )
    voc = sub.add_parser("voc", help="PASCAL VOC 2012 + SBD (train_aug)")
    voc.add_argument("--voc-root", required=True, type=Path, help="VOCdevkit/VOC2012")
    voc.add_argument("--sbd-root", required=True, type=Path, help="benchmark_RELEASE/dataset")
    voc.add_argument("--out", required=True, type=Path, help="dataset root to create")
    voc.add_argument("--saliency-dir", type=Path, help="folder of <id>.png saliency maps")
    coco = sub.add_parser("coco", help="MS COCO 2014 as distributed by EPS")
    coco.add_argument("--image-dir", required=True, nargs="+", type=Path, help="train2014/ val2014/")
    coco.add_argument("--mask-dir", required=True, type=Path, help="folder of <id>.png masks")
    coco.add_argument("--out", required=True, type=Path, help="dataset root to create")
    coco.add_argument("--saliency-dir", type=Path, help="folder of <id>.png saliency maps")
    coco.add_argument("--check", type=count, default=50, help="masks to verify (default 50)")
    own = sub.add_parser("folder", help="your own images + a CSV/JSON of class names per image + saliency maps")
    own.add_argument("--images", required=True, type=Path, help="folder of images (.jpg, .png, ...; name = id)")
    own.add_argument(
        "--labels",
        required=True,
        type=Path,
        help="CSV 'id,classes' (names separated by spaces or ';') or JSON {id: [names]}",
    )
    own.add_argument("--saliency", type=Path, help="folder of <id>.png grey saliency maps (needed by stage 1)")
    own.add_argument("--out", required=True, type=Path, help="dataset root to create")
    own.add_argument(
        "--val-fraction",
        type=float,
        default=0.1,
        help="share of images in the val split, in (0, 1) (default %(default)s)",
    )
    own.add_argument("--classes", nargs="+", help="class names in label order (default: those of --labels, sorted)")
    own.add_argument("--seed", type=seed, default=0, help="seed of the train/val split")
    own.add_argument("--copy", action="store_true", help="copy the files instead of linking them")
    return parser


def _run(args: argparse.Namespace) -> None:
    if args.dataset == "pretrain-corpus":
        root = generate_pretrain_corpus(
            args.root,
            args.num_images,
            args.num_val,
            args.num_classes,
            args.image_size,
            args.seed,
            overwrite=args.overwrite,
        )
        splits = json.loads((root / "pretrain_corpus.json").read_text())["splits"]
        print(
            f"wrote pretraining corpus {root}: train {splits['train']['images']}, val {splits['val']['images']}, "
            f"{args.num_classes} classes; pretrain with `epspp fit --config configs/demo/pretrain.yaml "
            f"--data.root {root}`"
        )
    elif args.dataset == "synthetic":
        root = generate_synthetic(
            args.root,
            args.num_train,
            args.num_val,
            args.image_size,
            args.seed,
            args.missing_class_rate,
            args.missing_part_rate,
            args.false_coverage_rate,
            args.labeled_fraction,
            args.num_classes,
            overwrite=args.overwrite,
            difficulty=args.difficulty,
        )
        splits = json.loads((root / "synthetic.json").read_text())["splits"]
        print(f"wrote synthetic dataset {root}: " + ", ".join(f"{k} {v['images']}" for k, v in splits.items()))
        t = splits["train"]
        print(
            f"saliency errors in train: missing class {t['missing_class']}, missing part {t['missing_part']}, "
            f"false coverage {t['false_coverage']} ({t['false_coverage_context']} on context)"
            + (
                f"; the hard difficulty's systematic errors: missing class {s['missing_class']}, missing part "
                f"{s['missing_part']}, false coverage {s['false_coverage']} images"
                if (s := t.get("systematic"))
                else ""
            )
        )
    elif args.dataset == "folder":
        c = prepare_folder(
            args.images, args.labels, args.out, args.saliency, args.val_fraction, args.classes, args.seed, args.copy
        )
        print(
            f"wrote {args.out}: {c['images']} images (train {c['train']}, val {c['val']}, all), "
            f"{len(c['classes']) - 1} classes {c['classes'][1:]}; check it with `epspp check --data.root "
            f"{args.out}`"
        )
        if not args.saliency:
            print(f"note: no --saliency: stage 1 needs {args.out}/saliency/<id>.png (or --data.saliency_dir DIR)")
    elif args.dataset == "voc":
        c = prepare_voc(args.voc_root, args.sbd_root, args.out, args.saliency_dir)
        print(
            f"wrote VOC layout {args.out}: train_aug {c['train_aug']}, train {c['train']}, val {c['val']}; "
            f"masks from VOC {c['masks_from_voc']}, from SBD {c['masks_from_sbd']}, "
            f"already there {c['masks_skipped']}"
        )
    else:
        c = prepare_coco(args.image_dir, args.mask_dir, args.out, args.saliency_dir, args.check)
        print(
            f"wrote COCO layout {args.out}: {c['images']} images, train {c['train']}, val {c['val']}, "
            f"{c['checked']} masks checked"
        )
        for key in ("missing_mask", "missing_saliency"):
            if c[key]:
                print(f"warning: {len(c[key])} images {key.replace('_', ' ')}, e.g. {c[key][:3]}")


def prepare_main(argv: list[str] | None = None) -> int:
    """Entry point of ``epspp prepare``; returns the exit status (2 on a usage or data error)."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help (0) or a usage error (2); argparse printed the message
        return exit_.code if isinstance(exit_.code, int) else 2
    try:
        _run(args)
    except (OSError, ValueError) as error:  # FileExistsError, FileNotFoundError, DatasetError, bad values
        message = str(error) if isinstance(error, OSError) else _as_flags(str(error), args)
        print(f"epspp prepare {args.dataset}: error: {message}", file=sys.stderr)
        return 2
    return 0


def _as_flags(message: str, args: argparse.Namespace) -> str:
    """A range error of the Python API (``num_train must be >= 1``) in the flags the user typed (``--num-train``)."""
    for name in (n for n in vars(args) if "_" in n):  # whole names only: not inside a path or a longer name
        message = re.sub(rf"(?<![\w/.-]){name}\b", "--" + name.replace("_", "-"), message)
    return message
