"""The demo's report: tables of measured numbers (JSON + Markdown) and a figure of the stages."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from epspp.data.classes import read_classes, voc_palette
from epspp.data.dataset import VOCLayoutDataset
from epspp.data.transforms import eval_transform
from epspp.files import write_atomic, write_text
from epspp.runs.logs import ird_summary, last_logged
from epspp.visualize import annotate, colorize, denormalize, grid, heatmap, overlay

METHOD_NAMES = ("cam", "eps", "eps++")
SEGMENTATION_NAMES = ("wsss", "ssss", "labeled_only")
# background thresholds at which the demo also scores each method's pseudo-masks (from their saved scores): one is
# chosen on val, and train is reported at it beside the EPS reference's 0.2
SWEEP_THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
TELEMETRY_STEPS = 50


def _percent(value: float | None) -> float | None:
    return None if value is None else round(100 * value, 2)


def stage1_setting(out: Path) -> dict:
    """The EPS++ stage-1 run's network input and IRD reading: ``eval_scale``, ``crop_size``, ``output_stride``, the
    training map side, whether it started from a ``pretrained_path``, and ``ird_threshold_maps`` (which map B()
    thresholds), from its checkpoint's saved hyper-parameters."""
    path = out / "eps++" / "localization" / "checkpoints" / "last.ckpt"
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    model, data = ckpt["hyper_parameters"], ckpt.get("datamodule_hyper_parameters", {})
    return {
        "pretrained_path": model.get("pretrained_path"),
        "output_stride": model["output_stride"],
        "crop_size": data.get("crop_size"),
        "eval_scale": data.get("eval_scale", 1.0),
        "map_size": -(-data["crop_size"] // model["output_stride"]) if data.get("crop_size") else None,
        "ird_threshold_maps": model.get("ird_threshold_maps", "normalized"),
    }


def collect(
    root: Path, out: Path, stages: dict[str, dict], regime: str = "pretrained", class_names: list[str] | None = None
) -> dict:
    """Read every stage's measurement from its files (manifests, CSV logs, IRD's telemetry record, stage markers,
    checkpoints).

    Where a method's train and val pseudo-mask folders have saved scores, each is scored at every
    ``SWEEP_THRESHOLDS`` background threshold; the threshold is chosen on val and train is reported at it
    (``epspp.evaluate.threshold_choice``).
    """
    from epspp.evaluate import sweep_bg_threshold, threshold_choice

    names = class_names or read_classes(root)
    report: dict = {
        "regime": {"name": regime, **stage1_setting(out)},
        "localization": {},
        "pseudo_masks": {},
        "segmentation": {},
        "wall_time_s": {},
    }
    if (out / "pretrain").is_dir():
        report["regime"]["pretrain_val_map"] = _percent(last_logged(out / "pretrain", "val/mAP"))
    for method in METHOD_NAMES:
        run = out / method / "localization"
        report["localization"][method] = {"val_cam_miou": _percent(last_logged(run, "val/mIoU"))}
        health = ird_summary(run, TELEMETRY_STEPS)
        if health is not None:
            report["localization"][method]["ird"] = health
        masks, val_masks = out / method / "pseudo_masks", out / method / "val_masks"
        manifest = json.loads((masks / "manifest.json").read_text())
        report["pseudo_masks"][method] = {
            "miou": manifest.get("miou"),
            "count": manifest["count"],
            "per_class_iou": manifest.get("per_class_iou"),
            "bg_threshold": manifest["config"]["model"].get("bg_threshold"),
        }
        if (masks / "scores").is_dir() and (val_masks / "scores").is_dir():
            sweeps = [
                sweep_bg_threshold(folder, root, split, list(SWEEP_THRESHOLDS), class_names=names)["metrics"]
                for folder, split in ((val_masks, "val"), (masks, manifest["split"]))
            ]
            report["pseudo_masks"][method] |= threshold_choice(
                list(SWEEP_THRESHOLDS), sweeps[0], sweeps[1], "val", manifest["split"], names
            )
    for variant in SEGMENTATION_NAMES:
        report["segmentation"][variant] = {"miou": _percent(last_logged(out / "segmentation" / variant, "val/mIoU"))}
    for name, record in stages.items():
        report["wall_time_s"][name] = record.get("wall_time_s")
    return report


def markdown(report: dict, figure: str | None = None) -> str:
    """The report's tables as Markdown."""
    chosen = all("chosen_bg_threshold" in report["pseudo_masks"][m] for m in METHOD_NAMES)
    lines = [
        "# epspp demo report",
        "",
        "Measured on the synthetic dataset by `make demo` (percent).",
        "",
        *regime_markdown(report["regime"]),
        "",
        "## Pseudo-masks (train split vs ground truth) and single-scale val CAM mIoU",
        "",
        "Train mIoU at the configured background threshold (EPS's 0.2) and at the threshold chosen on the val "
        "split's pseudo-masks (of " + ", ".join(f"{t:g}" for t in SWEEP_THRESHOLDS) + "): no number here is "
        "chosen on train.",
        "",
        "| method | train mIoU (bg 0.2) | threshold chosen on val (val mIoU at it) | train mIoU at it | val CAM mIoU |",
        "|---|---|---|---|---|",
    ]
    for method in METHOD_NAMES:
        masks = report["pseudo_masks"][method]
        if chosen:
            key = f"{masks['chosen_bg_threshold']:g}"
            choice = f"{key} ({masks['choice_sweep'][key]})", f"{masks['chosen_bg_threshold_miou']}"
        else:
            choice = "n/a", "n/a"
        lines.append(
            f"| {method} | {masks['miou']} | {choice[0]} | {choice[1]} | "
            f"{report['localization'][method]['val_cam_miou']} |"
        )
    if chosen:
        lines += [
            "",
            "Train mIoU at every background threshold (from the saved scores; shown to read, not to choose "
            "from: the choice above is made on val):",
            "",
            "| method | " + " | ".join(report["pseudo_masks"][METHOD_NAMES[0]]["bg_threshold_sweep"]) + " |",
            "|---" * (1 + len(SWEEP_THRESHOLDS)) + "|",
        ]
        lines += [
            f"| {m} | " + " | ".join(str(v) for v in report["pseudo_masks"][m]["bg_threshold_sweep"].values()) + " |"
            for m in METHOD_NAMES
        ]
    lines += ird_markdown(report)
    lines += ["", "## Segmentation (val mIoU, last step)", "", "| setting | val mIoU |", "|---|---|"]
    for variant in SEGMENTATION_NAMES:
        lines.append(f"| {variant} | {report['segmentation'][variant]['miou']} |")
    lines += ["", "## Wall time per stage (s)", "", "| stage | seconds |", "|---|---|"]
    lines += [f"| {name} | {seconds} |" for name, seconds in report["wall_time_s"].items()]
    if figure:
        lines += [
            "",
            "## Stages on a few val images",
            "",
            "Columns: image, saliency, then per method (CAM, EPS, EPS++) the localization map, and for "
            f"EPS++ the inconsistent region dropped by IRD (B() on the {report['regime']['ird_threshold_maps']} "
            "maps) and its pseudo-mask; last: ground truth.",
            "",
            f"![stages]({figure})",
        ]
    return "\n".join(lines) + "\n"


def regime_markdown(regime: dict) -> list[str]:
    """The regime section: where the backbone started, the maps stage 1 trained on, and IRD's reading of B()."""
    side = regime["map_size"]
    maps = f"{side}x{side}" if side else "n/a"
    start = (
        f"the stage-0 backbone `{regime['pretrained_path']}` (pretraining val mAP "
        f"{regime.get('pretrain_val_map', 'n/a')})"
        if regime["pretrained_path"]
        else "random weights"
    )
    reading = regime.get("ird_threshold_maps", "normalized")
    return [
        "## Regime",
        "",
        f"`{regime['name']}`: stages 1 and 3 start from {start}; stage 1 trains on "
        f"{regime['crop_size']}-px crops at output stride {regime['output_stride']} ({maps} maps), the images "
        f"at {regime['eval_scale']:g}x their size. EPS++'s IRD thresholds the **{reading}** refined maps in "
        f'B() (`ird_threshold_maps: {reading}`; docs/architecture.md, "How we read IRD\'s B()").',
    ]


IRD_COLUMNS = (
    ("inconsistent_salient", "salient pixels in N"),
    ("inconsistent_background", "other pixels in N"),
    ("fg_salient", "M_fg on salient"),
    ("threshold_map_salient", "B() map on salient"),
    ("threshold_map_background", "B() map on other"),
)


def ird_markdown(report: dict) -> list[str]:
    """The IRD telemetry section: the telemetry at the end of training, its 50-step windows, and whether the collapse
    warning fired."""
    methods = [m for m in METHOD_NAMES if "ird" in report["localization"][m]]
    if not methods:
        return []
    lines = [
        "",
        f"## IRD telemetry (EPS++ training, every step, mean over the last {TELEMETRY_STEPS} steps)",
        "",
        "Salient = saliency > 0.5 at the map resolution; N = the inconsistent region that IRD drops from the "
        "saliency loss; M_fg = the labelled classes' softmax maps summed; B() map = the refined map that B() "
        "thresholds (its reading in the Regime section).",
        "",
        "| method | " + " | ".join(title for _, title in IRD_COLUMNS) + " | salient in N per 50-step window | "
        "collapse warning |",
        "|---" * (len(IRD_COLUMNS) + 3) + "|",
    ]
    for method in methods:
        ird = report["localization"][method]["ird"]
        windows = ", ".join(f"{v:.2f}" for v in ird["windows"]["inconsistent_salient"])
        warned = f"fired at step {ird['collapse_step']}" if ird["collapse_step"] is not None else "none"
        lines.append(
            f"| {method} | "
            + " | ".join(f"{ird['last_steps'][key]:.2f}" for key, _ in IRD_COLUMNS)
            + f" | {windows} | {warned} |"
        )
    for method in methods:
        for warning in report["localization"][method]["ird"]["warnings"]:
            lines += ["", f"{method}: {warning}"]
    return lines


def stage_figure(
    root: Path,
    out: Path,
    path: Path,
    names: list[str],
    split: str = "val",
    count: int = 4,
    scale: float = 1.0,
    reading: str = "normalized",
) -> None:
    """Save image | saliency | maps of each method | IRD's inconsistent region (B() on the ``reading`` maps) |
    pseudo-mask | GT, the images enlarged by ``scale`` (the scale stage 1 trained at) before the networks see them;
    ``names``: the root's classes, background first."""
    from epspp.tasks.localization import LocalizationModule

    num_classes = len(names) - 1
    dataset = VOCLayoutDataset(root, split, num_classes, "localization", eval_transform(None, scale=scale))
    samples = [dataset[i] for i in range(min(count, len(dataset)))]
    batch = {k: torch.stack([s[k] for s in samples]) for k in ("image", "saliency", "label", "mask")}
    views = {}
    for method in METHOD_NAMES:
        model = LocalizationModule.load_from_checkpoint(
            out / method / "localization" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True
        ).eval()
        views[method] = model.explain(batch["image"], batch["saliency"], batch["label"])
    rows: list[list[Any]] = []  # uint8 pictures
    for i in range(len(samples)):
        image = denormalize(batch["image"][i])
        row = [image, heatmap(batch["saliency"][i, 0])]
        row += [overlay(image, heatmap(views[m]["localization"][i]), 0.6) for m in METHOD_NAMES]
        row += [
            overlay(image, heatmap(views["eps++"]["inconsistent"][i].float()), 0.6),
            colorize(views["eps++"]["pseudo_mask"][i]),
            colorize(batch["mask"][i]),
        ]
        rows.append(row)
    zoom = max(1, 128 // rows[0][0].shape[0])
    shown = torch.cat([views["eps++"]["pseudo_mask"].flatten(), batch["mask"].flatten()]).unique().tolist()
    legend = {names[c]: tuple(voc_palette()[c]) for c in sorted(shown) if c < len(names)}
    legend |= {"ignore": tuple(voc_palette()[255])} if 255 in shown else {}
    titles = [
        "image",
        "saliency",
        "CAM map",
        "EPS map",
        "EPS++ map",
        f"IRD N ({reading})",
        "EPS++ mask",
        "ground truth",
    ]
    picture = annotate(grid(rows, scale=zoom), titles, rows[0][0].shape[1] * zoom, legend, gap=2 * zoom)
    write_atomic(path, Image.fromarray(picture).save)


def write_report(root: Path, out: Path, stages: dict[str, dict], regime: str = "pretrained") -> dict:
    """Write OUT/report.json, OUT/report.md and OUT/stages.png; return the report with a printable table."""
    names = read_classes(root)  # the dataset's root is read once for the whole report
    report = collect(root, out, stages, regime, names)
    figure = out / "stages.png"
    stage_figure(
        root, out, figure, names, scale=report["regime"]["eval_scale"], reading=report["regime"]["ird_threshold_maps"]
    )
    text = markdown(report, figure.name)
    for name, content in (("report.json", json.dumps(report, indent=2)), ("report.md", text)):
        write_text(out / name, content)
    return report | {"table": text}
