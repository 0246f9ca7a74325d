"""The demo pipeline (``epspp demo``): every stage on the synthetic dataset, resumable, with a report.

Each stage runs as the user would run it (``epspp fit|predict`` in a subprocess) and writes a
``stage.json`` marker when it finishes; a rerun skips finished stages.  The measurements end up in
``OUT/report.json`` and ``OUT/report.md`` (see ``epspp.report``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from epspp.data.io import DatasetError
from epspp.errors import EPSError
from epspp.outputs import claim_folder, holds_stage_marker

METHODS = {"cam": "localization_cam.yaml", "eps": "localization_eps.yaml", "eps++": "localization_eps++.yaml"}
#: the demo's regimes: the papers' (a stage-0 backbone fine-tuned, configs/demo) and from scratch (configs/demo/scratch)
REGIMES = ("pretrained", "scratch")
DEFAULT_OUT = {"pretrained": "runs/demo", "scratch": "runs/demo_scratch"}
SEGMENTATION = ("wsss", "ssss", "labeled_only")


def run_stage(name: str, folder: Path, command: list[str], rerun: bool = False) -> dict:
    """Run ``epspp <command>`` unless ``folder/stage.json`` says it finished with this very command.

    A stage whose command changed (another root, other overrides), or whose input stage ran again
    (``rerun``), runs again from scratch: its old outputs are moved to ``<folder>.previous``.  The
    returned marker holds ``ran`` (whether the stage ran now).
    """
    marker = folder / "stage.json"
    record = {"stage": name, "command": ["epspp", *command]}
    if marker.is_file():
        earlier = json.loads(marker.read_text())
        if earlier.get("command") == record["command"] and not rerun:
            print(f"[demo] {name}: done before, skipping ({marker})", flush=True)
            return earlier | {"ran": False}
        previous = folder.with_name(f"{folder.name}.previous")
        shutil.rmtree(previous, ignore_errors=True)
        os.rename(folder, previous)
        why = "its input stage ran again" if rerun else "its command changed"
        print(f"[demo] {name}: {why}; running it again (the old outputs are in {previous})", flush=True)
    folder.mkdir(parents=True, exist_ok=True)
    print(f"[demo] {name}: epspp {' '.join(command)}", flush=True)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "epspp", *command], check=True)
    record["wall_time_s"] = round(time.perf_counter() - start, 1)
    tmp = marker.with_name(".stage.json.tmp")
    tmp.write_text(json.dumps(record, indent=2))
    os.replace(tmp, marker)
    return record | {"ran": True}


def demo_configs(configs: str | None) -> Path:
    """The demo's config folder: ``--configs``, else ``configs/demo`` here or in the repository epspp runs from."""
    if configs:
        return Path(configs)
    for candidate in (Path("configs/demo"), Path(__file__).resolve().parents[2] / "configs" / "demo"):
        if (candidate / "pseudo_masks.yaml").is_file():
            return candidate
    raise DatasetError("cannot find the demo's configs (configs/demo of the epspp repository): pass --configs DIR")


def pretrain(pretrain_root: Path, out: Path, configs: Path, overrides: list[str]) -> tuple[dict, Path]:
    """Stage 0: the pretraining corpus (generated if absent) and the classification fit; its marker and
    the ``backbone.pth`` it wrote."""
    if not pretrain_root.exists():
        run_stage("pretraining corpus", out / "pretrain_corpus", ["prepare", "pretrain-corpus", "--root",
                                                                   str(pretrain_root)])
    folder = out / "pretrain"
    record = run_stage("pretraining", folder, [*pretrain_command(configs, pretrain_root, folder), *overrides])
    return record, folder / "backbone.pth"


def pretrain_command(configs: Path, corpus: Path, folder: Path) -> list[str]:
    """``epspp fit`` of stage 0 (``configs/pretrain.yaml``) on ``corpus``, writing into ``folder``: the demo's and
    the studies'."""
    return ["fit", "--config", str(configs / "pretrain.yaml"), "--data.root", str(corpus),
            "--trainer.default_root_dir", str(folder)]


