"""``epspp study``: controlled experiments on the synthetic dataset that no real dataset allows.

``saliency-errors``: the same images and masks with only the saliency maps changed, one error type at a
time (missing class, missing object part, false coverage) at each rate; stage 1 for CAM (once per seed: it
ignores saliency), EPS and EPS++ (rate 0 shared by the three error types), pseudo-masks, and their mIoU at
the configured background threshold and at each method's best threshold, with IRD's telemetry.

``labeled-fraction``: segmentation val mIoU of labelled-only, SSSS (labelled + EPS++ pseudo-masks) and WSSS
training for each fraction of labelled images.

Both run in each regime of the demo: ``pretrained`` (the papers': stage 0 pretrains the backbone once per
seed on the pretraining corpus, every stage-1 and stage-3 fit of that seed starts from it; ``configs/demo``)
and ``scratch`` (random weights; ``configs/demo/scratch``). Every fit and predict runs as ``epspp
fit|predict`` in a subprocess with the demo's configs (its output goes to a log file in the run's folder);
finished runs are skipped, a killed study continues where it stopped.
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
from epspp.pipeline import METHODS, REGIMES, demo_configs, pretrain_command

#: error type of the study -> the synthetic generator's rate argument
ERROR_TYPES = {"missing_class": "missing_class_rate", "missing_object": "missing_part_rate",
               "false_coverage": "false_coverage_rate"}
SETTINGS = ("labeled_only", "ssss", "wsss")
THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
STUDY_COLUMNS = ("regime", "error_type", "rate", "method", "seed", "threshold", "miou", "inconsistent_salient")
FRACTION_COLUMNS = ("regime", "num_classes", "fraction", "setting", "seed", "miou")
#: method of the study -> (its stage-1 config, overrides); ``eps++/no-pamr`` is an ablation, not the paper:
#: IRD with M_r = M (the softmax maps themselves, no PAMR)
STUDY_METHODS = {**{name: (config, []) for name, config in METHODS.items()},
                 "eps++/no-pamr": (METHODS["eps++"], ["--model.init_args.ird_refine", "none"]),
                 "eps++/softmax": (METHODS["eps++"], ["--model.init_args.ird_threshold_maps", "softmax"])}
DEFAULT_METHODS = tuple(METHODS)
#: steps over which ``inconsistent_salient`` is averaged (the end of training, as the collapse monitor's window)
TELEMETRY_STEPS = 50
#: the default grids (sized so that ``make study`` runs both studies in both regimes within 90 min on 2 cores,
#: BENCHMARKS.md) and the full grids of ``--full-grid``
DEFAULT_GRID = {"rates": [0.0, 0.5], "seeds": [0, 1], "fractions": [0.02, 0.1]}
FULL_GRID = {"rates": [0.0, 0.25, 0.5, 0.75], "seeds": [0, 1, 2], "fractions": [0.01, 0.02, 0.05, 0.1, 0.2]}
#: line style of each regime in the figures
REGIME_STYLE = {"pretrained": "-", "scratch": "--"}


class StudyError(EPSError):
    """A run of the study failed; the message names its log."""


# ------------------------------------------------------------------------------------------------ the grid
@dataclass(frozen=True)
class Training:
    """One stage-1 training and its pseudo-masks: ``saliency`` names the saliency folder it learns from."""

    regime: str
    method: str
    saliency: str
    seed: int

    def folder(self, runs: Path) -> Path:
        """``RUNS/<regime>/<method>/<saliency>/seed<S>`` (``/`` of an ablation's name as ``_``)."""
        return runs / self.regime / self.method.replace("/", "_") / self.saliency / f"seed{self.seed}"

    def __str__(self) -> str:
        return f"{self.regime} {self.method} {self.saliency} seed {self.seed}"


@dataclass(frozen=True)
class Cell:
    """One point of the saliency-error grid: its rows of ``study.csv`` come from ``training``."""

    regime: str
    error_type: str
    rate: float
    method: str
    seed: int

    @property
    def training(self) -> Training:
        if self.method == "cam":  # CAM ignores saliency: one training per seed serves every point
            return Training(self.regime, "cam", "clean", self.seed)
        return Training(self.regime, self.method, saliency_name(self.error_type, self.rate), self.seed)


def saliency_name(error_type: str, rate: float) -> str:
    """Folder name of the saliency maps of one error type at one rate (``clean`` at rate 0, shared)."""
    return "clean" if rate == 0 else f"{error_type}_{rate:g}"


def saliency_grid(regimes: Sequence[str], error_types: Sequence[str], rates: Sequence[float],
                  methods: Sequence[str], seeds: Sequence[int]) -> list[Cell]:
    """Every (regime, error type, rate, method, seed) point."""
    return [Cell(g, e, float(r), m, s) for g in regimes for s in seeds for m in methods for e in error_types
            for r in rates]


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
    configs: Path  # the papers' regime; its ``scratch/`` subfolder is the from-scratch regime
    overrides: list[str]
    env: dict[str, str]

    @property
    def runs(self) -> Path:
        """The runs on this dataset (the two studies may use datasets of different class counts)."""
        return self.out / "runs" / self.root.name

    @property
    def saliency(self) -> Path:
        """The saliency variants of this dataset."""
        return self.out / "saliency" / self.root.name

    def stage_configs(self, regime: str) -> Path:
        return self.configs if regime == "pretrained" else self.configs / "scratch"

    def init(self, regime: str, seed: int) -> list[str]:
        """The overrides that start a fit of ``regime`` and ``seed``: the seed's stage-0 backbone, if pretrained."""
        return ["--model.init_args.pretrained_path", str(pretrain_folder(self.out, seed) / "backbone.pth")] \
            if regime == "pretrained" else []


def pretrain_folder(out: Path, seed: int) -> Path:
    return out / "pretrain" / f"seed{seed}"


def pretrain(ctx: Context, corpus: Path, seed: int) -> dict:
    """Stage 0 of one seed on the corpus ``corpus``: ``OUT/pretrain/seed<S>/backbone.pth``; its marker."""
    folder = pretrain_folder(ctx.out, seed)
    run_epspp(f"stage 0 seed {seed}", folder,
              [*pretrain_command(ctx.configs, corpus, folder), "--seed_everything", str(seed), "--ckpt_path", "last",
               *ctx.overrides], ctx.env)
    return json.loads((folder / "stage.json").read_text())


def pretrain_all(ctx: Context, regimes: Sequence[str], seeds: Sequence[int], parallel: int) -> None:
    """Stage 0 for every seed, when the pretrained regime is studied (the corpus generated once, first)."""
    if "pretrained" not in regimes:
        return
    folder = ctx.out / "pretrain_corpus"
    corpus = folder / "data"
    run_epspp("pretraining corpus", folder, ["prepare", "pretrain-corpus", "--root", str(corpus)], ctx.env)
    run_all([(f"stage 0 seed {seed}", pretrain_folder(ctx.out, seed) / "stage.json",
              lambda seed=seed: pretrain(ctx, corpus, seed)) for seed in seeds], parallel)


def localization(ctx: Context, training: Training) -> dict:
    """Stage 1 + 2 of one training; returns (and caches in ``scores.json``) the pseudo-mask scores and the
    IRD telemetry of the end of training (``None`` for a method without IRD)."""
    from epspp.evaluate import sweep_bg_threshold, sweep_to_json
    from epspp.run_logs import mean_over_last_steps, recorded_warnings

    folder = training.folder(ctx.runs)
    scores_path = folder / "scores.json"
    if scores_path.is_file():
        return json.loads(scores_path.read_text())
    configs = ctx.stage_configs(training.regime)
    config, method_overrides = STUDY_METHODS[training.method]
    saliency = ["--data.saliency_dir", str(ctx.saliency / training.saliency)]
    data = ["--data.root", str(ctx.root), *saliency]
    run_epspp(f"fit {training}", folder / "localization",
              ["fit", "--config", str(configs / config), *data, *method_overrides,
               "--trainer.default_root_dir", str(folder / "localization"), "--seed_everything", str(training.seed),
               "--ckpt_path", "last", *ctx.init(training.regime, training.seed), *ctx.overrides], ctx.env)
    masks = folder / "pseudo_masks"
    run_epspp(f"predict {training}", masks,
              ["predict", "--config", str(configs / "pseudo_masks.yaml"), *data,
               "--ckpt_path", str(folder / "localization" / "checkpoints" / "last.ckpt"),
               "--pseudo_masks.output_dir", str(masks), "--pseudo_masks.save_scores", "true",
               "--trainer.enable_progress_bar", "false"], ctx.env)
    manifest = json.loads((masks / "manifest.json").read_text())
    sweep = sweep_to_json(list(THRESHOLDS), sweep_bg_threshold(masks, ctx.root, manifest["split"],
                                                               list(THRESHOLDS))["metrics"])
    logs = folder / "localization"
    scores = {"configured": manifest["miou"], "bg_threshold": manifest["config"]["model"]["bg_threshold"],
              "best": sweep["best_bg_threshold_miou"], "best_threshold": sweep["best_bg_threshold"],
              "sweep": sweep["bg_threshold_sweep"], "per_class_iou": manifest.get("per_class_iou"),
              "inconsistent_salient": mean_over_last_steps(logs, "inconsistent_salient", TELEMETRY_STEPS),
              "fg_salient": mean_over_last_steps(logs, "fg_salient", TELEMETRY_STEPS),
              "warnings": recorded_warnings(logs)}
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
    """The rows of ``study.csv``: per cell, mIoU at the configured and at the method's best threshold, and the
    share of salient pixels in IRD's inconsistent region over the last training steps (empty without IRD)."""
    rows = []
    for cell in cells:
        result = scores[cell.training]
        share = result.get("inconsistent_salient")
        for threshold in ("configured", "best"):
            rows.append({"regime": cell.regime, "error_type": cell.error_type, "rate": cell.rate,
                         "method": cell.method, "seed": cell.seed, "threshold": threshold,
                         "miou": round(float(result[threshold]), 3),
                         "inconsistent_salient": "" if share is None else round(float(share), 4)})
    return rows


def summarize(rows: Sequence[dict], keys: Sequence[str], value: str = "miou") -> dict[tuple, tuple[float, float, int]]:
    """(mean, spread = half the max-min range, count) of ``value`` over the seeds, per combination of ``keys``
    (rows whose ``value`` is empty left out)."""
    groups: dict[tuple, list[float]] = {}
    for row in rows:
        if row[value] != "":
            groups.setdefault(tuple(row[k] for k in keys), []).append(float(row[value]))
    return {key: (statistics.mean(v), (max(v) - min(v)) / 2, len(v)) for key, v in groups.items()}


def write_csv(path: Path, columns: Sequence[str], rows: Sequence[dict]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns))
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def _cell(mean: float, spread: float, count: int, digits: int = 1) -> str:
    return f"{mean:.{digits}f} ± {spread:.{digits}f}" if count > 1 else f"{mean:.{digits}f}"


