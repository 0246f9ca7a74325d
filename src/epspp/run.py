"""``epspp run``: your own photos to masks in one command, on the stage chain (``epspp.chain``).

    epspp run --images photos --labels labels.csv --saliency saliency --out runs/mine [--predict new_photos]

Stages (each a plain ``epspp`` command, its files in its own folder of ``--out``): saliency maps (``epspp
saliency``, only without ``--saliency``) -> the dataset (``epspp prepare folder``) -> stage 1 (``epspp fit``,
localization) -> pseudo-masks of every photo (``epspp predict``) -> stage 3 (``epspp fit``, segmentation) -> its
masks of every photo, and of ``--predict DIR`` -> ``OUT/report.md`` and ``OUT/report.png``.  A rerun skips every
finished stage; a changed option reruns the stages that depend on it (``stage.json`` markers, see the chain).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from epspp.chain import MARKER, RunLayout, Runner, Stage, fit_stage, last_checkpoint, move_aside, predict_stage
from epspp.config_files import PACKAGED
from epspp.errors import ConfigError, DatasetError
from epspp.files import write_json
from epspp.runs.ownership import claim_folder

METHODS = ("cam", "eps", "eps++")
#: a preset: its folder under configs/ and the share of the photos in the val split (stage 1's val/mAP)
PRESETS = {"photos": 0.2}
#: a val split smaller than this gets a note: its val/mAP is a rough signal, not a score
SMALL_VAL = 10
#: step counts of a fit config that ``--max-steps`` scales with the budget (model.init_args / trainer keys)
WARMUPS = ("ird_warmup_steps", "eps_warmup_steps")
INTERVALS = ("val_check_interval", "log_every_n_steps")
COMMAND = "epspp run"
INPUTS = "inputs.json"  # OUT/inputs.json: a fingerprint of the input folders' files, per stage that reads them


@dataclass(frozen=True)
class RunOptions:
    """What ``epspp run`` was asked to do (the flags of ``run_main``, or the arguments of ``run_own_data``)."""

    images: Path
    labels: Path
    out: Path
    saliency: Path | None = None
    preset: str = "photos"
    method: str = "eps++"
    predict: Path | None = None
    max_steps: int | None = None
    pretrained: bool = True
    saliency_model: str | None = None
    saliency_model_path: Path | None = None
    overrides: tuple[str, ...] = field(default_factory=tuple)


def preset_folder(preset: str) -> Path:
    """The configs of ``preset``: ``configs/<preset>`` here, else the packaged ones, else a folder given by path
    (holding ``localization_<method>.yaml``, ``pseudo_masks.yaml`` and ``segmentation.yaml``)."""
    candidates = [Path("configs") / preset, PACKAGED / preset, Path(preset)]
    for candidate in candidates if preset in PRESETS else candidates[2:]:
        if (candidate / "segmentation.yaml").is_file() and (candidate / "pseudo_masks.yaml").is_file():
            return candidate
    known = ", ".join(PRESETS)
    raise ConfigError(
        f"--preset {preset}: no such preset (known: {known}; or a folder with localization_<method>"
        ".yaml, pseudo_masks.yaml and segmentation.yaml)"
    )


def step_overrides(config: Path, max_steps: int | None) -> list[str]:
    """``--trainer.max_steps N`` and the config's warm-ups and step intervals scaled from its budget to N
    (rounded; intervals at least 1); nothing without ``max_steps``."""
    if max_steps is None:
        return []
    settings = yaml.safe_load(config.read_text(encoding="utf-8")) or {}
    trainer = settings.get("trainer") or {}
    budget = trainer.get("max_steps")
    args = ["--trainer.max_steps", str(max_steps)]
    if not isinstance(budget, int) or budget <= 0:
        return args
    init = (settings.get("model") or {}).get("init_args") or {}
    for key in WARMUPS:
        if isinstance(init.get(key), int):
            args += [f"--model.init_args.{key}", str(round(init[key] * max_steps / budget))]
    for key in INTERVALS:
        if isinstance(trainer.get(key), int) and not isinstance(trainer.get(key), bool):
            args += [f"--trainer.{key}", str(max(1, round(trainer[key] * max_steps / budget)))]
    return args


def dataset_root(layout: RunLayout) -> Path:
    """The prepared dataset (``epspp prepare folder``'s ``--out``), inside the dataset stage's folder."""
    return layout.dataset / "root"


def masks_folder(layout: RunLayout) -> Path:
    """Stage 3's masks of every photo of the dataset."""
    return layout.root / "masks"


def run_stages(options: RunOptions) -> list[Stage]:
    """The stages of ``epspp run`` in order (nothing is run or checked here)."""
    layout, configs = RunLayout(options.out), preset_folder(options.preset)
    root = dataset_root(layout)
    stages: list[Stage] = []
    saliency = options.saliency
    if saliency is None:
        saliency = layout.saliency / "maps"
        model = ["--model", options.saliency_model] if options.saliency_model else []
        model += ["--model-path", str(options.saliency_model_path)] if options.saliency_model_path else []
        stages.append(
            Stage(
                "saliency",
                layout.saliency,
                ("saliency", "--images", str(options.images), "--out", str(saliency), *model),
            )
        )
    stages.append(
        Stage(
            "dataset",
            layout.dataset,
            (
                "prepare",
                "folder",
                "--images",
                str(options.images),
                "--labels",
                str(options.labels),
                "--saliency",
                str(saliency),
                "--out",
                str(root),
                "--val-fraction",
                str(PRESETS.get(options.preset, 0.2)),
            ),
            inputs=(layout.saliency,) if options.saliency is None else (),
        )
    )
    weights = (
        [] if options.pretrained else ["--model.init_args.pretrained", "false", "--model.init_args.freeze_bn", "false"]
    )
    localization = configs / f"localization_{options.method}.yaml"
    stages.append(
        fit_stage(
            "stage 1",
            layout.localization,
            [localization],
            root,
            inputs=[layout.dataset],
            overrides=[*step_overrides(localization, options.max_steps), *weights, *options.overrides],
        )
    )
    stages.append(
        predict_stage(
            "pseudo-masks",
            layout.pseudo_masks,
            [configs / "pseudo_masks.yaml"],
            root,
            last_checkpoint(layout.localization),
            inputs=[layout.localization],
        )
    )
    segmentation, seg_folder = configs / "segmentation.yaml", layout.segmentation("wsss")
    stages.append(
        fit_stage(
            "stage 3",
            seg_folder,
            [segmentation],
            root,
            extra=["--data.pseudo_mask_dir", str(layout.pseudo_masks)],
            inputs=[layout.pseudo_masks],
            overrides=[*step_overrides(segmentation, options.max_steps), *weights, *options.overrides],
        )
    )
    quiet = ["--trainer.logger", "false", "--pseudo_masks.save_overlays", "true"]
    stages.append(
        predict_stage(
            "masks",
            masks_folder(layout),
            [segmentation],
            root,
            last_checkpoint(seg_folder),
            extra=["--data.predict_split", "all"],
            overrides=quiet,
            inputs=[seg_folder],
            root_dir=True,
        )
    )
    if options.predict is not None:
        stages.append(
            predict_stage(
                "predictions",
                layout.predictions,
                [segmentation],
                root,
                last_checkpoint(seg_folder),
                extra=["--data.predict_image_dir", str(options.predict)],
                overrides=quiet,
                inputs=[seg_folder],
                root_dir=True,
            )
        )
    return stages


def fingerprint(*paths: Path | None) -> str:
    """A digest of the names, sizes and modification times of the files of ``paths`` (folders: their files)."""
    digest = hashlib.sha256()
    for path in paths:
        if path is None:
            continue
        files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
        for file in files:
            stat = file.stat()
            digest.update(f"{file.name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def forget_changed_inputs(options: RunOptions, stages: Sequence[Stage]) -> None:
    """Stages whose input files changed since the last run (photos added, labels edited: their command is the same)
    run again, and their dependents after them: the saliency and dataset stages lose their ``stage.json`` and run
    in place (``epspp saliency`` keeps the maps already made, ``prepare folder`` the splits of the photos already
    there); the predictions' folder is moved aside (``.previous``), as the chain does. ``OUT/inputs.json`` keeps the
    fingerprints; it is written only when one changed."""
    first = stages[0].name  # saliency when made here, else the dataset
    reads: dict[str, tuple[Path | None, ...]] = {first: (options.images, options.labels, options.saliency)}
    if options.predict is not None:
        reads["predictions"] = (options.predict,)
    # keyed by the paths too: other paths change the stage's command, and the chain reruns it itself
    current = {
        name: {"paths": [str(p) for p in paths if p], "files": fingerprint(*paths)} for name, paths in reads.items()
    }
    path = options.out / INPUTS
    try:
        recorded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        recorded = None
    if recorded == current:
        return
    for stage in stages:
        name = "predictions" if stage.name == "predictions" else first if stage.name in ("saliency", "dataset") else ""
        earlier = recorded.get(name) if isinstance(recorded, dict) else None
        if isinstance(earlier, dict) and earlier.get("paths") == current[name]["paths"] and earlier != current[name]:
            if not (stage.folder / MARKER).is_file():
                continue
            if stage.name == "predictions":
                where = f" (the old outputs are in {move_aside(stage.folder)})"
            else:
                where = ""
                (stage.folder / MARKER).unlink()
            print(
                f"[run] {stage.name}: its input files changed since the last run; running it again{where}", flush=True
            )
    options.out.mkdir(parents=True, exist_ok=True)
    write_json(path, current, indent=1)


def check_options(options: RunOptions) -> None:
    """Refuse, in one line naming the flag, what cannot work, before anything runs or is written."""
    for path, flag in ((options.images, "--images"), (options.saliency, "--saliency"), (options.predict, "--predict")):
        if path is not None and not path.is_dir():
            raise DatasetError(
                f"{flag} {path} is not a folder: give the folder of your "
                f"{'saliency maps' if flag == '--saliency' else 'photos'}"
            )
    if not options.labels.is_file():
        raise DatasetError(f"--labels {options.labels} is not a file: give your label file (CSV id,classes or JSON)")
    if options.method not in METHODS:
        raise ConfigError(f"--method {options.method}: expected one of {', '.join(METHODS)}")
    if options.max_steps is not None and options.max_steps < 1:
        raise ConfigError(f"--max-steps must be >= 1, got {options.max_steps}")
    if options.saliency_model_path is not None and not options.saliency_model_path.is_file():
        raise DatasetError(
            f"--saliency-model-path {options.saliency_model_path} is not a file: give the detector's .onnx file"
        )
    if options.saliency is not None and (options.saliency_model or options.saliency_model_path):
        raise ConfigError(
            "--saliency-model and --saliency-model-path make saliency maps: leave them out with "
            "--saliency (your own maps)"
        )


def run_own_data(
    images: str | Path,
    labels: str | Path,
    out: str | Path,
    *,
    saliency: str | Path | None = None,
    preset: str = "photos",
    method: str = "eps++",
    predict: str | Path | None = None,
    max_steps: int | None = None,
    pretrained: bool = True,
    saliency_model: str | None = None,
    saliency_model_path: str | Path | None = None,
    overrides: Sequence[str] = (),
    runner: Runner | None = None,
) -> dict:
    """Run (or resume) every stage of ``epspp run`` and write the report; the report's summary.

    Args:
        images: folder of photos (any of .jpg .png ...; the file name without extension is the id).
        labels: CSV (``id,classes``) or JSON label file (docs/data.md, "Your own data").
        out: run folder (new, empty, or an earlier ``epspp run``'s; never inside an input folder).
        saliency: folder of ``<id>.png`` saliency maps; None: made by ``epspp saliency`` (``saliency_model``,
            ``saliency_model_path``).
        saliency_model: the detector that makes the saliency maps (``epspp saliency --model``; None: its default).
        saliency_model_path: a local ONNX file of that detector (``--model-path``; None: rembg's cached file).
        preset: the configs (``configs/<preset>``, or a folder).
        method: stage 1's loss: ``cam``, ``eps`` or ``eps++``.
        predict: a folder of new photos to write masks of.
        max_steps: every fit's step budget (warm-ups and intervals scaled with it); None: the preset's.
        pretrained: False starts the backbones from random weights (no download; BatchNorm then trains).
        overrides: extra ``epspp fit`` flags of both fits (e.g. ``--data.crop_size 64``).
        runner: the chain's runner (default: ``Runner(tag="run")``).
    """
    from epspp.run_report import val_note, write_run_report

    options = RunOptions(
        Path(images),
        Path(labels),
        Path(out),
        Path(saliency) if saliency else None,
        preset,
        method,
        Path(predict) if predict else None,
        max_steps,
        pretrained,
        saliency_model,
        Path(saliency_model_path) if saliency_model_path else None,
        tuple(overrides),
    )
    check_options(options)
    stages = run_stages(options)
    claim_folder(
        options.out,
        COMMAND,
        "--out",
        {
            options.images: "the image folder",
            options.saliency: "the saliency folder",
            options.predict: "the --predict folder",
        },
    )
    forget_changed_inputs(options, stages)
    records = (runner or Runner(tag="run")).run(stages)
    note = val_note(dataset_root(RunLayout(options.out)), SMALL_VAL)
    if note:
        print(f"[run] note: {note}", flush=True)
    return write_run_report(options, stages, records, note)
