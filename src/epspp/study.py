"""``epspp study``: controlled experiments on the synthetic dataset that no real dataset allows.

``saliency-errors``: the same images and masks with only the saliency maps changed, one error type at a
time (missing class, missing object part, false coverage) at each rate; stage 1 for CAM (once per seed: it
ignores saliency), EPS and EPS++ (rate 0 shared by the three error types), pseudo-masks, and their mIoU at
the configured background threshold and at each method's best threshold.

``labeled-fraction``: segmentation val mIoU of labelled-only, SSSS (labelled + EPS++ pseudo-masks) and WSSS
training for each fraction of labelled images.

Every fit and predict runs as ``epspp fit|predict`` in a subprocess with the demo's configs (its output goes
to a log file in the run's folder); finished runs are skipped, a killed study continues where it stopped.
Results: ``OUT/study.csv|md|png`` and ``OUT/labeled_fraction.csv|md|png``, also logged to W&B (offline unless
``WANDB_MODE`` says otherwise).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from epspp.errors import EPSError
from epspp.pipeline import METHODS

#: error type of the study -> the synthetic generator's rate argument
ERROR_TYPES = {"missing_class": "missing_class_rate", "missing_object": "missing_part_rate",
               "false_coverage": "false_coverage_rate"}
SETTINGS = ("labeled_only", "ssss", "wsss")
THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
STUDY_COLUMNS = ("error_type", "rate", "method", "seed", "threshold", "miou")
FRACTION_COLUMNS = ("fraction", "setting", "seed", "miou")


class StudyError(EPSError):
    """A run of the study failed; the message names its log."""


# ------------------------------------------------------------------------------------------------ the grid
@dataclass(frozen=True)
class Training:
    """One stage-1 training and its pseudo-masks: ``saliency`` names the saliency folder it learns from."""

    method: str
    saliency: str
    seed: int

    def folder(self, out: Path) -> Path:
        return out / "runs" / self.method / self.saliency / f"seed{self.seed}"


@dataclass(frozen=True)
class Cell:
    """One point of the saliency-error grid: its rows of ``study.csv`` come from ``training``."""

    error_type: str
    rate: float
    method: str
    seed: int

    @property
    def training(self) -> Training:
        if self.method == "cam":  # CAM ignores saliency: one training per seed serves every point
            return Training("cam", "clean", self.seed)
        return Training(self.method, saliency_name(self.error_type, self.rate), self.seed)


def saliency_name(error_type: str, rate: float) -> str:
    """Folder name of the saliency maps of one error type at one rate (``clean`` at rate 0, shared)."""
    return "clean" if rate == 0 else f"{error_type}_{rate:g}"


def saliency_grid(error_types: Sequence[str], rates: Sequence[float], methods: Sequence[str],
                  seeds: Sequence[int]) -> list[Cell]:
    """Every (error type, rate, method, seed) point."""
    return [Cell(e, float(r), m, s) for s in seeds for m in methods for e in error_types for r in rates]


def unique_trainings(cells: Sequence[Cell]) -> list[Training]:
    """The trainings the cells need, each once, in the order first needed."""
    return list(dict.fromkeys(cell.training for cell in cells))


# --------------------------------------------------------------------------------------------- running
def run_epspp(name: str, folder: Path, command: list[str], env: dict[str, str]) -> None:
    """``epspp <command>`` with its output in ``folder/log.txt``, unless ``folder/stage.json`` says it is done."""
    marker = folder / "stage.json"
    if marker.is_file():
        return
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / "log.txt"
    start = time.perf_counter()
    with open(log, "w") as handle:
        result = subprocess.run([sys.executable, "-m", "epspp", *command], stdout=handle, stderr=subprocess.STDOUT,
                                env=env)
    if result.returncode != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-3:]
        raise StudyError(f"{name} failed (exit {result.returncode}); its log is {log}: " + " | ".join(tail))
    _write_json(marker, {"command": ["epspp", *command], "wall_time_s": round(time.perf_counter() - start, 1)})


def _write_json(path: Path, payload: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(json.dumps(payload, indent=2))
    os.replace(tmp, path)


@dataclass
class Context:
    """Where the study reads and writes, and what every run gets."""

    out: Path
    root: Path
    configs: Path
    overrides: list[str]
    env: dict[str, str]


def localization(ctx: Context, training: Training) -> dict:
    """Stage 1 + 2 of one training; returns (and caches in ``scores.json``) the pseudo-mask scores."""
    from epspp.evaluate import sweep_bg_threshold, sweep_to_json

    folder = training.folder(ctx.out)
    scores_path = folder / "scores.json"
    if scores_path.is_file():
        return json.loads(scores_path.read_text())
    saliency = ["--data.saliency_dir", str(ctx.out / "saliency" / training.saliency)]
    data = ["--data.root", str(ctx.root), *saliency]
    run_epspp(f"fit {training}", folder / "localization",
              ["fit", "--config", str(ctx.configs / METHODS[training.method]), *data,
               "--trainer.default_root_dir", str(folder / "localization"), "--seed_everything", str(training.seed),
               "--ckpt_path", "last", *ctx.overrides], ctx.env)
    masks = folder / "pseudo_masks"
    run_epspp(f"predict {training}", masks,
              ["predict", "--config", str(ctx.configs / "pseudo_masks.yaml"), *data,
               "--ckpt_path", str(folder / "localization" / "checkpoints" / "last.ckpt"),
               "--pseudo_masks.output_dir", str(masks), "--pseudo_masks.save_scores", "true",
               "--trainer.enable_progress_bar", "false"], ctx.env)
    manifest = json.loads((masks / "manifest.json").read_text())
    sweep = sweep_to_json(list(THRESHOLDS), sweep_bg_threshold(masks, ctx.root, manifest["split"],
                                                               list(THRESHOLDS))["metrics"])
    scores = {"configured": manifest["miou"], "bg_threshold": manifest["config"]["model"]["bg_threshold"],
              "best": sweep["best_bg_threshold_miou"], "best_threshold": sweep["best_bg_threshold"],
              "sweep": sweep["bg_threshold_sweep"], "per_class_iou": manifest.get("per_class_iou")}
    _write_json(scores_path, scores)
    return scores


def run_all(jobs: list[tuple[str, Path, Callable[[], dict]]], parallel: int) -> dict[str, dict]:
    """Run the jobs ``(name, result file, job)``, ``parallel`` at a time, with a progress line each and the
    time left; a job whose result file exists is reported as done before."""
    results: dict[str, dict] = {}
    lock = threading.Lock()
    start = time.perf_counter()
    timed: list[float] = []

    def one(name: str, result_file: Path, job: Callable[[], dict]) -> None:
        before = result_file.is_file()
        begun = time.perf_counter()
        result = job()
        elapsed = time.perf_counter() - begun
        with lock:
            results[name] = result
            if not before:
                timed.append(elapsed)
            left = len(jobs) - len(results)
            eta = statistics.mean(timed) * left / parallel if timed else 0.0
            took = "done before" if before else f"{elapsed:.0f} s"
            print(f"[study] {len(results)}/{len(jobs)} {name}: {took}; {time.perf_counter() - start:.0f} s so far, "
                  f"about {eta / 60:.0f} min left", flush=True)

    with ThreadPoolExecutor(max_workers=parallel) as pool:
        futures = [pool.submit(one, *job) for job in jobs]
        for future in futures:
            future.result()  # the first failure stops the study (finished runs stay)
    return results


# ------------------------------------------------------------------------------------------ aggregation
def saliency_rows(cells: Sequence[Cell], scores: dict[Training, dict]) -> list[dict]:
    """The rows of ``study.csv``: per cell, mIoU at the configured and at the method's best threshold."""
    rows = []
    for cell in cells:
        result = scores[cell.training]
        for threshold in ("configured", "best"):
            rows.append({"error_type": cell.error_type, "rate": cell.rate, "method": cell.method, "seed": cell.seed,
                         "threshold": threshold, "miou": round(float(result[threshold]), 3)})
    return rows