REGIME_TITLES = {"pretrained": "the papers' regime, stages 1 and 3 fine-tune the seed's stage-0 backbone "
                               "(configs/demo)",
                 "scratch": "stages 1 and 3 from random weights (configs/demo/scratch)"}


def saliency_markdown(rows: Sequence[dict], regimes: Sequence[str], error_types: Sequence[str],
                      rates: Sequence[float], methods: Sequence[str], seeds: Sequence[int],
                      warned: dict[tuple, int]) -> str:
    """Tables of pseudo-mask mIoU (mean ± half-range over the seeds) per regime, error type, rate and method,
    with IRD's health per point: the share of salient pixels in N at the end of training and how many seeds'
    collapse warning fired (``warned``: (regime, error type, rate, method) -> count)."""
    stats = summarize(rows, ("regime", "error_type", "rate", "method", "threshold"))
    health = summarize([r for r in rows if r["threshold"] == "best"], ("regime", "error_type", "rate", "method"),
                       "inconsistent_salient")
    ird = [m for m in methods if any((g, e, float(r), m) in health for g in regimes for e in error_types
                                     for r in rates)]
    lines = ["# Saliency-error study", "",
             f"Pseudo-mask mIoU (%) on the synthetic train split, mean ± half the range over seeds "
             f"{', '.join(map(str, seeds))}; `configured` = the config's background threshold, `best` = each "
             "method's best threshold of " + ", ".join(f"{t:g}" for t in THRESHOLDS) + " (scored from the float16 "
             "score maps, so it can read a few hundredths below `configured` when the configured threshold is "
             "the best one). IRD health (`N∩S`): the share of salient pixels in IRD's inconsistent region N, "
             f"mean over the last {TELEMETRY_STEPS} training steps (1 = every salient pixel dropped), and in "
             "brackets the seeds whose collapse warning fired. `eps++/no-pamr` is an ablation, not the paper "
             "(M_r = M, no PAMR).", ""]
    for regime in regimes:
        lines += [f"## {regime}: {REGIME_TITLES[regime]}", ""]
        for error_type in error_types:
            lines += [f"### {regime}: {error_type}", "",
                      "| rate | " + " | ".join(f"{m} ({t})" for m in methods for t in ("configured", "best"))
                      + "".join(f" | {m} N∩S" for m in ird) + " |",
                      "|---|" + "---|" * (2 * len(methods) + len(ird))]
            for rate in rates:
                values = [_cell(*stats[(regime, error_type, float(rate), m, t)]) for m in methods
                          for t in ("configured", "best")]
                values += [_cell(*health[(regime, error_type, float(rate), m)], digits=2)
                           + f" [{warned.get((regime, error_type, float(rate), m), 0)}/{len(seeds)}]" for m in ird]
                lines.append(f"| {rate:g} | " + " | ".join(values) + " |")
            lines.append("")
    return "\n".join(lines)


