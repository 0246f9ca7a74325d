"""The demo's report: tables of measured numbers (JSON + Markdown) and a figure of the stages."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from PIL import Image

from epspp.data.classes import read_classes, voc_palette
from epspp.data.dataset import VOCLayoutDataset
from epspp.data.transforms import eval_transform
from epspp.run_logs import last_logged, mean_over_last_steps, recorded_warnings, window_means
from epspp.visualize import annotate, colorize, denormalize, grid, heatmap, overlay

METHOD_NAMES = ("cam", "eps", "eps++")
SEGMENTATION_NAMES = ("wsss", "ssss", "labeled_only")
# background thresholds at which the demo also scores each method's pseudo-masks (from their saved
# scores): the comparison at the threshold each method likes best, besides the EPS reference's 0.2
SWEEP_THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
# IRD's telemetry in the report: the fit's per-step record (ird_telemetry.csv), averaged over its last steps
TELEMETRY = ("inconsistent_salient", "inconsistent_background", "inconsistent", "fg_salient", "threshold_map_salient",
             "threshold_map_background")
TELEMETRY_STEPS = 50
STAGE_TITLES = ["image", "saliency", "CAM map", "EPS map", "EPS++ map", "IRD dropped", "EPS++ mask", "ground truth"]


def _percent(value: float | None) -> float | None:
    return None if value is None else round(100 * value, 2)


def stage1_setting(out: Path) -> dict:
    """The EPS++ stage-1 run's network input: ``eval_scale``, ``crop_size``, ``output_stride``, the training map
    side and whether it started from a ``pretrained_path`` (from its checkpoint's saved hyper-parameters)."""
    path = out / "eps++" / "localization" / "checkpoints" / "last.ckpt"
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    model, data = ckpt["hyper_parameters"], ckpt.get("datamodule_hyper_parameters", {})
    return {"pretrained_path": model.get("pretrained_path"), "output_stride": model["output_stride"],
            "crop_size": data.get("crop_size"), "eval_scale": data.get("eval_scale", 1.0),
            "map_size": -(-data["crop_size"] // model["output_stride"]) if data.get("crop_size") else None}


def collect(root: Path, out: Path, stages: dict[str, dict], regime: str = "pretrained") -> dict:
    """Read every stage's measurement from its files (manifests, CSV logs, stage markers, checkpoints).

    Where a method's pseudo-mask folder has saved scores, its masks are also scored at every
    ``SWEEP_THRESHOLDS`` background threshold (``best_bg_threshold`` and its mIoU).
    """
    from epspp.evaluate import sweep_bg_threshold, sweep_to_json

    report: dict = {"regime": {"name": regime, **stage1_setting(out)}, "localization": {}, "pseudo_masks": {},
                    "segmentation": {}, "wall_time_s": {}}
    if (out / "pretrain").is_dir():
        report["regime"]["pretrain_val_map"] = _percent(last_logged(out / "pretrain", "val/mAP"))
    for method in METHOD_NAMES:
        run = out / method / "localization"
        report["localization"][method] = {"val_cam_miou": _percent(last_logged(run, "val/mIoU"))}
        if mean_over_last_steps(run, "inconsistent_salient") is not None:
            report["localization"][method]["ird"] = ird_health(run)
        masks = out / method / "pseudo_masks"
        manifest = json.loads((masks / "manifest.json").read_text())
        report["pseudo_masks"][method] = {"miou": manifest.get("miou"), "count": manifest["count"],
                                          "per_class_iou": manifest.get("per_class_iou"),
                                          "bg_threshold": manifest["config"]["model"].get("bg_threshold")}
        if (masks / "scores").is_dir():
            sweep = sweep_bg_threshold(masks, root, manifest["split"], list(SWEEP_THRESHOLDS))
            report["pseudo_masks"][method] |= sweep_to_json(list(SWEEP_THRESHOLDS), sweep["metrics"])
    for variant in SEGMENTATION_NAMES:
        report["segmentation"][variant] = {
            "miou": _percent(last_logged(out / "segmentation" / variant, "val/mIoU"))}
    for name, record in stages.items():
        report["wall_time_s"][name] = record.get("wall_time_s")
    return report


def ird_health(run: Path) -> dict:
    """IRD's telemetry at the end of an ``ird`` fit (means over its last ``TELEMETRY_STEPS`` steps, percent)
    and the collapse warnings it recorded."""
    health = {key: _percent(mean_over_last_steps(run, key, TELEMETRY_STEPS)) for key in TELEMETRY}
    windows = [_percent(v) for v in window_means(run, "inconsistent_salient", TELEMETRY_STEPS)]
    return health | {"inconsistent_salient_windows": windows,
                     "collapse_warnings": [line for line in recorded_warnings(run) if "IRD collapse" in line]}


def markdown(report: dict, figure: str | None = None) -> str:
    """The report's tables as Markdown."""
    lines = ["# epspp demo report", "", "Measured on the synthetic dataset by `make demo` (percent).", "",
             *regime_markdown(report["regime"]), "",
             "## Pseudo-masks (train split vs ground truth) and single-scale val CAM mIoU", "",
             "| method | pseudo-mask mIoU | bg threshold | best bg threshold | mIoU at the best | val CAM mIoU |",
             "|---|---|---|---|---|---|"]
    for method in METHOD_NAMES:
        masks = report["pseudo_masks"][method]
        lines.append(f"| {method} | {masks['miou']} | {masks.get('bg_threshold')} | "
                     f"{masks.get('best_bg_threshold', 'n/a')} | {masks.get('best_bg_threshold_miou', 'n/a')} | "
                     f"{report['localization'][method]['val_cam_miou']} |")
    if all("bg_threshold_sweep" in report["pseudo_masks"][m] for m in METHOD_NAMES):
        lines += ["", "Pseudo-mask mIoU at each background threshold (from the saved scores; the masks above use "
                  "the configured threshold):", "",
                  "| method | " + " | ".join(report["pseudo_masks"][METHOD_NAMES[0]]["bg_threshold_sweep"]) + " |",
                  "|---" * (1 + len(SWEEP_THRESHOLDS)) + "|"]
        lines += [f"| {m} | " + " | ".join(str(v) for v in report["pseudo_masks"][m]["bg_threshold_sweep"].values())
                  + " |" for m in METHOD_NAMES]
    lines += ird_markdown(report)
    lines += ["", "## Segmentation (val mIoU, last step)", "", "| setting | val mIoU |", "|---|---|"]
    for variant in SEGMENTATION_NAMES:
        lines.append(f"| {variant} | {report['segmentation'][variant]['miou']} |")
    lines += ["", "## Wall time per stage (s)", "", "| stage | seconds |", "|---|---|"]
    lines += [f"| {name} | {seconds} |" for name, seconds in report["wall_time_s"].items()]
    if figure:
        lines += ["", "## Stages on a few val images", "",
                  "Columns: image, saliency, then per method (CAM, EPS, EPS++) the localization map, and for "
                  "EPS++ the inconsistent region dropped by IRD and its pseudo-mask; last: ground truth.", "",
                  f"![stages]({figure})"]
    return "\n".join(lines) + "\n"


def regime_markdown(regime: dict) -> list[str]:
    """The regime section: where the backbone started and the maps stage 1 trained on."""
    side = regime["map_size"]
    maps = f"{side}x{side}" if side else "n/a"
    start = (f"the stage-0 backbone `{regime['pretrained_path']}` (pretraining val mAP "
             f"{regime.get('pretrain_val_map', 'n/a')})" if regime["pretrained_path"] else "random weights")
    return ["## Regime", "", f"`{regime['name']}`: stages 1 and 3 start from {start}; stage 1 trains on "
            f"{regime['crop_size']}-px crops at output stride {regime['output_stride']} ({maps} maps), the images "
            f"at {regime['eval_scale']:g}x their size."]


def ird_markdown(report: dict) -> list[str]:
    """The IRD-health section: the telemetry at the end of training and whether the collapse warning fired."""
    methods = [m for m in METHOD_NAMES if "ird" in report["localization"][m]]
    if not methods:
        return []
    lines = ["", f"## IRD health (EPS++ training, mean over the last {TELEMETRY_STEPS} steps, percent)", "",
             "Salient = saliency > 0.5 at the map resolution; N = the inconsistent region that IRD drops from "
             "the saliency loss; M_fg = the labelled classes' softmax maps summed.", "",
             "| method | salient pixels in N | non-salient pixels in N | all pixels in N | M_fg on salient | "
             "collapse warning |", "|---|---|---|---|---|---|"]
    for method in methods:
        ird = report["localization"][method]["ird"]
        warned = "fired" if ird["collapse_warnings"] else "none"
        lines.append(f"| {method} | {ird['inconsistent_salient']} | {ird['inconsistent_background']} | "
                     f"{ird['inconsistent']} | {ird['fg_salient']} | {warned} |")
    for method in methods:
        for warning in report["localization"][method]["ird"]["collapse_warnings"]:
            lines += ["", f"{method}: {warning}"]
    return lines


def stage_figure(root: Path, out: Path, path: Path, split: str = "val", count: int = 4, scale: float = 1.0) -> None:
    """Save image | saliency | maps of each method | IRD's inconsistent region | pseudo-mask | GT, the images
    enlarged by ``scale`` (the scale stage 1 trained at) before the networks see them."""
    from epspp.models.localization import LocalizationModule

    num_classes = len(read_classes(root)) - 1
    dataset = VOCLayoutDataset(root, split, num_classes, "localization", eval_transform(None, scale=scale))
    samples = [dataset[i] for i in range(min(count, len(dataset)))]
    batch = {k: torch.stack([s[k] for s in samples]) for k in ("image", "saliency", "label", "mask")}
    views = {}
    for method in METHOD_NAMES:
        model = LocalizationModule.load_from_checkpoint(out / method / "localization" / "checkpoints" / "last.ckpt",
                                                        map_location="cpu", weights_only=True).eval()
        views[method] = model.explain(batch["image"], batch["saliency"], batch["label"])
    rows = []
    for i in range(len(samples)):
        image = denormalize(batch["image"][i])
        row = [image, heatmap(batch["saliency"][i, 0])]
        row += [overlay(image, heatmap(views[m]["localization"][i]), 0.6) for m in METHOD_NAMES]
        row += [overlay(image, heatmap(views["eps++"]["inconsistent"][i].float()), 0.6),
                colorize(views["eps++"]["pseudo_mask"][i]), colorize(batch["mask"][i])]
        rows.append(row)
    scale = max(1, 128 // rows[0][0].shape[0])
    names = read_classes(root)
    shown = torch.cat([views["eps++"]["pseudo_mask"].flatten(), batch["mask"].flatten()]).unique().tolist()
    legend = {names[c]: tuple(voc_palette()[c]) for c in sorted(shown) if c < len(names)}
    legend |= {"ignore": tuple(voc_palette()[255])} if 255 in shown else {}
    picture = annotate(grid(rows, scale=scale), STAGE_TITLES, rows[0][0].shape[1] * scale, legend, gap=2 * scale)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    Image.fromarray(picture).save(tmp)
    os.replace(tmp, path)


def write_report(root: Path, out: Path, stages: dict[str, dict], regime: str = "pretrained") -> dict:
    """Write OUT/report.json, OUT/report.md and OUT/stages.png; return the report with a printable table."""
    report = collect(root, out, stages, regime)
    figure = out / "stages.png"
    stage_figure(root, out, figure, scale=report["regime"]["eval_scale"])
    text = markdown(report, figure.name)
    for name, content in (("report.json", json.dumps(report, indent=2)), ("report.md", text)):
        tmp = out / f".{name}.tmp"
        tmp.write_text(content)
        os.replace(tmp, out / name)
    return report | {"table": text}