def summarize(rows: Sequence[dict], keys: Sequence[str]) -> dict[tuple, tuple[float, float, int]]:
    """(mean, spread = half the max-min range, count) of ``miou`` over the seeds, per combination of ``keys``."""
    groups: dict[tuple, list[float]] = {}
    for row in rows:
        groups.setdefault(tuple(row[k] for k in keys), []).append(float(row["miou"]))
    return {key: (statistics.mean(v), (max(v) - min(v)) / 2, len(v)) for key, v in groups.items()}


def write_csv(path: Path, columns: Sequence[str], rows: Sequence[dict]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns))
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def _cell(mean: float, spread: float, count: int) -> str:
    return f"{mean:.1f} ± {spread:.1f}" if count > 1 else f"{mean:.1f}"


def saliency_markdown(rows: Sequence[dict], error_types: Sequence[str], rates: Sequence[float],
                      methods: Sequence[str], seeds: Sequence[int]) -> str:
    """Tables of pseudo-mask mIoU (mean ± half-range over the seeds) per error type, rate and method."""
    stats = summarize(rows, ("error_type", "rate", "method", "threshold"))
    lines = ["# Saliency-error study", "",
             f"Pseudo-mask mIoU (%) on the synthetic train split, mean ± half the range over seeds "
             f"{', '.join(map(str, seeds))}; `configured` = the config's background threshold, `best` = each "
             "method's best threshold of " + ", ".join(f"{t:g}" for t in THRESHOLDS) + " (scored from the float16 "
             "score maps, so it can read a few hundredths below `configured` when the configured threshold is "
             "the best one).", ""]
    for error_type in error_types:
        lines += [f"## {error_type}", "",
                  "| rate | " + " | ".join(f"{m} ({t})" for m in methods for t in ("configured", "best")) + " |",
                  "|---|" + "---|" * (2 * len(methods))]
        for rate in rates:
            values = [_cell(*stats[(error_type, float(rate), m, t)]) for m in methods for t in ("configured", "best")]
            lines.append(f"| {rate:g} | " + " | ".join(values) + " |")
        lines.append("")
    return "\n".join(lines)