def demo_markdown(trainings: Sequence[Training], scores: dict[Training, dict], regimes: Sequence[str],
                  methods: Sequence[str], rates: dict[str, float]) -> str:
    """The table of the demo's saliency point per regime (mean ± half-range over the seeds)."""
    rows = [{"regime": t.regime, "method": t.method, "threshold": key, "miou": scores[t][key]}
            for t in trainings for key in ("configured", "best")]
    stats = summarize(rows, ("regime", "method", "threshold"))
    setting = ", ".join(f"{name.removesuffix('_rate').replace('_', ' ')} {value:g}" for name, value in rates.items())
    lines = [f"## demo defaults ({setting}; missing part = missing object)", "",
             "| regime | " + " | ".join(f"{m} ({t})" for m in methods for t in ("configured", "best")) + " |",
             "|---|" + "---|" * (2 * len(methods))]
    for regime in regimes:
        lines.append(f"| {regime} | " + " | ".join(_cell(*stats[(regime, m, t)]) for m in methods
                                                   for t in ("configured", "best")) + " |")
    return "\n".join(lines + [""])


def plot_lines(path: Path, panels: Sequence[str], xs: Sequence[float], lines_of: Callable[[str], dict],
               xlabel: str, title_of: Callable[[str], str]) -> None:
    """One panel per entry of ``panels``: a line per series (mean) with the spread shaded; PNG at ``path``.

    ``lines_of(panel)`` maps ``(name, regime)`` to ``(means, spreads)``: a colour per name, a line style per
    regime (``REGIME_STYLE``). The panel titles are stored in the PNG's ``Description``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), squeeze=False, sharey=True)
    colours: dict[str, str] = {}
    for axis, panel in zip(axes[0], panels, strict=True):
        for (name, regime), (means, spreads) in lines_of(panel).items():
            means, spreads = np.asarray(means), np.asarray(spreads)
            colour = colours.setdefault(name, f"C{len(colours)}")
            axis.plot(xs, means, marker="o", color=colour, linestyle=REGIME_STYLE[regime], label=f"{name} ({regime})")
            axis.fill_between(xs, means - spreads, means + spreads, alpha=0.12, color=colour)
        axis.set_title(title_of(panel))
        axis.set_xlabel(xlabel)
        axis.grid(alpha=0.3)
    axes[0][0].set_ylabel("mIoU (%)")
    axes[0][-1].legend(fontsize=7, handlelength=4)  # long enough to tell dashed (scratch) from solid
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
    data = [[None if r[c] == "" else r[c] for c in columns] for r in rows]  # a W&B column holds one type
    run.log({f"{name}/table": wandb.Table(columns=list(columns), data=data),
             f"{name}/figure": wandb.Image(str(figure))})
    run.finish()


# ------------------------------------------------------------------------------------------ the studies
def prepare(ctx: Context, num_train: int, num_val: int, image_size: int, num_classes: int) -> None:
    """The study's dataset (saliency errors at 0: every saliency map comes from a variant folder); an existing
    one must have ``num_classes`` classes."""
    from epspp.data.synthetic import generate_synthetic

    meta = ctx.root / "synthetic.json"
    if not meta.is_file():
        print(f"[study] generating the synthetic dataset ({num_classes} classes) in {ctx.root}", flush=True)
        generate_synthetic(ctx.root, num_train=num_train, num_val=num_val, image_size=image_size,
                           missing_class_rate=0.0, missing_part_rate=0.0, false_coverage_rate=0.0,
                           num_classes=num_classes)
        return
    found = int(json.loads(meta.read_text())["params"].get("num_classes", 5))
    if found != num_classes:
        raise StudyError(f"{ctx.root} holds a synthetic dataset of {found} classes, not --num-classes {num_classes}: "
                         f"pass --num-classes {found}, or another --root")


def saliency_variants(ctx: Context, names: dict[str, dict[str, float]]) -> None:
    """The saliency folders ``OUT/saliency/<dataset>/<name>`` (rates by generator argument), written once each."""
    from epspp.data.synthetic import write_saliency_variant

    for name, rates in names.items():
        folder = ctx.saliency / name
        if not (folder / "saliency.json").is_file():
            print(f"[study] saliency maps {name}", flush=True)
            folder.parent.mkdir(parents=True, exist_ok=True)
            write_saliency_variant(ctx.root, folder, **rates)


def train_all(ctx: Context, trainings: Sequence[Training], parallel: int) -> dict[Training, dict]:
    """Stage 1 + 2 of every training, ``parallel`` at a time; their scores."""
    jobs = [(str(t), t.folder(ctx.runs) / "scores.json", lambda t=t: localization(ctx, t)) for t in trainings]
    done = run_all(jobs, parallel)
    return {t: done[str(t)] for t in trainings}


def study_saliency_errors(ctx: Context, regimes: Sequence[str], error_types: Sequence[str], rates: Sequence[float],
                          methods: Sequence[str], seeds: Sequence[int], parallel: int, wandb_log: bool,
                          demo_point: bool = False) -> list[dict]:
    """The saliency-error grid in each regime; writes ``study.csv``, ``study.md``, ``study.png``; returns the rows.

    With ``demo_point`` the methods also train on the demo's saliency (all three error types at the generator's
    default rates), reported in ``study.md`` beside the grid.
    """
    from epspp.data.synthetic import SyntheticConfig

    cells = saliency_grid(regimes, error_types, rates, methods, seeds)
    variants: dict[str, dict[str, float]] = {"clean": {}}
    for error_type in error_types:
        for rate in rates:
            if rate:
                variants[saliency_name(error_type, rate)] = {ERROR_TYPES[error_type]: float(rate)}
    demo = [Training(g, m, "demo" if m != "cam" else "clean", s) for g in regimes for s in seeds
            for m in methods] if demo_point else []
    if demo:  # the demo's saliency: every error type at once, at the generator's default rates
        variants["demo"] = {rate: getattr(SyntheticConfig(), rate) for rate in ERROR_TYPES.values()}
    saliency_variants(ctx, variants)
    pretrain_all(ctx, regimes, seeds, parallel)
    scores = train_all(ctx, list(dict.fromkeys(unique_trainings(cells) + demo)), parallel)
    rows = saliency_rows(cells, scores)
    write_csv(ctx.out / "study.csv", STUDY_COLUMNS, rows)
    warned: dict[tuple, int] = {}
    for cell in cells:
        if scores[cell.training].get("warnings"):
            key = (cell.regime, cell.error_type, cell.rate, cell.method)
            warned[key] = warned.get(key, 0) + 1
    text = saliency_markdown(rows, regimes, error_types, rates, methods, seeds, warned)
    if demo:
        text += "\n" + demo_markdown(demo, scores, regimes, methods, variants["demo"])
    (ctx.out / "study.md").write_text(text + "\n")
    stats = summarize(rows, ("regime", "error_type", "rate", "method", "threshold"))

    def lines_of(error_type: str) -> dict:
        return {(m, g): ([stats[(g, error_type, float(r), m, "best")][0] for r in rates],
                         [stats[(g, error_type, float(r), m, "best")][1] for r in rates])
                for g in regimes for m in methods}

    plot_lines(ctx.out / "study.png", list(error_types), [float(r) for r in rates], lines_of, "error rate",
               lambda e: e.replace("_", " ") + " (best threshold)")
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


def segmentation_folder(ctx: Context, regime: str, setting: str, seed: int, fraction: float | None) -> Path:
    """``RUNS/<regime>/segmentation/<setting>[_<fraction>]/seed<S>`` (WSSS uses no fraction)."""
    name = "wsss" if setting == "wsss" else f"{setting}_{fraction:g}"
    return ctx.runs / regime / "segmentation" / name / f"seed{seed}"


def segmentation(ctx: Context, regime: str, setting: str, seed: int, fraction: float | None,
                 pseudo: Path | None) -> dict:
    """One stage-3 fit and the val mIoU of its last checkpoint (cached in ``score.json``)."""
    from epspp.run_logs import last_logged

    folder = segmentation_folder(ctx, regime, setting, seed, fraction)
    name = f"{regime} {folder.parent.name} seed {seed}"
    score_path = folder / "score.json"
    if score_path.is_file():
        return json.loads(score_path.read_text())
    config = "segmentation_ssss.yaml" if setting == "ssss" else "segmentation_wsss.yaml"
    args = ["--config", str(ctx.stage_configs(regime) / config)]
    if setting == "labeled_only":
        args += ["--data.pseudo_mask_dir", "null", "--data.train_split", labeled_split(ctx.root, fraction)]
    elif setting == "ssss":
        args += ["--data.pseudo_mask_dir", str(pseudo), "--data.labeled_split", labeled_split(ctx.root, fraction)]
    else:
        args += ["--data.pseudo_mask_dir", str(pseudo)]
    run_epspp(f"segmentation {name}", folder,
              ["fit", *args, "--data.root", str(ctx.root), "--trainer.default_root_dir", str(folder),
               "--seed_everything", str(seed), "--ckpt_path", "last", *ctx.init(regime, seed), *ctx.overrides],
              ctx.env)
    # the number of the last checkpoint, whatever the fit's validation schedule
    run_epspp(f"validate {name}", folder / "validate",
              ["validate", *args, "--data.root", str(ctx.root), "--trainer.default_root_dir", str(folder / "validate"),
               "--ckpt_path", str(folder / "checkpoints" / "last.ckpt"), "--trainer.enable_progress_bar", "false"],
              ctx.env)
    miou = last_logged(folder / "validate", "val/mIoU")
    if miou is None:
        raise StudyError(f"{folder / 'validate'} logged no val/mIoU: does the config have a val split?")
    score = {"miou": round(100 * miou, 3)}
    _write_json(score_path, score)
    return score


def study_labeled_fraction(ctx: Context, regimes: Sequence[str], fractions: Sequence[float], seeds: Sequence[int],
                           parallel: int, wandb_log: bool, num_classes: int) -> list[dict]:
    """Labelled-only vs SSSS vs WSSS per fraction in each regime; writes ``labeled_fraction.csv|md|png``."""
    saliency_variants(ctx, {"clean": {}})
    pretrain_all(ctx, regimes, seeds, parallel)
    eps = [Training(regime, "eps++", "clean", seed) for regime in regimes for seed in seeds]
    train_all(ctx, eps, parallel)
    jobs, keys = [], []
    for training in eps:
        regime, seed = training.regime, training.seed
        pseudo = training.folder(ctx.runs) / "pseudo_masks"
        for setting, fraction in [("wsss", None)] + [(s, f) for f in fractions for s in ("labeled_only", "ssss")]:
            folder = segmentation_folder(ctx, regime, setting, seed, fraction)
            keys.append((regime, setting, seed, fraction))
            jobs.append((f"{regime} {folder.parent.name} seed {seed}", folder / "score.json",
                         lambda g=regime, st=setting, s=seed, f=fraction, p=pseudo: segmentation(ctx, g, st, s, f, p)))
    done = run_all(jobs, parallel)
    by_key = {key: done[name] for key, (name, _, _) in zip(keys, jobs, strict=True)}
    rows = [{"regime": regime, "num_classes": num_classes, "fraction": fraction, "setting": setting, "seed": seed,
             "miou": by_key[(regime, setting, seed, None if setting == "wsss" else fraction)]["miou"]}
            for regime in regimes for seed in seeds for fraction in fractions for setting in SETTINGS]
    write_csv(ctx.out / "labeled_fraction.csv", FRACTION_COLUMNS, rows)
    stats = summarize(rows, ("regime", "fraction", "setting"))
    from epspp.data.io import read_split

    count = len(read_split(ctx.root, "train"))
    lines = ["# Labelled-fraction study", "",
             f"Segmentation val mIoU (%) of the last checkpoint on the {num_classes}-class synthetic dataset "
             f"`{ctx.root}`, mean ± half the range over seeds {', '.join(map(str, seeds))}. WSSS uses no labelled "
             "image (the same run at every fraction); SSSS mixes the labelled images with the EPS++ pseudo-masks "
             "of the rest; labelled-only trains on the labelled images alone, for as many steps as SSSS."
             f" Labelled images at a fraction f: round(f x {count}) of the {count} training images.", ""]
    for regime in regimes:
        lines += [f"## {regime}: {REGIME_TITLES[regime]}", "",
                  "| fraction | " + " | ".join(SETTINGS) + " |", "|---|" + "---|" * len(SETTINGS)]
        lines += [f"| {fraction:g} | " + " | ".join(_cell(*stats[(regime, fraction, s)]) for s in SETTINGS) + " |"
                  for fraction in fractions]
        lines.append("")
    (ctx.out / "labeled_fraction.md").write_text("\n".join(lines))
    plot_lines(ctx.out / "labeled_fraction.png", ["all"], [float(f) for f in fractions],
               lambda _: {(s, g): ([stats[(g, f, s)][0] for f in fractions], [stats[(g, f, s)][1] for f in fractions])
                          for g in regimes for s in SETTINGS},
               "labelled fraction", lambda _: f"segmentation val mIoU, {num_classes} classes")
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
    common.add_argument("--root", type=Path, default=None,
                        help="synthetic dataset (default OUT/data_<K>classes, generated)")
    common.add_argument("--regimes", nargs="+", choices=REGIMES, default=["scratch", "pretrained"],
                        help="scratch: stages 1 and 3 from random weights; pretrained (the papers'): from the "
                             "seed's stage-0 backbone (default: both)")
    common.add_argument("--configs", type=Path, default=None,
                        help="the demo's stage configs (default configs/demo of the repository; the scratch regime "
                             "reads its scratch/ subfolder)")
    common.add_argument("--seeds", type=int, nargs="+", default=None,
                        help=f"default {' '.join(map(str, DEFAULT_GRID['seeds']))} (--full-grid: "
                             f"{' '.join(map(str, FULL_GRID['seeds']))}); each seed has its own stage 0")
    common.add_argument("--full-grid", action="store_true",
                        help="the full grid (more rates, fractions and seeds; several hours on 2 cores) instead of "
                             "the default one that fits in make study's 90 minutes")
    common.add_argument("--jobs", type=int, default=2, help="runs in parallel, one CPU thread each (default 2)")
    common.add_argument("--num-train", type=int, default=1000)
    common.add_argument("--num-val", type=int, default=200)
    common.add_argument("--image-size", type=int, default=64)
    common.add_argument("--no-wandb", action="store_true", help="do not log the tables and figures to W&B")
    common.add_argument("overrides", nargs="*", help="extra `epspp fit` overrides of every fit, stage 0 included "
                                                     "(after --), e.g. --trainer.max_steps=300")
    errors = sub.add_parser("saliency-errors", parents=[common], help="CAM / EPS / EPS++ against saliency errors")
    errors.add_argument("--num-classes", type=int, default=5, help="object classes of the dataset (default 5)")
    errors.add_argument("--error-types", nargs="+", default=list(ERROR_TYPES), choices=list(ERROR_TYPES))
    errors.add_argument("--rates", type=float, nargs="+", default=None,
                        help=f"default {' '.join(f'{r:g}' for r in DEFAULT_GRID['rates'])} (--full-grid: "
                             f"{' '.join(f'{r:g}' for r in FULL_GRID['rates'])})")
    errors.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS), choices=list(STUDY_METHODS),
                        help="default cam eps eps++; eps++/no-pamr is an ablation, not the paper: IRD with M_r = M "
                             "(no PAMR)")
    errors.add_argument("--demo-point", action="store_true",
                        help="also train on the demo's saliency (every error type at its default rate; on with "
                             "--full-grid)")
    fraction = sub.add_parser("labeled-fraction", parents=[common], help="labelled-only vs SSSS vs WSSS")
    fraction.add_argument("--num-classes", type=int, default=20,
                          help="object classes of the dataset (default 20, VOC's count: with 5 classes 2%% of the "
                               "images already saturate labelled-only)")
    fraction.add_argument("--fractions", type=float, nargs="+", default=None,
                          help=f"default {' '.join(f'{f:g}' for f in DEFAULT_GRID['fractions'])} (--full-grid: "
                               f"{' '.join(f'{f:g}' for f in FULL_GRID['fractions'])})")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs must be >= 1, got {args.jobs}")
    grid = FULL_GRID if args.full_grid else DEFAULT_GRID
    seeds = args.seeds if args.seeds is not None else grid["seeds"]
    regimes = list(dict.fromkeys(args.regimes))
    out = args.out
    root = args.root or out / f"data_{args.num_classes}classes"
    env = dict(os.environ, OMP_NUM_THREADS="1", WANDB_MODE=os.environ.get("WANDB_MODE", "offline"),
               WANDB_SILENT="true", PYTHONWARNINGS="ignore")
    # the fits skip validation: the study scores the pseudo-masks, or the last checkpoint with `epspp validate`
    overrides = ["--trainer.limit_val_batches", "0", *args.overrides, "--trainer.enable_progress_bar", "false",
                 "--data.num_workers", "0"]
    import torch

    torch.set_num_threads(1)  # the scoring here runs beside the subprocesses, which take the cores
    start = time.perf_counter()
    try:
        configs = args.configs or demo_configs(None)
        ctx = Context(out, root, configs, overrides, env)
        if not configs.is_dir():
            raise StudyError(f"config folder {configs} does not exist (run from the repository root, or pass "
                             "--configs)")
        for regime in regimes:
            needed = ctx.stage_configs(regime) / "pseudo_masks.yaml"
            if not needed.is_file():
                raise StudyError(f"config folder {configs} has no {needed.relative_to(configs)} (the {regime} "
                                 "regime's configs): pass the demo's configs/demo with --configs")
        if "pretrained" in regimes and not (configs / "pretrain.yaml").is_file():
            raise StudyError(f"config folder {configs} has no pretrain.yaml (stage 0 of the pretrained regime): "
                             "pass configs/demo with --configs, or --regimes scratch")
        out.mkdir(parents=True, exist_ok=True)
        prepare(ctx, args.num_train, args.num_val, args.image_size, args.num_classes)
        if args.study == "saliency-errors":
            rates = args.rates if args.rates is not None else grid["rates"]
            if 0.0 not in rates:
                raise StudyError("--rates must include 0 (the shared clean-saliency point)")
            study_saliency_errors(ctx, regimes, args.error_types, rates, args.methods, seeds, args.jobs,
                                  not args.no_wandb, args.demo_point or args.full_grid)
            written = ["study.csv", "study.md", "study.png"]
        else:
            fractions = args.fractions if args.fractions is not None else grid["fractions"]
            study_labeled_fraction(ctx, regimes, fractions, seeds, args.jobs, not args.no_wandb, args.num_classes)
            written = ["labeled_fraction.csv", "labeled_fraction.md", "labeled_fraction.png"]
    except (EPSError, FileExistsError, FileNotFoundError) as error:
        print(f"epspp study: error: {error}", file=sys.stderr)
        return 2
    print(f"[study] wrote {', '.join(str(out / w) for w in written)} in {(time.perf_counter() - start) / 60:.1f} min")
    return 0
