"""Running a study: every fit and predict as an ``epspp`` subprocess, resumable, ``--jobs`` at a time, and what
each run's folder says about it (``scores.json``, ``score.json``)."""

from __future__ import annotations

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
from epspp.pipeline import pretrain_command
from epspp.study.grid import STUDY_METHODS, THRESHOLDS, Training

#: steps over which the telemetry is averaged at the end of a fit (the collapse monitor's window)
TELEMETRY_STEPS = 50


class StudyError(EPSError):
    """A run of the study failed, or the study cannot start; the message names the file or option."""


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
    write_json(marker, {"command": ["epspp", *command], "wall_time_s": round(time.perf_counter() - start, 1)})


def write_json(path: Path, payload: dict) -> None:
    """``payload`` as JSON at ``path`` (temporary name, then rename: a killed study leaves no half file)."""
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
        """The runs on this dataset (the studies may use datasets of different class counts)."""
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
    """Stage 1 and the pseudo-masks of train and val of one training; returns (and caches in ``scores.json``)
    its scores: train mIoU at the configured threshold and at the threshold chosen on val, both sweeps,
    per-class IoU, and IRD's telemetry (``ird``: None for a method without IRD)."""
    from epspp.data.classes import read_classes
    from epspp.evaluate import sweep_bg_threshold, threshold_choice
    from epspp.run_logs import ird_summary

    folder = training.folder(ctx.runs)
    scores_path = folder / "scores.json"
    if scores_path.is_file():
        return json.loads(scores_path.read_text())
    configs = ctx.stage_configs(training.regime)
    config, method_overrides = STUDY_METHODS[training.method]
    data = ["--data.root", str(ctx.root), "--data.saliency_dir", str(ctx.saliency / training.saliency)]
    logs = folder / "localization"
    run_epspp(f"fit {training}", logs,
              ["fit", "--config", str(configs / config), *data, *method_overrides, "--trainer.default_root_dir",
               str(logs), "--seed_everything", str(training.seed), "--ckpt_path", "last",
               *ctx.init(training.regime, training.seed), *ctx.overrides], ctx.env)
    masks = {}
    for split, name in (("train", "pseudo_masks"), ("val", "val_masks")):
        masks[split] = folder / name
        run_epspp(f"predict {split} {training}", masks[split],
                  ["predict", "--config", str(configs / "pseudo_masks.yaml"), *data, "--data.predict_split", split,
                   "--ckpt_path", str(logs / "checkpoints" / "last.ckpt"), "--pseudo_masks.output_dir",
                   str(masks[split]), "--pseudo_masks.save_scores", "true", "--trainer.enable_progress_bar", "false"],
                  ctx.env)
    manifest = json.loads((masks["train"] / "manifest.json").read_text())
    names = read_classes(ctx.root)
    sweeps = {split: sweep_bg_threshold(masks[split], ctx.root, split, list(THRESHOLDS), class_names=names)["metrics"]
              for split in masks}
    choice = threshold_choice(list(THRESHOLDS), sweeps["val"], sweeps["train"], "val", "train", names)
    ird = ird_summary(logs, TELEMETRY_STEPS)
    last = (ird or {}).get("last_steps", {})
    scores = {"configured": manifest["miou"], "bg_threshold": manifest["config"]["model"]["bg_threshold"],
              "val_chosen": choice["chosen_bg_threshold_miou"], "val_chosen_threshold": choice["chosen_bg_threshold"],
              "train_sweep": choice["bg_threshold_sweep"], "val_sweep": choice["choice_sweep"],
              "per_class_iou": manifest.get("per_class_iou"),
              "per_class_iou_val_chosen": choice["chosen_per_class_iou"],
              "inconsistent_salient": last.get("inconsistent_salient"), "fg_salient": last.get("fg_salient"),
              "collapse_step": (ird or {}).get("collapse_step"), "ird": ird}
    write_json(scores_path, scores)
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


def train_all(ctx: Context, trainings: Sequence[Training], parallel: int) -> dict[Training, dict]:
    """Stage 1 + 2 of every training, ``parallel`` at a time; their scores."""
    jobs = [(str(t), t.folder(ctx.runs) / "scores.json", lambda t=t: localization(ctx, t)) for t in trainings]
    done = run_all(jobs, parallel)
    return {t: done[str(t)] for t in trainings}


def prepare(ctx: Context, num_classes: int, sizes: dict[str, int | None]) -> None:
    """The study's dataset (saliency errors at 0: every saliency map comes from a variant folder). An existing one
    must have ``num_classes`` classes; a size given in ``sizes`` (``num_train``, ``num_val``, ``image_size``; None =
    the default) that the existing dataset does not have is named in a note, since it is not regenerated."""
    from epspp.data.synthetic import SyntheticConfig, generate_synthetic

    meta = ctx.root / "synthetic.json"
    defaults = {key: getattr(SyntheticConfig(), key) for key in sizes}
    if not meta.is_file():
        print(f"[study] generating the synthetic dataset ({num_classes} classes) in {ctx.root}", flush=True)
        generate_synthetic(ctx.root, **{k: v if v is not None else defaults[k] for k, v in sizes.items()},
                           missing_class_rate=0.0, missing_part_rate=0.0, false_coverage_rate=0.0,
                           num_classes=num_classes)
        return
    params = json.loads(meta.read_text())["params"]
    found = int(params.get("num_classes", 5))
    if found != num_classes:
        raise StudyError(f"{ctx.root} holds a synthetic dataset of {found} classes, not --num-classes {num_classes}: "
                         f"pass --num-classes {found}, or another --root")
    for key, value in sizes.items():
        if value is not None and params.get(key) != value:
            print(f"[study] note: --{key.replace('_', '-')} {value} is not used: {ctx.root} exists with "
                  f"{key} {params.get(key)} and is not regenerated (pass another --root or --out)", flush=True)


def saliency_variants(ctx: Context, names: dict[str, dict[str, float]]) -> None:
    """The saliency folders ``OUT/saliency/<dataset>/<name>`` (rates by generator argument), written once each."""
    from epspp.data.synthetic import write_saliency_variant

    for name, rates in names.items():
        folder = ctx.saliency / name
        if not (folder / "saliency.json").is_file():
            print(f"[study] saliency maps {name}", flush=True)
            folder.parent.mkdir(parents=True, exist_ok=True)
            write_saliency_variant(ctx.root, folder, **rates)


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
    name = setting if fraction is None else f"{setting}_{fraction:g}"
    return ctx.runs / regime / "segmentation" / name / f"seed{seed}"


def segmentation(ctx: Context, regime: str, setting: str, seed: int, fraction: float | None,
                 pseudo: Path | None) -> dict:
    """One stage-3 fit (``setting``: labeled_only, ssss* or wsss*, on the pseudo-masks ``pseudo``) and the val mIoU
    of its last checkpoint (cached in ``score.json``)."""
    from epspp.run_logs import last_logged

    folder = segmentation_folder(ctx, regime, setting, seed, fraction)
    name = f"{regime} {folder.parent.name} seed {seed}"
    score_path = folder / "score.json"
    if score_path.is_file():
        return json.loads(score_path.read_text())
    config = "segmentation_ssss.yaml" if setting.startswith("ssss") else "segmentation_wsss.yaml"
    args = ["--config", str(ctx.stage_configs(regime) / config)]
    if setting == "labeled_only":
        args += ["--data.pseudo_mask_dir", "null", "--data.train_split", labeled_split(ctx.root, fraction)]
    elif setting.startswith("ssss"):
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
    write_json(score_path, score)
    return score