def demo_markdown(trainings: Sequence[Training], scores: dict[Training, dict], methods: Sequence[str],
                  rates: dict[str, float]) -> str:
    """The table of the demo's saliency point (mean ± half-range over the seeds)."""
    rows = [{"method": t.method, "threshold": key, "miou": scores[t][key]}
            for t in trainings for key in ("configured", "best")]
    stats = summarize(rows, ("method", "threshold"))
    setting = ", ".join(f"{name.removesuffix('_rate').replace('_', ' ')} {value:g}" for name, value in rates.items())
    return "\n".join([
        f"## demo defaults ({setting}; missing part = missing object)", "",
        "| " + " | ".join(f"{m} ({t})" for m in methods for t in ("configured", "best")) + " |",
        "|" + "---|" * (2 * len(methods)),
        "| " + " | ".join(_cell(*stats[(m, t)]) for m in methods for t in ("configured", "best")) + " |", ""])


def plot_lines(path: Path, panels: Sequence[str], xs: Sequence[float], lines_of: Callable[[str], dict],
               xlabel: str, title_of: Callable[[str], str]) -> None:
    """One panel per entry of ``panels``: a line per series (mean) with the spread shaded; PNG at ``path``.

    Series named ``X (best)`` and ``X (configured)`` (in that order) share a colour, the latter dashed. The
    panel titles are stored in the PNG's ``Description``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), squeeze=False, sharey=True)
    for axis, panel in zip(axes[0], panels, strict=True):
        for index, (label, (means, spreads)) in enumerate(lines_of(panel).items()):
            means, spreads = np.asarray(means), np.asarray(spreads)
            style = {"color": f"C{index // 2}", "linestyle": "--"} if "(configured)" in label else {
                "color": f"C{index // 2 if '(best)' in label else index}"}
            axis.plot(xs, means, marker="o", label=label, **style)
            axis.fill_between(xs, means - spreads, means + spreads, alpha=0.15, color=style["color"])
        axis.set_title(title_of(panel))
        axis.set_xlabel(xlabel)
        axis.grid(alpha=0.3)
    axes[0][0].set_ylabel("mIoU (%)")
    axes[0][-1].legend(fontsize=8)
    figure.tight_layout()
    tmp = path.with_name(f".{path.stem}.tmp.png")
    figure.savefig(tmp, dpi=110, metadata={"Description": "panels: " + "; ".join(title_of(p) for p in panels)})
    plt.close(figure)
    os.replace(tmp, path)


def log_to_wandb(out: Path, name: str, columns: Sequence[str], rows: Sequence[dict], figure: Path) -> None:
    """The table and the figure as one W&B run (offline unless WANDB_MODE says otherwise)."""
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("WANDB_SILENT", "true")
    import wandb

    run = wandb.init(project="epspp", name=name, dir=str(out), job_type="study", reinit=True)
    run.log({f"{name}/table": wandb.Table(columns=list(columns), data=[[r[c] for c in columns] for r in rows]),
             f"{name}/figure": wandb.Image(str(figure))})
    run.finish()


# ------------------------------------------------------------------------------------------ the studies
def prepare(ctx: Context, num_train: int, num_val: int, image_size: int) -> None:
    """The study's dataset (saliency errors at 0: every saliency map comes from a variant folder)."""
    from epspp.data.synthetic import generate_synthetic

    if not (ctx.root / "synthetic.json").is_file():
        print(f"[study] generating the synthetic dataset in {ctx.root}", flush=True)
        generate_synthetic(ctx.root, num_train=num_train, num_val=num_val, image_size=image_size,
                           missing_class_rate=0.0, missing_part_rate=0.0, false_coverage_rate=0.0)


