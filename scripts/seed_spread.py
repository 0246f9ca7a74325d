"""Run-to-run spread of the demo's stage 1-2: each method's demo config trained and predicted per seed.

    python scripts/seed_spread.py --root data/synthetic --out runs/seed_spread --seeds 0 1 [--methods cam eps eps++]

Per (method, seed): ``epspp fit`` with the demo's localization config and ``--seed_everything SEED``, then
``epspp predict`` with its pseudo_masks.yaml (``--configs``, default configs/demo/scratch: the from-scratch
regime); the pseudo-masks are scored at the configured
background threshold and, from the saved scores, at the best of the demo report's thresholds.  Writes
OUT/seed_spread.json and prints a Markdown table.  With ``--compare-to RUNS`` (e.g. runs/demo, trained with
seed 0), the largest weight difference between that folder's checkpoints and this script's seed-0 runs is
printed too: 0 when the runs repeat exactly.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import torch

from epspp.evaluate import sweep_bg_threshold, sweep_to_json
from epspp.pipeline import METHODS
from epspp.report import SWEEP_THRESHOLDS

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "demo" / "scratch"


def epspp(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "epspp", *args], check=True)


def run(root: Path, out: Path, method: str, seed: int, configs: Path = CONFIGS) -> dict:
    folder = out / method / f"seed{seed}"
    ckpt = folder / "localization" / "checkpoints" / "last.ckpt"
    finished = folder / "localization" / "finished"  # an interrupted fit is run again from the start
    if not finished.is_file():
        epspp("fit", "--config", str(configs / METHODS[method]), "--data.root", str(root), "--seed_everything",
              str(seed), "--trainer.default_root_dir", str(folder / "localization"),
              "--trainer.enable_progress_bar", "false", "--trainer.logger", "false")
        finished.touch()
    masks = folder / "pseudo_masks"
    if not (masks / "manifest.json").is_file():
        epspp("predict", "--config", str(configs / "pseudo_masks.yaml"), "--data.root", str(root), "--ckpt_path",
              str(ckpt), "--pseudo_masks.output_dir", str(masks), "--trainer.enable_progress_bar", "false")
    manifest = json.loads((masks / "manifest.json").read_text())
    sweep = sweep_bg_threshold(masks, root, manifest["split"], list(SWEEP_THRESHOLDS))["metrics"]
    best = sweep_to_json(list(SWEEP_THRESHOLDS), sweep)
    return {"method": method, "seed": seed, "miou": manifest["miou"], "best_threshold": best["best_bg_threshold"],
            "best_miou": best["best_bg_threshold_miou"], "checkpoint": str(ckpt)}


def max_weight_difference(a: Path, b: Path) -> float:
    first, second = (torch.load(p, map_location="cpu", weights_only=True)["state_dict"] for p in (a, b))
    return max((first[k].double() - second[k].double()).abs().max().item() for k in first
               if first[k].is_floating_point())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("data/synthetic"))
    parser.add_argument("--out", type=Path, default=Path("runs/seed_spread"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--configs", type=Path, default=CONFIGS, help="the demo's stage configs of one regime")
    parser.add_argument("--compare-to", type=Path, default=None, help="a demo run folder trained with seed 0")
    args = parser.parse_args()
    rows = [run(args.root, args.out, method, seed, args.configs) for method in args.methods for seed in args.seeds]
    if args.compare_to is not None:
        for row in rows:
            theirs = args.compare_to / row["method"] / "localization" / "checkpoints" / "last.ckpt"
            if row["seed"] == 0 and theirs.is_file():
                row["max_weight_difference_to_" + str(args.compare_to)] = max_weight_difference(
                    Path(row["checkpoint"]), theirs)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "seed_spread.json").write_text(json.dumps(rows, indent=2))
    print("| method | seed | pseudo-mask mIoU (bg 0.2) | best threshold | mIoU at the best |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['method']} | {row['seed']} | {row['miou']} | {row['best_threshold']} | {row['best_miou']} |")
    for row in rows:
        extra = {k: v for k, v in row.items() if k.startswith("max_weight")}
        if extra:
            print(row["method"], extra)


if __name__ == "__main__":
    main()