def run_demo(root: Path, out: Path, configs: Path, overrides: list[str], regime: str = "pretrained",
             pretrain_root: Path = Path("data/pretrain")) -> dict:
    """All stages of the demo in one regime; returns the report dict (also written to OUT/report.json).

    ``pretrained`` (the papers' regime): stage 0 first, then stages 1 and 3 from its backbone with the configs
    of ``configs``; ``scratch``: the configs of ``configs/scratch``, from random weights.
    """
    from epspp.report import write_report

    if regime not in REGIMES:
        raise DatasetError(f"--regime {regime}: expected one of {', '.join(REGIMES)}")
    for path, what in ((out, "--out"), (root, "--root"), (pretrain_root, "--pretrain-root")):
        if path.exists() and not path.is_dir():
            raise DatasetError(f"{what} {path} is a file: give a folder")
    claim_folder(out, "epspp demo", "--out", {root: "the dataset root", pretrain_root: "the pretraining corpus"},
                 legacy=holds_stage_marker)
    if not root.exists():
        run_stage("dataset", out / "dataset", ["prepare", "synthetic", "--root", str(root)])
    data = ["--data.root", str(root)]
    stages: dict[str, dict] = {}
    init: list[str] = []
    pretrained_again = False
    if regime == "pretrained":
        stages["pretrain"], backbone = pretrain(pretrain_root, out, configs, overrides)
        init, pretrained_again = ["--model.init_args.pretrained_path", str(backbone)], stages["pretrain"]["ran"]
    else:
        configs = configs / "scratch"
    for method, config in METHODS.items():
        folder = out / method / "localization"
        stages[f"localization/{method}"] = run_stage(
            f"localization {method}", folder,
            ["fit", "--config", str(configs / config), *data, "--trainer.default_root_dir", str(folder), *init,
             *overrides],
            rerun=pretrained_again,
        )
        # the train split's pseudo-masks (what stage 3 learns from) and the val split's, on which the report
        # chooses each method's background threshold (never on the train split it reports)
        for split, name in (("train", "pseudo_masks"), ("val", "val_masks")):
            masks = out / method / name
            key = f"pseudo_masks/{method}" if split == "train" else f"val_masks/{method}"
            stages[key] = run_stage(
                f"pseudo-masks {split} {method}", masks,
                ["predict", "--config", str(configs / "pseudo_masks.yaml"), *data, "--data.predict_split", split,
                 "--ckpt_path", str(folder / "checkpoints" / "last.ckpt"), "--pseudo_masks.output_dir", str(masks)],
                rerun=stages[f"localization/{method}"]["ran"],
            )
    pseudo = str(out / "eps++" / "pseudo_masks")
    variants = {
        "wsss": ["--config", str(configs / "segmentation_wsss.yaml"), "--data.pseudo_mask_dir", pseudo],
        "ssss": ["--config", str(configs / "segmentation_ssss.yaml"), "--data.pseudo_mask_dir", pseudo],
        "labeled_only": ["--config", str(configs / "segmentation_wsss.yaml"), "--data.pseudo_mask_dir", "null",
                         "--data.train_split", "labeled_10pct"],
    }
    upstream = stages["pseudo_masks/eps++"]["ran"]
    for variant, args in variants.items():
        folder = out / "segmentation" / variant
        stages[f"segmentation/{variant}"] = run_stage(
            f"segmentation {variant}", folder,
            ["fit", *args, *data, "--trainer.default_root_dir", str(folder), *init, *overrides],
            rerun=pretrained_again or (upstream and variant != "labeled_only"),
        )
    return write_report(root, out, stages, regime)


def demo_main(argv: list[str] | None = None) -> int:
    """``epspp demo [--regime pretrained|scratch] [--root data/synthetic] [--out DIR] [--configs configs/demo]
    [--pretrain-root data/pretrain] [-- OVERRIDES]``."""
    parser = argparse.ArgumentParser(prog="epspp demo", description="Run the whole EPS++ pipeline on synthetic data.")
    parser.add_argument("--regime", choices=REGIMES, default="pretrained",
                        help="pretrained (default, the papers' regime): stage 0 pretrains the backbone on the "
                             "pretraining corpus, stages 1 and 3 fine-tune it (configs/demo); scratch: stages 1 "
                             "and 3 from random weights (configs/demo/scratch)")
    parser.add_argument("--root", default="data/synthetic", help="synthetic dataset root (generated if absent)")
    parser.add_argument("--out", default=None,
                        help="run folder of the demo (default: runs/demo, or runs/demo_scratch with --regime scratch)")
    parser.add_argument("--configs", default=None,
                        help="folder of the demo's stage configs (default: configs/demo of the repository; the "
                             "scratch regime reads its scratch/ subfolder)")
    parser.add_argument("--pretrain-root", default="data/pretrain",
                        help="stage 0's pretraining corpus (generated if absent; pretrained regime only)")
    parser.add_argument("overrides", nargs="*", 
                        help="extra `epspp fit` overrides of every fit, stage 0 included (after --), e.g. "
                             "--trainer.max_steps=5")
    args = parser.parse_args(argv)
    try:
        report = run_demo(Path(args.root), Path(args.out or DEFAULT_OUT[args.regime]), demo_configs(args.configs),
                          args.overrides, args.regime, Path(args.pretrain_root))
    except (EPSError, subprocess.CalledProcessError) as error:
        print(f"epspp demo: error: {error}", file=sys.stderr)
        return 2
    print(report["table"])
    return 0