def saliency_variants(ctx: Context, names: dict[str, dict[str, float]]) -> None:
    """The saliency folders ``OUT/saliency/<name>`` (rates by generator argument), written once each."""
    from epspp.data.synthetic import write_saliency_variant

    for name, rates in names.items():
        folder = ctx.out / "saliency" / name
        if not (folder / "saliency.json").is_file():
            print(f"[study] saliency maps {name}", flush=True)
            write_saliency_variant(ctx.root, folder, **rates)


def study_saliency_errors(ctx: Context, error_types: Sequence[str], rates: Sequence[float],
                          methods: Sequence[str], seeds: Sequence[int], parallel: int, wandb_log: bool,
                          demo_point: bool = True) -> list[dict]:
    """The saliency-error grid; writes ``study.csv``, ``study.md``, ``study.png``; returns the rows.

    With ``demo_point`` EPS and EPS++ also train on the demo's saliency (all three error types at the
    generator's default rates), reported in ``study.md`` beside the grid.
    """
    from epspp.data.synthetic import SyntheticConfig

    cells = saliency_grid(error_types, rates, methods, seeds)
    variants = {"clean": {}}
    for error_type in error_types:
        for rate in rates:
            if rate:
                variants[saliency_name(error_type, rate)] = {ERROR_TYPES[error_type]: float(rate)}
    demo = [Training(m, "demo" if m != "cam" else "clean", s) for s in seeds for m in methods] if demo_point else []
    if demo:  # the demo's saliency: every error type at once, at the generator's default rates
        variants["demo"] = {rate: getattr(SyntheticConfig(), rate) for rate in ERROR_TYPES.values()}
    saliency_variants(ctx, variants)
    trainings = list(dict.fromkeys(unique_trainings(cells) + demo))
    jobs = [(f"{t.method} {t.saliency} seed {t.seed}", t.folder(ctx.out) / "scores.json",
             lambda t=t: localization(ctx, t)) for t in trainings]
    done = run_all(jobs, parallel)
    scores = {t: done[name] for t, (name, _, _) in zip(trainings, jobs, strict=True)}
    rows = saliency_rows(cells, scores)
    write_csv(ctx.out / "study.csv", STUDY_COLUMNS, rows)
    text = saliency_markdown(rows, error_types, rates, methods, seeds)
    if demo:
        text += "\n" + demo_markdown(demo, scores, methods, variants["demo"])
    (ctx.out / "study.md").write_text(text + "\n")
    stats = summarize(rows, ("error_type", "rate", "method", "threshold"))

    def lines_of(error_type: str) -> dict:
        return {f"{m} ({t})": ([stats[(error_type, float(r), m, t)][0] for r in rates],
                               [stats[(error_type, float(r), m, t)][1] for r in rates])
                for m in methods for t in ("best", "configured")}

    plot_lines(ctx.out / "study.png", list(error_types), [float(r) for r in rates], lines_of, "error rate",
               lambda e: e.replace("_", " "))
    if wandb_log:
        log_to_wandb(ctx.out, "study/saliency-errors", STUDY_COLUMNS, rows, ctx.out / "study.png")
    return rows


def labeled_split(root: Path, fraction: float) -> str:
    """Write ``labeled_study_<f>.txt``: the first ``fraction`` of a fixed permutation of train (nested subsets)."""
    from epspp.data.io import read_split

    ids = read_split(root, "train")
    order = np.random.default_rng(12345).permutation(len(ids))
    count = max(1, round(fraction * len(ids)))
    name = f"labeled_study_{fraction:g}"
    path = root / "ImageSets" / "Segmentation" / f"{name}.txt"
    if not path.is_file():
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text("".join(f"{ids[i]}\n" for i in sorted(order[:count])))
        os.replace(tmp, path)
    return name


def segmentation_folder(ctx: Context, setting: str, seed: int, fraction: float | None) -> Path:
    """``OUT/runs/segmentation/<setting>[_<fraction>]/seed<S>`` (WSSS uses no fraction)."""
    name = "wsss" if setting == "wsss" else f"{setting}_{fraction:g}"
    return ctx.out / "runs" / "segmentation" / name / f"seed{seed}"


def segmentation(ctx: Context, setting: str, seed: int, fraction: float | None, pseudo: Path | None) -> dict:
    """One stage-3 fit and the val mIoU of its last checkpoint (cached in ``score.json``)."""
    from epspp.run_logs import last_logged

    folder = segmentation_folder(ctx, setting, seed, fraction)
    name = folder.parent.name
    score_path = folder / "score.json"
    if score_path.is_file():
        return json.loads(score_path.read_text())
    config = "segmentation_ssss.yaml" if setting == "ssss" else "segmentation_wsss.yaml"
    args = ["--config", str(ctx.configs / config)]
    if setting == "labeled_only":
        args += ["--data.pseudo_mask_dir", "null", "--data.train_split", labeled_split(ctx.root, fraction)]
    elif setting == "ssss":
        args += ["--data.pseudo_mask_dir", str(pseudo), "--data.labeled_split", labeled_split(ctx.root, fraction)]
    else:
        args += ["--data.pseudo_mask_dir", str(pseudo)]
    run_epspp(f"segmentation {name} seed {seed}", folder,
              ["fit", *args, "--data.root", str(ctx.root), "--trainer.default_root_dir", str(folder),
               "--seed_everything", str(seed), "--ckpt_path", "last", *ctx.overrides], ctx.env)
    # the number of the last checkpoint, whatever the fit's validation schedule
    run_epspp(f"validate {name} seed {seed}", folder / "validate",
              ["validate", *args, "--data.root", str(ctx.root), "--trainer.default_root_dir", str(folder / "validate"),
               "--ckpt_path", str(folder / "checkpoints" / "last.ckpt"), "--trainer.enable_progress_bar", "false"],
              ctx.env)
    miou = last_logged(folder / "validate", "val/mIoU")
    if miou is None:
        raise StudyError(f"{folder / 'validate'} logged no val/mIoU: does the config have a val split?")
    score = {"miou": round(100 * miou, 3)}
    _write_json(score_path, score)
    return score


def study_labeled_fraction(ctx: Context, fractions: Sequence[float], seeds: Sequence[int], parallel: int,
                           wandb_log: bool) -> list[dict]:
    """Labelled-only vs SSSS vs WSSS per fraction; writes ``labeled_fraction.csv|md|png``; returns the rows."""
    saliency_variants(ctx, {"clean": {}})
    eps = [Training("eps++", "clean", seed) for seed in seeds]
    run_all([(f"eps++ clean seed {t.seed}", t.folder(ctx.out) / "scores.json", lambda t=t: localization(ctx, t))
             for t in eps], parallel)
    jobs, keys = [], []
    for seed, training in zip(seeds, eps, strict=True):
        pseudo = training.folder(ctx.out) / "pseudo_masks"
        for setting, fraction in [("wsss", None)] + [(s, f) for f in fractions for s in ("labeled_only", "ssss")]:
            folder = segmentation_folder(ctx, setting, seed, fraction)
            keys.append((setting, seed, fraction))
            jobs.append((f"{folder.parent.name} seed {seed}", folder / "score.json",
                         lambda st=setting, s=seed, f=fraction, p=pseudo: segmentation(ctx, st, s, f, p)))
    done = run_all(jobs, parallel)
    by_key = {key: done[name] for key, (name, _, _) in zip(keys, jobs, strict=True)}
    rows = []
    for seed in seeds:
        for fraction in fractions:
            for setting in SETTINGS:
                score = by_key[(setting, seed, None if setting == "wsss" else fraction)]
                rows.append({"fraction": fraction, "setting": setting, "seed": seed, "miou": score["miou"]})
    write_csv(ctx.out / "labeled_fraction.csv", FRACTION_COLUMNS, rows)
    stats = summarize(rows, ("fraction", "setting"))
    lines = ["# Labelled-fraction study", "",
             f"Segmentation val mIoU (%) of the last checkpoint, mean ± half the range over seeds "
             f"{', '.join(map(str, seeds))}. WSSS uses no labelled image (the same run at every fraction); SSSS "
             "mixes the labelled images with EPS++ pseudo-masks of the rest.", "",
             "| fraction | " + " | ".join(SETTINGS) + " |", "|---|" + "---|" * len(SETTINGS)]
    for fraction in fractions:
        lines.append(f"| {fraction:g} | " + " | ".join(_cell(*stats[(fraction, s)]) for s in SETTINGS) + " |")
    (ctx.out / "labeled_fraction.md").write_text("\n".join(lines) + "\n")
    plot_lines(ctx.out / "labeled_fraction.png", ["all"], [float(f) for f in fractions],
               lambda _: {s: ([stats[(f, s)][0] for f in fractions], [stats[(f, s)][1] for f in fractions])
                          for s in SETTINGS},
               "labelled fraction", lambda _: "segmentation val mIoU")
    if wandb_log:
        log_to_wandb(ctx.out, "study/labeled-fraction", FRACTION_COLUMNS, rows, ctx.out / "labeled_fraction.png")
    return rows


# ------------------------------------------------------------------------------------------------- CLI
def study_main(argv: list[str] | None = None) -> int:
    """``epspp study saliency-errors|labeled-fraction [options] [-- fit overrides]``."""
    parser = argparse.ArgumentParser(prog="epspp study", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="study", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--out", type=Path, default=Path("runs/study"), help="study folder (default runs/study)")
    common.add_argument("--root", type=Path, default=None, help="synthetic dataset (default OUT/data, generated)")
    common.add_argument("--configs", type=Path, default=Path("configs/demo/scratch"),
                        help="stage configs (configs/demo/scratch: the demo's from-scratch regime)")
    common.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    common.add_argument("--jobs", type=int, default=2, help="runs in parallel, one CPU thread each (default 2)")
    common.add_argument("--num-train", type=int, default=1000)
    common.add_argument("--num-val", type=int, default=200)
    common.add_argument("--image-size", type=int, default=64)
    common.add_argument("--no-wandb", action="store_true", help="do not log the tables and figures to W&B")
    common.add_argument("overrides", nargs="*", help="extra `epspp fit` overrides (after --), e.g. "
                                                     "--trainer.max_steps=300")
    errors = sub.add_parser("saliency-errors", parents=[common], help="CAM / EPS / EPS++ against saliency errors")
    errors.add_argument("--error-types", nargs="+", default=list(ERROR_TYPES), choices=list(ERROR_TYPES))
    errors.add_argument("--rates", type=float, nargs="+", default=[0.0, 0.25, 0.5, 0.75])
    errors.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    errors.add_argument("--no-demo-point", action="store_true",
                        help="skip the extra point at the demo's saliency (every error type at its default rate)")
    fraction = sub.add_parser("labeled-fraction", parents=[common], help="labelled-only vs SSSS vs WSSS")
    fraction.add_argument("--fractions", type=float, nargs="+", default=[0.02, 0.05, 0.1, 0.2])
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs must be >= 1, got {args.jobs}")
    out = args.out
    root = args.root or out / "data"
    env = dict(os.environ, OMP_NUM_THREADS="1", WANDB_MODE=os.environ.get("WANDB_MODE", "offline"),
               WANDB_SILENT="true", PYTHONWARNINGS="ignore")
    # the fits skip validation: the study scores the pseudo-masks, or the last checkpoint with `epspp validate`
    overrides = ["--trainer.limit_val_batches", "0", *args.overrides, "--trainer.enable_progress_bar", "false",
                 "--data.num_workers", "0"]
    ctx = Context(out, root, args.configs, overrides, env)
    import torch

    torch.set_num_threads(1)  # the scoring here runs beside the subprocesses, which take the cores
    start = time.perf_counter()
    try:
        if not args.configs.is_dir():
            raise StudyError(f"config folder {args.configs} does not exist (run from the repository root, or "
                             "pass --configs)")
        out.mkdir(parents=True, exist_ok=True)
        prepare(ctx, args.num_train, args.num_val, args.image_size)
        if args.study == "saliency-errors":
            if 0.0 not in args.rates:
                raise StudyError("--rates must include 0 (the shared clean-saliency point)")
            study_saliency_errors(ctx, args.error_types, args.rates, args.methods, args.seeds, args.jobs,
                                  not args.no_wandb, not args.no_demo_point)
            written = ["study.csv", "study.md", "study.png"]
        else:
            study_labeled_fraction(ctx, args.fractions, args.seeds, args.jobs, not args.no_wandb)
            written = ["labeled_fraction.csv", "labeled_fraction.md", "labeled_fraction.png"]
    except (EPSError, FileExistsError, FileNotFoundError) as error:
        print(f"epspp study: error: {error}", file=sys.stderr)
        return 2
    print(f"[study] wrote {', '.join(str(out / w) for w in written)} in {(time.perf_counter() - start) / 60:.1f} min")
    return 0
